"""Registration metrics against independent computations (loops, quaternions, scipy's own Euler code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dlc_core.metrics import pose_errors, registration_metrics, rre_deg, rte, success_mask


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    n = 40
    e_gt = rng.uniform(0, math.pi / 4, size=(n, 3))  # [z, y, x]
    r_gt = Rotation.from_euler("zyx", e_gt).as_matrix()
    noise = Rotation.from_rotvec(rng.normal(scale=0.05, size=(n, 3)))
    r_pred = (noise * Rotation.from_matrix(r_gt)).as_matrix()
    t_gt = rng.uniform(-0.5, 0.5, size=(n, 3))
    t_pred = t_gt + rng.normal(scale=0.01, size=(n, 3))
    return r_pred, t_pred, r_gt, t_gt, e_gt, noise


def test_rre_is_the_angle_of_the_relative_rotation(batch) -> None:
    r_pred, _, r_gt, _, _, noise = batch
    # noise is applied on the left: R_pred = N R_gt, so the relative rotation's angle is |rotvec(N)|
    assert np.allclose(rre_deg(r_pred, r_gt), np.degrees(noise.magnitude()), atol=1e-6)


def test_rte_is_the_euclidean_distance(batch) -> None:
    _, t_pred, _, t_gt, _, _ = batch
    expected = [math.sqrt(sum((a - b) ** 2 for a, b in zip(p, g))) for p, g in zip(t_pred, t_gt)]
    assert np.allclose(rte(t_pred, t_gt), expected)


def test_registration_metrics_against_loops(batch) -> None:
    r_pred, t_pred, r_gt, t_gt, e_gt, _ = batch
    m = registration_metrics(r_pred, t_pred, r_gt, t_gt, e_gt)
    e_pred = [Rotation.from_matrix(r).as_euler("zyx", degrees=True) for r in r_pred]
    de = [p - math.degrees(g) for ep, eg in zip(e_pred, e_gt) for p, g in zip(ep, eg)]
    dt = [p - g for tp, tg in zip(t_pred, t_gt) for p, g in zip(tp, tg)]
    dr = [a - b for rp, rg in zip(r_pred, r_gt) for a, b in zip(rp.ravel(), rg.ravel())]
    assert m["euler_mse_deg2"] == pytest.approx(sum(x * x for x in de) / len(de))
    assert m["euler_rmse_deg"] == pytest.approx(math.sqrt(sum(x * x for x in de) / len(de)))
    assert m["euler_mae_deg"] == pytest.approx(sum(abs(x) for x in de) / len(de))
    assert m["t_mse"] == pytest.approx(sum(x * x for x in dt) / len(dt))
    assert m["t_rmse"] == pytest.approx(math.sqrt(m["t_mse"]))
    assert m["t_mae"] == pytest.approx(sum(abs(x) for x in dt) / len(dt))
    assert m["r_mse"] == pytest.approx(sum(x * x for x in dr) / len(dr))
    # For rotations, MSE(R) equals DCP's F.mse_loss(R_predᵀ R_gt, I)
    rel = np.einsum("nji,njk->nik", r_pred, r_gt) - np.eye(3)
    assert m["r_mse"] == pytest.approx(float(np.mean(rel**2)))
    assert m["rre_deg_mean"] == pytest.approx(float(np.mean(rre_deg(r_pred, r_gt))))


def test_perfect_prediction_scores_zero(batch) -> None:
    _, _, r_gt, t_gt, e_gt, _ = batch
    m = registration_metrics(r_gt, t_gt, r_gt, t_gt, e_gt)
    assert max(abs(v) for v in m.values()) < 1e-6


def test_euler_gt_defaults_to_the_matrix_angles(batch) -> None:
    r_pred, t_pred, r_gt, t_gt, e_gt, _ = batch
    a = registration_metrics(r_pred, t_pred, r_gt, t_gt, e_gt)
    b = registration_metrics(r_pred, t_pred, r_gt, t_gt)
    assert a["euler_mse_deg2"] == pytest.approx(b["euler_mse_deg2"])


def test_success_mask_uses_strict_thresholds() -> None:
    rre = np.array([4.9, 5.0, 1.0, 6.0])
    te = np.array([0.59, 0.1, 0.6, 0.1])
    assert success_mask(rre, te, 5.0, 0.6).tolist() == [True, False, False, False]
    assert success_mask(rre, te, 5.0, np.array([1.0, 1.0, 1.0, 1.0])).tolist() == [True, False, True, False]


def test_pose_errors_of_one_4x4_transform() -> None:
    truth = np.eye(4)
    truth[:3, 3] = [1.0, 2.0, 0.5]
    estimate = truth.copy()
    estimate[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    estimate[:3, 3] += [3.0, 4.0, 0.0]  # 5 m away, a quarter turn about z
    assert pose_errors(estimate, truth) == pytest.approx((5.0, 90.0))
    assert pose_errors(truth, truth) == (0.0, 0.0)
