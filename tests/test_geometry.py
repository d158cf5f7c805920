"""SE(3) helpers and the zyx Euler convention, checked against scipy's Rotation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dlc_core import geometry as g


@pytest.fixture
def rotations() -> np.ndarray:
    return Rotation.random(200, random_state=3).as_matrix()


def test_euler_to_matrix_matches_scipy_extrinsic_zyx() -> None:
    rng = np.random.default_rng(0)
    e = rng.uniform(-math.pi, math.pi, size=(100, 3)) * np.array([1.0, 0.5, 1.0])
    expected = Rotation.from_euler("zyx", e).as_matrix()
    assert np.allclose(g.euler_zyx_to_matrix(torch.tensor(e)).numpy(), expected, atol=1e-12)


def test_euler_matrix_is_rx_ry_rz_as_in_dcp() -> None:
    z, y, x = 0.3, -0.2, 0.7
    rx = Rotation.from_rotvec([x, 0, 0]).as_matrix()
    ry = Rotation.from_rotvec([0, y, 0]).as_matrix()
    rz = Rotation.from_rotvec([0, 0, z]).as_matrix()
    assert np.allclose(g.euler_zyx_to_matrix_np(np.array([z, y, x])), rx @ ry @ rz, atol=1e-12)


def test_matrix_to_euler_matches_scipy(rotations: np.ndarray) -> None:
    ours = g.matrix_to_euler_zyx(torch.tensor(rotations)).numpy()
    assert np.allclose(ours, Rotation.from_matrix(rotations).as_euler("zyx"), atol=1e-9)


def test_matrix_to_euler_at_gimbal_lock_round_trips() -> None:
    e = torch.tensor([[0.4, math.pi / 2, 0.0], [0.1, -math.pi / 2, 0.0]], dtype=torch.float64)
    r = g.euler_zyx_to_matrix(e)
    assert torch.allclose(g.euler_zyx_to_matrix(g.matrix_to_euler_zyx(r)), r, atol=1e-7)


def test_compose_invert_and_transform_points(rotations: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    r1, r2 = torch.tensor(rotations[:50]), torch.tensor(rotations[50:100])
    t1, t2 = torch.tensor(rng.normal(size=(50, 3))), torch.tensor(rng.normal(size=(50, 3)))
    pts = torch.tensor(rng.normal(size=(50, 7, 3)))
    r, t = g.compose(r1, t1, r2, t2)
    step = g.transform_points(r1, t1, g.transform_points(r2, t2, pts))
    assert torch.allclose(g.transform_points(r, t, pts), step, atol=1e-12)
    ri, ti = g.invert(r, t)
    assert torch.allclose(g.transform_points(ri, ti, g.transform_points(r, t, pts)), pts, atol=1e-12)
    m = g.to_matrix(r, t)
    assert torch.allclose(m, g.to_matrix(r1, t1) @ g.to_matrix(r2, t2), atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(g.from_matrix(m), (r, t)))


def test_rotation_angle_matches_scipy_magnitude(rotations: np.ndarray) -> None:
    ours = g.rotation_angle(torch.tensor(rotations)).numpy()
    assert np.allclose(ours, Rotation.from_matrix(rotations).magnitude(), atol=1e-9)
    assert float(g.rotation_angle(torch.eye(3, dtype=torch.float64))) == 0.0


def test_random_transform_in_dcp_ranges_and_seeded() -> None:
    draws = [g.random_transform(np.random.default_rng(s)) for s in range(300)]
    eulers = np.array([d[0] for d in draws])
    ts = np.array([d[1] for d in draws])
    assert eulers.min() >= 0 and eulers.max() <= math.pi / 4
    assert np.abs(ts).max() <= 0.5 and ts.min() < -0.4 and ts.max() > 0.4
    again = g.random_transform(np.random.default_rng(7))
    assert np.array_equal(again[0], draws[7][0]) and np.array_equal(again[1], draws[7][1])
    # DCP draws anglex, angley, anglez in that order and stores [z, y, x].
    u = np.random.default_rng(7).uniform(0, math.pi / 4, size=3)
    assert np.allclose(again[0], u[::-1])
