"""PRNet (Wang & Solomon 2019, partial-to-partial registration) with the call interface of IterativeDCP.

One PRNet iteration: a dynamic DGCNN embeds each cloud (the kNN graph is rebuilt from the features at every layer,
LeakyReLU 0.2), DCP's context transformer exchanges information (Φ = F + T(F_x, F_y)), each cloud keeps its
keypoints (the points whose Φ has the largest L2 norm), a temperature network reads the disparity
|mean Φ_x − mean Φ_y| of the keypoints, source keypoints pick target keypoints by a hard Gumbel-softmax on
s_ij = Φ_xiᵀ Φ_yj / √d with that temperature, and the guarded SVD head solves the transform on the keypoints.
Iterations ("passes") compose as in IterativeDCP: R ← R_i R, t ← R_i t + t_i, with the source moved in between.

Choices the PRNet code leaves open or gets wrong (METHOD.md §3.1), made here:
- Eval mode matches each source keypoint to the argmax of its scores, the mode of the training-time hard sample
  (with ``gumbel=False`` both modes use softmax(s/τ); τ divides the scores as in PRNet's Gumbel branch, its
  softmax branch multiplies). The value of a hard Gumbel sample, argmax(s + g), does not depend on τ: the
  temperature only shapes the straight-through gradient.
- ``PassResult.correspondences`` holds, for every source point, the expected match over all target points under
  the same scores: Σ_j softmax_j(s_ij) y_j (the Gumbel-max expectation; softmax(s/τ) with ``gumbel=False``). It is
  deterministic and differentiable; the "procrustes" landscape needs a match for each point, not only keypoints.
- The cycle term uses, as PRNet, the reverse head on the same keypoints in the same iteration (no second network
  run), but scores the composition exactly: MSE(R_ab R_ba, I) + MSE(R_ab t_ba + t_ab, 0). PRNet's
  MSE(t_ab, −t_ba) is minimised by the true pair only when R_ab = I, so it would bias rotated pairs.
- The temperature MLP has no BatchNorm (so an example's temperature does not depend on its batch-mates, and a
  batch of one trains) and ends in softplus rather than ReLU (so it never sits at the clamp with zero gradient).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..geometry import compose
from .dcp import ContextTransformer, PassResult, unroll
from .embeddings import edge_features, knn_indices, pointwise
from .procrustes import procrustes

BACKBONES = ("prnet",)
MIN_KEYPOINTS = 3  # the SVD head needs three points to fix a rotation


@dataclass(frozen=True)
class PRNetConfig:
    """Every constructor argument of a PRNet model; stored in the model card and used to rebuild it."""

    backbone: str = "prnet"
    emb_dims: int = 512
    k: int = 20
    channels: tuple[int, ...] = (64, 64, 128, 256)
    n_heads: int = 4
    ff_dims: int = 1024
    n_keypoints: int | float = 512  # an int is a count, a float in (0, 1] a fraction of each cloud's points
    temperature_range: tuple[float, float] = (0.01, 100.0)
    temp_hidden: int = 128
    gumbel: bool = True

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.emb_dims % self.n_heads:
            raise ValueError(f"emb_dims ({self.emb_dims}) must be divisible by n_heads ({self.n_heads})")
        n = self.n_keypoints
        if isinstance(n, bool) or not (isinstance(n, int) and n >= 1 or isinstance(n, float) and 0.0 < n <= 1.0):
            raise ValueError(f"n_keypoints must be a count >= 1 or a fraction in (0, 1], got {n!r}")
        lo, hi = self.temperature_range
        if not 0.0 < lo <= hi:
            raise ValueError(f"temperature_range must satisfy 0 < low <= high, got {self.temperature_range}")

    def keypoint_count(self, n_points: int) -> int:
        """Keypoints kept in a cloud of n_points: the count (or fraction), at least 3, at most n_points."""
        n = self.n_keypoints
        wanted = n if isinstance(n, int) else math.ceil(n * n_points)
        return min(n_points, max(MIN_KEYPOINTS, wanted))

    def card(self) -> dict:
        """The config as JSON-ready data."""
        return {**asdict(self), "channels": list(self.channels), "temperature_range": list(self.temperature_range)}

    @classmethod
    def from_card(cls, d: dict) -> "PRNetConfig":
        """Rebuild from a model card's config."""
        tuples = {name: tuple(d.get(name, getattr(cls, name))) for name in ("channels", "temperature_range")}
        return cls(**{**d, **tuples})


