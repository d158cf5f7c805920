"""KITTI -> ROS 2 bag with rosbags and back: exact points, stamps and ground truth; topic auto-detection; bad
messages reported without stopping the iteration; bad inputs refused; CDR wire compatibility with rclpy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags not installed")
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402

from dlc_core.errors import InputError  # noqa: E402
from dlc_ros.bag_io import (  # noqa: E402
    GT_TOPIC,
    KITTI_EPOCH_S,
    ODOMETRY,
    POINTCLOUD2,
    _typestore,
    cloud_message,
    convert_sequence,
    ground_truth,
    iter_clouds,
    matrix_to_quaternion,
    open_bag,
    pointcloud_topic,
    quaternion_to_matrix,
)
from dlc_ros.pointcloud2 import DecodedCloud, pack_xyzi  # noqa: E402

FRAMES = 3


@pytest.fixture(scope="module")
def seq10(shared_data: Path) -> Path:
    path = shared_data / "kitti_mini" / "sequences" / "10"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def converted(request, seq10: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp(request.param) / "seq10"
    return out, convert_sequence(seq10, out, storage=request.param, max_frames=FRAMES)


def kitti_velo_poses(seq: Path) -> np.ndarray:
    """T_velo_i = inv(Tr) @ P_i @ Tr from the raw files, written independently of bag_io."""
    rows = np.loadtxt(seq / "poses.txt").reshape(-1, 3, 4)
    poses = np.concatenate([rows, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(rows), 1, 1))], axis=1)
    tr_line = next(line for line in (seq / "calib.txt").read_text().splitlines() if line.startswith("Tr:"))
    tr = np.vstack([np.array(tr_line.split()[1:], dtype=float).reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    return np.linalg.inv(tr) @ poses @ tr


def write_raw_bag(path: Path, messages: list[tuple[str, str, bytes]]) -> None:
    """A bag holding exactly the given (topic, type, raw CDR bytes), one per millisecond."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections: dict[str, object] = {}
        for i, (topic, msgtype, raw) in enumerate(messages):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=_typestore())
            writer.write(connections[topic], (i + 1) * 1_000_000, raw)


def cloud_bytes(n: int, stamp_ns: int, seed: int = 0) -> bytes:
    points = np.random.default_rng(seed).standard_normal((n, 3))
    return _typestore().serialize_cdr(cloud_message(pack_xyzi(points), stamp_ns, "velodyne"), POINTCLOUD2)


def test_converted_bag_reads_back_exactly(converted, seq10: Path):
    out, summary = converted
    assert (out / "metadata.yaml").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging folder left behind"
    assert summary["frames"] == FRAMES and summary["ground_truth"] is True
    assert summary["topics"] == {"/velodyne_points": POINTCLOUD2, GT_TOPIC: ODOMETRY}

    times = np.loadtxt(seq10 / "times.txt")[:FRAMES]
    expected_stamps = [KITTI_EPOCH_S * 10**9 + round(t * 1e9) for t in times]
    with Reader(out) as reader:  # rosbags' own reader, independent of open_bag
        assert reader.message_count == 2 * FRAMES
        assert {c.topic: c.msgtype for c in reader.connections} == summary["topics"]
        raw_stamps = [t for c, t, _ in reader.messages() if c.topic == "/velodyne_points"]
    assert raw_stamps == expected_stamps

    with open_bag(out) as bag:
        topic = pointcloud_topic(bag)
        assert topic == "/velodyne_points" and bag.count(topic) == FRAMES
        entries = list(iter_clouds(bag, topic))
        gt_stamps, gt_poses = ground_truth(bag)
    assert [stamp for stamp, _ in entries] == expected_stamps
    assert np.all(np.diff(expected_stamps) > 0)
    for i, (_, cloud) in enumerate(entries):
        scan = np.fromfile(seq10 / "velodyne" / f"{i:06d}.bin", dtype=np.float32).reshape(-1, 4)
        assert isinstance(cloud, DecodedCloud) and cloud.dropped_nonfinite == 0
        assert np.array_equal(cloud.points, scan[:, :3].astype(np.float64))
        assert np.array_equal(cloud.intensity, scan[:, 3].astype(np.float64))

    velo = kitti_velo_poses(seq10)
    assert gt_stamps.tolist() == expected_stamps
    np.testing.assert_allclose(gt_poses[0], np.eye(4), atol=1e-9)
    np.testing.assert_allclose(gt_poses[2], np.linalg.inv(velo[0]) @ velo[2], atol=1e-6)


