"""The DLC hinges against values computed by hand, and gradients reaching the network."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from dlc_core.dlc_loss import AdditiveGaussianChart, DLCConfig, DLCLoss


@dataclass(frozen=True)
class FixedChart:
    """A chart whose 'noise' is given, so the hinges can be computed by hand."""

    eps: torch.Tensor  # (K, B, n)

    def sample(self, y, k, generator=None):
        return self.eps.to(y)

    def retract(self, y, eps):
        return y.unsqueeze(0) + eps

    def dist2(self, eps):
        return eps.pow(2).sum(-1)

    def card(self):
        return {"law": "fixed"}


def hand_hinges(f, y, eps, alpha, mu):
    """h1, h2, h3 of METHOD.md §2 for one draw, in plain floats."""
    p = [a + b for a, b in zip(y, eps)]
    ya = [a + alpha * b for a, b in zip(y, eps)]
    d2 = sum(b * b for b in eps)
    l0, l1, l2 = f(y), f(p), f(ya)
    h1 = max(l0 - l2, 0.0)
    h2 = max(l0 - l1 + mu / 2 * d2, 0.0)
    h3 = max(l2 - (1 - alpha) * l0 - alpha * l1 + mu / 2 * alpha * (1 - alpha) * d2, 0.0)
    return h1, h2, h3


def quadratic(p):  # strongly convex with modulus 2 around (1, -2)
    return (p[0] - 1.0) ** 2 + (p[1] + 2.0) ** 2


def two_wells(p):  # global minimum at 0, a second (local) minimum at 2 along the first axis
    x = p[0]
    return x * x * (x - 2.0) ** 2 + 0.05 * x * x + p[1] ** 2


def torch_landscape(f):
    return lambda pts: torch.stack([torch.stack([f(pt) for pt in batch]) for batch in pts])


def test_hinges_vanish_on_strongly_star_convex_quadratic() -> None:
    y = torch.tensor([[1.0, -2.0]])
    eps = torch.randn(8, 1, 2, generator=torch.Generator().manual_seed(0))
    loss = DLCLoss(DLCConfig(K=8, mu=1.9))  # μ below the true modulus 2: every constraint holds with room
    out = loss(torch_landscape(quadratic), y, FixedChart(eps))
    assert float(out.hinge) == 0.0 and float(out.h1) == 0.0 and float(out.h2) == 0.0 and float(out.h3) == 0.0


def test_h2_positive_when_mu_exceeds_the_curvature() -> None:
    y = torch.tensor([[1.0, -2.0]])
    eps = torch.tensor([[[0.5, 0.0]]])
    out = DLCLoss(DLCConfig(K=1, mu=3.0))(torch_landscape(quadratic), y, FixedChart(eps))
    # L(p̃) − L(y) = 0.25 < μ/2 d² = 0.375 -> h2 = 0.125; h3 = −α(1−α)·0.25 + 0.375·0.25 = 0.03125
    assert float(out.h2) == pytest.approx(0.125) and float(out.h3) == pytest.approx(0.03125) and float(out.h1) == 0.0


def test_hinges_match_hand_values_on_a_second_minimum() -> None:
    y = torch.tensor([[0.0, 0.0]])
    draws = [(2.0, 0.0), (1.0, 0.0), (-0.5, 0.2), (2.4, 0.1)]
    eps = torch.tensor(draws).unsqueeze(1)
    alpha, mu = 0.5, 0.2
    out = DLCLoss(DLCConfig(K=4, alpha=alpha, mu=mu))(torch_landscape(two_wells), y, FixedChart(eps))
    hand = [hand_hinges(two_wells, (0.0, 0.0), d, alpha, mu) for d in draws]
    assert float(out.h1) == pytest.approx(sum(h[0] for h in hand) / 4)
    assert float(out.h2) == pytest.approx(sum(h[1] for h in hand) / 4)
    assert float(out.h3) == pytest.approx(sum(h[2] for h in hand) / 4)
    assert float(out.hinge) == pytest.approx(sum(sum(h) for h in hand) / 4)
    assert float(out.h2) > 0  # the second minimum at x = 2 violates the envelope
    assert float(out.h3) > 0  # ... and convexity along the segment through the barrier


@pytest.mark.parametrize("agg", ["mean", "sum", "max"])
def test_aggregation_and_term_switches(agg: str) -> None:
    y = torch.zeros(2, 2)
    eps = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[2.4, 0.1], [0.5, 0.0]]])
    f = torch_landscape(two_wells)
    full = DLCLoss(DLCConfig(K=2, agg=agg, beta=2.0))(f, y, FixedChart(eps))
    per = torch.stack([torch.tensor([sum(hand_hinges(two_wells, (0.0, 0.0), tuple(eps[k, b].tolist()), 0.5, 0.1))
                                     for b in range(2)]) for k in range(2)])  # (K, B)
    expected = {"mean": per.mean(0), "sum": per.sum(0), "max": per.amax(0)}[agg].mean()
    assert float(full.hinge) == pytest.approx(float(expected), rel=1e-5)
    assert float(full.loss) == pytest.approx(2.0 * float(expected), rel=1e-5)
    only_h2 = DLCLoss(DLCConfig(K=2, agg="mean", terms=("h2",)))(f, y, FixedChart(eps))
    assert float(only_h2.hinge) == pytest.approx(float(only_h2.h2), rel=1e-6)


def test_gradients_reach_the_network_through_the_landscape() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    x = torch.randn(5, 3)
    y = torch.zeros(5, 2)

    def landscape(p):  # L(p; x) = ‖p − g(x)‖² · (1 + ‖p‖²) with g the network: non-convex away from g(x)
        g = net(x).unsqueeze(0)
        return ((p - g) ** 2).sum(-1) * (1 + 0.1 * (p**2).sum(-1)) - 0.5 * torch.cos(3 * p).sum(-1)

    out = DLCLoss(DLCConfig(K=4, mu=1.0))(landscape, y, AdditiveGaussianChart((0.5, 0.5)), torch.Generator().manual_seed(1))
    assert out.loss.item() > 0
    out.loss.backward()
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0


def test_trainable_alpha_and_mu_get_gradients_and_stay_clamped() -> None:
    loss = DLCLoss(DLCConfig(K=2, mu=3.0, trainable=("alpha", "mu")))
    y = torch.tensor([[1.0, -2.0]])
    eps = torch.tensor([[[0.5, 0.1]], [[-0.3, 0.4]]])
    out = loss(torch_landscape(quadratic), y, FixedChart(eps))
    out.loss.backward()
    assert loss.alpha_logit.grad is not None and loss.mu_log.grad is not None
    assert float(loss.mu_log.grad) > 0  # J only rewards a smaller μ (METHOD.md §2, open choice 3)
    with torch.no_grad():
        loss.alpha_logit.fill_(50.0)
        loss.mu_log.fill_(-50.0)
    assert float(loss.alpha().detach()) == pytest.approx(0.95) and float(loss.mu().detach()) == pytest.approx(1e-4)
    fixed = DLCLoss(DLCConfig(mu=0.0))
    assert float(fixed.mu()) == 0.0 and not list(fixed.parameters())


@pytest.mark.parametrize(
    "kwargs, word",
    [({"K": 0}, "K"), ({"alpha": 1.0}, "alpha"), ({"agg": "median"}, "agg"), ({"terms": ("h4",)}, "terms"),
     ({"trainable": ("beta",)}, "trainable"), ({"mu": -1.0}, "mu"), ({"mu": 0.0, "trainable": ("mu",)}, "mu")],
)
def test_bad_config_is_refused(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        DLCConfig(**kwargs)


def test_gaussian_chart_statistics() -> None:
    chart = AdditiveGaussianChart((0.1, 2.0))
    y = torch.zeros(4000, 2, dtype=torch.float64)
    eps = chart.sample(y, 2, torch.Generator().manual_seed(0))
    assert eps.shape == (2, 4000, 2)
    assert eps[..., 0].std().item() == pytest.approx(0.1, rel=0.05)
    assert eps[..., 1].std().item() == pytest.approx(2.0, rel=0.05)
    assert torch.allclose(chart.dist2(eps), (eps**2).sum(-1))
    assert torch.equal(chart.retract(y, eps), eps)
