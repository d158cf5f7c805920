"""registration_node in its own process, fed real KITTI scans (bags/sample) over DDS by this test's node, which
lives in a separate rclpy Context: odometry against the ground truth, diagnostics, services, parameters, QoS
warnings, a fuzz of malformed clouds, start-up failures, bring-up with a model, bag playback with --loop, and
clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402
from rclpy.event_handler import PublisherEventCallbacks  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from dlc_core.geometry import euler_zyx_to_matrix_np  # noqa: E402
from dlc_core.trajectory_metrics import pair_errors  # noqa: E402
from dlc_ros.bag_io import ground_truth, open_bag, quaternion_to_matrix  # noqa: E402
from dlc_ros.pointcloud2 import decode_cloud, xyz_to_cloud  # noqa: E402
from dlc_ros.ros_convert import stamp_ns, time_msg  # noqa: E402

from .graph import RELIABLE, START_S, Graph, NodeProcess, process  # noqa: E402
from .test_ros_units import tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bags" / "sample"
TOPIC = "/velodyne_points"
BEST_EFFORT = ReliabilityPolicy.BEST_EFFORT
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STEP_S = 60.0  # one registration, with margin for the same machine
CHUNK = 80  # hostile clouds sent before waiting for the node to count them (its queue holds 100)
# The offline pipeline's tolerances on consecutive real KITTI scans (tests/test_lidar_pipeline.py).
RTE_M, RRE_DEG = 0.05, 0.2


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    """The sample bag's clouds (rclpy messages), their stamps, and the ground-truth poses at those stamps."""
    with open_bag(SAMPLE) as bag:
        clouds = [deserialize_message(raw, PointCloud2) for _, raw, _ in bag.messages(TOPIC)]
        gt_stamps, gt_poses = ground_truth(bag)
    stamps = [stamp_ns(c.header.stamp) for c in clouds]
    assert stamps == gt_stamps.tolist()
    return {"clouds": clouds, "stamps": stamps, "gt": gt_poses}


def registration_node(tmp_path: Path, *params: str) -> list[str]:
    """`python -m dlc_ros.registration_node --ros-args -p ...` with ICP alone on the sample's topic."""
    return ["-m", "dlc_ros.registration_node", "--ros-args", "-p", "model_path:=none", "-p", f"points_topic:={TOPIC}",
            "-p", "diagnostics_period:=0.3", *[a for p in params for a in ("-p", p)]]  # fmt: skip


def pose(msg: Odometry) -> np.ndarray:
    q, p = msg.pose.pose.orientation, msg.pose.pose.position
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = quaternion_to_matrix(q.x, q.y, q.z, q.w), (p.x, p.y, p.z)
    return m


def diagnostics(graph: Graph) -> list[DiagnosticStatus]:
    """registration_node's statuses received so far."""
    return [s for a in graph.received["/diagnostics"] for s in a.status if s.name == "dlc_ros: registration_node"]


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def first_status(graph: Graph, key: str, value: str) -> DiagnosticStatus | None:
    """The first status whose `key` has `value`, if any."""
    return next((s for s in diagnostics(graph) if values(s).get(key) == value), None)


def assert_follows_ground_truth(odometry: list[Odometry], sample: dict) -> None:
    """Frames, stamps and relative motion of the odometry against the sample's ground truth."""
    index = {s: k for k, s in enumerate(sample["stamps"])}
    stamps = [stamp_ns(m.header.stamp) for m in odometry]
    assert all(s in index for s in stamps) and stamps == sorted(stamps)
    assert {(m.header.frame_id, m.child_frame_id) for m in odometry} == {("odom", "velodyne")}
    gt = sample["gt"][[index[s] for s in stamps]]
    te, re = pair_errors(np.stack([pose(m) for m in odometry]), np.linalg.inv(gt[0]) @ gt)
    assert te.max() < RTE_M and re.max() < RRE_DEG, (te, re)


def publish_and_wait(graph: Graph, publisher: Any, cloud: PointCloud2, odometry: list, proc: NodeProcess) -> Odometry:
    """Publish one cloud and wait for its odometry (matched by stamp)."""
    count = len(odometry)
    publisher.publish(cloud)
    graph.wait_for(lambda: len(odometry) > count, STEP_S, f"the odometry of {stamp_ns(cloud.header.stamp)}", proc)
    assert stamp_ns(odometry[-1].header.stamp) == stamp_ns(cloud.header.stamp)
    return odometry[-1]


