"""Tests of dlc_core.data.bunny: PLY/bun.conf readers on the real Stanford scans and on broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from dlc_core.data.bunny import BUNNY_PAIRS, load_scans, pair_transform, read_conf, read_ply_xyz
from dlc_core.errors import InputError

# Point counts from shared/data/bunny/README.md.
README_POINT_COUNTS = {
    "bun000": 40256,
    "bun045": 40097,
    "bun090": 30379,
    "bun180": 40251,
    "bun270": 31701,
    "bun315": 35336,
    "chin": 37738,
    "ear_back": 32193,
    "top2": 38298,
    "top3": 36023,
}
OVERLAP_DISTANCE = 0.002  # metres: a source point overlaps when its nearest target point is closer than this


@pytest.fixture(scope="module")
def data_dir(shared_data: Path) -> Path:
    """All ten scans live in the shared data folder."""
    return shared_data / "bunny"


@pytest.fixture(scope="module")
def scans(data_dir: Path) -> dict[str, np.ndarray]:
    return load_scans(data_dir, README_POINT_COUNTS)


@pytest.fixture(scope="module")
def poses(data_dir: Path) -> dict[str, np.ndarray]:
    return read_conf(data_dir / "bun.conf")


def apply(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ transform[:3, :3].T + transform[:3, 3]


def rotation_deg(transform: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(transform[:3, :3]).magnitude()))


def write_binary_ply(path: Path, points: np.ndarray, count: int | None = None, prop_type: str = "float") -> Path:
    count = len(points) if count is None else count
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment test\n"
        f"element vertex {count}\nproperty {prop_type} x\nproperty {prop_type} y\nproperty {prop_type} z\n"
        "end_header\n"
    )
    path.write_bytes(header.encode("ascii") + points.astype("<f4").tobytes())
    return path


# --- the real scans -------------------------------------------------------------------------------------------


def test_all_scans_have_readme_point_counts(scans: dict[str, np.ndarray]) -> None:
    for name, count in README_POINT_COUNTS.items():
        points = scans[name]
        assert points.shape == (count, 3), name
        assert points.dtype == np.float64
        assert np.isfinite(points).all(), name
    assert sum(len(points) for points in scans.values()) == 362272


def test_binary_reader_matches_plain_float32_decoding(data_dir: Path) -> None:
    raw = (data_dir / "bun000.ply").read_bytes()
    start = raw.index(b"end_header\n") + len(b"end_header\n")
    expected = np.frombuffer(raw[start:], dtype="<f4").reshape(-1, 3)
    np.testing.assert_array_equal(read_ply_xyz(data_dir / "bun000.ply"), expected)


def test_conf_poses_assemble_the_bunny(scans: dict[str, np.ndarray], poses: dict[str, np.ndarray]) -> None:
    assert set(poses) == set(README_POINT_COUNTS)
    np.testing.assert_allclose(poses["bun000"], np.eye(4))
    for pose in poses.values():
        np.testing.assert_allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-9)
        assert np.linalg.det(pose[:3, :3]) > 0
    assert rotation_deg(poses["bun090"]) == pytest.approx(90.0, abs=1.0)
    assert rotation_deg(poses["bun180"]) == pytest.approx(180.0, abs=1.0)
    world = np.concatenate([apply(poses[name], points) for name, points in scans.items()])
    # README: the assembled bunny is 0.176 x 0.165 x 0.128 m.
    np.testing.assert_allclose(np.ptp(world, axis=0), [0.176, 0.165, 0.128], atol=0.002)


def test_ground_truth_aligns_bun045_onto_bun000(
    scans: dict[str, np.ndarray], poses: dict[str, np.ndarray]
) -> None:
    target, source = scans["bun000"], scans["bun045"]
    gt = pair_transform(poses, "bun000", "bun045")
    tree = cKDTree(target)
    gt_distances, _ = tree.query(apply(gt, source))
    overlapping = gt_distances < OVERLAP_DISTANCE
    assert overlapping.mean() > 0.9  # README: 93.8 %
    identity_distances, _ = tree.query(source[overlapping])
    assert np.median(gt_distances[overlapping]) < 0.001
    assert np.median(identity_distances) > 0.005
    # README: bun045 -> bun000 is a 34.3 degree rotation with a 53 mm translation.
    assert rotation_deg(gt) == pytest.approx(34.3, abs=0.1)
    assert np.linalg.norm(gt[:3, 3]) == pytest.approx(0.053, abs=0.001)


def test_pair_transform_composes(poses: dict[str, np.ndarray]) -> None:
    forward = pair_transform(poses, "bun270", "bun315")
    backward = pair_transform(poses, "bun315", "bun270")
    np.testing.assert_allclose(forward @ backward, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(pair_transform(poses, "bun000", "chin"), poses["chin"], atol=1e-12)
    via_world = np.linalg.inv(poses["bun045"]) @ poses["top3"]
    np.testing.assert_allclose(pair_transform(poses, "bun045", "top3"), via_world, atol=1e-12)


def test_bunny_pairs_are_moderate_rotations_with_overlap(
    scans: dict[str, np.ndarray], poses: dict[str, np.ndarray]
) -> None:
    assert len(set(BUNNY_PAIRS)) == len(BUNNY_PAIRS)
    trees = {name: cKDTree(scans[name]) for name in {target for target, _ in BUNNY_PAIRS}}
    for target, source in BUNNY_PAIRS:
        gt = pair_transform(poses, target, source)
        distances, _ = trees[target].query(apply(gt, scans[source]), distance_upper_bound=OVERLAP_DISTANCE)
        assert rotation_deg(gt) <= 50.0, (target, source)
        assert np.isfinite(distances).mean() >= 0.5, (target, source)


def test_unknown_scan_names_raise(data_dir: Path, poses: dict[str, np.ndarray]) -> None:
    with pytest.raises(InputError, match="bun999"):
        pair_transform(poses, "bun000", "bun999")
    with pytest.raises(InputError, match="bun999.ply"):
        load_scans(data_dir, ["bun999"])


# --- PLY files written here -----------------------------------------------------------------------------------


def test_ascii_round_trip(tmp_path: Path) -> None:
    points = np.random.default_rng(0).normal(size=(25, 3))
    rows = "".join(f"{x:.17g} {y:.17g} {z:.17g}\n" for x, y, z in points)
    path = tmp_path / "cloud.ply"
    path.write_text(
        "ply\nformat ascii 1.0\ncomment written by the test\nelement vertex 25\n"
        "property double x\nproperty double y\nproperty double z\nend_header\n" + rows
    )
    np.testing.assert_array_equal(read_ply_xyz(path), points)


def test_ascii_with_crlf_extra_properties_and_trailing_element(tmp_path: Path) -> None:
    """Like the original Stanford files: CRLF line ends, a range_grid element after the vertices."""
    path = tmp_path / "scan.ply"
    lines = [
        "ply", "format ascii 1.0", "comment end_header is only a word here", "element vertex 2",
        "property float y", "property float x", "property float z", "property float confidence", "element range_grid 3", "property list uchar int vertex_indices", "end_header",
        "2 1 3 0.5", "5 4 6 0.9", "1 0", "0", "1 1",
    ]  # fmt: skip
    path.write_bytes("\r\n".join(lines).encode("ascii") + b"\r\n")
    np.testing.assert_array_equal(read_ply_xyz(path), [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def test_binary_round_trip(tmp_path: Path) -> None:
    points = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    np.testing.assert_array_equal(read_ply_xyz(write_binary_ply(tmp_path / "b.ply", points)), points)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"garbage\x00\x01 not a ply file at all", "not a PLY file"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n", "end_header"),
        (b"ply\nformat binary_big_endian 1.0\nelement vertex 0\nproperty float x\nend_header\n", "format"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n", "'z'"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nfoo bar\nend_header\n", "header line 4"),
        (b"ply\nformat ascii 1.0\nelement face 1\nproperty float x\nend_header\n1\n", "first PLY element"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float x\nend_header\n1 2\n",
         "more than once"),
        (b"plyx\nformat ascii 1.0\nend_header\n", "not a PLY file"),
        (b"ply\nformat ascii 1.0\ncomment caf\xe9\nend_header\n", "not ASCII"),
        (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
         b"end_header\n1 2 3\n", "header says 2 vertices"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
         b"end_header\n1 2 3\n4 5 6\n", "header says 1 vertices"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
         b"end_header\n1 two 3\n", "non-numeric"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
         b"end_header\n1 2\n", "vertex 0 has 2 values"),
    ],
)  # fmt: skip
def test_broken_ply_raises_with_file_name(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "broken_scan.ply"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_ply_xyz(path)
    message = str(info.value)
    assert "broken_scan.ply" in message and problem in message
    assert "\n" not in message


def test_truncated_binary_raises(tmp_path: Path) -> None:
    path = write_binary_ply(tmp_path / "short.ply", np.zeros((10, 3)))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(InputError, match=r"short\.ply.*truncated"):
        read_ply_xyz(path)


def test_binary_with_more_data_than_vertices_raises(tmp_path: Path) -> None:
    path = write_binary_ply(tmp_path / "long.ply", np.zeros((10, 3)), count=8)
    with pytest.raises(InputError, match=r"long\.ply.*wrong vertex count"):
        read_ply_xyz(path)


def test_integer_properties_raise(tmp_path: Path) -> None:
    path = write_binary_ply(tmp_path / "ints.ply", np.zeros((4, 3)), prop_type="int")
    with pytest.raises(InputError, match=r"ints\.ply.*type 'int'"):
        read_ply_xyz(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.ply"):
        read_ply_xyz(tmp_path / "nope.ply")


# --- bun.conf files written here ------------------------------------------------------------------------------


def test_read_conf_convention(tmp_path: Path) -> None:
    """A scan rotated 90 degrees about y: the stored quaternion is world-to-scan, so R is its transpose."""
    quat = Rotation.from_euler("y", 90, degrees=True).as_quat()  # scalar-last
    path = tmp_path / "pose.conf"
    path.write_text("camera 0 0 1 0 0 0 1\n\nbmesh s.ply 1 2 3 " + " ".join(f"{q:.17g}" for q in quat) + "\n")
    pose = read_conf(path)["s"]
    np.testing.assert_allclose(pose[:3, :3], Rotation.from_euler("y", -90, degrees=True).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(pose[3], [0, 0, 0, 1])


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("bmesh a.ply 0 0 0 0 0 0", "expected 'bmesh"),
        ("mesh a.ply 0 0 0 0 0 0 1", "expected 'bmesh"),
        ("bmesh a.ply 0 zero 0 0 0 0 1", "non-numeric"),
        ("bmesh a.ply 0 0 0 0 0 0 0", "quaternion norm"),
        ("bmesh a.ply 0 nan 0 0 0 0 1", "NaN"),
        ("bmesh bun000.ply 0 0 0 0 0 0 1", "listed twice"),
    ],
)
def test_malformed_conf_line_raises_with_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(f"camera 0 0 0 0 0 0 1\nbmesh bun000.ply 0 0 0 0 0 0 1\n{line}\n")
    with pytest.raises(InputError, match=rf"bad\.conf:3: .*{problem}"):
        read_conf(path)