@dataclass
class PRNetPassResult(PassResult):
    """A PassResult plus PRNet's auxiliary terms of that pass, per example (see auxiliary_losses)."""

    feature_disparity: Tensor  # (B,) mean over channels of |mean Φ_x − mean Φ_y| over the keypoints
    cycle: Tensor | None  # (B,) cycle residual of this pass's update and its reverse; None unless asked for


@dataclass
class IterationOutput:
    """What one PRNet iteration returns: its own update (not composed with earlier passes) and its terms."""

    rotation: Tensor  # (B, 3, 3)
    translation: Tensor  # (B, 3)
    correspondences: Tensor  # (B, N, 3)
    valid: Tensor  # (B,)
    feature_disparity: Tensor  # (B,)
    cycle: Tensor | None  # (B,)


class DynamicDGCNN(nn.Module):
    """PRNet's DGCNN: each edge convolution builds its kNN graph from the previous layer's features (the first from
    xyz), max-pools over the k neighbours, LeakyReLU 0.2; a 1x1 convolution mixes the concatenated layers."""

    def __init__(self, emb_dims: int, k: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.k = k
        widths = (3, *channels)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.mix = nn.Sequential(
            nn.Conv1d(sum(channels), emb_dims, 1, bias=False), nn.BatchNorm1d(emb_dims), nn.LeakyReLU(0.2)
        )

    def forward(self, points: Tensor) -> Tensor:
        """(B, N, 3) points -> (B, N, emb_dims) embeddings (channels-last, see embeddings.py)."""
        x, pooled = points, []
        for conv in self.convs:
            x = pointwise(conv, edge_features(x, knn_indices(x, self.k))).amax(dim=2)
            pooled.append(x)
        return pointwise(self.mix, torch.cat(pooled, dim=-1))


class TemperatureNet(nn.Module):
    """PRNet's temperature: an MLP on the keypoints' feature disparity (B, C) -> τ (B,), clamped to a range."""

    def __init__(self, emb_dims: int, hidden: int, temperature_range: tuple[float, float]) -> None:
        super().__init__()
        self.low, self.high = temperature_range
        self.net = nn.Sequential(
            nn.Linear(emb_dims, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Softplus(),
        )  # fmt: skip

    def forward(self, disparity: Tensor) -> Tensor:
        """Temperatures (B,) for disparities (B, C)."""
        return self.net(disparity).squeeze(-1).clamp(self.low, self.high)


def select_keypoints(embeddings: Tensor, count: int) -> Tensor:
    """Indices (B, count) of the points whose embeddings (B, N, C) have the largest L2 norms (PRNet's keypoints)."""
    return embeddings.norm(dim=-1).topk(count, dim=-1).indices


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """Rows idx (B, K) of x (B, N, C) -> (B, K, C)."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def gumbel_softmax(scores: Tensor, tau: Tensor, hard: bool) -> Tensor:
    """Gumbel-softmax samples over the last axis of scores (B, K, L) at temperatures tau (B,).

    hard: one-hot rows in the forward pass with the gradient of the soft sample (straight-through), as PRNet.
    """
    exponential = torch.empty_like(scores).exponential_().clamp_min(torch.finfo(scores.dtype).tiny)
    soft = torch.softmax((scores - exponential.log()) / tau[:, None, None], dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft)
    return one_hot - soft.detach() + soft


def cycle_residual(r_ab: Tensor, t_ab: Tensor, r_ba: Tensor, t_ba: Tensor) -> Tensor:
    """Per example MSE of (R_ab, t_ab) ∘ (R_ba, t_ba) against the identity: 9 rotation + 3 translation entries."""
    r, t = compose(r_ab, t_ab, r_ba, t_ba)
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    return (r - eye).pow(2).flatten(-2).mean(-1) + t.pow(2).mean(-1)


class PRNetIteration(nn.Module):
    """One PRNet iteration: (source (B, N, 3), target (B, M, 3)) -> the rigid update source -> target."""

    def __init__(self, config: PRNetConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = DynamicDGCNN(config.emb_dims, config.k, config.channels)
        self.transformer = ContextTransformer(config.emb_dims, config.n_heads, config.ff_dims)
        self.temperature = TemperatureNet(config.emb_dims, config.temp_hidden, config.temperature_range)

    def embed(self, src: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
        """Φ_x (B, N, C), Φ_y (B, M, C): per-cloud embeddings plus the transformer's cross-cloud context."""
        f_src, f_tgt = self.embedding(src), self.embedding(tgt)
        return f_src + self.transformer(f_tgt, f_src), f_tgt + self.transformer(f_src, f_tgt)

    def assign(self, scores: Tensor, tau: Tensor) -> Tensor:
        """Row-stochastic keypoint assignment: hard Gumbel in training, argmax in eval; softmax(s/τ) if not gumbel."""
        if not self.config.gumbel:
            return torch.softmax(scores / tau[:, None, None], dim=-1)
        if self.training:
            return gumbel_softmax(scores, tau, hard=True)
        return F.one_hot(scores.argmax(-1), scores.shape[-1]).to(scores)

    def expected_assignment(self, scores: Tensor, tau: Tensor) -> Tensor:
        """Deterministic soft assignment (the mean of what `assign` samples in training) for the correspondences."""
        return torch.softmax(scores if self.config.gumbel else scores / tau[:, None, None], dim=-1)

    def solve(self, kp_src: Tensor, kp_tgt: Tensor, scores: Tensor, tau: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(R, t, valid) mapping source keypoints onto their assigned target keypoints (guarded SVD head)."""
        return procrustes(kp_src, self.assign(scores, tau) @ kp_tgt)

    def forward(self, src: Tensor, tgt: Tensor, cycle: bool = False) -> IterationOutput:
        """One iteration; with cycle, also the reverse registration target -> source and its cycle residual."""
        phi_src, phi_tgt = self.embed(src, tgt)
        scores = phi_src @ phi_tgt.transpose(1, 2) / math.sqrt(phi_src.shape[-1])
        idx_src = select_keypoints(phi_src, self.config.keypoint_count(src.shape[1]))
        idx_tgt = select_keypoints(phi_tgt, self.config.keypoint_count(tgt.shape[1]))
        disparity = (gather_rows(phi_src, idx_src).mean(1) - gather_rows(phi_tgt, idx_tgt).mean(1)).abs()
        tau = self.temperature(disparity)
        kp_src, kp_tgt = gather_rows(src, idx_src), gather_rows(tgt, idx_tgt)
        kp_scores = gather_rows(gather_rows(scores, idx_src).transpose(1, 2), idx_tgt).transpose(1, 2)
        r, t, valid = self.solve(kp_src, kp_tgt, kp_scores, tau)
        corr = self.expected_assignment(scores, tau) @ tgt
        residual = None
        if cycle:
            r_ba, t_ba, _ = self.solve(kp_tgt, kp_src, kp_scores.transpose(1, 2), tau)
            residual = cycle_residual(r, t, r_ba, t_ba)
        return IterationOutput(r, t, corr, valid, disparity.mean(-1), residual)


class PRNet(nn.Module):
    """PRNet iterations with shared weights; each starts from the source moved by the estimate so far."""

    def __init__(self, config: PRNetConfig) -> None:
        super().__init__()
        self.config = config
        self.iteration = PRNetIteration(config)

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        passes: int,
        init: tuple[Tensor, Tensor] | None = None,
        stop_angle_deg: float | None = None,
        stop_translation: float | None = None,
        cycle: bool = False,
    ) -> list[PRNetPassResult]:
        """Run up to `passes` iterations from `init` (identity if None); one result per iteration that ran.

        Same contract as IterativeDCP.forward (early stop per example when the update is below both thresholds);
        `cycle` also runs each iteration's reverse head so that auxiliary_losses can return the cycle term.
        """
        def step(moved: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor, Tensor], PRNetPassResult]]:
            out = self.iteration(moved, tgt, cycle)
            return out.rotation, out.translation, lambda r, t: PRNetPassResult(
                r, t, out.correspondences, out.valid, out.feature_disparity, out.cycle
            )

        return unroll(step, src, passes, init, stop_angle_deg, stop_translation)


def auxiliary_losses(passes: list[PassResult], discount: float) -> dict[str, Tensor]:
    """PRNet's extra loss terms of one forward, each Σ_i discount^i · batch mean over the passes, unweighted.

    "feature" (mean keypoint feature disparity) for PRNet results, "cycle" when the forward ran with cycle=True;
    {} for other models' results, so a trainer can call it for any backbone.
    """
    if not passes or not all(isinstance(p, PRNetPassResult) for p in passes):
        return {}
    terms = {"feature": sum(discount**i * p.feature_disparity.mean() for i, p in enumerate(passes))}
    if all(p.cycle is not None for p in passes):
        terms["cycle"] = sum(discount**i * p.cycle.mean() for i, p in enumerate(passes))
    return terms