def test_mcap_file_carries_ros2_schemas(seq10: Path, tmp_path: Path):
    mcap_reader = pytest.importorskip("mcap.reader", reason="mcap not installed")
    out = tmp_path / "bag"
    summary = convert_sequence(seq10, out, storage="mcap", max_frames=1)
    with open(out / f"{out.name}.mcap", "rb") as f:
        mcap_summary = mcap_reader.make_reader(f).get_summary()
    assert {c.message_encoding for c in mcap_summary.channels.values()} == {"cdr"}
    assert {s.encoding for s in mcap_summary.schemas.values()} == {"ros2msg"}
    assert {s.name for s in mcap_summary.schemas.values()} == set(summary["topics"].values())


@pytest.mark.parametrize("angle", [0.0, 0.3, np.pi / 2, np.pi - 1e-9, np.pi])
def test_quaternion_round_trip(angle: float):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
    q = matrix_to_quaternion(rotation)
    assert q[3] >= 0 and np.isclose(np.linalg.norm(q), 1.0)
    np.testing.assert_allclose(quaternion_to_matrix(*q), rotation, atol=1e-12)
    with pytest.raises(InputError, match="cannot be normalised"):
        quaternion_to_matrix(0.0, 0.0, 0.0, 0.0)


def test_existing_output_is_refused(converted, seq10: Path):
    out, _ = converted
    with pytest.raises(InputError, match="already exists"):
        convert_sequence(seq10, out, max_frames=1)


