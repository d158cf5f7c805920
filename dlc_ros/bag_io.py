"""KITTI odometry sequence -> ROS 2 bag, and point clouds / ground truth back out of a bag, with rosbags.

No DDS and no ROS install are needed: rosbags writes rosbag2 (metadata.yaml + one .mcap or .db3 file, format
version 9) that ``ros2 bag info/play`` read, and reads rosbag2 and ROS 1 bags. Clouds read from a bag go through
the same ``decode_cloud`` as the live node, so offline evaluation and the node see identical points.

Time stamps: KITTI ``times.txt`` counts seconds from the start of each recording, but ROS tools treat a stamp
near 0 as unset, so ``KITTI_EPOCH_S`` (1,317,000,000 s = 2011-09-26, the days KITTI was recorded) is added;
scan i is stamped ``epoch_offset_s * 1e9 + round(times[i] * 1e9)`` ns, in both the header and the bag.
Ground truth is the Velodyne pose of each scan relative to the first one written,
``inv(T_velo_0) @ T_velo_i`` with ``T_velo_i = inv(Tr) @ P_i @ Tr`` (kitti_mini README, "Pose convention").
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dlc_core.data.kitti import KittiSequence
from dlc_core.errors import InputError
from dlc_ros.pointcloud2 import (
    DEFAULT_MAX_POINTS,
    FLOAT32,
    DecodedCloud,
    PackedCloud,
    PointCloudError,
    decode_cloud,
    pack_xyzi,
    split_stamp,
)

KITTI_EPOCH_S = 1_317_000_000
CLOUD_TOPIC = "/velodyne_points"
GT_TOPIC = "/ground_truth/odometry"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
ODOMETRY = "nav_msgs/msg/Odometry"
STORAGES = ("mcap", "sqlite3")


@functools.lru_cache(maxsize=1)
def _typestore() -> Any:
    """The ROS 2 Kilted message definitions that rosbags serialises with (built once)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


# ---------------------------------------------------------------- KITTI files


def _stamps_ns(seq: KittiSequence, frames: int, epoch_offset_s: int) -> np.ndarray:
    """Integer nanosecond stamps of the first `frames` scans from times.txt, refused unless strictly increasing."""
    times_path = seq.folder / "times.txt"
    if seq.times is None:
        raise InputError(f"{times_path}: file not found (the bag's stamps come from it)")
    stamps = int(epoch_offset_s) * 1_000_000_000 + np.round(seq.times[:frames] * 1e9).astype(np.int64)
    if np.any(np.diff(stamps) <= 0):
        raise InputError(f"{times_path}: times must be strictly increasing")
    return stamps


# ---------------------------------------------------------------- messages


