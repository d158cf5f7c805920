"""sensor_msgs/PointCloud2 <-> numpy without sensor_msgs_py (not available as a wheel, DESIGN.md §5).

The decoder reads any object with the PointCloud2 attribute names (rclpy messages, rosbags messages), because
the live node and the offline bag evaluator must decode clouds the same way. Clouds arrive from the network, so
every header field is checked against the data before a single point is read: a bad cloud is refused with a
one-line ``PointCloudError`` and never allocates more than ``max_points`` points. ``is_dense`` is not trusted:
non-finite rows are always dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dlc_core.errors import InputError

DEFAULT_MAX_POINTS = 2_000_000
FLOAT32 = 7
FLOAT64 = 8
# sensor_msgs/PointField datatype codes -> numpy scalar kinds (byte order is added per cloud).
DATATYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", FLOAT32: "f4", FLOAT64: "f8"}
XYZI_LAYOUT = (("x", 0), ("y", 4), ("z", 8), ("intensity", 12))  # what xyz_to_cloud writes, all FLOAT32


class PointCloudError(InputError):
    """A PointCloud2 that cannot be decoded safely; the message names the offending field or size."""


@dataclass(frozen=True)
class DecodedCloud:
    """A cloud's finite points (N, 3) float64, their intensity (N,) float64 or None, and the rows dropped."""

    points: np.ndarray
    intensity: np.ndarray | None
    dropped_nonfinite: int


@dataclass(frozen=True)
class _Field:
    """One PointField as read from the message: what the layout checks need."""

    name: str
    offset: int
    datatype: int
    count: int


@dataclass(frozen=True)
class PackedCloud:
    """A dense little-endian FLOAT32 x, y, z[, intensity] layout and its bytes, ready for any PointCloud2 class."""

    fields: tuple[tuple[str, int], ...]
    point_step: int
    width: int
    data: bytes
    is_dense: bool


