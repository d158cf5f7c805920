"""Homographies between a 128x128 template and a 192x192 input (DeepLK convention, METHOD.md §3.3): H maps template
pixel (u, v, 1) to input pixel coordinates, u = column, v = row, origin at the top-left pixel centre. Corners are
listed TL, TR, BR, BL (clockwise); the label is where the template's corners lie in the input."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

TEMPLATE_SIDE, INPUT_SIDE = 128, 192
TEMPLATE_CORNERS = np.array([[0, 0], [127, 0], [127, 127], [0, 127]], dtype=np.float64)
NOMINAL_CORNERS = TEMPLATE_CORNERS + 32.0  # the unperturbed square [32, 159]² in the input
SR_THRESHOLDS = ("0.1", "0.5", "1", "3", "5", "10", "20")  # px, success rates of DESIGN.md §2


def dlt_system(src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    """The 8x8 linear system A h = b of the homography with h33 = 1 sending 4 points src to dst, batched (B, 4, 2)."""
    x, y, u, v = src[..., 0], src[..., 1], dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -x * u, -y * u], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -x * v, -y * v], -1)
    return torch.cat([rows_u, rows_v], -2), torch.cat([u, v], -1)


def homography_from_corners(dst: Tensor, src: Tensor | None = None) -> Tensor:
    """(B, 3, 3) homographies sending `src` (default: the template corners) to `dst` (B, 4, 2); differentiable."""
    if src is None:
        src = torch.as_tensor(TEMPLATE_CORNERS, dtype=dst.dtype, device=dst.device).expand_as(dst)
    a, b = dlt_system(src, dst)
    h = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
    return torch.cat([h, torch.ones_like(h[..., :1])], -1).reshape(*h.shape[:-1], 3, 3)


def project(h: Tensor, points: Tensor) -> Tensor:
    """Points (..., N, 2) mapped by homographies (..., 3, 3), dehomogenised."""
    ones = torch.ones_like(points[..., :1])
    mapped = torch.cat([points, ones], -1) @ h.transpose(-1, -2)
    return mapped[..., :2] / mapped[..., 2:]


def corners_of(h: Tensor) -> Tensor:
    """Where the template's corners go in the input, (..., 4, 2)."""
    return project(h, torch.as_tensor(TEMPLATE_CORNERS, dtype=h.dtype, device=h.device).expand(*h.shape[:-2], 4, 2))


def corner_error(h: Tensor, corners: Tensor) -> Tensor:
    """PE: the mean distance, in input pixels, between the predicted and the true corners (METHOD.md §4)."""
    return (corners_of(h) - corners).norm(dim=-1).mean(-1)


def rescale(h: Tensor, scale: float) -> Tensor:
    """S H S⁻¹ with S = diag(s, s, 1): the same homography on images resized by `scale`."""
    s = torch.tensor([scale, scale, 1.0], dtype=h.dtype, device=h.device)
    return h * s[:, None] / s[None, :]


def normalise(h: Tensor) -> Tensor:
    """Scaled so that h33 = 1."""
    return h / h[..., 2:3, 2:3]


def success_rates(pe: np.ndarray) -> dict[str, float]:
    """Percent of pairs with PE below each threshold of SR_THRESHOLDS (non-finite PE counts as a failure)."""
    pe = np.where(np.isfinite(pe), pe, np.inf)
    return {t: float(100.0 * np.mean(pe < float(t))) if len(pe) else 0.0 for t in SR_THRESHOLDS}