def _header(stamp_ns: int, frame_id: str) -> Any:
    """A rosbags std_msgs/Header."""
    types = _typestore().types
    sec, nanosec = split_stamp(stamp_ns)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def cloud_message(packed: PackedCloud, stamp_ns: int, frame_id: str) -> Any:
    """A rosbags sensor_msgs/PointCloud2 with exactly the layout `xyz_to_cloud` gives an rclpy message."""
    types = _typestore().types
    field = types["sensor_msgs/msg/PointField"]
    return types[POINTCLOUD2](
        header=_header(stamp_ns, frame_id),
        height=1,
        width=packed.width,
        fields=[field(name=name, offset=offset, datatype=FLOAT32, count=1) for name, offset in packed.fields],
        is_bigendian=False,
        point_step=packed.point_step,
        row_step=packed.point_step * packed.width,
        data=np.frombuffer(packed.data, dtype=np.uint8),
        is_dense=packed.is_dense,
    )


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(x, y, z, w) of the rotation nearest a 3x3 matrix (Bar-Itzhack's eigenvector method), with w >= 0."""
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = rotation
    k = np.array(
        [
            [m00 - m11 - m22, m01 + m10, m02 + m20, m21 - m12],
            [m01 + m10, m11 - m00 - m22, m12 + m21, m02 - m20],
            [m02 + m20, m12 + m21, m22 - m00 - m11, m10 - m01],
            [m21 - m12, m02 - m20, m10 - m01, m00 + m11 + m22],
        ]
    )
    quaternion = np.linalg.eigh(k)[1][:, -1]
    return quaternion if quaternion[3] >= 0 else -quaternion


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """The 3x3 rotation of a quaternion (normalised first); a zero quaternion is refused."""
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"orientation quaternion ({x}, {y}, {z}, {w}) cannot be normalised")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _odometry_message(pose: np.ndarray, stamp_ns: int, child_frame_id: str) -> Any:
    """A rosbags nav_msgs/Odometry holding a 4x4 pose in frame "odom" (zero twist, zero covariances)."""
    types = _typestore().types
    zero = types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    qx, qy, qz, qw = matrix_to_quaternion(pose[:3, :3])
    px, py, pz = pose[:3, 3]
    return types[ODOMETRY](
        header=_header(stamp_ns, "odom"),
        child_frame_id=child_frame_id,
        pose=types["geometry_msgs/msg/PoseWithCovariance"](
            pose=types["geometry_msgs/msg/Pose"](
                position=types["geometry_msgs/msg/Point"](x=px, y=py, z=pz),
                orientation=types["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
            ),
            covariance=np.zeros(36),
        ),
        twist=types["geometry_msgs/msg/TwistWithCovariance"](
            twist=types["geometry_msgs/msg/Twist"](linear=zero, angular=zero),
            covariance=np.zeros(36),
        ),
    )


def _pose_matrix(pose: Any) -> np.ndarray:
    """The 4x4 matrix of a deserialised geometry_msgs/Pose."""
    q, p = pose.orientation, pose.position
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(q.x, q.y, q.z, q.w)
    matrix[:3, 3] = (p.x, p.y, p.z)
    return matrix


def _stamp_ns(header: Any) -> int:
    """Nanoseconds of a deserialised header's stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# ---------------------------------------------------------------- writing


def _storage_plugin(storage: str) -> Any:
    """rosbags' StoragePlugin for "mcap" or "sqlite3"."""
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise InputError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


def _write_bag(
    path: Path,
    storage: str,
    seq: KittiSequence,
    stamps: np.ndarray,
    gt: np.ndarray | None,
    topics: tuple[str, str, str],
    on_frame: Callable[[int, int], None] | None,
) -> int:
    """Write every scan (and its ground-truth pose) into a new bag at `path`; returns the total point count."""
    from rosbags.rosbag2 import Writer

    store = _typestore()
    topic, frame_id, gt_topic = topics
    points = 0
    with Writer(path, version=9, storage_plugin=_storage_plugin(storage)) as writer:
        clouds = writer.add_connection(topic, POINTCLOUD2, typestore=store)
        odometry = writer.add_connection(gt_topic, ODOMETRY, typestore=store) if gt is not None else None
        for i, stamp in enumerate(stamps.tolist()):
            scan = seq.scan(i)
            message = cloud_message(pack_xyzi(scan[:, :3], scan[:, 3]), stamp, frame_id)
            writer.write(clouds, stamp, store.serialize_cdr(message, POINTCLOUD2))
            if odometry is not None:
                writer.write(odometry, stamp, store.serialize_cdr(_odometry_message(gt[i], stamp, frame_id), ODOMETRY))
            points += len(scan)
            if on_frame is not None:
                on_frame(i + 1, len(stamps))
    return points


def convert_sequence(
    seq_dir: str | os.PathLike,
    out: str | os.PathLike,
    storage: str = "mcap",
    poses_name: str | None = "poses.txt",
    topic: str = CLOUD_TOPIC,
    frame_id: str = "velodyne",
    gt_topic: str = GT_TOPIC,
    max_frames: int | None = None,
    epoch_offset_s: int = KITTI_EPOCH_S,
    on_frame: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a KITTI sequence folder as a new ROS 2 bag at `out` (PointCloud2 scans + Odometry ground truth).

    Ground truth comes from <seq_dir>/<poses_name> with the Tr of <seq_dir>/calib.txt when that file exists
    (None: no ground truth). The bag is written in a hidden folder beside `out` and renamed at the end, so an
    interrupted run never leaves a complete-looking bag.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise InputError(f"{out}: already exists; choose a new output path")
    if poses_name is not None and topic == gt_topic:
        raise InputError(f"the point-cloud and ground-truth topics must differ, both are {topic}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1, got {max_frames}")
    _storage_plugin(storage)
    seq = KittiSequence.open_folder(seq_dir, poses_name or "poses.txt")
    frames = len(seq) if max_frames is None else min(max_frames, len(seq))
    stamps = _stamps_ns(seq, frames, epoch_offset_s)
    warnings = [f"frame {f} is missing from {seq_dir}/velodyne" for f in seq.missing_frames()]
    gt = None
    if poses_name is not None and seq.poses is not None:
        gt = np.linalg.inv(seq.poses[0]) @ seq.poses[:frames]
    elif poses_name is not None:
        warnings.append(f"{Path(seq_dir) / poses_name}: not found; the bag has no ground truth")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise InputError(f"{out.parent}: cannot write the bag here ({err.strerror})") from None
    try:
        points = _write_bag(staging / out.name, storage, seq, stamps, gt, (topic, frame_id, gt_topic), on_frame)
        os.rename(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "bag": str(out),
        "storage": storage,
        "frames": frames,
        "points": points,
        "topics": {topic: POINTCLOUD2, **({gt_topic: ODOMETRY} if gt is not None else {})},
        "start_ns": int(stamps[0]),
        "end_ns": int(stamps[-1]),
        "epoch_offset_s": int(epoch_offset_s),
        "ground_truth": gt is not None,
        "warnings": warnings,
    }


# ---------------------------------------------------------------- reading


class BagReader:
    """An open bag (rosbags' AnyReader: a rosbag2 folder; ROS 1 .bag files open too but are untested here)."""

    def __init__(self, path: Path) -> None:
        """Open `path` with rosbags' AnyReader; a missing or unreadable bag is an InputError."""
        from rosbags.highlevel import AnyReader, AnyReaderError

        self.path = path
        if not path.exists():
            raise InputError(f"{path}: bag not found")
        try:
            self._reader = AnyReader([path], default_typestore=_typestore())
            self._reader.open()
        except (AnyReaderError, OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable bag ({err})") from None

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the bag's files."""
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type, sorted by name."""
        return {c.topic: c.msgtype for c in sorted(self._reader.connections, key=lambda c: c.topic)}

    def count(self, topic: str) -> int:
        """How many messages the bag holds on `topic` (for progress bars)."""
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def messages(self, topic: str) -> Iterator[tuple[int, bytes, Any]]:
        """(bag time ns, raw bytes, connection) of every message on `topic`, in bag time order."""
        connections = [c for c in self._reader.connections if c.topic == topic]
        for connection, stamp, raw in self._reader.messages(connections=connections):
            yield stamp, raw, connection

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """A message object from its serialised bytes, with the bag's own definitions."""
        return self._reader.deserialize(raw, msgtype)


def open_bag(path: str | os.PathLike) -> BagReader:
    """Open a bag for reading; use it as a context manager (`with open_bag(p) as bag:`)."""
    return BagReader(Path(path))


def _describe(topics: dict[str, str]) -> str:
    """"name (type), ..." for error messages."""
    return ", ".join(f"{name} ({kind})" for name, kind in topics.items()) or "no topics"


def pointcloud_topic(bag: BagReader, topic: str | None = None) -> str:
    """The PointCloud2 topic to read: `topic` checked, or the only PointCloud2 topic of the bag."""
    topics = bag.topics
    if topic is not None:
        if topics.get(topic) != POINTCLOUD2:
            raise InputError(
                f"{bag.path}: topic {topic!r} is not a {POINTCLOUD2} topic; the bag has {_describe(topics)}"
            )
        return topic
    clouds = [name for name, kind in topics.items() if kind == POINTCLOUD2]
    if not clouds:
        raise InputError(f"{bag.path}: no {POINTCLOUD2} topic; the bag has {_describe(topics)}")
    if len(clouds) > 1:
        raise InputError(f"{bag.path}: several {POINTCLOUD2} topics ({', '.join(clouds)}); choose one (--topic)")
    return clouds[0]


def iter_clouds(
    bag: BagReader, topic: str, max_points: int = DEFAULT_MAX_POINTS
) -> Iterator[tuple[int, DecodedCloud | str]]:
    """(stamp ns, decoded cloud) per message on `topic` in bag order, or (bag time ns, error text) for a bad one.

    The stamp is the header's; a message that cannot be deserialised has none, so its bag time is given. One bad
    message never ends the iteration: the caller counts and skips the error entries.
    """
    for bag_ns, raw, connection in bag.messages(topic):
        try:
            message = bag.deserialize(raw, connection.msgtype)
            stamp = _stamp_ns(message.header)
        except Exception as err:  # noqa: BLE001  (rosbags raises many types on hostile bytes; each is one bad message)
            yield bag_ns, f"message at {bag_ns} ns: cannot deserialise ({type(err).__name__}: {err})"
            continue
        try:
            yield stamp, decode_cloud(message, max_points=max_points)
        except PointCloudError as err:
            yield stamp, f"message at {bag_ns} ns: {err}"


def ground_truth(bag: BagReader, topic: str = GT_TOPIC) -> tuple[np.ndarray, np.ndarray] | None:
    """(stamps ns (M,) int64, poses (M, 4, 4)) from the bag's Odometry topic, or None when the bag has none."""
    kind = bag.topics.get(topic)
    if kind is None:
        return None
    if kind != ODOMETRY:
        raise InputError(f"{bag.path}: ground-truth topic {topic} is {kind}, not {ODOMETRY}")
    stamps, poses = [], []
    for bag_ns, raw, connection in bag.messages(topic):
        try:
            message = bag.deserialize(raw, connection.msgtype)
            stamps.append(_stamp_ns(message.header))
            poses.append(_pose_matrix(message.pose.pose))
        except Exception as err:  # noqa: BLE001  (as in iter_clouds: any failure is this one message)
            raise InputError(f"{bag.path}: {topic} message at {bag_ns} ns is not a usable Odometry ({err})") from None
    return np.array(stamps, dtype=np.int64), np.array(poses).reshape(-1, 4, 4)


def convert_command(args: Any) -> int:
    """Entry point of ``dlc bag convert``: prints the summary, warnings on stderr."""
    import sys

    summary = convert_sequence(args.seq_dir, args.out, storage=args.format, poses_name=args.poses_name,
                               max_frames=args.max_frames)  # fmt: skip
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    gt = "with ground truth on " + GT_TOPIC if summary["ground_truth"] else "without ground truth"
    print(f"wrote {summary['bag']} ({summary['storage']}): {summary['frames']} scans on {CLOUD_TOPIC}, {gt}")
    return 0
