"""Rigid-body geometry in torch: SE(3) as (R, t) pairs, DCP's zyx Euler convention, random DCP-range transforms.

Conventions (METHOD.md §3.1): a transform (R, t) maps a source point x to R x + t. The Euler vector is
e = [z, y, x] (radians) with R = Rx(x) Ry(y) Rz(z), which is scipy's ``Rotation.from_euler('zyx', [z, y, x])``.
Every function works on batches: R has shape (..., 3, 3), t and e have shape (..., 3).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def euler_zyx_to_matrix(e: Tensor) -> Tensor:
    """Rotation matrices from Euler vectors [z, y, x] (radians): R = Rx(x) @ Ry(y) @ Rz(z)."""
    z, y, x = e.unbind(-1)
    cz, sz, cy, sy, cx, sx = z.cos(), z.sin(), y.cos(), y.sin(), x.cos(), x.sin()
    one, zero = torch.ones_like(z), torch.zeros_like(z)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    return rx @ ry @ rz


def matrix_to_euler_zyx(r: Tensor) -> Tensor:
    """Euler vectors [z, y, x] (radians) of rotation matrices; the inverse of ``euler_zyx_to_matrix``.

    Matches scipy's ``as_euler('zyx')`` away from gimbal lock (|y| = 90 deg), where the split between z and x is
    arbitrary and this returns x = 0.
    """
    # R = Rx Ry Rz (scipy's extrinsic 'zyx'): R[0,2] = sin y, row 0 gives z, column 2 gives x.
    sy = r[..., 0, 2].clamp(-1.0, 1.0)
    y = torch.asin(sy)
    gimbal = (1.0 - sy.abs()) < 1e-9
    z = torch.where(gimbal, torch.atan2(r[..., 1, 0], r[..., 1, 1]), torch.atan2(-r[..., 0, 1], r[..., 0, 0]))
    x = torch.where(gimbal, torch.zeros_like(y), torch.atan2(-r[..., 1, 2], r[..., 2, 2]))
    return torch.stack([z, y, x], -1)


def compose(r1: Tensor, t1: Tensor, r2: Tensor, t2: Tensor) -> tuple[Tensor, Tensor]:
    """(R1, t1) ∘ (R2, t2): apply (R2, t2) first, then (R1, t1)."""
    return r1 @ r2, (r1 @ t2.unsqueeze(-1)).squeeze(-1) + t1


def invert(r: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of (R, t): (Rᵀ, -Rᵀ t)."""
    rt = r.transpose(-1, -2)
    return rt, -(rt @ t.unsqueeze(-1)).squeeze(-1)


def transform_points(r: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """Apply (R, t) to point sets of shape (..., N, 3)."""
    return points @ r.transpose(-1, -2) + t.unsqueeze(-2)


def rotation_angle(r: Tensor) -> Tensor:
    """Angle (radians) of rotation matrices, computed stably via atan2 of the axis and trace parts."""
    cos = (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    skew = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    return torch.atan2(skew.norm(dim=-1) / 2.0, cos)


def to_matrix(r: Tensor, t: Tensor) -> Tensor:
    """4x4 homogeneous matrices from (R, t)."""
    m = torch.zeros(*r.shape[:-2], 4, 4, dtype=r.dtype, device=r.device)
    m[..., :3, :3] = r
    m[..., :3, 3] = t
    m[..., 3, 3] = 1.0
    return m


def from_matrix(m: Tensor) -> tuple[Tensor, Tensor]:
    """(R, t) from 4x4 homogeneous matrices."""
    return m[..., :3, :3], m[..., :3, 3]


def random_transform(
    rng: np.random.Generator, max_angle_deg: float = 45.0, max_translation: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """One transform in the DCP ranges: Euler [z, y, x] each U[0, max_angle], t ~ U[-max_t, max_t]^3.

    Returns (euler [z, y, x] in radians, t), both float64 numpy arrays; the draw order (x, y, z angles, then t)
    follows DCP's data loader so a seed means the same thing here and there.
    """
    ax, ay, az = rng.uniform(0.0, math.radians(max_angle_deg), size=3)
    t = rng.uniform(-max_translation, max_translation, size=3)
    return np.array([az, ay, ax]), t


def euler_zyx_to_matrix_np(e: np.ndarray) -> np.ndarray:
    """numpy twin of ``euler_zyx_to_matrix`` (float64), for data generation without autograd."""
    return euler_zyx_to_matrix(torch.as_tensor(e, dtype=torch.float64)).numpy()
