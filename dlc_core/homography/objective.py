"""What the DLC loss needs for homography (METHOD.md §2 and §3.3), and DeepLK's own convex loss (the no-DLC arm).

Chart (PRISE): H̃ = H + N with N_jk = r_jk · H_jk for the 8 free entries (h33 untouched), r_jk ~ U(−1/12, 1/12)
with |r_jk| raised to at least 0.02; y_α = H + αN; d² = Σ r_jk² (the relative factors, not the matrix difference).
DeepLK's loss, per draw: [L(H) − L(H ± N) + Σr²]₊ + [L(H ± N) − L(H ± 2N) + 3Σr²]₊ (the loss must rise along
±N and keep rising to ±2N), weighted by λ (0.1 MSCOCO, 0.2 Google in its code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..dlc_loss import Landscape


@dataclass(frozen=True)
class EntryChart:
    """Multiplicative noise on the 8 free entries of H (PRISE `lambda_one`)."""

    high: float = 1.0 / 12.0
    low: float = 0.02

    def sample(self, y: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand((k, *y.shape[:-2], 8), generator=generator, dtype=y.dtype, device=y.device)
        r = (2 * u - 1) * self.high
        return torch.sign(r) * r.abs().clamp_min(self.low)

    def retract(self, y: Tensor, eps: Tensor) -> Tensor:
        factors = torch.cat([eps, torch.zeros_like(eps[..., :1])], -1).reshape(*eps.shape[:-1], 3, 3)
        return y.unsqueeze(0) * (1 + factors)

    def dist2(self, eps: Tensor) -> Tensor:
        return eps.pow(2).sum(-1)

    def card(self) -> dict:
        return {"law": "uniform_relative_entries", "high": self.high, "low": self.low}


def deeplk_convex_loss(landscape: Landscape, h: Tensor, chart: EntryChart, k: int, generator: torch.Generator | None = None) -> Tensor:
    """DeepLK's convexity terms (module docstring), summed over ±, averaged over the k draws and the batch."""
    r = chart.sample(h, k, generator)
    d2 = chart.dist2(r)
    points = torch.cat([h.unsqueeze(0), chart.retract(h, r), chart.retract(h, 2 * r), chart.retract(h, -r), chart.retract(h, -2 * r)])
    l0, l1, l2, m1, m2 = landscape(points).split([1, k, k, k, k])
    terms = (torch.relu(l0 - l1 + d2) + torch.relu(l1 - l2 + 3 * d2) + torch.relu(l0 - m1 + d2) + torch.relu(m1 - m2 + 3 * d2))
    return terms.mean()
