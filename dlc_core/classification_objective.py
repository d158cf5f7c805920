"""What the DLC loss needs for classification (METHOD.md §2, open choice 5): the chart and the landscape.

Chart: ε ~ N(0, σ²I) on the logits of the one-hot, p̃ = softmax(e_y + ε), y_α = softmax(e_y + αε) (interpolation
in logit space; in probability space h3 would be constant, CE being linear in its target), d² = ‖ε‖². The base
point stays the hard one-hot, so L(y) is the cross-entropy with the label, which is also the task loss.
Landscape: L(p) = CE(f_θ(x), p) = −Σ_c p_c log softmax(f_θ(x))_c for a stack of targets p, from one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .dlc_loss import Landscape


@dataclass(frozen=True)
class SoftmaxChart:
    """Gaussian noise on the one-hot's logits, mapped back to the simplex with softmax."""

    sigma: float = 1.0

    def sample(self, y: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        return self.sigma * torch.randn((k, *y.shape), generator=generator, dtype=y.dtype, device=y.device)

    def retract(self, y: Tensor, eps: Tensor) -> Tensor:
        return torch.softmax(y.unsqueeze(0) + eps, dim=-1)

    def dist2(self, eps: Tensor) -> Tensor:
        return eps.pow(2).sum(-1)

    def card(self) -> dict:
        return {"law": "gaussian", "sigma": {"logit": self.sigma}, "point": "softmax(one_hot + eps)"}


def cross_entropy_landscape(logits: Tensor) -> Landscape:
    """p ↦ CE(logits, p) for targets p of shape (S, B, C), returning (S, B); gradients reach the logits."""
    log_probs = F.log_softmax(logits, dim=-1)
    return lambda targets: -(targets * log_probs.unsqueeze(0)).sum(-1)


def one_hot(labels: Tensor, classes: int) -> Tensor:
    """Float one-hot rows of integer labels."""
    return F.one_hot(labels, classes).float()