# ---------------------------------------------------------------- the sample bag end to end


def test_odometry_diagnostics_services_parameters_and_sigint(graph: Graph, sample: dict, tmp_path: Path) -> None:
    odometry, paths = graph.listen(Odometry, "/odometry"), graph.listen(PathMsg, "/path", LATCHED)
    graph.listen(DiagnosticArray, "/diagnostics")
    publisher = graph.node.create_publisher(PointCloud2, TOPIC, RELIABLE)
    trajectory = tmp_path / "trajectory"
    with process(registration_node(tmp_path, f"trajectory_dir:={trajectory}"), tmp_path / "node.log") as proc:
        graph.wait_until_connected(publisher, "/odometry", proc)
        for cloud in sample["clouds"]:
            publish_and_wait(graph, publisher, cloud, odometry, proc)
        assert_follows_ground_truth(odometry, sample)
        assert odometry[0].twist.twist.linear.x == 0.0 and odometry[1].twist.twist.linear.x > 5.0  # m/s, forward
        graph.wait_for(lambda: paths and len(paths[-1].poses) == 5, 10, "the path of 5 poses")
        assert paths[-1].header.frame_id == "odom"
        assert stamp_ns(paths[-1].poses[-1].header.stamp) == sample["stamps"][-1]

        status = graph.wait_for(lambda: first_status(graph, "processed", "5"), 10, "diagnostics after 5 scans", proc)
        v = values(status)
        assert status.level == DiagnosticStatus.OK and status.hardware_id == "velodyne", status
        assert (v["device"], v["model"], v["dropped"], v["rejected"]) == ("cpu", "none", "0", "0")
        assert v["status prior"] == "4" and float(v["stamp to publish ms p50"]) > 0
        assert float(v["latency ms p50"]) > 0 and v["input qos"] == "reliable, depth 5"

        refused = graph.set_parameter("/registration_node", "max_range", 10.0)
        assert not refused.successful and "read-only" in refused.reason
        (tmp_path / "a_file").write_text("")
        refused = graph.set_parameter("/registration_node", "trajectory_dir", str(tmp_path / "a_file"))
        assert not refused.successful and "is a file, not a folder" in refused.reason
        assert graph.set_parameter("/registration_node", "publish_tf", False).successful

        saved = graph.call(Trigger, "/registration_node/save_trajectory", Trigger.Request())
        assert saved.success and "saved 5 poses" in saved.message
        assert len((trajectory / "poses_kitti.txt").read_text().splitlines()) == 5
        tum = np.loadtxt(trajectory / "poses_tum.txt")
        assert tum.shape == (5, 8) and tum[-1, 0] == pytest.approx(sample["stamps"][-1] * 1e-9, abs=1e-6)

        assert graph.call(Trigger, "/registration_node/reset", Trigger.Request()).success
        restarted = publish_and_wait(graph, publisher, sample["clouds"][2], odometry, proc)  # an old stamp: allowed
        np.testing.assert_allclose(pose(restarted), np.eye(4), atol=1e-12)
        graph.wait_for(lambda: len(paths[-1].poses) == 1, 10, "the path restarted")
        assert proc.stop(signal.SIGINT) == 0
    log = proc.log()
    assert "Traceback" not in log and "saved 1 poses" in log, log
    assert "tf2_ros is not installed" in log and "model none" in log and "on cpu" in log
    assert len((trajectory / "poses_kitti.txt").read_text().splitlines()) == 1


# ---------------------------------------------------------------- fuzz


def field(name: str, offset: int, datatype: int = PointField.FLOAT32) -> PointField:
    return PointField(name=name, offset=offset, datatype=datatype, count=1)


