"""The LiDAR simulator: exact raycasting, the HDL-64E beam model, KITTI-like scans, the written sequence layout,
exact ground truth between scans, determinism, and the trajectory-length rules of `dlc sim`."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from dlc_core.errors import InputError
from dlc_core.sim.lidar import Sensor, scan
from dlc_core.sim.scene import Mesh, Scene, box
from dlc_core.sim.writer import (
    KITTI_04_10_CALIB,
    build_world,
    drive,
    load_trajectory,
    parse_calib,
    run,
    simulate_sequence,
)

DEFAULT_TR = parse_calib(KITTI_04_10_CALIB, "default").tr
# A reduced sensor for the tests that are not about resolution or range: 0.4 deg azimuth steps, 40 m reach.
SMALL = Sensor(azimuth_step_deg=0.4, max_range=40.0)
EXACT = Sensor(azimuth_step_deg=0.4, max_range=40.0, range_noise=0.0, dropout=0.0, reflectance_noise=0.0)


def velodyne_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """A 4x4 pose with a heading `yaw` (rad) about z."""
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    pose[:3, 3] = [x, y, z]
    return pose


def turning_drive(frames: int, step: float = 1.2, turn_deg: float = 3.0, climb: float = 0.02) -> np.ndarray:
    """Velodyne poses (frames, 4, 4) of a car turning left while climbing gently."""
    yaw = np.radians(turn_deg) * np.arange(frames)
    xy = np.cumsum(np.column_stack([np.cos(yaw), np.sin(yaw)]) * step, axis=0) - [step, 0.0]
    return np.stack([velodyne_pose(x, y, a, climb * i) for i, ((x, y), a) in enumerate(zip(xy, yaw))])


def write_camera_poses(path: Path, velodyne: np.ndarray, tr: np.ndarray) -> list[str]:
    """Write KITTI camera-0 pose lines P = Tr @ T_velo @ inv(Tr) and return them."""
    lines = [" ".join(f"{v:.12e}" for v in (tr @ t @ np.linalg.inv(tr))[:3].ravel()) for t in velodyne]
    path.write_text("".join(f"{line}\n" for line in lines))
    return lines


def read_matrix_lines(lines: list[str]) -> np.ndarray:
    """(N, 4, 4) from KITTI 3x4 row-major lines (parsed here, independently of the writer)."""
    rows = np.array([[float(v) for v in line.split()] for line in lines]).reshape(-1, 3, 4)
    return np.concatenate([rows, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(rows), 1, 1))], axis=1)


def read_scan(path: Path) -> np.ndarray:
    """A KITTI .bin scan as (N, 4) float32."""
    data = np.fromfile(path, "<f4")
    assert data.size % 4 == 0
    return data.reshape(-1, 4)


def sim_args(out: Path, trajectory: Path, frames: int, seed: int = 0, calib: Path | None = None,
             stride: int = 1) -> argparse.Namespace:
    """What the CLI parser hands to `run`."""
    return argparse.Namespace(out=str(out), trajectory=str(trajectory), calib=calib and str(calib), frames=frames,
                              seed=seed, stride=stride, command="dlc sim (test)")


# ---------------------------------------------------------------------------------------------------------------
# Raycasting and the beam model


def test_rays_hit_a_plane_and_a_box_at_the_analytic_range() -> None:
    ground = Mesh(np.array([[-100.0, -100, -1.73], [100, -100, -1.73], [100, 100, -1.73], [-100, 100, -1.73]]),
                  np.array([[0, 1, 2], [0, 2, 3]]), np.array([0.3, 0.3]))
    wall = box([10.5, 0.0, -2.0], (1.0, 8.0, 6.0), 0.0, 0.7)  # its near face is the plane x = 10
    scene = Scene([ground, wall])
    elevation = np.radians([-5.0, -10.0, -20.0, 3.0, 10.0])
    azimuth = np.radians([180.0, 90.0, 33.0, 0.0, 10.0])
    directions = np.column_stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                  np.sin(elevation)])
    hits = scene.cast(np.zeros((5, 3)), directions)
    expected = [1.73 / np.sin(np.radians(5.0)), 1.73 / np.sin(np.radians(10.0)), 1.73 / np.sin(np.radians(20.0)),
                10.0 / np.cos(np.radians(3.0)), 10.0 / (np.cos(np.radians(10.0)) * np.cos(np.radians(10.0)))]
    np.testing.assert_allclose(hits.distance, expected, rtol=1e-6)
    np.testing.assert_allclose(np.abs(hits.normal[:, 2]), [1, 1, 1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(hits.albedo, [0.3, 0.3, 0.3, 0.7, 0.7], rtol=1e-6)
    sky = scene.cast(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0]]))
    assert np.isinf(sky.distance[0])


def test_noise_free_scan_of_a_flat_road_is_exact() -> None:
    sensor = Sensor(azimuth_step_deg=1.0, range_noise=0.0, dropout=0.0, reflectance_noise=0.0, body_shadow=())
    plane = Mesh(np.array([[-500.0, -500, 0], [500, -500, 0], [500, 500, 0], [-500, 500, 0]]),
                 np.array([[0, 1, 2], [0, 2, 3]]), np.array([0.4, 0.4]))
    pose = velodyne_pose(3.0, -2.0, 0.7, z=1.73)
    points = scan(Scene([plane]), pose, sensor, rng=None)
    assert points.dtype == np.float32 and points.shape[1] == 4
    np.testing.assert_allclose(points[:, 2], -1.73, atol=1e-4)
    distance = np.linalg.norm(points[:, :3], axis=1)
    elevation = np.degrees(np.arcsin(points[:, 2] / distance))
    beams = np.array(sensor.elevations_deg)
    seen = beams[(beams < 0) & (1.73 / np.sin(np.radians(-np.minimum(beams, -1e-9))) <= sensor.max_range)]
    nearest = np.argmin(np.abs(elevation[:, None] - beams[None, :]), axis=1)
    np.testing.assert_allclose(elevation, beams[nearest], atol=1e-3)
    assert set(beams[nearest]) == set(seen)
    np.testing.assert_allclose(distance, 1.73 / np.sin(np.radians(-elevation)), rtol=1e-5)
    assert len(points) == len(seen) * sensor.columns  # every ray below the horizon returns, none above
    assert np.all((points[:, 3] >= 0) & (points[:, 3] <= 1))


def test_beam_model_has_64_hdl64_elevations_and_the_configured_azimuth_step() -> None:
    sensor = Sensor()
    elevations = np.array(sensor.elevations_deg)
    assert len(np.unique(elevations)) == 64
    assert elevations.max() == pytest.approx(2.0) and elevations.min() == pytest.approx(-24.8)
    gaps = -np.diff(elevations)
    np.testing.assert_allclose(gaps[:31], 1.0 / 3.0, atol=2e-3)  # upper block
    assert np.all((gaps[32:] > 0.45) & (gaps[32:] < 0.56))  # lower block
    assert 0.08 <= sensor.azimuth_step_deg <= 0.2 and sensor.columns == 2160
    # Inside a closed room every ray returns: the points show the 64 rings and the azimuth step.
    room = Sensor(azimuth_step_deg=0.5, range_noise=0.0, dropout=0.0, reflectance_noise=0.0, body_shadow=())
    walls = [box([0, 0, -3.0], (40.0, 40.0, 0.5), 0.0, 0.5), box([0, 0, 8.0], (40.0, 40.0, 0.5), 0.0, 0.5),
             box([20.0, 0, -3], (0.5, 40.0, 12.0), 0.0, 0.5), box([-20.0, 0, -3], (0.5, 40.0, 12.0), 0.0, 0.5),
             box([0, 20.0, -3], (40.0, 0.5, 12.0), 0.0, 0.5), box([0, -20.0, -3], (40.0, 0.5, 12.0), 0.0, 0.5)]
    points = scan(Scene(walls), np.eye(4), room, rng=None)
    assert len(points) == 64 * 720
    distance = np.linalg.norm(points[:, :3], axis=1)
    elevation = np.degrees(np.arcsin(points[:, 2] / distance)).reshape(64, 720)
    np.testing.assert_allclose(elevation, np.repeat(elevations[:, None], 720, axis=1), atol=1e-3)
    azimuth = np.degrees(np.arctan2(points[:, 1], points[:, 0])).reshape(64, 720)
    np.testing.assert_allclose(np.diff(np.unwrap(azimuth, period=360.0), axis=1), 0.5, atol=1e-3)


def test_body_shadow_removes_the_rays_kitti_never_returns() -> None:
    directions = Sensor().directions()
    elevation = np.degrees(np.arcsin(directions[:, 2]))
    azimuth = np.degrees(np.arctan2(directions[:, 1], directions[:, 0]))
    assert elevation.min() > -24.0
    assert not np.any((np.abs(azimuth) > 165.0) & (elevation < -19.5))  # the rear of the car
    assert len(directions) < 64 * 2160 and len(Sensor(body_shadow=()).directions()) == 64 * 2160


def test_road_runs_under_every_pose_and_the_lane_is_free() -> None:
    poses = turning_drive(12, step=2.0, turn_deg=8.0, climb=0.05)
    world = build_world(poses, 5, SMALL)
    footprints = poses[:, :3, 3] - SMALL.height * poses[:, :3, 2]
    np.testing.assert_allclose(world.ground_height(footprints[:, :2]), footprints[:, 2], atol=1e-6)
    # Straight down from 2 m above the road, across the lane, the first thing hit is the road itself (its mesh
    # follows the height function to within millimetres).
    for pose, foot in zip(poses, footprints):
        lateral = np.outer(np.linspace(-1.0, 1.0, 5), pose[:3, 1]) * [1, 1, 0]
        origins = foot + lateral + [0.0, 0.0, 2.0]
        hits = world.scene_at(pose[:3, 3]).cast(origins, np.tile([0.0, 0.0, -1.0], (5, 1)))
        np.testing.assert_allclose(hits.distance, 2.0 + foot[2] - world.ground_height(origins[:, :2]), atol=0.01)


# ---------------------------------------------------------------------------------------------------------------
# `dlc sim`: the written sequence (one full-resolution run shared by several tests)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 3-frame sequence written by `run` from a 5-line pose file, with what it printed."""
    root = tmp_path_factory.mktemp("sim")
    lines = write_camera_poses(root / "poses_in.txt", turning_drive(5), DEFAULT_TR)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run(sim_args(root / "seq", root / "poses_in.txt", frames=3, seed=7))
    return {"out": root / "seq", "lines": lines, "code": code, "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue()}


def test_written_sequence_has_the_kitti_layout_and_round_trips(written: dict) -> None:
    out = written["out"]
    assert written["code"] == 0
    scans = sorted((out / "velodyne").iterdir())
    assert [p.name for p in scans] == ["000000.bin", "000001.bin", "000002.bin"]
    for path in scans:
        points = read_scan(path)
        assert np.all(np.isfinite(points)) and np.all((points[:, 3] >= 0) & (points[:, 3] <= 1))
    assert (out / "poses.txt").read_text().splitlines() == written["lines"][:3]
    times = np.loadtxt(out / "times.txt")
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-9)
    assert times[0] == 0.0
    calib = dict(line.split(":", 1) for line in (out / "calib.txt").read_text().splitlines())
    assert sorted(calib) == ["P0", "P1", "P2", "P3", "Tr"]
    np.testing.assert_array_equal(read_matrix_lines([calib["Tr"]])[0], DEFAULT_TR)
    meta = json.loads((out / "sim.json").read_text())
    assert meta["seed"] == 7 and meta["frames"] == 3 and meta["command"] == "dlc sim (test)"
    assert meta["sensor"]["beams"] == 64 and meta["points"]["total"] == sum(len(read_scan(p)) for p in scans)
    assert not list(out.rglob("*.tmp"))


