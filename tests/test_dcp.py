"""DCP: the guarded SVD head, pass composition and early stopping, embeddings' shapes and gradients."""

from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dlc_core import geometry as g
from dlc_core.models.dcp import DCP, DCPConfig, IterativeDCP, unroll
from dlc_core.models.embeddings import knn_indices, pointwise
from dlc_core.models.procrustes import procrustes

TINY = dict(emb_dims=16, channels=(8, 8, 8, 8), ff_dims=32, k=4, n_heads=2)


def random_rigid(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.tensor(Rotation.random(n, random_state=seed).as_matrix())
    t = torch.tensor(np.random.default_rng(seed).normal(size=(n, 3)))
    return r, t


def test_svd_head_recovers_exact_transform_from_noise_free_correspondences() -> None:
    src = torch.tensor(np.random.default_rng(0).normal(size=(6, 50, 3)))
    r, t = random_rigid(6, 1)
    r_hat, t_hat, valid = procrustes(src, g.transform_points(r, t, src))
    assert valid.all()
    assert torch.allclose(r_hat, r, atol=1e-10) and torch.allclose(t_hat, t, atol=1e-10)


def test_svd_head_determinant_fix_returns_a_rotation_for_a_reflection() -> None:
    src = torch.tensor(np.random.default_rng(2).normal(size=(1, 40, 3)))
    mirrored = src * torch.tensor([1.0, 1.0, -1.0], dtype=src.dtype)
    r_hat, _, valid = procrustes(src, mirrored)
    assert valid.all()
    assert torch.det(r_hat).item() == pytest.approx(1.0)
    assert torch.allclose(r_hat.transpose(1, 2) @ r_hat, torch.eye(3, dtype=src.dtype), atol=1e-10)


@pytest.mark.parametrize("case", ["identical", "collinear", "nan", "single_target"])
def test_svd_head_degenerate_input_gives_finite_values_and_gradients(case: str) -> None:
    rng = np.random.default_rng(3)
    src = torch.tensor(rng.normal(size=(2, 20, 3)), requires_grad=True)
    corr = torch.tensor(rng.normal(size=(2, 20, 3)))
    if case == "identical":
        corr = torch.ones(2, 20, 3, dtype=torch.float64)
    elif case == "collinear":
        corr = torch.linspace(0, 1, 20, dtype=torch.float64).view(1, 20, 1).expand(2, 20, 3).clone()
    elif case == "nan":
        corr[0, 3, 1] = float("nan")
    else:  # every source point picked the same target point, as a saturated softmax does
        corr = corr[:, :1].expand(2, 20, 3).clone()
    corr.requires_grad_(True)
    r, t, valid = procrustes(src, corr)
    if case == "nan":
        assert not valid[0] and valid[1]
    else:
        assert not valid.any()
    assert torch.isfinite(r).all() and torch.isfinite(t).all()
    assert torch.allclose(r[~valid], torch.eye(3, dtype=r.dtype).expand(int((~valid).sum()), 3, 3))
    (r.sum() + t.sum()).backward()
    assert torch.isfinite(src.grad).all() and torch.isfinite(corr.grad).all()


class ScriptedDCP(torch.nn.Module):
    """Stands in for one DCP pass: returns a fixed sequence of updates and records the sources it was given."""

    def __init__(self, updates):
        super().__init__()
        self.updates, self.seen = updates, []

    def forward(self, src, tgt, f_tgt=None):
        r, t = self.updates[len(self.seen)]
        self.seen.append(src.clone())
        b = src.shape[0]
        return r.expand(b, 3, 3), t.expand(b, 3), tgt, torch.ones(b, dtype=torch.bool)


def test_passes_compose_as_se3_and_move_the_source() -> None:
    rs, ts = random_rigid(3, 4)
    model = IterativeDCP(DCPConfig(backbone="dcp-pointnet", **{k: v for k, v in TINY.items() if k not in ("k", "channels")}))
    model.dcp = ScriptedDCP([(rs[i : i + 1], ts[i : i + 1]) for i in range(3)])
    src = torch.tensor(np.random.default_rng(5).normal(size=(1, 10, 3)))
    out = model(src, src, passes=3)
    expected_r, expected_t = rs[0], ts[0]
    for i in range(1, 3):
        expected_r, expected_t = g.compose(rs[i], ts[i], expected_r, expected_t)
        # pass i saw the source moved by everything before it
        assert torch.allclose(model.dcp.seen[i][0], g.transform_points(*_prefix(rs, ts, i), src[0]), atol=1e-10)
    assert torch.allclose(out[-1].rotation[0], expected_r, atol=1e-10)
    assert torch.allclose(out[-1].translation[0], expected_t, atol=1e-10)
    m = g.to_matrix(rs[2], ts[2]) @ g.to_matrix(rs[1], ts[1]) @ g.to_matrix(rs[0], ts[0])
    assert torch.allclose(g.to_matrix(out[-1].rotation[0], out[-1].translation[0]), m, atol=1e-10)


def _prefix(rs, ts, n):
    r, t = rs[0], ts[0]
    for i in range(1, n):
        r, t = g.compose(rs[i], ts[i], r, t)
    return r, t


def test_early_stop_on_small_update_keeps_estimate() -> None:
    eye, zero = torch.eye(3, dtype=torch.float64)[None], torch.zeros(1, 3, dtype=torch.float64)
    big_r = torch.tensor(Rotation.from_rotvec([0, 0, 0.3]).as_matrix())[None]
    tiny_r = torch.tensor(Rotation.from_rotvec([0, 0, 1e-5]).as_matrix())[None]
    updates = [(big_r, zero + 0.2), (tiny_r, zero + 1e-6), (big_r, zero + 0.2), (eye, zero)]
    model = IterativeDCP(DCPConfig(backbone="dcp-pointnet", **{k: v for k, v in TINY.items() if k not in ("k", "channels")}))
    model.dcp = ScriptedDCP(updates)
    src = torch.zeros(1, 5, 3, dtype=torch.float64)
    out = model(src, src, passes=4, stop_angle_deg=0.01, stop_translation=1e-4)
    assert len(out) == 2  # the second update was small: stop, never apply the third
    assert torch.allclose(out[-1].rotation, tiny_r @ big_r)


@pytest.mark.parametrize("backbone", ["dcp", "dcp-pointnet"])
def test_dcp_forward_shapes_and_gradients(backbone: str) -> None:
    torch.manual_seed(0)
    cfg = DCPConfig(backbone=backbone, **TINY)
    model = IterativeDCP(cfg)
    src, tgt = torch.randn(3, 32, 3), torch.randn(3, 32, 3)
    out = model(src, tgt, passes=2)
    assert len(out) == 2 and out[-1].rotation.shape == (3, 3, 3) and out[-1].correspondences.shape == (3, 32, 3)
    assert torch.allclose(torch.det(out[-1].rotation), torch.ones(3), atol=1e-5)
    out[-1].translation.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_dcp_handles_different_point_counts() -> None:
    model = DCP(DCPConfig(backbone="dcp", **TINY)).eval()
    r, t, corr, valid = model(torch.randn(2, 20, 3), torch.randn(2, 30, 3))
    assert r.shape == (2, 3, 3) and corr.shape == (2, 20, 3) and torch.isfinite(t).all()


def test_inference_embeds_the_target_once_with_the_same_result() -> None:
    torch.manual_seed(0)
    model = IterativeDCP(DCPConfig(backbone="dcp", **TINY)).eval()
    src, tgt = torch.randn(2, 24, 3), torch.randn(2, 24, 3)
    calls = []
    model.dcp.embedding.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    def both_embedded(moved: torch.Tensor):  # one pass with source and target embedded together, as in training
        r, t, _, _ = model.dcp(moved, tgt)
        return r, t, lambda r_all, t_all: (r_all, t_all)

    with torch.no_grad():
        cached = model(src, tgt, passes=3)
        plain = unroll(both_embedded, src, 3, None, None, None)
    assert calls == [2, 2, 2, 2, 4, 4, 4]  # the target once, then the source alone each pass | both, every pass
    assert len(cached) == len(plain) == 3
    for a, (r, t) in zip(cached, plain):
        assert torch.allclose(a.rotation, r, atol=1e-5) and torch.allclose(a.translation, t, atol=1e-5)


def test_knn_includes_self_and_matches_brute_force() -> None:
    x = torch.randn(2, 25, 3)
    idx = knn_indices(x, 5)
    d = torch.cdist(x, x)
    brute = d.topk(5, largest=False).indices
    assert torch.equal(idx.sort(-1).values, brute.sort(-1).values)
    assert (idx[..., 0] == torch.arange(25)).all()


@pytest.mark.parametrize("training", [True, False])
def test_pointwise_runs_a_channels_first_stack_channels_last(training: bool) -> None:
    """Same output and the same BatchNorm statistics as the stack itself on the channels-first tensor (eval: the
    batch norm folded into the matrix; train: batch statistics over every axis but the channels)."""
    torch.manual_seed(0)
    for conv, norm, x, bias in ((torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.randn(2, 6, 10, 4), False),
                                (torch.nn.Conv1d, torch.nn.BatchNorm1d, torch.randn(3, 6, 7), True)):  # fmt: skip
        stack = torch.nn.Sequential(conv(6, 5, 1, bias=bias), norm(5), torch.nn.LeakyReLU(0.2))
        with torch.no_grad():  # non-trivial running statistics and affine parameters
            stack[1].running_mean.uniform_(-1, 1), stack[1].running_var.uniform_(0.5, 2)
            stack[1].weight.uniform_(0.5, 2), stack[1].bias.uniform_(-1, 1)
        twin = copy.deepcopy(stack)
        stack.train(training), twin.train(training)
        expected = stack(x)
        got = pointwise(twin, x.movedim(1, -1)).movedim(-1, 1)
        assert torch.allclose(got, expected, atol=1e-5)
        assert torch.allclose(twin[1].running_mean, stack[1].running_mean, atol=1e-6)
        assert torch.allclose(twin[1].running_var, stack[1].running_var, atol=1e-6)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="backbone"):
        DCPConfig(backbone="prnet")
    with pytest.raises(ValueError, match="divisible"):
        DCPConfig(emb_dims=30, n_heads=4)