def encoded(points: np.ndarray, intensity: np.ndarray, stamp: int, *, order: str = "<", kind: str = "f4",
            height: int = 1, pad: int = 0) -> PointCloud2:  # fmt: skip
    """A valid cloud of `points` in another layout: byte order, float width, organized rows, row padding."""
    size = np.dtype(kind).itemsize
    dtype = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": [order + kind] * 3 + [order + "f4"],
                      "offsets": [0, size, 2 * size, 3 * size + 4], "itemsize": 3 * size + 12})  # fmt: skip
    rows = np.zeros(len(points) - len(points) % height, dtype=dtype)
    for k, name in enumerate("xyz"):
        rows[name] = points[: len(rows), k]
    rows["intensity"] = intensity[: len(rows)]
    width = len(rows) // height
    data = b"".join(rows[r * width:(r + 1) * width].tobytes() + b"\x00" * pad for r in range(height))
    msg = PointCloud2(height=height, width=width, is_bigendian=order == ">", point_step=dtype.itemsize,
                      row_step=width * dtype.itemsize + pad, data=data, is_dense=False)  # fmt: skip
    msg.fields = [field(n, o, PointField.FLOAT64 if kind == "f8" else PointField.FLOAT32) for n, o in
                  (("x", 0), ("y", size), ("z", 2 * size))] + [field("intensity", 3 * size + 4)]  # fmt: skip
    msg.header.stamp, msg.header.frame_id = time_msg(stamp), "velodyne"
    return msg


def valid_variants(sample: dict) -> list[tuple[PointCloud2, PointCloud2]]:
    """The five sample scans, each in another valid encoding (the first as recorded), and a 4000-point cloud of
    the same encoding that the hostile clouds are made from (small, so that a thousand of them pass quickly)."""
    decoded = [decode_cloud(c) for c in sample["clouds"]]
    points = [d.points.copy() for d in decoded]
    points[4][::50] = np.nan  # non-finite rows are dropped, not fatal
    layouts = [{}, dict(order=">"), dict(kind="f8"), dict(height=4, pad=24), dict(kind="f8", order=">", pad=8)]
    full = [sample["clouds"][0]] + [encoded(points[k], decoded[k].intensity, sample["stamps"][k], **layouts[k])
                                    for k in range(1, 5)]  # fmt: skip
    small = [encoded(points[k][:4000], decoded[k].intensity[:4000], sample["stamps"][k], **layouts[k])
             for k in range(5)]  # fmt: skip
    return list(zip(full, small, strict=True))


def malformed(base: PointCloud2, stamp: int, rng: np.random.Generator, k: int) -> tuple[str, PointCloud2]:
    """The k-th hostile cloud (a copy of `base` with one thing wrong) and the rejection kind it must get."""
    msg = PointCloud2(height=base.height, width=base.width, fields=list(base.fields), is_bigendian=base.is_bigendian,
                      point_step=base.point_step, row_step=base.row_step, data=base.data,
                      is_dense=base.is_dense)  # fmt: skip
    msg.header.stamp, msg.header.frame_id = time_msg(stamp), "velodyne"
    case = k % 14
    if case == 0:  # random fields
        msg.fields = [field(f"f{rng.integers(99)}", int(rng.integers(0, 64)), int(rng.integers(0, 12)))
                      for _ in range(3)]  # fmt: skip
    elif case == 1:  # missing z
        msg.fields = msg.fields[:2]
    elif case == 2:  # an offset past point_step
        msg.fields = [field("x", 0), field("y", 4), field("z", int(rng.integers(base.point_step - 3, 1000)))]
    elif case == 3:  # point_step too small, or zero
        msg.point_step = int(rng.integers(0, 12))
    elif case == 4:  # data shorter than width * point_step
        msg.data = base.data[: int(rng.integers(0, 10_000))]
    elif case == 5:  # row_step below width * point_step
        msg.row_step = base.width * base.point_step - 1
    elif case == 6:  # all NaN / Inf
        msg.width, msg.point_step, msg.row_step, msg.is_bigendian = 100, 12, 1200, False
        msg.fields = [field("x", 0), field("y", 4), field("z", 8)]
        msg.data = np.full(300, [np.nan, np.inf, -np.inf][k % 3], np.float32).tobytes()
    elif case == 7:  # empty
        msg.width, msg.row_step, msg.data = 0, 0, b""
    elif case == 8:  # a header claiming 2 million points
        msg.width, msg.row_step = 2_000_000, 2_000_000 * base.point_step
    elif case == 9:  # organized: more rows than the data holds
        msg.height = 2 * base.height
    elif case == 10:  # big-endian, an 8-byte field past the record
        msg.is_bigendian = True
        msg.fields = [field("x", 0), field("y", 4), field("z", base.point_step - 4, PointField.FLOAT64)]
    elif case == 11:  # a duplicate field name, or an unknown datatype
        duplicate, unknown = [field("x", 0), field("x", 4)], [field("x", 0, 42), field("y", 4)]
        msg.fields = (duplicate if k % 2 else unknown) + [field("z", 8)]
    elif case == 12:  # another sensor frame
        msg.header.frame_id = "camera"
        return "frame_id", msg
    else:  # a repeated stamp
        return "stamp", msg
    return "malformed", msg


