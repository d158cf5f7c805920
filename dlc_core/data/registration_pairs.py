"""Registration pairs for object-level training and evaluation (METHOD.md §3.1, the DCP/PRNet protocol).

A pair is made from a *base pair* (A, B) of clouds in one frame: A becomes the source, and the target is B moved
by a random rigid transform T = (R, t) (each Euler angle U[0, 45°], t ~ U[−0.5, 0.5]³), so T maps the source
onto the target. Synthetic sets use A = B (the same sampled points, as DCP); the real bunny pairs use two
different scans, A already moved into B's frame with the bun.conf ground truth, so overlap is partial and the
sampling differs, as in real data.

Variants: ``noisy`` jitters both clouds independently with N(0, 0.01²) clipped to ±0.05 after the transform
(PRNet); ``partial`` keeps, in each cloud, the points nearest to one far random point (PRNet: 768 of 1024).
Training pairs are redrawn every epoch from (seed, epoch, index); evaluation pairs depend on (seed, index) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry import euler_zyx_to_matrix_np, random_transform

JITTER_SIGMA, JITTER_CLIP = 0.01, 0.05


@dataclass(frozen=True)
class PairOptions:
    """How pairs are drawn: point count, the transform ranges and the protocol variant."""

    num_points: int = 1024
    noisy: bool = False
    partial_keep: float | None = None  # e.g. 0.75 keeps 768 of 1024 points per cloud
    max_angle_deg: float = 45.0
    max_translation: float = 0.5


def _subset(rng: np.random.Generator, points: np.ndarray, n: int) -> np.ndarray:
    """n points of a cloud chosen without replacement (with replacement only if the cloud is smaller)."""
    return points[rng.choice(len(points), size=n, replace=len(points) < n)]


def _crop_near(points: np.ndarray, anchor: np.ndarray, keep: int) -> np.ndarray:
    """The `keep` points nearest to `anchor` (PRNet's partial view)."""
    order = np.argsort(np.linalg.norm(points - anchor, axis=1), kind="stable")
    return points[order[:keep]]


def make_pair(
    rng: np.random.Generator, source_base: np.ndarray, target_base: np.ndarray, options: PairOptions, shared: bool
) -> dict[str, np.ndarray]:
    """One pair from a base pair; `shared` means both clouds are the same cloud and keep the same sampled points."""
    euler, t = random_transform(rng, options.max_angle_deg, options.max_translation)
    r = euler_zyx_to_matrix_np(euler)
    src = _subset(rng, source_base, options.num_points)
    tgt = src if shared else _subset(rng, target_base, options.num_points)
    tgt = tgt @ r.T + t
    if options.partial_keep is not None:
        keep = max(3, int(round(options.partial_keep * options.num_points)))
        anchor = rng.random(3) + 500.0 * rng.choice([1.0, -1.0])
        src, tgt = _crop_near(src, anchor, keep), _crop_near(tgt, anchor, keep)
    if options.noisy:
        src = src + np.clip(JITTER_SIGMA * rng.standard_normal(src.shape), -JITTER_CLIP, JITTER_CLIP)
        tgt = tgt + np.clip(JITTER_SIGMA * rng.standard_normal(tgt.shape), -JITTER_CLIP, JITTER_CLIP)
    return {
        "src": rng.permutation(src).astype(np.float32),
        "tgt": rng.permutation(tgt).astype(np.float32),
        "rotation": r.astype(np.float32),
        "translation": t.astype(np.float32),
        "euler": euler.astype(np.float32),
    }


class PairDataset(Dataset):
    """Pairs drawn from base pairs: `bases[i]` is (A, B) in one frame, or a single cloud used for both."""

    def __init__(
        self, bases: Sequence[np.ndarray | tuple[np.ndarray, np.ndarray]], options: PairOptions, seed: int, fixed: bool
    ) -> None:
        self.bases, self.options, self.seed, self.fixed = bases, options, seed, fixed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Redraw the training pairs for a new epoch (ignored by fixed evaluation sets)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.bases)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        key = [self.seed, index] if self.fixed else [self.seed, self.epoch, index]
        rng = np.random.default_rng(key)
        base = self.bases[index]
        if isinstance(base, tuple):
            pair = make_pair(rng, base[0], base[1], self.options, shared=False)
        else:
            pair = make_pair(rng, base, base, self.options, shared=True)
        return {k: torch.from_numpy(v) for k, v in pair.items()}
