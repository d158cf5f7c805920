"""Tests of dlc_core.icp: recovery of a real bunny pair, input checking, and the alignment metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dlc_core.data.bunny import load_scans, pair_transform, read_conf
from dlc_core.errors import InputError
from dlc_core.icp import METHODS, Cloud, ICPConfig, evaluate_alignment, refine
from dlc_core.pointcloud import voxel_downsample

REPO = Path(__file__).resolve().parents[1]
# Tolerances against the bun.conf ground truth, whose uncertainty is about 0.5 mm / 0.5 deg (README).
MAX_ROTATION_ERROR_DEG = 1.0
MAX_TRANSLATION_ERROR = 0.002  # metres
# Coarse to fine: 5 cm catches the 5 cm initial offset, 2 mm (4x the 0.5 mm point spacing) removes the bias that
# the coarse gate causes on partially overlapping scans. 1 mm voxels: point-to-point ICP needs fine sampling.
BUNNY_CONFIG = {"max_correspondence_distance": 0.05, "min_correspondence_distance": 0.002, "voxel_size": 0.001}


@pytest.fixture(scope="module")
def bunny_pair(repo_bunny: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source bun045, target bun000, ground-truth source->target transform from bun.conf)."""
    directory = repo_bunny
    scans = load_scans(directory, ["bun000", "bun045"])
    gt = pair_transform(read_conf(directory / "bun.conf"), "bun000", "bun045")
    return scans["bun045"], scans["bun000"], gt


def perturb(gt: np.ndarray, source: np.ndarray, rng: np.random.Generator, degrees: float, shift: float) -> np.ndarray:
    """gt followed by a rotation of ``degrees`` about a random axis through the aligned source centroid and a
    ``shift`` translation in a random direction: the guess is exactly that far from the ground truth."""
    axis, direction = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 3)))
    rotation = Rotation.from_rotvec(np.radians(degrees) * axis).as_matrix()
    centroid = source.mean(axis=0) @ gt[:3, :3].T + gt[:3, 3]
    offset = np.eye(4)
    offset[:3, :3] = rotation
    offset[:3, 3] = centroid - rotation @ centroid + shift * direction
    return offset @ gt


