"""PRNet: keypoints, Gumbel matching, temperature, SVD step, pass composition, auxiliary losses, card, training."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import DataLoader

from dlc_core import geometry as g
from dlc_core.data.registration_pairs import PairDataset, PairOptions
from dlc_core.data.shapes import CATEGORIES, sample_shape
from dlc_core.models.dcp import PassResult
from dlc_core.models.prnet import (
    IterationOutput,
    PRNet,
    PRNetConfig,
    PRNetIteration,
    TemperatureNet,
    auxiliary_losses,
    cycle_residual,
    gumbel_softmax,
    select_keypoints,
)
from dlc_core.registration_objective import PASS_DISCOUNT, unrolled_loss

TINY = dict(emb_dims=16, channels=(8, 8, 8, 8), ff_dims=32, k=8, n_heads=2, n_keypoints=32, temp_hidden=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread avoids the thread-sync stalls of two threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_rigid(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.tensor(Rotation.random(n, random_state=seed).as_matrix())
    t = torch.tensor(np.random.default_rng(seed).normal(size=(n, 3)))
    return r, t


def test_keypoints_are_the_points_with_the_largest_embedding_norms() -> None:
    rng = np.random.default_rng(0)
    norms = np.stack([rng.permutation(50) + 1.0 for _ in range(3)])  # distinct norms 1..50 in a known order
    directions = rng.normal(size=(3, 50, 6))
    emb = torch.tensor(directions / np.linalg.norm(directions, axis=-1, keepdims=True) * norms[..., None])
    idx = select_keypoints(emb, 20)
    for b in range(3):
        assert set(idx[b].tolist()) == set(np.flatnonzero(norms[b] > 30).tolist())


@pytest.mark.parametrize(
    ("n_keypoints", "n_points", "expected"), [(512, 768, 512), (512, 48, 48), (0.5, 48, 24), (1, 10, 3)]
)
def test_keypoint_count_is_clamped_to_the_cloud(n_keypoints: int | float, n_points: int, expected: int) -> None:
    assert PRNetConfig(n_keypoints=n_keypoints).keypoint_count(n_points) == expected


def test_gumbel_softmax_rows_are_distributions_and_one_hot_when_hard() -> None:
    torch.manual_seed(0)
    scores, tau = torch.randn(2, 7, 11), torch.tensor([0.5, 3.0])
    soft, hard = gumbel_softmax(scores, tau, hard=False), gumbel_softmax(scores, tau, hard=True)
    assert soft.shape == hard.shape == (2, 7, 11)
    assert torch.allclose(soft.sum(-1), torch.ones(2, 7)) and (soft > 0).all()
    assert torch.allclose(hard.sum(-1), torch.ones(2, 7))
    assert torch.allclose(hard.max(-1).values, torch.ones(2, 7)) and ((hard == 0) | (hard > 0.999)).all()


def test_straight_through_gumbel_gives_gradients_to_scores_and_temperature_net() -> None:
    torch.manual_seed(1)
    net = TemperatureNet(16, 8, (0.01, 100.0))
    tau = net(torch.rand(2, 16))
    scores = torch.randn(2, 5, 9, requires_grad=True)
    values = torch.randn(9, 3)
    loss = (gumbel_softmax(scores, tau, hard=True) @ values).pow(2).sum()
    loss.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0
    grads = [p.grad for p in net.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert net.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("bias", "expected"), [(-1e4, 0.01), (1e4, 100.0)])
def test_temperature_is_clamped(bias: float, expected: float) -> None:
    net = TemperatureNet(16, 8, (0.01, 100.0))
    with torch.no_grad():
        net.net[-2].bias.fill_(bias)
    assert torch.allclose(net(torch.rand(4, 16)), torch.full((4,), expected))


@pytest.mark.parametrize("training", [True, False])
def test_svd_step_recovers_the_exact_transform_from_the_true_permutation(training: bool) -> None:
    step = PRNetIteration(PRNetConfig(**TINY)).train(training)
    src = torch.tensor(np.random.default_rng(2).normal(size=(3, 30, 3)))
    r, t = random_rigid(3, 3)
    perm = torch.stack([torch.randperm(30, generator=torch.Generator().manual_seed(b)) for b in range(3)])
    tgt = g.transform_points(r, t, src).gather(1, perm.unsqueeze(-1).expand(-1, -1, 3))  # tgt[j] = T src[perm[j]]
    truth = torch.zeros(3, 30, 30, dtype=src.dtype).scatter_(1, perm.unsqueeze(1), 1.0)  # truth[i, perm[j], j] = 1
    r_hat, t_hat, valid = step.solve(src, tgt, 100.0 * truth, torch.full((3,), 1.0, dtype=src.dtype))
    assert valid.all()
    assert torch.allclose(r_hat, r, atol=1e-9) and torch.allclose(t_hat, t, atol=1e-9)


class ScriptedIteration(torch.nn.Module):
    """Stands in for one PRNet iteration: returns a fixed sequence of updates and records the sources it was given."""

    def __init__(self, updates):
        super().__init__()
        self.updates, self.seen = updates, []

    def forward(self, src, tgt, cycle=False):
        r, t = self.updates[len(self.seen)]
        self.seen.append(src.clone())
        b = src.shape[0]
        zero = torch.zeros(b, dtype=src.dtype)
        return IterationOutput(r.expand(b, 3, 3), t.expand(b, 3), tgt, torch.ones(b, dtype=torch.bool), zero, None)


def _prefix(rs, ts, n):
    r, t = rs[0], ts[0]
    for i in range(1, n):
        r, t = g.compose(rs[i], ts[i], r, t)
    return r, t


def test_passes_compose_as_se3_and_move_the_source() -> None:
    rs, ts = random_rigid(3, 4)
    model = PRNet(PRNetConfig(**TINY))
    model.iteration = ScriptedIteration([(rs[i : i + 1], ts[i : i + 1]) for i in range(3)])
    src = torch.tensor(np.random.default_rng(5).normal(size=(1, 10, 3)))
    out = model(src, src, passes=3)
    for i in range(1, 3):
        # iteration i saw the source moved by everything before it
        assert torch.allclose(model.iteration.seen[i][0], g.transform_points(*_prefix(rs, ts, i), src[0]), atol=1e-10)
    m = g.to_matrix(rs[2], ts[2]) @ g.to_matrix(rs[1], ts[1]) @ g.to_matrix(rs[0], ts[0])
    assert torch.allclose(g.to_matrix(out[-1].rotation[0], out[-1].translation[0]), m, atol=1e-10)


def test_passes_start_from_init() -> None:
    rs, ts = random_rigid(2, 6)
    model = PRNet(PRNetConfig(**TINY))
    model.iteration = ScriptedIteration([(rs[1:2], ts[1:2])])
    src = torch.tensor(np.random.default_rng(7).normal(size=(1, 10, 3)))
    out = model(src, src, passes=1, init=(rs[:1], ts[:1]))
    assert torch.allclose(model.iteration.seen[0][0], g.transform_points(rs[0], ts[0], src[0]), atol=1e-10)
    expected_r, expected_t = g.compose(rs[1], ts[1], rs[0], ts[0])
    assert torch.allclose(out[0].rotation[0], expected_r) and torch.allclose(out[0].translation[0], expected_t)


def test_early_stop_on_small_update_keeps_estimate() -> None:
    eye, zero = torch.eye(3, dtype=torch.float64)[None], torch.zeros(1, 3, dtype=torch.float64)
    big_r = torch.tensor(Rotation.from_rotvec([0, 0, 0.3]).as_matrix())[None]
    tiny_r = torch.tensor(Rotation.from_rotvec([0, 0, 1e-5]).as_matrix())[None]
    updates = [(big_r, zero + 0.2), (tiny_r, zero + 1e-6), (big_r, zero + 0.2), (eye, zero)]
    model = PRNet(PRNetConfig(**TINY))
    model.iteration = ScriptedIteration(updates)
    src = torch.zeros(1, 5, 3, dtype=torch.float64)
    out = model(src, src, passes=4, stop_angle_deg=0.01, stop_translation=1e-4)
    assert len(out) == 2  # the second update was small: stop, never apply the third
    assert torch.allclose(out[-1].rotation, tiny_r @ big_r)


def test_forward_shapes_and_finite_gradients_on_partial_clouds_of_different_sizes() -> None:
    torch.manual_seed(0)
    model = PRNet(PRNetConfig(**TINY))
    src, tgt = torch.randn(3, 40, 3), torch.randn(3, 56, 3)
    out = model(src, tgt, passes=2, cycle=True)
    assert len(out) == 2 and isinstance(out[-1], PassResult)
    assert out[-1].rotation.shape == (3, 3, 3) and out[-1].translation.shape == (3, 3)
    assert out[-1].correspondences.shape == (3, 40, 3) and out[-1].valid.shape == (3,)
    assert out[-1].feature_disparity.shape == (3,) and out[-1].cycle.shape == (3,)
    assert torch.allclose(torch.det(out[-1].rotation), torch.ones(3), atol=1e-5)
    aux = auxiliary_losses(out, PASS_DISCOUNT)
    (out[-1].translation.sum() + out[-1].correspondences.sum() + aux["feature"] + aux["cycle"]).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads.values())
    assert sum(float(gr.abs().sum()) for gr in grads.values()) > 0


def test_eval_forward_is_deterministic_and_works_for_a_single_pair() -> None:
    torch.manual_seed(0)
    model = PRNet(PRNetConfig(**TINY)).eval()
    src, tgt = torch.randn(1, 40, 3), torch.randn(1, 30, 3)
    with torch.no_grad():
        a, b = model(src, tgt, passes=2), model(src, tgt, passes=2)
    assert torch.equal(a[-1].rotation, b[-1].rotation) and torch.equal(a[-1].translation, b[-1].translation)
    assert a[-1].cycle is None


def test_auxiliary_losses_are_discounted_batch_means() -> None:
    torch.manual_seed(0)
    model = PRNet(PRNetConfig(**TINY))
    src, tgt = torch.randn(2, 32, 3), torch.randn(2, 32, 3)
    with torch.no_grad():
        out = model(src, tgt, passes=3, cycle=True)
        aux = auxiliary_losses(out, 0.9)
        single = model(src, tgt, passes=1)
    expected_feature = sum(0.9**i * float(p.feature_disparity.mean()) for i, p in enumerate(out))
    assert aux["feature"].item() == pytest.approx(expected_feature)
    assert aux["cycle"].item() == pytest.approx(sum(0.9**i * float(p.cycle.mean()) for i, p in enumerate(out)))
    assert set(auxiliary_losses(single, 0.9)) == {"feature"}
    plain = PassResult(out[0].rotation, out[0].translation, out[0].correspondences, out[0].valid)
    assert auxiliary_losses([plain], 0.9) == {}


def test_cycle_residual_vanishes_only_for_the_exact_inverse() -> None:
    r, t = random_rigid(4, 8)
    assert torch.allclose(cycle_residual(r, t, *g.invert(r, t)), torch.zeros(4, dtype=r.dtype), atol=1e-20)
    # PRNet's MSE(t_ab, -t_ba) would score this pair zero although it is not an inverse
    assert (cycle_residual(r, t, r.transpose(1, 2), -t) > 1e-3).all()


def test_config_round_trips_through_the_card_and_refuses_bad_values() -> None:
    cfg = PRNetConfig(emb_dims=32, k=10, channels=(8, 16), n_heads=4, ff_dims=64, n_keypoints=0.75,
                      temperature_range=(0.1, 10.0), temp_hidden=32, gumbel=False)  # fmt: skip
    assert PRNetConfig.from_card(json.loads(json.dumps(cfg.card()))) == cfg
    assert PRNetConfig.from_card(json.loads(json.dumps(PRNetConfig().card()))) == PRNetConfig()
    with pytest.raises(ValueError, match="backbone"):
        PRNetConfig(backbone="dcp")
    with pytest.raises(ValueError, match="divisible"):
        PRNetConfig(emb_dims=30, n_heads=4)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_keypoints"):
            PRNetConfig(n_keypoints=bad)
    with pytest.raises(ValueError, match="temperature_range"):
        PRNetConfig(temperature_range=(1.0, 0.5))


def test_short_training_lowers_the_unrolled_loss() -> None:
    torch.manual_seed(0)
    bases = [sample_shape(c, 0, "train", 64) for c in CATEGORIES[:8]]
    pairs = PairDataset(bases, PairOptions(num_points=64, partial_keep=0.75), seed=0, fixed=True)
    batch = next(iter(DataLoader(pairs, batch_size=8)))
    model = PRNet(PRNetConfig(**TINY))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            passes = model(batch["src"], batch["tgt"], passes=2)
        return unrolled_loss(passes, batch["rotation"], batch["translation"]).item()

    before = eval_loss()
    model.train()
    for _ in range(40):
        loss = unrolled_loss(model(batch["src"], batch["tgt"], passes=2), batch["rotation"], batch["translation"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # Measured (seeds 0-4 of this setup): the deterministic eval loss fell by 75-91 % (0.87 -> 0.10 at seed 0).
    # Half of that is required, a wide margin for platform-dependent arithmetic and the Gumbel draws.
    assert eval_loss() < 0.5 * before