def two_million_points(stamp: int) -> PointCloud2:
    """A real 32 MB cloud of 2 million points: over max_points, refused before it is read."""
    points = np.random.default_rng(1).uniform(-50, 50, (2_000_000, 3))
    return xyz_to_cloud(points, np.zeros(len(points)), "velodyne", stamp)


def test_fuzz_of_malformed_clouds_is_counted_and_survived(graph: Graph, sample: dict, tmp_path: Path) -> None:
    odometry = graph.listen(Odometry, "/odometry")
    graph.listen(DiagnosticArray, "/diagnostics")
    publisher = graph.node.create_publisher(PointCloud2, TOPIC, QoSProfile(depth=100, reliability=RELIABLE.reliability))
    best_effort = graph.node.create_publisher(PointCloud2, TOPIC, QoSProfile(depth=1, reliability=BEST_EFFORT),
                                              event_callbacks=PublisherEventCallbacks(incompatible_qos=lambda _: None))
    rng, expected, sent = np.random.default_rng(0), {"malformed": 0, "frame_id": 0, "stamp": 0}, 0
    with process(registration_node(tmp_path, "qos_depth:=100"), tmp_path / "node.log") as proc:
        graph.wait_until_connected(publisher, "/odometry", proc)
        graph.wait_for(lambda: "offers an incompatible QoS (RELIABILITY)" in proc.log(), 30, "the QoS warning", proc)
        graph.node.destroy_publisher(best_effort)
        clouds = valid_variants(sample)
        publish_and_wait(graph, publisher, clouds[0][0], odometry, proc)
        published = 1
        for k, (cloud, small) in enumerate(clouds[1:], start=1):
            last = stamp_ns(odometry[-1].header.stamp)  # the stamp the "repeated stamp" clouds repeat
            batch = [malformed(small, last, rng, j) for j in range(sent, sent + 255)]
            batch += [("malformed", two_million_points(last + 1))] if k == 2 else []
            for start in range(0, len(batch), CHUNK):  # within the node's queue (qos_depth 100), then let it catch up
                for kind, msg in batch[start:start + CHUNK]:
                    expected[kind] += 1
                    publisher.publish(msg)
                published += len(batch[start:start + CHUNK])
                count = str(published)
                graph.wait_for(lambda c=count: first_status(graph, "received", c), STEP_S, f"{count} received", proc)
            sent += 255
            status = first_status(graph, "rejected", str(sum(expected.values())))
            assert status is not None and status.level == DiagnosticStatus.WARN and "rejected" in status.message
            publish_and_wait(graph, publisher, cloud, odometry, proc)
            published += 1
        assert sent >= 1000 and len(odometry) == 5
        assert_follows_ground_truth(odometry, sample)
        far = np.random.default_rng(2).uniform(500, 600, (1000, 3))  # decodable, but nothing within range
        publisher.publish(xyz_to_cloud(far, None, "velodyne", sample["stamps"][4] + 1))
        status = graph.wait_for(lambda: first_status(graph, "rejected unusable", "1"), STEP_S, "unusable: 1", proc)
        v = values(status)
        assert {k: int(v[f"rejected {k}"]) for k in expected} == expected and v["lost"] == "0", v
        assert v["processed"] == "5" and v["errors"] == "0" and v["dropped"] == "0"
        assert proc.stop(signal.SIGTERM) == 0
    log = proc.log()
    warnings = log.count("rejected a scan (")
    assert "Traceback" not in log and 1 <= warnings < sum(expected.values()) // 10, warnings  # throttled


