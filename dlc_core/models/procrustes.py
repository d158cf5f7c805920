"""The SVD head shared by DCP and PRNet: the rigid transform that best maps points onto their correspondences.

Guarded because a network can hand it degenerate input (all correspondences on one point, collinear points,
NaN): such rows get the identity rotation and are flagged instead of producing NaN values or NaN gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Stand-in for a degenerate cross-covariance: distinct singular values keep the SVD gradient finite.
_SAFE_H = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
_RANK_TOL = 1e-6


def procrustes(src: Tensor, corr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares (R, t) with R src_i + t ≈ corr_i, for batches (B, N, 3); also returns a validity mask (B,).

    H = Σ (x_i − x̄)(ŷ_i − ŷ̄)ᵀ = U S Vᵀ, R = V diag(1, 1, det(V Uᵀ)) Uᵀ (the determinant fix keeps R a
    rotation), t = ŷ̄ − R x̄. A row is valid when H is finite and has rank >= 2 (the rotation is determined).
    """
    finite = torch.isfinite(src).flatten(1).all(1) & torch.isfinite(corr).flatten(1).all(1)
    keep = finite[:, None, None]
    # NaN rows are zeroed *before* any arithmetic, so that no NaN reaches the backward pass either.
    src, corr = torch.where(keep, src, torch.zeros_like(src)), torch.where(keep, corr, torch.zeros_like(corr))
    src_mean, corr_mean = src.mean(1), corr.mean(1)
    h = (src - src_mean.unsqueeze(1)).transpose(1, 2) @ (corr - corr_mean.unsqueeze(1))
    singular = torch.linalg.svdvals(h.detach())
    valid = finite & (singular[:, 0] > 1e-30) & (singular[:, 1] > _RANK_TOL * singular[:, 0])
    safe = _SAFE_H.to(h)
    h_safe = torch.where(valid[:, None, None], h, safe.expand_as(h))
    u, _, vh = torch.linalg.svd(h_safe)
    v = vh.transpose(1, 2)
    det = torch.linalg.det(v @ u.transpose(1, 2))
    fix = torch.ones_like(v[:, 0])
    fix = torch.cat([fix[:, :2], torch.sign(det).unsqueeze(1)], 1)
    r = (v * fix.unsqueeze(1)) @ u.transpose(1, 2)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(r)
    r = torch.where(valid[:, None, None], r, eye)
    t = corr_mean - (r @ src_mean.unsqueeze(-1)).squeeze(-1)
    return r, t, valid
