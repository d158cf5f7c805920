"""The DLC loss (METHOD.md §2): hinge penalties that make the landscape p ↦ L_θ(p; x) star-convex around the truth.

One piece serves every task. A task supplies two things:
- a *chart*: the noise law ε ~ D, the perturbation y ⊕ ε and the squared distance d² (registration: Euler
  angles + translation; classification: logits; homography: relative entries of H);
- a *landscape*: a callable that maps a stack of predictions of shape (S, B, ...) to losses (S, B), batched so
  that the 1 + 2K evaluations of a training step go through the model in one call.

For each ground truth y and K noise draws, with p̃ = y ⊕ ε and y_α = y ⊕ (αε):
  h1 = [L(y) − L(y_α)]₊                                         (the truth is a local minimum, Eq. 12)
  h2 = [L(y) − L(p̃) + μ/2 d²]₊                                  (quadratic lower envelope, Eq. 13)
  h3 = [L(y_α) − (1−α)L(y) − αL(p̃) + μ/2 α(1−α) d²]₊            (strong convexity on the segment, Eq. 14)
The loss is β · mean_i AGG_k (h1 + h2 + h3): per-example hinges, aggregated over the K draws, averaged over the
batch (METHOD.md §2, open choice 2). Gradients reach θ only through L; p̃, y_α and d² are constants unless α is
trainable, in which case y_α carries α's gradient.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor, nn

TERMS = ("h1", "h2", "h3")
AGGREGATIONS = ("mean", "sum", "max")
TRAINABLE = ("alpha", "mu")

Landscape = Callable[[Tensor], Tensor]


class Chart(Protocol):
    """Where predictions live for the DLC loss: the noise law, y ⊕ ε and d²(y ⊕ ε, y)."""

    def sample(self, y: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """K noise draws per example, shape (K, *y.shape) in chart coordinates."""

    def retract(self, y: Tensor, eps: Tensor) -> Tensor:
        """y ⊕ ε for ε of shape (K, *y.shape), returning predictions of the same shape."""

    def dist2(self, eps: Tensor) -> Tensor:
        """d² of each draw, shape (K, B)."""

    def card(self) -> dict:
        """The noise law as recorded in a model card."""


@dataclass(frozen=True)
class AdditiveGaussianChart:
    """y ⊕ ε = y + ε with ε ~ N(0, diag(σ²)) in a flat chart (e.g. Euler angles + translation); d² = ‖ε‖²."""

    scales: tuple[float, ...]
    names: tuple[str, ...] = ()

    def sample(self, y: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        sigma = torch.tensor(self.scales, dtype=y.dtype, device=y.device)
        noise = torch.randn((k, *y.shape), generator=generator, dtype=y.dtype, device=y.device)
        return noise * sigma

    def retract(self, y: Tensor, eps: Tensor) -> Tensor:
        return y.unsqueeze(0) + eps

    def dist2(self, eps: Tensor) -> Tensor:
        return eps.flatten(2).pow(2).sum(-1)

    def card(self) -> dict:
        return {"law": "gaussian", "sigma": dict(zip(self.names or map(str, range(len(self.scales))), self.scales))}


@dataclass(frozen=True)
class DLCConfig:
    """Hyperparameters of the DLC loss, as the CLI flags and the model card name them (DECISIONS.md D5)."""

    enabled: bool = True
    K: int = 3
    beta: float = 1.0
    alpha: float = 0.5
    mu: float = 0.1
    agg: str = "mean"
    terms: tuple[str, ...] = TERMS
    trainable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.K >= 1, f"K must be >= 1, got {self.K}"),
            (self.beta >= 0, f"beta must be >= 0, got {self.beta}"),
            (0.0 < self.alpha < 1.0, f"alpha must be in (0, 1), got {self.alpha}"),
            (self.mu >= 0, f"mu must be >= 0, got {self.mu}"),
            (self.agg in AGGREGATIONS, f"agg must be one of {', '.join(AGGREGATIONS)}, got {self.agg!r}"),
            (set(self.terms) <= set(TERMS) and self.terms, f"terms must be a non-empty subset of h1,h2,h3, got {self.terms}"),
            (set(self.trainable) <= set(TRAINABLE), f"trainable must be a subset of alpha,mu, got {self.trainable}"),
            (not ("mu" in self.trainable and self.mu <= 0), "a trainable mu needs an initial mu > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def card(self) -> dict:
        """The config as JSON-ready data."""
        d = asdict(self)
        d["terms"], d["trainable"] = list(self.terms), list(self.trainable)
        return d


@dataclass
class DLCTerms:
    """What one evaluation of the DLC loss produced: the weighted loss and the diagnostics a progress bar shows."""

    loss: Tensor
    hinge: Tensor
    h1: Tensor
    h2: Tensor
    h3: Tensor
    landscape_at_truth: Tensor
    alpha: float
    mu: float


class DLCLoss(nn.Module):
    """β · AGG of the star-convexity hinges; α = sigmoid(a) and μ = exp(m) when trainable, else fixed buffers."""

    ALPHA_RANGE = (0.05, 0.95)
    MU_RANGE = (1e-4, 1e4)

    def __init__(self, config: DLCConfig) -> None:
        super().__init__()
        self.config = config
        a = torch.tensor(math.log(config.alpha / (1.0 - config.alpha)))
        m = torch.tensor(math.log(config.mu) if config.mu > 0 else -math.inf)
        if "alpha" in config.trainable:
            self.alpha_logit = nn.Parameter(a)
        else:
            self.register_buffer("alpha_logit", a)
        if "mu" in config.trainable:
            self.mu_log = nn.Parameter(m)
        else:
            self.register_buffer("mu_log", m)

    def alpha(self) -> Tensor:
        """The interpolation weight α; a trainable α is clamped away from 0 and 1, where h1 and h3 vanish."""
        alpha = torch.sigmoid(self.alpha_logit)
        return alpha.clamp(*self.ALPHA_RANGE) if "alpha" in self.config.trainable else alpha

    def mu(self) -> Tensor:
        """The strong star-convexity modulus μ; a trainable μ is clamped so that it cannot collapse to 0."""
        mu = self.mu_log.exp()
        return mu.clamp(*self.MU_RANGE) if "mu" in self.config.trainable else mu

    def forward(
        self, landscape: Landscape, y: Tensor, chart: Chart, generator: torch.Generator | None = None
    ) -> DLCTerms:
        """Evaluate L at y, at K perturbed points and at their interpolants (one batched call), and the hinges."""
        k = self.config.K
        alpha, mu = self.alpha(), self.mu().to(y.device)
        eps = chart.sample(y, k, generator)
        p_tilde = chart.retract(y, eps)
        y_alpha = chart.retract(y, alpha.to(y.dtype) * eps)
        d2 = chart.dist2(eps)
        losses = landscape(torch.cat([y.unsqueeze(0), p_tilde, y_alpha], 0))
        l0, l1, l2 = losses[0].unsqueeze(0), losses[1 : k + 1], losses[k + 1 :]
        h1 = torch.relu(l0 - l2)
        h2 = torch.relu(l0 - l1 + 0.5 * mu * d2)
        h3 = torch.relu(l2 - (1.0 - alpha) * l0 - alpha * l1 + 0.5 * mu * alpha * (1.0 - alpha) * d2)
        per_draw = sum(h for name, h in zip(TERMS, (h1, h2, h3)) if name in self.config.terms)
        if self.config.agg == "mean":
            per_example = per_draw.mean(0)
        elif self.config.agg == "sum":
            per_example = per_draw.sum(0)
        else:
            per_example = per_draw.amax(0)
        hinge = per_example.mean()
        return DLCTerms(
            loss=self.config.beta * hinge,
            hinge=hinge,
            h1=h1.mean(),
            h2=h2.mean(),
            h3=h3.mean(),
            landscape_at_truth=l0.squeeze(0),
            alpha=alpha.item(),
            mu=mu.item(),
        )
