"""Odometry metrics on trajectories with known errors, and the KITTI/TUM writers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dlc_core.trajectory_metrics import (
    ate_rmse,
    devkit_errors,
    pair_errors,
    path_lengths,
    umeyama_se3,
    write_kitti,
    write_tum,
)


def straight(n: int, step: float) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3] = step * np.arange(n)
    return poses


def rigid(seed: int) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    m[:3, 3] = np.random.default_rng(seed).normal(size=3) * 10
    return m


def test_devkit_translation_error_of_a_uniform_scale_drift() -> None:
    gt = straight(600, 1.0)  # 599 m
    pred = straight(600, 1.01)  # every step 1% too long
    result = devkit_errors(pred, gt)
    # each segment first..last covers slightly more than its length L; the error is 1% of the covered distance
    assert result["t_err_pct"] == pytest.approx(1.0, rel=0.02)
    assert result["r_err_deg_per_100m"] == pytest.approx(0.0, abs=1e-9)


def test_devkit_rotation_error_of_a_constant_yaw_drift() -> None:
    gt = straight(400, 1.0)
    step = np.eye(4)
    step[:3, :3] = Rotation.from_euler("z", 0.001).as_matrix()
    step[0, 3] = 1.0
    pred = np.stack([np.linalg.matrix_power(step, k) for k in range(400)])
    result = devkit_errors(pred, gt)
    # a segment of k steps accumulates k·0.001 rad of yaw: r_err = 0.001 rad per metre = 5.73 deg per 100 m
    assert result["r_err_deg_per_100m"] == pytest.approx(math.degrees(0.001) * 100, rel=0.02)


def test_devkit_needs_100m() -> None:
    result = devkit_errors(straight(50, 1.0), straight(50, 1.0))
    assert result["t_err_pct"] is None and "49.0 m" in result["reason"]


def test_ate_is_invariant_to_a_rigid_change_of_frame_and_measures_noise() -> None:
    gt = straight(100, 0.5)
    gt[:, 1, 3] = np.sin(np.arange(100) / 10.0)
    moved = rigid(1) @ gt
    assert ate_rmse(moved, gt) == pytest.approx(0.0, abs=1e-9)
    noisy = gt.copy()
    offsets = np.random.default_rng(0).normal(scale=0.1, size=(100, 3))
    offsets -= offsets.mean(0)
    noisy[:, :3, 3] += offsets
    assert ate_rmse(noisy, gt) <= math.sqrt(np.mean(np.sum(offsets**2, axis=1))) + 1e-12
    assert ate_rmse(noisy, gt) > 0.1


def test_umeyama_recovers_an_exact_transform() -> None:
    pts = np.random.default_rng(3).normal(size=(30, 3))
    m = rigid(2)
    assert np.allclose(umeyama_se3(pts, pts @ m[:3, :3].T + m[:3, 3]), m, atol=1e-10)


def test_pair_errors_and_path_length() -> None:
    gt = straight(5, 2.0)
    pred = gt.copy()
    pred[3:, 1, 3] += 0.3  # a sideways jump between frames 2 and 3
    te, re = pair_errors(pred, gt)
    assert np.allclose(te, [0, 0, 0.3, 0]) and np.allclose(re, 0)
    assert path_lengths(gt)[-1] == pytest.approx(8.0)


def test_writers_round_trip(tmp_path: Path) -> None:
    poses = np.stack([rigid(s) for s in range(4)])
    write_kitti(tmp_path / "p.txt", poses)
    back = np.loadtxt(tmp_path / "p.txt").reshape(-1, 3, 4)
    assert np.allclose(back, poses[:, :3], atol=1e-8)
    write_tum(tmp_path / "p.tum", np.array([0.0, 0.1, 0.2, 0.3]), poses)
    rows = np.loadtxt(tmp_path / "p.tum")
    assert np.allclose(rows[:, 0], [0.0, 0.1, 0.2, 0.3]) and np.allclose(rows[:, 1:4], poses[:, :3, 3], atol=1e-8)
    assert np.allclose(Rotation.from_quat(rows[:, 4:]).as_matrix(), poses[:, :3, :3], atol=1e-7)