def pose_errors(estimate: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(rotation error in degrees, translation error in metres)."""
    rotation_error = Rotation.from_matrix(estimate[:3, :3].T @ gt[:3, :3]).magnitude()
    return float(np.degrees(rotation_error)), float(np.linalg.norm(estimate[:3, 3] - gt[:3, 3]))


def random_rigid(rng: np.random.Generator) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    transform[:3, 3] = rng.normal(size=3)
    return transform


def test_a_sparse_source_aligns_and_the_fitness_is_measured_on_the_full_cloud(bunny_pair) -> None:
    source, target, gt = bunny_pair
    init = perturb(gt, source, np.random.default_rng(0), degrees=10.0, shift=0.05)
    full, sparse = Cloud(source), Cloud(voxel_downsample(source, 0.004))
    assert len(sparse) < len(full) / 2
    config = ICPConfig(method="point-to-plane", **BUNNY_CONFIG)
    result = refine(sparse, Cloud(target), init, config, scored=full)
    rotation_error, translation_error = pose_errors(result.transform, gt)
    assert rotation_error < MAX_ROTATION_ERROR_DEG and translation_error < MAX_TRANSLATION_ERROR
    expected = evaluate_alignment(source, target, result.transform, config.gates()[-1])
    assert (result.fitness, result.inlier_rmse) == pytest.approx(expected)


# --- the real bunny pair --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", METHODS)
def test_recovers_bunny_pair(bunny_pair, method: str, seed: int) -> None:
    source, target, gt = bunny_pair
    centroid = source.mean(axis=0)
    init = perturb(gt, source, np.random.default_rng(seed), degrees=10.0, shift=0.05)
    init_rotation_error, _ = pose_errors(init, gt)
    assert init_rotation_error == pytest.approx(10.0)
    assert np.linalg.norm(init[:3, :3] @ centroid + init[:3, 3] - gt[:3, :3] @ centroid - gt[:3, 3]) == pytest.approx(
        0.05
    )

    result = refine(source, target, init, ICPConfig(method=method, **BUNNY_CONFIG))

    rotation_error, translation_error = pose_errors(result.transform, gt)
    assert rotation_error < MAX_ROTATION_ERROR_DEG, f"{method}: rotation error {rotation_error:.3f} deg"
    assert translation_error < MAX_TRANSLATION_ERROR, f"{method}: translation error {translation_error * 1e3:.2f} mm"
    assert result.transform.shape == (4, 4) and result.transform.dtype == np.float64
    assert result.fitness > 0.8  # README: 93.8 % of bun045 lies within 2 mm of bun000
    assert 0 < result.inlier_rmse < 0.001
    assert (result.iterations is None) == (method != "gicp")


@pytest.mark.parametrize("method", ["point-to-point", "point-to-plane"])
def test_one_thread_gives_the_same_transform_every_run(bunny_pair, method: str) -> None:
    """open3d with several threads sums in finishing order (bit-different answers run to run, here every run);
    num_threads=1 must reach it too, so `dlc demo` prints the same numbers each time."""
    import open3d as o3d

    source, target, gt = bunny_pair
    init = perturb(gt, source, np.random.default_rng(0), degrees=10.0, shift=0.05)
    config = ICPConfig(method=method, num_threads=1, **BUNNY_CONFIG)
    before = o3d.utility.get_max_threads()
    runs = [refine(source, target, init, config).transform for _ in range(4)]
    assert all(np.array_equal(run, runs[0]) for run in runs[1:])
    assert o3d.utility.get_max_threads() == before  # the process-wide setting is put back


# --- bad input ------------------------------------------------------------------------------------------------


def cube(n: int = 50) -> np.ndarray:
    return np.random.default_rng(2).uniform(-1, 1, size=(n, 3))


def scaled(factor: float) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] *= factor
    return matrix


def with_nan(points: np.ndarray, value: float = np.nan) -> np.ndarray:
    points = points.copy()
    points[7, 1] = value
    return points


BAD_CLOUDS = [
    (with_nan(cube()), "NaN/Inf"),
    (with_nan(cube(), np.inf), "NaN/Inf"),
    (cube(2), "2 points"),
    (np.ones((20, 3)), "identical"),
    (cube()[:, :2], r"shape \(N, 3\)"),
    (cube().ravel(), r"shape \(N, 3\)"),
    ([["a", "b", "c"]] * 5, "numeric"),
]


@pytest.mark.parametrize("which", ["source", "target"])
@pytest.mark.parametrize(("cloud", "problem"), BAD_CLOUDS)
def test_bad_cloud_raises_naming_the_cloud(which: str, cloud, problem: str) -> None:
    clouds = {"source": cube(), "target": cube(), which: cloud}
    config = ICPConfig(max_correspondence_distance=0.1)
    for call in (
        lambda: refine(clouds["source"], clouds["target"], np.eye(4), config),
        lambda: evaluate_alignment(clouds["source"], clouds["target"], np.eye(4), 0.1),
    ):
        with pytest.raises(InputError, match=rf"^{which} cloud .*{problem}") as info:
            call()
        assert "\n" not in str(info.value)


def reflection() -> np.ndarray:
    return np.diag([1.0, 1.0, -1.0, 1.0])


def shear() -> np.ndarray:
    matrix = np.eye(4)
    matrix[0, 1] = 0.1
    return matrix


def projective() -> np.ndarray:
    matrix = np.eye(4)
    matrix[3, 0] = 0.5
    return matrix


@pytest.mark.parametrize(
    ("init", "problem"),
    [
        (scaled(2.0), "not orthonormal"),
        (shear(), "not orthonormal"),
        (reflection(), "reflection"),
        (projective(), "last row"),
        (np.eye(3), "4x4"),
        (np.full((4, 4), np.nan), "NaN"),
    ],
)
def test_non_rigid_init_raises(init: np.ndarray, problem: str) -> None:
    with pytest.raises(InputError, match=rf"^init .*{problem}"):
        refine(cube(), cube(), init, ICPConfig(max_correspondence_distance=0.1))


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"method": "plane", "max_correspondence_distance": 0.1}, "unknown ICP method"),
        ({"max_correspondence_distance": 0.0}, "max_correspondence_distance"),
        ({"max_correspondence_distance": float("nan")}, "max_correspondence_distance"),
        ({"max_correspondence_distance": 0.1, "min_correspondence_distance": 0.2}, "min_correspondence_distance"),
        ({"max_correspondence_distance": 0.1, "voxel_size": -1.0}, "voxel_size"),
        ({"max_correspondence_distance": 0.1, "iterations": 0}, "iterations"),
        ({"max_correspondence_distance": 0.1, "num_threads": 0}, "num_threads"),
    ],
)
def test_bad_config_raises(settings: dict, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        ICPConfig(**settings)


def test_voxel_larger_than_cloud_raises() -> None:
    with pytest.raises(InputError, match="voxel_size .* source cloud"):
        refine(cube() + 5.0, cube(), np.eye(4), ICPConfig(max_correspondence_distance=0.1, voxel_size=100.0))


def test_coarse_to_fine_gates() -> None:
    assert ICPConfig(max_correspondence_distance=0.05).gates() == [0.05]
    gates = ICPConfig(max_correspondence_distance=0.05, min_correspondence_distance=0.002).gates()
    assert gates[0] == pytest.approx(0.05) and gates[-1] == pytest.approx(0.002)
    ratios = np.array(gates[:-1]) / np.array(gates[1:])
    assert np.all(ratios <= 4.0 + 1e-9) and np.all(ratios > 1.0)


@pytest.mark.parametrize(("method", "package"), [("point-to-plane", "open3d"), ("gicp", "small_gicp")])
def test_missing_package_raises(monkeypatch, method: str, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(InputError, match=f"pip install {package}"):
        refine(cube(), cube(), np.eye(4), ICPConfig(method=method, max_correspondence_distance=0.1))


def test_module_imports_without_open3d_and_small_gicp() -> None:
    code = "import sys; sys.modules['open3d'] = sys.modules['small_gicp'] = None; import dlc_core.icp"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- evaluate_alignment ---------------------------------------------------------------------------------------


def test_evaluate_alignment_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    source, target = rng.uniform(-1, 1, size=(300, 3)), rng.uniform(-1, 1, size=(200, 3))
    transform = random_rigid(rng)
    moved = source @ transform[:3, :3].T + transform[:3, 3]
    target = np.concatenate([target, moved[:100] + rng.normal(scale=0.03, size=(100, 3))])
    max_distance = 0.1

    nearest = np.sqrt(((moved[:, None, :] - target[None, :, :]) ** 2).sum(-1)).min(axis=1)
    inliers = nearest[nearest < max_distance]
    fitness, rmse = evaluate_alignment(source, target, transform, max_distance)

    assert 50 < len(inliers) < 300  # a mix of inliers and outliers
    assert fitness == pytest.approx(len(inliers) / len(source), abs=1e-12)
    assert rmse == pytest.approx(np.sqrt(np.mean(inliers**2)), rel=1e-12)


def test_evaluate_alignment_without_correspondences() -> None:
    far = np.eye(4)
    far[:3, 3] = 100.0
    assert evaluate_alignment(cube(), cube(), far, 0.5) == (0.0, 0.0)
