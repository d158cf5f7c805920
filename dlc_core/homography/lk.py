"""The LK objective and the inverse-compositional Lucas-Kanade layer on one-channel feature maps (METHOD.md §3.3).

Warps use input = H · template (pixel coordinates of the maps at that pyramid level). The 8 parameters p are the
entries of H − I in row-major order with h33 fixed: W(u; p) = ((1+p1)x + p2 y + p3, p4 x + (1+p5) y + p6) /
(p7 x + p8 y + 1). IC-LK precomputes J = ∇F_T ∂W/∂p at p = 0 on the template, then iterates
Δp = (JᵀJ + λI)⁻¹ Jᵀ r with r = F_I(W(u; H)) − F_T(u) and H ← H (I + Δp)⁻¹, renormalised to h33 = 1, stopping
when no corner moves by more than `stop_px` (no ground truth involved). With `standardise`, F_T and the warped
F_I are each brought to zero mean and unit variance over the template grid before they are compared (the ZNCC
form of LK): a gain and offset between the two images then cost nothing, as when a camera's exposure differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .geometry import normalise, project

DAMPING = 1e-3


def grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Pixel coordinates (u, v) of an h x w map, (h*w, 2), row-major."""
    v, u = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], -1)


def warp(feature: Tensor, h: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """feature (B, C, Hi, Wi) sampled bilinearly at H·(u, v, 1) for the out_hw grid of u, v; zeros outside."""
    b, _, hi, wi = feature.shape
    pts = project(h, grid(*out_hw, feature.device, h.dtype).expand(b, -1, -1))
    norm = torch.stack([2 * pts[..., 0] / (wi - 1) - 1, 2 * pts[..., 1] / (hi - 1) - 1], -1)
    sampled = F.grid_sample(feature, norm.reshape(b, *out_hw, 2).to(feature.dtype), mode="bilinear", align_corners=True)
    return sampled


def standardised(maps: Tensor) -> Tensor:
    """Each map (B, 1, h, w) shifted and scaled to zero mean and unit variance over its grid."""
    return (maps - maps.mean((2, 3), keepdim=True)) / (maps.std((2, 3), keepdim=True) + 1e-8)


def lk_loss(template: Tensor, image: Tensor, h: Tensor, standardise: bool = False) -> Tensor:
    """L(H) = mean over the template grid of (F_T(u) − F_I(H u))², for H of shape (..., B, 3, 3) -> (..., B);
    with `standardise`, of the two standardised maps (module docstring)."""
    lead = h.shape[:-3]
    s = int(torch.tensor(lead).prod()) if lead else 1
    b = template.shape[0]
    flat_h = h.reshape(s * b, 3, 3)
    images = image.unsqueeze(0).expand(s, *image.shape).reshape(s * b, *image.shape[1:])
    templates = template.unsqueeze(0).expand(s, *template.shape).reshape(s * b, *template.shape[1:])
    warped = warp(images, flat_h, templates.shape[-2:])
    if standardise:
        templates, warped = standardised(templates), standardised(warped)
    return (templates - warped).pow(2).flatten(1).mean(1).reshape(*lead, b)


def steepest_descent(template: Tensor) -> Tensor:
    """J = ∇F_T · ∂W/∂p at p = 0, shape (B, N, 8), with central-difference gradients of the template map."""
    b, _, h, w = template.shape
    t = template[:, 0].double()
    gx = torch.zeros_like(t)
    gy = torch.zeros_like(t)
    gx[:, :, 1:-1] = (t[:, :, 2:] - t[:, :, :-2]) / 2
    gy[:, 1:-1, :] = (t[:, 2:, :] - t[:, :-2, :]) / 2
    uv = grid(h, w, template.device, torch.float64)
    x, y = uv[:, 0], uv[:, 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    du = torch.stack([x, y, one, zero, zero, zero, -x * x, -x * y], -1)  # ∂u/∂p at p = 0
    dv = torch.stack([zero, zero, zero, x, y, one, -x * y, -y * y], -1)
    return gx.reshape(b, -1, 1) * du + gy.reshape(b, -1, 1) * dv


@dataclass
class LKResult:
    """What the LK layer did: the final H, iterations per pair, and the LK loss before and after."""

    h: Tensor
    iterations: Tensor
    loss_start: Tensor
    loss_end: Tensor


@torch.no_grad()
def inverse_compositional(template: Tensor, image: Tensor, h0: Tensor, max_iters: int = 30, stop_px: float = 0.01,
                          standardise: bool = False) -> LKResult:  # fmt: skip
    """IC-LK from h0 (B, 3, 3) on one-channel maps; a pair stops when its update moves no corner by > stop_px."""
    b, _, th, tw = template.shape
    compared = standardised if standardise else (lambda maps: maps)
    target = compared(template)
    j = steepest_descent(target)
    hessian = j.transpose(1, 2) @ j + DAMPING * torch.eye(8, dtype=torch.float64, device=j.device)
    h = h0.double().clone()
    corners = torch.tensor([[0, 0], [tw - 1, 0], [tw - 1, th - 1], [0, th - 1]], dtype=torch.float64, device=h.device)
    active = torch.ones(b, dtype=torch.bool, device=h.device)
    iterations = torch.zeros(b, dtype=torch.long, device=h.device)
    loss_start = lk_loss(template, image, h.to(template.dtype), standardise)
    for _ in range(max_iters):
        if not active.any():
            break
        r = (compared(warp(image, h.to(image.dtype), (th, tw))) - target).flatten(1).double()
        dp = torch.linalg.solve(hessian, (j.transpose(1, 2) @ r.unsqueeze(-1))).squeeze(-1)
        dh = torch.eye(3, dtype=torch.float64, device=h.device).repeat(b, 1, 1)
        dh.view(b, 9)[:, :8] += dp
        new_h = normalise(h @ torch.linalg.inv(dh))
        moved = (project(new_h, corners.expand(b, 4, 2)) - project(h, corners.expand(b, 4, 2))).norm(dim=-1).amax(-1)
        h = torch.where(active[:, None, None], new_h, h)
        iterations += active.long()
        active &= moved > stop_px
    return LKResult(h, iterations, loss_start, lk_loss(template, image, h.to(template.dtype), standardise))