def test_longer_pose_file_uses_its_first_lines_with_one_warning(written: dict) -> None:
    warnings = [line for line in written["stderr"].splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "5 poses" in warnings[0] and "first 3" in warnings[0]
    assert "KITTI odometry 04-10" in written["stdout"]  # no --calib: the default is announced


def test_full_resolution_scan_is_kitti_like(written: dict) -> None:
    for path in sorted((written["out"] / "velodyne").iterdir()):
        points = read_scan(path)
        assert 100_000 <= len(points) <= 135_000  # KITTI scans in ../shared/data: 121k-125k
        distance = np.linalg.norm(points[:, :3], axis=1)
        assert distance.min() >= 2.4 and distance.max() <= 80.5
        assert 0.4 < np.mean(points[:, 2] < -1.4) < 0.9  # mostly ground, as in KITTI (0.65-0.72)


def test_shorter_pose_file_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    write_camera_poses(tmp_path / "short.txt", turning_drive(4), DEFAULT_TR)
    with pytest.raises(InputError, match=r"short\.txt.*4 poses.*--frames 6.*needs 6"):
        run(sim_args(tmp_path / "seq", tmp_path / "short.txt", frames=6))
    with pytest.raises(InputError, match=r"short\.txt.*4 poses.*needs 7"):
        load_trajectory(tmp_path / "short.txt", frames=3, stride=3)
    assert not (tmp_path / "seq" / "velodyne").exists()


def test_stride_takes_every_kth_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lines = write_camera_poses(tmp_path / "p.txt", turning_drive(7), DEFAULT_TR)
    assert load_trajectory(tmp_path / "p.txt", frames=3, stride=3) == lines[:7]
    assert capsys.readouterr().err == ""  # exactly long enough: no warning
    assert load_trajectory(tmp_path / "p.txt", frames=2, stride=3) == lines[:4]
    assert "frame i = line i*3" in capsys.readouterr().err


def test_bad_calib_and_foreign_output_folder_are_input_errors(tmp_path: Path) -> None:
    write_camera_poses(tmp_path / "p.txt", turning_drive(2), DEFAULT_TR)
    (tmp_path / "calib.txt").write_text("P0: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(InputError, match=r"calib\.txt.*Tr"):
        run(sim_args(tmp_path / "a", tmp_path / "p.txt", frames=2, calib=tmp_path / "calib.txt"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="busy"):
        run(sim_args(tmp_path / "busy", tmp_path / "p.txt", frames=2))


# ---------------------------------------------------------------------------------------------------------------
# Ground truth and determinism (reduced sensor)


def point_to_plane(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Distance of each source point to the plane through its 8 nearest target points."""
    _, index = cKDTree(target).query(source, k=8)
    neighbours = target[index]
    centred = neighbours - neighbours.mean(axis=1, keepdims=True)
    normal = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))[1][:, :, 0]
    return np.abs(np.einsum("ni,ni->n", source - neighbours[:, 0], normal))


def test_ground_truth_maps_consecutive_scans_onto_the_same_surfaces(tmp_path: Path) -> None:
    yaw, pitch = np.radians(30.0), np.radians(1.0)  # a calibration other than the default, to see it used
    tr = velodyne_pose(0.1, -0.2, yaw, z=-0.3) @ np.array(
        [[1, 0, 0, 0], [0, np.cos(pitch), -np.sin(pitch), 0], [0, np.sin(pitch), np.cos(pitch), 0], [0, 0, 0, 1]])
    (tmp_path / "calib.txt").write_text("Tr: " + " ".join(f"{v:.12e}" for v in tr[:3].ravel()) + "\n")
    write_camera_poses(tmp_path / "p.txt", turning_drive(4), tr)
    simulate_sequence(tmp_path / "seq", tmp_path / "p.txt", tmp_path / "calib.txt", 4, 0, 1, EXACT, "test")
    out = tmp_path / "seq"
    calib = dict(line.split(":", 1) for line in (out / "calib.txt").read_text().splitlines())
    tr_read = read_matrix_lines([calib["Tr"]])[0]
    poses = np.linalg.inv(tr_read) @ read_matrix_lines((out / "poses.txt").read_text().splitlines()) @ tr_read
    scan_i, scan_j = (read_scan(out / "velodyne" / f"{i:06d}.bin")[:, :3] for i in (1, 2))
    for relative, bound in [(np.linalg.inv(poses[1]) @ poses[2], "exact"), (np.eye(4), "identity")]:
        mapped = scan_j @ relative[:3, :3].T + relative[:3, 3]
        upright = mapped[:, 2] > -1.2  # walls, cars, poles, trees: what a wrong pose moves off its surface
        residual = np.median(point_to_plane(mapped[upright], scan_i))
        assert (residual < 0.01) if bound == "exact" else (residual > 0.10), (bound, residual)


def test_same_seed_gives_identical_bytes_and_another_seed_another_scene(tmp_path: Path) -> None:
    write_camera_poses(tmp_path / "p.txt", turning_drive(3), DEFAULT_TR)
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        simulate_sequence(tmp_path / name, tmp_path / "p.txt", None, 3, seed, 1, SMALL, "test")
    files = [p.relative_to(tmp_path / "a") for p in sorted((tmp_path / "a" / "velodyne").iterdir())]
    for name in ("poses.txt", "times.txt", "calib.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()
    # A scan does not depend on what else was simulated: frame 2 alone equals frame 2 of the sequence.
    camera = read_matrix_lines((tmp_path / "a" / "poses.txt").read_text().splitlines())
    poses = np.linalg.inv(DEFAULT_TR) @ camera @ DEFAULT_TR
    alone = next(drive(poses, [2], 3, SMALL))
    np.testing.assert_array_equal(alone, read_scan(tmp_path / "a" / "velodyne" / "000002.bin"))
    # Another seed builds another world, not just other noise: many exact points have no counterpart.
    scene_a, scene_c = (next(drive(poses, [0], seed, EXACT, noisy=False)) for seed in (3, 4))
    distance, _ = cKDTree(scene_c[:, :3]).query(scene_a[:, :3])
    assert np.mean(distance > 0.3) > 0.1
    # A shorter rerun into an earlier output replaces it, extra scans included.
    simulate_sequence(tmp_path / "c", tmp_path / "p.txt", None, 2, 4, 1, SMALL, "test")
    assert sorted(p.name for p in (tmp_path / "c" / "velodyne").iterdir()) == ["000000.bin", "000001.bin"]
    assert len((tmp_path / "c" / "poses.txt").read_text().splitlines()) == 2
