"""PointCloud2 <-> numpy: exact round trips, hand-built layouts (padding, FLOAT64, big-endian, organized clouds),
non-finite rows, and every refusal of a malformed or oversized cloud."""

from __future__ import annotations

import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs (ROS 2 message wheels) not installed")
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402

from dlc_core.errors import InputError  # noqa: E402
from dlc_ros.pointcloud2 import PointCloudError, cloud_to_xyz, decode_cloud, xyz_to_cloud  # noqa: E402

F32, F64, U16, I32 = PointField.FLOAT32, PointField.FLOAT64, PointField.UINT16, PointField.INT32


def make_cloud(
    fields: list[tuple[str, int, int]],
    point_step: int,
    data: bytes,
    width: int,
    height: int = 1,
    row_step: int | None = None,
    bigendian: bool = False,
) -> PointCloud2:
    """A PointCloud2 built field by field, exactly as a (possibly hostile) sender would fill it."""
    msg = PointCloud2()
    msg.header.frame_id = "velodyne"
    msg.height, msg.width = height, width
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    msg.is_bigendian = bigendian
    msg.point_step = point_step
    msg.row_step = width * point_step if row_step is None else row_step
    msg.data = data
    return msg


def records(points: np.ndarray, layout: dict, itemsize: int, order: str = "<") -> bytes:
    """Bytes of points laid out at the given {name: (offset, numpy kind)} with 0xAB in every padding byte."""
    dtype = np.dtype(
        {
            "names": list(layout),
            "formats": [order + kind for _, kind in layout.values()],
            "offsets": [offset for offset, _ in layout.values()],
            "itemsize": itemsize,
        }
    )
    raw = np.frombuffer(bytearray(b"\xab" * itemsize * len(points)), dtype=dtype).copy()
    for k, name in enumerate(layout):
        raw[name] = points[:, k]
    return raw.tobytes()


XYZ_F32 = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32)]
XYZ_BYTES = np.arange(3, dtype="<f4").tobytes()  # 1 point (0, 1, 2), 12 bytes


def test_round_trip_is_bit_exact_for_float32():
    rng = np.random.default_rng(0)
    points = (rng.standard_normal((1000, 3)) * 50).astype(np.float32)
    intensity = rng.random(1000).astype(np.float32)
    msg = xyz_to_cloud(points, intensity, frame_id="velodyne", stamp=1_317_000_000_103_872_500)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 1000, 16, 16000)
    assert not msg.is_bigendian and msg.is_dense
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_317_000_000, 103_872_500)
    cloud = decode_cloud(msg)
    assert cloud.points.dtype == np.float64 and cloud.points.shape == (1000, 3)
    assert np.array_equal(cloud.points.astype(np.float32), points)
    assert np.array_equal(cloud.points, points.astype(np.float64))
    assert np.array_equal(cloud.intensity, intensity.astype(np.float64))
    assert cloud.dropped_nonfinite == 0
    assert np.array_equal(cloud_to_xyz(msg), cloud.points)


def test_xyz_only_cloud_has_no_intensity():
    msg = xyz_to_cloud(np.ones((4, 3)))
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 12
    assert decode_cloud(msg).intensity is None


def test_padding_between_fields_and_larger_point_step():
    rng = np.random.default_rng(1)
    values = np.column_stack([rng.standard_normal((50, 3)).astype(np.float32), rng.integers(0, 65535, 50)])
    layout = {"x": (0, "f4"), "y": (8, "f4"), "z": (16, "f4"), "intensity": (22, "u2")}
    fields = [("x", 0, F32), ("y", 8, F32), ("z", 16, F32), ("intensity", 22, U16), ("ring", 28, U16)]
    msg = make_cloud(fields, 40, records(values, layout, 40), width=50)
    cloud = decode_cloud(msg)
    assert np.array_equal(cloud.points, values[:, :3].astype(np.float32).astype(np.float64))
    assert np.array_equal(cloud.intensity, values[:, 3])


def test_float64_fields():
    points = np.random.default_rng(2).standard_normal((20, 3)) * 1e3
    layout = {"x": (0, "f8"), "y": (8, "f8"), "z": (16, "f8")}
    msg = make_cloud([("x", 0, F64), ("y", 8, F64), ("z", 16, F64)], 24, records(points, layout, 24), width=20)
    assert np.array_equal(cloud_to_xyz(msg), points)


def test_big_endian_cloud_gives_the_same_points():
    values = np.column_stack([np.random.default_rng(3).standard_normal((30, 3)), np.arange(30)])
    layout = {"x": (0, "f4"), "y": (4, "f4"), "z": (8, "f4"), "intensity": (12, "i4")}
    fields = XYZ_F32 + [("intensity", 12, I32)]
    little = decode_cloud(make_cloud(fields, 16, records(values, layout, 16, "<"), width=30))
    big_msg = make_cloud(fields, 16, records(values, layout, 16, ">"), width=30, bigendian=True)
    big = decode_cloud(big_msg)
    assert np.array_equal(big.points, little.points)
    assert np.array_equal(big.intensity, little.intensity)
    assert np.array_equal(big.intensity, np.arange(30.0))


def test_organized_cloud_honours_row_step_padding():
    points = np.random.default_rng(4).standard_normal((2 * 7, 3)).astype(np.float32)
    row_step = 7 * 12 + 5
    rows = [records(points[r * 7 : (r + 1) * 7], {"x": (0, "f4"), "y": (4, "f4"), "z": (8, "f4")}, 12) for r in (0, 1)]
    data = b"".join(row + b"\xee" * 5 for row in rows)
    msg = make_cloud(XYZ_F32, 12, data, width=7, height=2, row_step=row_step)
    assert np.array_equal(cloud_to_xyz(msg), points.astype(np.float64))


