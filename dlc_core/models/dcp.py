"""Deep Closest Point (DCP-v2, Wang & Solomon 2019) and its iterative, weight-shared unrolling used by DLC+DCP.

One pass: embed both clouds (DGCNN or PointNet), let a transformer exchange context between them
(Φ = F + T(F_x, F_y)), point each source point at a soft average of target points (the pointer), and solve the
rigid transform with the guarded SVD head. Passes compose as in PRNet: after pass i the source is moved by
(R_i, t_i) and the estimate becomes (R_i R, R_i t + t_i). Test-time passes stop early when the update is small;
nothing at test time looks at the ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

import torch
from torch import Tensor, nn

from ..geometry import compose, rotation_angle, transform_points
from .embeddings import DGCNNEmbedding, PointNetEmbedding
from .procrustes import procrustes

PassT = TypeVar("PassT")

BACKBONES = ("dcp", "dcp-pointnet")


@dataclass(frozen=True)
class DCPConfig:
    """Every constructor argument of a DCP model; stored in the model card and used to rebuild it."""

    backbone: str = "dcp"
    emb_dims: int = 512
    k: int = 20
    channels: tuple[int, ...] = (64, 64, 128, 256)
    n_heads: int = 4
    ff_dims: int = 1024

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.emb_dims % self.n_heads:
            raise ValueError(f"emb_dims ({self.emb_dims}) must be divisible by n_heads ({self.n_heads})")

    def card(self) -> dict:
        """The config as JSON-ready data."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_card(cls, d: dict) -> "DCPConfig":
        """Rebuild from a model card's config."""
        return cls(**{**d, "channels": tuple(d.get("channels", cls.channels))})


@dataclass
class PassResult:
    """The cumulative estimate after one pass, and what the pass saw (for the landscapes of the DLC loss)."""

    rotation: Tensor  # (B, 3, 3) source -> target, all passes so far
    translation: Tensor  # (B, 3)
    correspondences: Tensor  # (B, N, 3) soft target points for each source point of this pass
    valid: Tensor  # (B,) the SVD head had non-degenerate input


class ContextTransformer(nn.Module):
    """DCP's attention block: one pre-norm encoder layer over one cloud, one decoder layer over the other."""

    def __init__(self, dims: int, n_heads: int, ff_dims: int) -> None:
        super().__init__()
        kwargs = dict(d_model=dims, nhead=n_heads, dim_feedforward=ff_dims, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoderLayer(**kwargs)
        self.decoder = nn.TransformerDecoderLayer(**kwargs)
        self.encoder_norm = nn.LayerNorm(dims)
        self.decoder_norm = nn.LayerNorm(dims)

    def forward(self, memory_cloud: Tensor, query_cloud: Tensor) -> Tensor:
        """Context for query_cloud given memory_cloud, both (B, N, C)."""
        memory = self.encoder_norm(self.encoder(memory_cloud))
        return self.decoder_norm(self.decoder(query_cloud, memory))


class DCP(nn.Module):
    """One DCP pass: (source, target) point clouds (B, N, 3), (B, M, 3) -> rigid transform source -> target."""

    def __init__(self, config: DCPConfig) -> None:
        super().__init__()
        self.config = config
        if config.backbone == "dcp":
            self.embedding: nn.Module = DGCNNEmbedding(config.emb_dims, config.k, config.channels)
        else:
            self.embedding = PointNetEmbedding(config.emb_dims)
        self.transformer = ContextTransformer(config.emb_dims, config.n_heads, config.ff_dims)

    def features(self, cloud: Tensor) -> Tensor:
        """Per-point embeddings (B, N, C) of clouds (B, N, 3)."""
        return self.embedding(cloud)

    def forward(self, src: Tensor, tgt: Tensor, f_tgt: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (R, t, soft correspondences (B, N, 3), valid (B,)); `f_tgt`: the target's features, when known."""
        b = src.shape[0]
        if f_tgt is not None:
            f_src = self.features(src)
        elif src.shape[1] == tgt.shape[1]:
            emb = self.features(torch.cat([src, tgt], 0))
            f_src, f_tgt = emb[:b], emb[b:]
        else:
            f_src, f_tgt = self.features(src), self.features(tgt)
        if f_src.shape == f_tgt.shape:
            ctx = self.transformer(torch.cat([f_tgt, f_src], 0), torch.cat([f_src, f_tgt], 0))
            phi_src, phi_tgt = f_src + ctx[:b], f_tgt + ctx[b:]
        else:
            phi_src = f_src + self.transformer(f_tgt, f_src)
            phi_tgt = f_tgt + self.transformer(f_src, f_tgt)
        scores = phi_src @ phi_tgt.transpose(1, 2) / math.sqrt(phi_src.shape[-1])
        corr = torch.softmax(scores, dim=-1) @ tgt
        r, t, valid = procrustes(src, corr)
        return r, t, corr, valid


class IterativeDCP(nn.Module):
    """DCP applied repeatedly with shared weights; each pass starts from the source moved by the estimate so far."""

    def __init__(self, config: DCPConfig) -> None:
        super().__init__()
        self.config = config
        self.dcp = DCP(config)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        passes: int,
        init: tuple[Tensor, Tensor] | None = None,
        stop_angle_deg: float | None = None,
        stop_translation: float | None = None,
    ) -> list[PassResult]:
        """Run up to `passes` passes from `init` (identity if None); one PassResult per pass that ran.

        With stop thresholds, an example whose latest update is below both thresholds keeps its estimate, and the
        loop ends when every example has stopped (the update size is the test-time stopping rule; no ground truth).
        """
        # the target does not move between passes, so at inference its features are computed once (in training,
        # BatchNorm normalises source and target together, so every pass embeds both)
        f_tgt = None if self.training else self.dcp.features(tgt)

        def step(moved: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor, Tensor], PassResult]]:
            r_i, t_i, corr, valid = self.dcp(moved, tgt, f_tgt)
            return r_i, t_i, lambda r, t: PassResult(r, t, corr, valid)

        return unroll(step, src, passes, init, stop_angle_deg, stop_translation)


def unroll(
    step: Callable[[Tensor], tuple[Tensor, Tensor, Callable[[Tensor, Tensor], PassT]]],
    src: Tensor,
    passes: int,
    init: tuple[Tensor, Tensor] | None,
    stop_angle_deg: float | None,
    stop_translation: float | None,
) -> list[PassT]:
    """The pass loop both backbones share: each pass sees the source moved by the estimate so far, its update is
    composed on the left, and, with stop thresholds, an example whose update is below both keeps its estimate.

    step(moved source) -> (update rotation, update translation, a builder of the pass result from the new estimate).
    """
    b = src.shape[0]
    if init is None:
        r = torch.eye(3, dtype=src.dtype, device=src.device).expand(b, 3, 3)
        t = torch.zeros(b, 3, dtype=src.dtype, device=src.device)
    else:
        r, t = init
    active = torch.ones(b, dtype=torch.bool, device=src.device)
    results: list[PassT] = []
    for _ in range(passes):
        r_i, t_i, result = step(transform_points(r, t, src))
        r_new, t_new = compose(r_i, t_i, r, t)
        r = torch.where(active[:, None, None], r_new, r)
        t = torch.where(active[:, None], t_new, t)
        results.append(result(r, t))
        if stop_angle_deg is not None and stop_translation is not None:
            small = (torch.rad2deg(rotation_angle(r_i)) < stop_angle_deg) & (t_i.norm(dim=-1) < stop_translation)
            active = active & ~small
            if not bool(active.any()):
                break
    return results