def test_interrupted_conversion_leaves_no_bag(seq10: Path, tmp_path: Path):
    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_sequence(seq10, tmp_path / "bag", max_frames=FRAMES, on_frame=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_no_poses_writes_no_ground_truth(seq10: Path, tmp_path: Path):
    summary = convert_sequence(seq10, tmp_path / "bag", poses_name=None, max_frames=1, storage="sqlite3")
    assert summary["topics"] == {"/velodyne_points": POINTCLOUD2} and summary["ground_truth"] is False
    with open_bag(tmp_path / "bag") as bag:
        assert ground_truth(bag) is None


def fake_sequence(root: Path, seq10: Path, frames: int = 2) -> Path:
    """A writable copy of the first frames of sequence 10, to break one file at a time."""
    (root / "velodyne").mkdir(parents=True)
    for i in range(frames):
        shutil.copy(seq10 / "velodyne" / f"{i:06d}.bin", root / "velodyne")
    for name in ("times.txt", "poses.txt", "calib.txt"):
        shutil.copy(seq10 / name, root / name)
    return root


def test_bin_size_not_multiple_of_16_is_refused(seq10: Path, tmp_path: Path):
    seq = fake_sequence(tmp_path / "seq", seq10)
    (seq / "velodyne" / "000001.bin").write_bytes(b"\0" * 20)
    with pytest.raises(InputError, match=r"000001\.bin is 20 bytes, not a multiple of 16"):
        convert_sequence(seq, tmp_path / "bag")
    assert not (tmp_path / "bag").exists()


def test_missing_times_is_refused(seq10: Path, tmp_path: Path):
    seq = fake_sequence(tmp_path / "seq", seq10)
    (seq / "times.txt").unlink()
    with pytest.raises(InputError, match=r"times\.txt: file not found"):
        convert_sequence(seq, tmp_path / "bag")


def test_pose_file_shorter_than_scans_is_refused(seq10: Path, tmp_path: Path):
    seq = fake_sequence(tmp_path / "seq", seq10)
    (seq / "poses.txt").write_text((seq10 / "poses.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(InputError, match=r"poses\.txt has 1 pose lines but there are 2 scans"):
        convert_sequence(seq, tmp_path / "bag")
    assert list(tmp_path.iterdir()) == [seq]


def test_two_pointcloud_topics_are_listed(tmp_path: Path):
    clouds = [("/front", POINTCLOUD2, cloud_bytes(5, 1)), ("/rear", POINTCLOUD2, cloud_bytes(5, 2))]
    write_raw_bag(tmp_path / "bag", clouds)
    with open_bag(tmp_path / "bag") as bag:
        with pytest.raises(InputError, match=r"several .*PointCloud2 topics \(/front, /rear\); choose one \(--topic\)"):
            pointcloud_topic(bag)
        assert pointcloud_topic(bag, "/rear") == "/rear"


def test_bag_without_pointcloud_lists_its_topics(tmp_path: Path):
    store = _typestore()
    status = store.serialize_cdr(store.types["std_msgs/msg/String"](data="hello"), "std_msgs/msg/String")
    write_raw_bag(tmp_path / "bag", [("/status", "std_msgs/msg/String", status)])
    with open_bag(tmp_path / "bag") as bag:
        with pytest.raises(InputError, match=r"no sensor_msgs/msg/PointCloud2 topic; the bag has /status \(std_msgs"):
            pointcloud_topic(bag)
        with pytest.raises(InputError, match="'/status' is not a sensor_msgs/msg/PointCloud2 topic"):
            pointcloud_topic(bag, "/status")


def test_bad_messages_are_reported_and_skipped(tmp_path: Path):
    store = _typestore()
    good = cloud_bytes(50, 10)
    undecodable = store.deserialize_cdr(cloud_bytes(4, 30), POINTCLOUD2)
    undecodable.point_step = 0
    write_raw_bag(
        tmp_path / "bag",
        [
            ("/velodyne_points", POINTCLOUD2, good),
            ("/velodyne_points", POINTCLOUD2, good[: len(good) // 3]),  # truncated CDR
            ("/velodyne_points", POINTCLOUD2, store.serialize_cdr(undecodable, POINTCLOUD2)),
            ("/velodyne_points", POINTCLOUD2, cloud_bytes(60, 40, seed=1)),
        ],
    )
    with open_bag(tmp_path / "bag") as bag:
        entries = list(iter_clouds(bag, pointcloud_topic(bag)))
    assert [stamp for stamp, _ in entries] == [10, 2_000_000, 30, 40]
    assert isinstance(entries[0][1], DecodedCloud) and len(entries[0][1].points) == 50
    assert isinstance(entries[1][1], str) and "cannot deserialise" in entries[1][1]
    assert isinstance(entries[2][1], str) and "point_step is 0" in entries[2][1]
    assert isinstance(entries[3][1], DecodedCloud) and len(entries[3][1].points) == 60


def test_unreadable_bag_paths_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError, match="bag not found"):
        open_bag(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a readable bag"):
        open_bag(tmp_path / "empty")


def cdr_padding(msg) -> set[int]:
    """Byte positions of CDR alignment padding in a serialised PointCloud2 (after the 4-byte encapsulation)."""
    pads: set[int] = set()
    pos = 0

    def u32() -> None:
        nonlocal pos
        while pos % 4:
            pads.add(pos + 4)
            pos += 1
        pos += 4

    def string(text: str) -> None:
        nonlocal pos
        u32()
        pos += len(text.encode()) + 1

    for _ in range(2):  # stamp.sec, stamp.nanosec
        u32()
    string(msg.header.frame_id)
    for _ in range(3):  # height, width, len(fields)
        u32()
    for field in msg.fields:
        string(field.name)
        u32()  # offset
        pos += 1  # datatype
        u32()  # count
    pos += 1  # is_bigendian
    for _ in range(3):  # point_step, row_step, len(data)
        u32()
    return pads


def test_rclpy_and_rosbags_serialise_the_same_bytes():
    serialization = pytest.importorskip("rclpy.serialization", reason="rclpy not installed")
    from sensor_msgs.msg import PointCloud2

    from dlc_ros.pointcloud2 import xyz_to_cloud

    rng = np.random.default_rng(7)
    points, intensity = rng.standard_normal((300, 3)), rng.random(300)
    stamp = KITTI_EPOCH_S * 10**9 + 103_872_500
    rclpy_msg = xyz_to_cloud(points, intensity, frame_id="velodyne", stamp=stamp)
    rclpy_bytes = serialization.serialize_message(rclpy_msg)
    rosbags_msg = cloud_message(pack_xyzi(points, intensity), stamp, "velodyne")
    rosbags_bytes = bytes(_typestore().serialize_cdr(rosbags_msg, POINTCLOUD2))

    # Fast-CDR leaves alignment padding uninitialised, so those bytes are compared nowhere; every other byte must match.
    assert len(rclpy_bytes) == len(rosbags_bytes)
    pads = cdr_padding(rclpy_msg)
    differing = {i for i, (a, b) in enumerate(zip(rclpy_bytes, rosbags_bytes)) if a != b}
    assert differing <= pads
    assert all(rosbags_bytes[i] == 0 for i in pads)
    assert serialization.deserialize_message(rosbags_bytes, PointCloud2) == rclpy_msg