def test_non_finite_rows_are_dropped_and_counted():
    points = np.random.default_rng(5).standard_normal((10, 3)).astype(np.float32)
    points[2, 0] = np.nan
    points[5, 2] = np.inf
    points[7] = np.nan
    intensity = np.arange(10, dtype=np.float32)
    intensity[8] = np.nan  # a point is only as usable as its intensity
    msg = xyz_to_cloud(points, intensity)
    assert not msg.is_dense
    cloud = decode_cloud(msg)
    keep = [0, 1, 3, 4, 6, 9]
    assert cloud.dropped_nonfinite == 4
    assert np.array_equal(cloud.points, points[keep].astype(np.float64))
    assert np.array_equal(cloud.intensity, np.array(keep, dtype=np.float64))


def test_empty_cloud_decodes_to_no_points():
    cloud = decode_cloud(make_cloud(XYZ_F32, 12, b"", width=0))
    assert cloud.points.shape == (0, 3) and cloud.dropped_nonfinite == 0


def test_any_object_with_the_pointcloud2_attributes_decodes():
    fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=1) for n, o, d in XYZ_F32]
    msg = SimpleNamespace(
        height=1, width=1, fields=fields, is_bigendian=False, point_step=12, row_step=12,
        data=np.frombuffer(XYZ_BYTES, np.uint8), is_dense=True,
    )  # fmt: skip
    assert np.array_equal(cloud_to_xyz(msg), [[0.0, 1.0, 2.0]])


@pytest.mark.parametrize(
    "fields, point_step, data, width, extra, expected",
    [
        ([("x", 0, F32), ("y", 4, F32)], 12, XYZ_BYTES, 1, {}, "missing field 'z'"),
        (XYZ_F32 + [("y", 4, F32)], 12, XYZ_BYTES, 1, {}, "duplicate field name 'y'"),
        ([("x", 0, F32), ("y", 4, F32), ("z", 10, F32)], 12, XYZ_BYTES, 1, {}, "field 'z' (offset 10, 4 bytes)"),
        (XYZ_F32, 8, XYZ_BYTES, 1, {}, "ends past point_step 8"),
        (XYZ_F32, 0, XYZ_BYTES, 1, {}, "point_step is 0"),
        (XYZ_F32, 12, XYZ_BYTES[:11], 1, {}, "data has 11 bytes, fewer than height 1 * row_step 12"),
        (XYZ_F32, 12, XYZ_BYTES, 1, {"row_step": 11}, "row_step 11 < width 1 * point_step 12"),
        (XYZ_F32, 12, XYZ_BYTES * 2, 1, {"height": 2, "row_step": 24}, "fewer than height 2 * row_step 24"),
        ([("x", 0, I32), ("y", 4, F32), ("z", 8, F32)], 12, XYZ_BYTES, 1, {}, "field 'x' has datatype i4"),
        (XYZ_F32 + [("t", 0, 9)], 12, XYZ_BYTES, 1, {}, "field 't' has unknown datatype 9"),
        (XYZ_F32, 12, XYZ_BYTES * 3, 3, {"max_points": 2}, "1 x 3 points exceed max_points 2"),
    ],
    ids=[
        "missing-field", "duplicate-name", "offset-past-step", "step-smaller-than-fields", "step-zero",
        "data-short", "row-step-short", "data-short-organized", "int-xyz", "unknown-datatype", "max-points",
    ],
)  # fmt: skip
def test_malformed_clouds_are_refused(fields, point_step, data, width, extra, expected):
    extra = dict(extra)
    max_points = extra.pop("max_points", 2_000_000)
    msg = make_cloud(fields, point_step, data, width, **extra)
    with pytest.raises(PointCloudError) as info:
        decode_cloud(msg, max_points=max_points)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InputError)


def test_fields_that_are_not_a_list_of_named_fields_are_refused():
    msg = SimpleNamespace(height=1, width=1, fields=7, point_step=12, row_step=12, data=XYZ_BYTES)
    with pytest.raises(PointCloudError, match="fields must be a list, got int"):
        cloud_to_xyz(msg)
    msg.fields = [SimpleNamespace(name=None, offset=0, datatype=F32, count=1)]
    with pytest.raises(PointCloudError, match="a field name must be a string, got None"):
        cloud_to_xyz(msg)


def test_data_that_is_not_a_buffer_is_refused():
    msg = SimpleNamespace(height=1, width=1, fields=[], point_step=12, row_step=12, data=[0] * 12)
    msg.fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=1) for n, o, d in XYZ_F32]
    with pytest.raises(PointCloudError, match="not a contiguous byte buffer"):
        cloud_to_xyz(msg)


@pytest.mark.parametrize("height, width", [(1, 2_000_001), (1 << 20, 1 << 20), (1, 2_000_000)])
def test_huge_declared_cloud_with_tiny_data_is_refused_without_allocating(height, width):
    msg = make_cloud(XYZ_F32, 12, XYZ_BYTES, width=width, height=height)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(PointCloudError, match="max_points|fewer than"):
        decode_cloud(msg)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 1_000_000


def test_bad_points_for_xyz_to_cloud_are_refused():
    with pytest.raises(PointCloudError, match=r"shape \(N, 3\)"):
        xyz_to_cloud(np.zeros((4, 2)))
    with pytest.raises(PointCloudError, match=r"intensity must have shape \(4,\)"):
        xyz_to_cloud(np.zeros((4, 3)), np.zeros(3))
