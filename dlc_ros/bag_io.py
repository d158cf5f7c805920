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


def _read_rows(path: Path, per_line: int) -> np.ndarray:
    """A text file of `per_line` numbers per non-blank line as (L, per_line) float64; errors name the file and line."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise InputError(f"{path}: line {number} is not {per_line} numbers: {line.strip()[:60]!r}") from None
        if len(values) != per_line or not np.all(np.isfinite(values)):
            raise InputError(f"{path}: line {number} must hold {per_line} finite numbers, got {len(values)}")
        rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(-1, per_line)


def _homogeneous(rows: np.ndarray) -> np.ndarray:
    """(L, 12) rows of 3x4 row-major matrices -> (L, 4, 4)."""
    matrices = np.tile(np.eye(4), (len(rows), 1, 1))
    matrices[:, :3, :] = rows.reshape(-1, 3, 4)
    return matrices


def _read_tr(calib: Path) -> np.ndarray:
    """The Velodyne -> camera-0 transform (4x4) from the `Tr:` line of a KITTI calib.txt."""
    if not calib.is_file():
        raise InputError(f"{calib}: file not found (the poses need its Tr line; pass a calib file or no poses)")
    for line in calib.read_text().splitlines():
        if line.startswith("Tr:"):
            try:
                values = np.array([float(v) for v in line[3:].split()])
            except ValueError:
                values = np.array([])
            if values.size != 12 or not np.all(np.isfinite(values)):
                raise InputError(f"{calib}: the Tr line must hold 12 finite numbers")
            return _homogeneous(values[None])[0]
    raise InputError(f"{calib}: no 'Tr:' line")


def _scan_paths(seq_dir: Path) -> list[Path]:
    """The sequence's velodyne/*.bin in sorted order, each checked to be whole float32 x, y, z, reflectance rows."""
    scans = sorted((seq_dir / "velodyne").glob("*.bin"))
    if not scans:
        raise InputError(f"{seq_dir / 'velodyne'}: no .bin scans found")
    for scan in scans:
        size = scan.stat().st_size
        if size % 16:
            raise InputError(f"{scan}: size {size} bytes is not a multiple of 16 (float32 x, y, z, reflectance)")
    return scans


def _stamps_ns(times_path: Path, frames: int, epoch_offset_s: int) -> np.ndarray:
    """Integer nanosecond stamps of the first `frames` scans from times.txt, refused unless strictly increasing."""
    times = _read_rows(times_path, 1)[:, 0]
    if len(times) < frames:
        raise InputError(f"{times_path}: {len(times)} lines for {frames} scans")
    stamps = int(epoch_offset_s) * 1_000_000_000 + np.round(times[:frames] * 1e9).astype(np.int64)
    if np.any(np.diff(stamps) <= 0):
        raise InputError(f"{times_path}: times must be strictly increasing")
    return stamps


def _velo_poses(rows: np.ndarray, poses_path: Path, calib_path: Path, frames: int) -> np.ndarray:
    """(frames, 4, 4) Velodyne poses relative to the first scan, from KITTI camera-0 pose rows and calib Tr."""
    if len(rows) < frames:
        raise InputError(f"{poses_path}: {len(rows)} poses for {frames} scans")
    tr = _read_tr(calib_path)
    velo = np.linalg.inv(tr) @ _homogeneous(rows[:frames]) @ tr
    return np.linalg.inv(velo[0]) @ velo


def _resolve_poses(seq_dir: Path, poses: str | os.PathLike | None) -> Path | None:
    """The pose file to use: "auto" = <seq_dir>/poses.txt when present, None = none, else the path given."""
    if poses is None:
        return None
    if str(poses) == "auto":
        found = seq_dir / "poses.txt"
        return found if found.is_file() else None
    return Path(poses)


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
    scans: list[Path],
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
        for i, (scan_path, stamp) in enumerate(zip(scans, stamps.tolist())):
            scan = np.fromfile(scan_path, dtype="<f4").reshape(-1, 4)
            message = cloud_message(pack_xyzi(scan[:, :3], scan[:, 3]), stamp, frame_id)
            writer.write(clouds, stamp, store.serialize_cdr(message, POINTCLOUD2))
            if odometry is not None:
                writer.write(odometry, stamp, store.serialize_cdr(_odometry_message(gt[i], stamp, frame_id), ODOMETRY))
            points += len(scan)
            if on_frame is not None:
                on_frame(i + 1, len(scans))
    return points


def convert_sequence(
    seq_dir: str | os.PathLike,
    out: str | os.PathLike,
    storage: str = "mcap",
    poses: str | os.PathLike | None = "auto",
    calib: str | os.PathLike | None = None,
    topic: str = CLOUD_TOPIC,
    frame_id: str = "velodyne",
    gt_topic: str = GT_TOPIC,
    max_frames: int | None = None,
    epoch_offset_s: int = KITTI_EPOCH_S,
    on_frame: Callable[[int, int], None] | None = None,
) -> dict:
    """Write a KITTI sequence folder as a new ROS 2 bag at `out` (PointCloud2 scans + Odometry ground truth).

    `poses`: "auto" uses <seq_dir>/poses.txt when it exists, None writes no ground truth, a path must exist;
    `calib` defaults to <seq_dir>/calib.txt (needed for its Tr when there are poses). The bag is written in a
    hidden folder beside `out` and renamed at the end, so an interrupted run never leaves a complete-looking bag.
    """
    seq_dir, out = Path(seq_dir), Path(out)
    if out.exists() or out.is_symlink():
        raise InputError(f"{out}: already exists; choose a new output path")
    if not seq_dir.is_dir():
        raise InputError(f"{seq_dir}: not a KITTI sequence folder")
    if poses is not None and topic == gt_topic:
        raise InputError(f"the point-cloud and ground-truth topics must differ, both are {topic}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1, got {max_frames}")
    _storage_plugin(storage)
    all_scans = _scan_paths(seq_dir)
    scans = all_scans[:max_frames] if max_frames is not None else all_scans
    stamps = _stamps_ns(seq_dir / "times.txt", len(scans), epoch_offset_s)
    poses_path = _resolve_poses(seq_dir, poses)
    calib_path = Path(calib) if calib is not None else seq_dir / "calib.txt"
    gt, warnings = None, []
    if poses_path is not None:
        rows = _read_rows(poses_path, 12)
        gt = _velo_poses(rows, poses_path, calib_path, len(scans))
        if len(rows) > len(all_scans):
            warnings.append(f"{poses_path}: {len(rows)} poses for {len(all_scans)} scans; used the first lines")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise InputError(f"{out.parent}: cannot write the bag here ({err.strerror})") from None
    try:
        points = _write_bag(staging / out.name, storage, scans, stamps, gt, (topic, frame_id, gt_topic), on_frame)
        os.rename(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "bag": str(out),
        "storage": storage,
        "frames": len(scans),
        "points": points,
        "topics": {topic: POINTCLOUD2, **({gt_topic: ODOMETRY} if gt is not None else {})},
        "start_ns": int(stamps[0]),
        "end_ns": int(stamps[-1]),
        "epoch_offset_s": int(epoch_offset_s),
        "poses": str(poses_path) if gt is not None else None,
        "calib": str(calib_path) if gt is not None else None,
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