# ---------------------------------------------------------------- start-up failures


def corrupt_model(folder: Path) -> Path:
    tiny_model(folder)
    weights = folder / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    return folder


def test_bad_start_up_ends_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    cases = {
        "device": (["-p", "device:=gpu"], "error: parameter device: .*one of auto, cpu, cuda"),
        "range": (["-p", "max_range:=1000.0"], "error: parameter max_range: .*out of range"),
        "missing": (["-p", f"model_path:={tmp_path / 'nope'}"], "error: .*nope: no such model folder"),
        "corrupt": (["-p", f"model_path:={corrupt_model(tmp_path / 'bad')}"], "error: .*model.pt: sha256 does not"),
    }
    procs = {name: NodeProcess(["-m", "dlc_ros.cli", "node", "registration", "--", "--ros-args", *args],
                               tmp_path / f"{name}.log") for name, (args, _) in cases.items()}  # fmt: skip
    try:
        for name, (_, pattern) in cases.items():
            assert procs[name].wait(timeout=START_S) == 2
            lines = procs[name].log().strip().splitlines()
            assert len(lines) == 1 and re.match(pattern, lines[0]), lines
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


# ---------------------------------------------------------------- the shipped model


def yawed(cloud: PointCloud2, degrees: float) -> tuple[PointCloud2, np.ndarray]:
    """The cloud seen from a sensor turned by `degrees` about z, and the transform from that sensor to the original."""
    turn = euler_zyx_to_matrix_np(np.radians([degrees, 0.0, 0.0]))
    points = decode_cloud(cloud)
    moved = xyz_to_cloud(points.points @ turn, points.intensity, cloud.header.frame_id, cloud.header.stamp)
    to_original = np.eye(4)
    to_original[:3, :3] = turn
    return moved, to_original


def test_the_shipped_model_registers_a_turn_the_prior_cannot(graph: Graph, sample: dict, tmp_path: Path) -> None:
    """The default model_path loads the shipped LiDAR model; the second scan arrives turned by 25 deg, beyond what
    ICP from the (identity) prior recovers, so the network carries the pair, and the odometry is still exact."""
    odometry = graph.listen(Odometry, "/odometry")
    graph.listen(DiagnosticArray, "/diagnostics")
    publisher = graph.node.create_publisher(PointCloud2, TOPIC, RELIABLE)
    args = ["-m", "dlc_ros.registration_node", "--ros-args", "-p", f"points_topic:={TOPIC}", "-p", "fallback:=false",
            "-p", "diagnostics_period:=0.3"]  # fmt: skip
    turned, to_original = yawed(sample["clouds"][1], 25.0)
    with process(args, tmp_path / "node.log") as proc:
        graph.wait_until_connected(publisher, "/odometry", proc)
        publish_and_wait(graph, publisher, sample["clouds"][0], odometry, proc)
        got = pose(publish_and_wait(graph, publisher, turned, odometry, proc))
        status = graph.wait_for(lambda: first_status(graph, "processed", "2"), 10, "diagnostics after 2 scans", proc)
        assert proc.stop(signal.SIGINT) == 0
    gt = np.linalg.inv(sample["gt"][0]) @ sample["gt"][1] @ to_original
    te, re = pair_errors(np.stack([np.eye(4), got]), np.stack([np.eye(4), gt]))
    assert te[0] < RTE_M and re[0] < RRE_DEG, (te, re)
    v = values(status)
    assert (v["status network"], v["status prior"], v["backbone"]) == ("1", "0", "dcp"), v
    assert v["model"].endswith(str(Path("models") / "lidar_dlc")) and "Traceback" not in proc.log()


# ---------------------------------------------------------------- bring-up with a model