def _uint(msg: Any, name: str) -> int:
    """Read an unsigned integer header attribute, refusing anything else (the sender is untrusted)."""
    value = getattr(msg, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise PointCloudError(f"PointCloud2: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _read_fields(msg: Any, point_step: int) -> dict[str, _Field]:
    """Read and check the PointField list: unique names, known datatypes, every field inside point_step."""
    declared = getattr(msg, "fields", None)
    if not isinstance(declared, (list, tuple)):
        raise PointCloudError(f"PointCloud2: fields must be a list, got {type(declared).__name__}")
    fields: dict[str, _Field] = {}
    for raw in declared:
        name = getattr(raw, "name", None)
        if not isinstance(name, str):
            raise PointCloudError(f"PointCloud2: a field name must be a string, got {name!r}")
        field = _Field(name, _uint(raw, "offset"), _uint(raw, "datatype"), _uint(raw, "count"))
        if field.name in fields:
            raise PointCloudError(f"PointCloud2: duplicate field name {field.name!r}")
        if field.datatype not in DATATYPES:
            raise PointCloudError(f"PointCloud2: field {field.name!r} has unknown datatype {field.datatype}")
        size = np.dtype(DATATYPES[field.datatype]).itemsize * field.count
        if field.offset + size > point_step:
            raise PointCloudError(
                f"PointCloud2: field {field.name!r} (offset {field.offset}, {size} bytes) "
                f"ends past point_step {point_step}"
            )
        fields[field.name] = field
    return fields


def _require(fields: dict[str, _Field], name: str, datatypes: Sequence[int]) -> _Field:
    """The field `name`, checked to exist, to hold at least one element and to have an allowed datatype."""
    if name not in fields:
        raise PointCloudError(f"PointCloud2: missing field {name!r} (has: {', '.join(map(repr, fields)) or 'none'})")
    field = fields[name]
    if field.datatype not in datatypes:
        allowed = "/".join(DATATYPES[d] for d in datatypes)
        raise PointCloudError(
            f"PointCloud2: field {name!r} has datatype {DATATYPES[field.datatype]} ({field.datatype}); "
            f"expected {allowed}"
        )
    if field.count < 1:
        raise PointCloudError(f"PointCloud2: field {name!r} has count 0")
    return field


def _data_bytes(msg: Any) -> np.ndarray:
    """The message's data as a flat uint8 view without copying (bytes, array.array or numpy all work)."""
    try:
        return np.frombuffer(msg.data, dtype=np.uint8)
    except (AttributeError, TypeError, ValueError) as err:
        raise PointCloudError(f"PointCloud2: data is not a contiguous byte buffer ({err})") from None


def _structured_view(msg: Any, used: Sequence[_Field], point_step: int) -> np.ndarray:
    """A zero-copy (height, width) structured view of the data: numpy field f<k> is used[k]."""
    height, width, row_step = _uint(msg, "height"), _uint(msg, "width"), _uint(msg, "row_step")
    if row_step < width * point_step:
        raise PointCloudError(f"PointCloud2: row_step {row_step} < width {width} * point_step {point_step}")
    data = _data_bytes(msg)
    if data.nbytes < height * row_step:
        raise PointCloudError(
            f"PointCloud2: data has {data.nbytes} bytes, fewer than height {height} * row_step {row_step}"
        )
    order = ">" if bool(getattr(msg, "is_bigendian", False)) else "<"
    dtype = np.dtype(
        {
            "names": [f"f{k}" for k in range(len(used))],
            "formats": [order + DATATYPES[f.datatype] for f in used],
            "offsets": [f.offset for f in used],
            "itemsize": point_step,
        }
    )
    if height * width == 0:
        return np.empty((height, width), dtype=dtype)
    return np.ndarray((height, width), dtype=dtype, buffer=data, strides=(row_step, point_step))


def decode_cloud(
    msg: Any,
    fields: Sequence[str] = ("x", "y", "z"),
    intensity: str | None = "intensity",
    max_points: int = DEFAULT_MAX_POINTS,
) -> DecodedCloud:
    """Decode the finite points (and `intensity` if the cloud has that field) of any PointCloud2-like object."""
    if len(fields) != 3:
        raise ValueError(f"fields must name x, y and z, got {fields!r}")
    height, width, point_step = _uint(msg, "height"), _uint(msg, "width"), _uint(msg, "point_step")
    if height * width > max_points:
        raise PointCloudError(f"PointCloud2: {height} x {width} points exceed max_points {max_points}")
    if point_step == 0:
        raise PointCloudError("PointCloud2: point_step is 0")
    declared = _read_fields(msg, point_step)
    used = [_require(declared, name, (FLOAT32, FLOAT64)) for name in fields]
    if intensity is not None and intensity in declared:
        used.append(_require(declared, intensity, tuple(DATATYPES)))
    view = _structured_view(msg, used, point_step).reshape(-1)
    points = np.empty((len(view), 3), dtype=np.float64)
    for k in range(3):
        points[:, k] = view[f"f{k}"]
    values = view["f3"].astype(np.float64) if len(used) == 4 else None
    if np.isfinite(points).all() and (values is None or np.isfinite(values).all()):  # flat checks: the usual case
        return DecodedCloud(points=points, intensity=values, dropped_nonfinite=0)
    finite = np.isfinite(points).all(axis=1) & (True if values is None else np.isfinite(values))
    return DecodedCloud(
        points=points[finite],
        intensity=None if values is None else values[finite],
        dropped_nonfinite=int(finite.size - np.count_nonzero(finite)),
    )


def cloud_to_xyz(msg: Any, fields: Sequence[str] = ("x", "y", "z"), max_points: int = DEFAULT_MAX_POINTS) -> np.ndarray:
    """The finite x, y, z rows of a PointCloud2-like object as (N, 3) float64 (decode_cloud for intensity too)."""
    return decode_cloud(msg, fields, intensity=None, max_points=max_points).points


def pack_xyzi(points: Any, intensity: Any = None) -> PackedCloud:
    """Lay out (N, 3) points and optional (N,) intensity as dense little-endian FLOAT32 records."""
    xyz = np.asarray(points)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise PointCloudError(f"points must have shape (N, 3), got {xyz.shape}")
    layout = XYZI_LAYOUT[:3] if intensity is None else XYZI_LAYOUT
    records = np.empty(len(xyz), dtype=np.dtype([(name, "<f4") for name, _ in layout]))
    for k, (name, _) in enumerate(layout[:3]):
        records[name] = xyz[:, k]
    if intensity is not None:
        values = np.asarray(intensity)
        if values.shape != (len(xyz),):
            raise PointCloudError(f"intensity must have shape ({len(xyz)},), got {values.shape}")
        records["intensity"] = values
    dense = all(bool(np.isfinite(records[name]).all()) for name, _ in layout)
    return PackedCloud(tuple(layout), records.itemsize, len(xyz), records.tobytes(), dense)


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    """Nanoseconds since the epoch -> (sec, nanosec) as builtin_interfaces/Time holds them."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return sec, nanosec


def xyz_to_cloud(points: Any, intensity: Any = None, frame_id: str = "velodyne", stamp: Any = None) -> Any:
    """A dense FLOAT32 sensor_msgs/PointCloud2 (height 1, little-endian); `stamp`: a Time message or int ns."""
    from sensor_msgs.msg import PointCloud2, PointField

    packed = pack_xyzi(points, intensity)
    msg = PointCloud2()
    if isinstance(stamp, (int, np.integer)):
        msg.header.stamp.sec, msg.header.stamp.nanosec = split_stamp(stamp)
    elif stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, packed.width
    msg.fields = [PointField(name=n, offset=o, datatype=FLOAT32, count=1) for n, o in packed.fields]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = packed.point_step, packed.point_step * packed.width
    msg.data = packed.data
    msg.is_dense = packed.is_dense
    return msg