def test_bringup_starts_a_namespaced_node_with_a_model(graph: Graph, sample: dict, tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model")
    params = tmp_path / "params.yaml"
    params.write_text(f"/**:\n  ros__parameters: {{diagnostics_period: 0.3}}\nrobot:\n  registration_node:\n"
                      f"    ros__parameters: {{model_path: {model}, points_topic: {TOPIC}, odom_frame: map_odom, "
                      f"device: auto, passes: 2, fallback: false}}\n")  # fmt: skip
    odometry = graph.listen(Odometry, "/robot/odometry")
    graph.listen(DiagnosticArray, "/diagnostics")
    publisher = graph.node.create_publisher(PointCloud2, TOPIC, RELIABLE)
    with process(["-m", "dlc_ros.cli", "bringup", str(params)], tmp_path / "bringup.log") as proc:
        graph.wait_until_connected(publisher, "/robot/odometry", proc)
        for cloud in sample["clouds"][:2]:
            publish_and_wait(graph, publisher, cloud, odometry, proc)
        assert odometry[-1].header.frame_id == "map_odom"
        status = graph.wait_for(lambda: first_status(graph, "processed", "2"), 10, "diagnostics after 2 scans", proc)
        v = values(status)
        assert (v["model"], v["backbone"], v["device"]) == (str(model), "dcp-pointnet", "cpu")
        assert int(v["status network"]) + int(v["status prior"]) == 1 and status.level == DiagnosticStatus.OK
        assert proc.stop(signal.SIGINT) == 0
    log = proc.log()
    assert f"model {model} (dcp-pointnet, sha256 " in log and "up to 2 passes) on cpu" in log
    assert "[robot.registration_node]" in log and "Traceback" not in log


# ---------------------------------------------------------------- bag play


def test_bag_play_waits_then_loops_with_increasing_stamps_and_resets(graph: Graph, sample: dict, tmp_path: Path) -> None:  # noqa: E501
    odometry, paths = graph.listen(Odometry, "/odometry"), graph.listen(PathMsg, "/path", LATCHED)
    clock = graph.listen(Clock, "/clock", QoSProfile(depth=10, reliability=BEST_EFFORT))
    play = ["-m", "dlc_ros.cli", "bag", "play", str(SAMPLE), "--loop", "--clock", "--rate", "0.1", "--topics", TOPIC,
            "--wait-subscribers", str(START_S)]  # fmt: skip
    first, shift = sample["stamps"][0], (sample["stamps"][-1] - sample["stamps"][0]) * 5 // 4
    with process(play, tmp_path / "play.log") as player, \
            process(registration_node(tmp_path), tmp_path / "node.log") as proc:  # fmt: skip
        graph.wait_for(lambda: any(stamp_ns(m.header.stamp) > first + shift for m in odometry), 3 * STEP_S,
                       "the second loop's odometry", proc)  # fmt: skip
        assert player.stop(signal.SIGINT) == 0
    # The path (transient local) of the first loop starts at the bag's first scan: the player waited for the node.
    # Later scans may be dropped by the latest-scan slot when the machine is too slow for the rate, by design.
    path = [stamp_ns(p.header.stamp) for p in max(paths, key=lambda m: len(m.poses)).poses]
    assert path[0] == first and path == sorted(set(path)) and set(path) <= set(sample["stamps"]), path
    stamps = [stamp_ns(m.header.stamp) for m in odometry]
    assert stamps == sorted(set(stamps)) and first + shift in stamps  # increasing across the repeat
    restart = stamps.index(first + shift)
    np.testing.assert_allclose(pose(odometry[restart]), np.eye(4), atol=1e-12)  # the odometry was reset
    assert_follows_ground_truth(odometry[:restart], sample)
    clock_ns = [stamp_ns(c.clock) for c in clock]
    assert clock_ns == sorted(clock_ns) and clock_ns[-1] > first + shift
    out = player.log()
    assert "repeat 1: reset /registration_node/reset" in out and "Traceback" not in out, out


# ---------------------------------------------------------------- the latency benchmark


def test_latency_benchmark_short_run(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    command = [sys.executable, "bench/ros_latency.py", "--bag", str(SAMPLE), "--frames", "6", "--out", str(out)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=4 * START_S)
    assert run.returncode == 0, run.stdout + run.stderr
    r = json.loads(out.read_text())
    assert r["frames_published"] == 6 and 0 <= r["dropped_share"] <= 1 and r["latency_ms"]["p50"] > 0
    assert {"machine", "command", "date", "qos", "transport", "offline_ms", "ros_overhead_ms"} <= set(r)
    assert os.environ["ROS_DOMAIN_ID"] == str(r["ros_domain_id"])
