"""The ROS pieces that need no second process: the worker's slot, the admission rules, pose -> message
conversions, parameter descriptors and refusals, the pipeline the parameters build, bring-up's parameter-file
reading and bag play's topic selection."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
import rclpy  # noqa: E402
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from dlc_core.checkpoint import save_checkpoint  # noqa: E402
from dlc_core.errors import InputError  # noqa: E402
from dlc_core.models.dcp import DCPConfig, IterativeDCP  # noqa: E402
from dlc_core.scan_preprocess import ScanPreprocess  # noqa: E402
from dlc_ros import bag_play, bringup  # noqa: E402
from dlc_ros import registration_node as rn  # noqa: E402
from dlc_ros.bag_io import open_bag, quaternion_to_matrix  # noqa: E402
from dlc_ros.params import parameter_help  # noqa: E402
from dlc_ros.ros_convert import diagnostic_array, odometry_msg, stamp_ns, time_msg, transform_msg, twist_msg  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "bags" / "sample"


def scan(stamp: int = 0) -> rn.Scan:
    return rn.Scan(np.zeros((3, 3)), None, stamp, "velodyne", 0.0)


def take(slot: rn.LatestSlot) -> tuple[int | None, bool]:
    item, reset = slot.take()
    return (item.stamp if item else None), reset


def motion(yaw_deg: float, xyz: tuple[float, float, float]) -> np.ndarray:
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = xyz
    return m


# ---------------------------------------------------------------- slot and admission


def test_slot_keeps_the_newest_scan_and_reports_replacements() -> None:
    slot = rn.LatestSlot()
    assert slot.put(scan(1)) is False and slot.put(scan(2)) is True
    assert take(slot) == (2, False)
    assert slot.request_reset() is False and slot.put(scan(3)) is False
    assert take(slot) == (3, True)  # the reset travels with the first scan admitted after it
    slot.put(scan(4))
    assert slot.request_reset() is True  # the waiting scan was discarded
    slot.put(scan(5), reset=False)
    assert take(slot) == (5, True)


def test_slot_wakes_a_waiting_worker_and_closes() -> None:
    slot, taken = rn.LatestSlot(), []
    worker = threading.Thread(target=lambda: taken.extend([take(slot), take(slot)]))
    worker.start()
    slot.put(scan(7), reset=True)
    threading.Event().wait(0.05)
    slot.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and taken == [(7, True), (None, False)]


def test_gate_rules_for_frames_and_stamps() -> None:
    gate = rn.ScanGate()
    assert gate.admit("", 10) == ("frame_id", "empty header.frame_id")
    assert gate.admit("velodyne", 100) == ("accept", "")
    kind, reason = gate.admit("velodyne", 50)  # before the only stamp: not a restart yet
    assert kind == "stamp" and "is before" in reason
    assert gate.admit("velodyne", 200) == ("accept", "")
    kind, reason = gate.admit("velodyne", 200)
    assert kind == "stamp" and "repeats the last accepted 0.000000200" in reason
    assert gate.admit("velodyne", 150)[0] == "stamp"  # between first and last: out of order
    assert gate.admit("lidar", 300)[0] == "frame_id"
    assert gate.admit("velodyne", 100) == ("restart", "")  # back to the first stamp: a bag loop
    assert (gate.first, gate.last) == (100, 100)
    gate.restart()
    assert gate.admit("velodyne", 5) == ("accept", "") and gate.admit("lidar", 6)[0] == "frame_id"


# ---------------------------------------------------------------- conversions


def test_odometry_and_transform_messages_hold_the_pose() -> None:
    pose = motion(30.0, (1.0, -2.0, 0.5))
    msg = odometry_msg(pose, 1_317_000_000_123_456_789, "odom", "velodyne")
    q, p = msg.pose.pose.orientation, msg.pose.pose.position
    np.testing.assert_allclose(quaternion_to_matrix(q.x, q.y, q.z, q.w), pose[:3, :3], atol=1e-12)
    assert (p.x, p.y, p.z) == (1.0, -2.0, 0.5) and (msg.header.frame_id, msg.child_frame_id) == ("odom", "velodyne")
    assert stamp_ns(msg.header.stamp) == 1_317_000_000_123_456_789 == stamp_ns(time_msg(1_317_000_000_123_456_789))
    tf = transform_msg(pose, 5, "odom", "base_link")
    assert tf.transform.rotation == msg.pose.pose.orientation and tf.transform.translation.y == -2.0


def test_twist_is_the_mean_body_velocity() -> None:
    twist = twist_msg(motion(9.0, (1.5, 0.1, 0.0)), 0.1)
    assert twist.linear.x == pytest.approx(15.0) and twist.linear.y == pytest.approx(1.0)
    assert twist.angular.z == pytest.approx(np.radians(90.0))


def test_diagnostic_array_levels_and_values() -> None:
    msg = diagnostic_array(time_msg(3), "dlc_ros: registration_node", "velodyne", "WARN", "2 dropped", {"dropped": 2})
    status = msg.status[0]
    assert status.level == DiagnosticStatus.WARN and status.values[0].key == "dropped" and status.values[0].value == "2"


# ---------------------------------------------------------------- parameters


def test_parameter_descriptors_and_refusals() -> None:
    specs = {p.name: p for p in rn.PARAMETERS}
    assert specs["qos_depth"].descriptor().integer_range[0].to_value == 100
    assert specs["max_range"].descriptor().floating_point_range[0].from_value == 1.0
    assert specs["trajectory_dir"].descriptor().read_only is False and specs["device"].descriptor().read_only is True
    assert "one of auto, cpu, cuda" in specs["device"].refusal("gpu") and specs["device"].refusal("cpu") is None
    assert specs["odom_frame"].refusal("") == "odom_frame must not be empty"
    assert all(p.name in parameter_help(rn.PARAMETERS) for p in rn.PARAMETERS)
    assert specs["qos_reliability"].default == "reliable"


@pytest.fixture
def context() -> Context:
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("name, value, message", [
    ("device", "gpu", "parameter device: .*one of auto, cpu, cuda"),
    ("qos_depth", 0, "parameter qos_depth: .*out of range"),
    ("max_range", 60, "parameter max_range: .*expecting type 'DOUBLE'"),
    ("points_topic", "", "points_topic must not be empty"),
])  # fmt: skip
def test_a_bad_start_value_is_refused_with_its_reason(context: Context, name: str, value: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        rn.RegistrationNode(context=context, parameter_overrides=[Parameter(name, value=value)])
    assert "\n" not in str(info.value)


def values(**changes: object) -> dict:
    return {**{p.name: p.default for p in rn.PARAMETERS}, "device": "cpu", **changes}


def test_icp_only_pipeline_takes_the_crop_and_icp_parameters() -> None:
    registrar, model = rn.build_registrar(values(model_path="none", min_range=2.0, max_range=30.0, voxel_size=0.5,
                                                 icp_method="gicp", icp_min_distance=0.0, fallback=False))  # fmt: skip
    pre = registrar.preprocess
    assert model == "none" and registrar.model is None
    assert (pre.min_range, pre.icp_max_range, pre.max_range, pre.icp_voxel) == (2.0, 30.0, 30.0, 0.5)
    icp = registrar.config.icp
    assert icp.method == "gicp" and icp.min_correspondence_distance is None and registrar.config.fallback is False
    with pytest.raises(InputError, match="min_range .* must be below max_range"):
        rn.build_registrar(values(model_path="none", min_range=50.0, max_range=40.0))
    with pytest.raises(InputError, match="ICP parameters"):
        rn.build_registrar(values(model_path="none", icp_max_distance=0.2, icp_min_distance=1.0))


def tiny_model(folder: Path) -> Path:
    """An untrained LiDAR model folder: the real card layout, a network small enough to load in a moment."""
    torch.manual_seed(0)
    cfg = DCPConfig(backbone="dcp-pointnet", emb_dims=16, ff_dims=32, n_heads=2)
    card = {"task": "registration", "backbone": cfg.backbone, "config": cfg.card(),
            "preprocess": ScanPreprocess(num_points=64).card(), "inference": {"passes": 2}}  # fmt: skip
    save_checkpoint(folder, IterativeDCP(cfg).state_dict(), card)
    return folder


def test_a_model_folder_is_loaded_and_warmed_up(tmp_path: Path) -> None:
    registrar, model = rn.build_registrar(values(model_path=str(tiny_model(tmp_path / "m")), max_range=30.0, passes=1))
    assert model == str(tmp_path / "m") and registrar.model is not None and registrar.passes == 1
    assert registrar.preprocess.num_points == 64 and registrar.preprocess.max_range == 30.0
    assert rn.describe_device(registrar) == "cpu" and rn.warm_up(registrar) > 0


def test_missing_shipped_model_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(rn, "default_model_path", lambda: tmp_path / "lidar_dlc")
    with pytest.raises(InputError, match="shipped model is not installed; .* 'none' for ICP alone"):
        rn.build_registrar(values())


# ---------------------------------------------------------------- bring-up and bag play


def test_bringup_reads_nodes_and_namespaces(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters: {use_sim_time: false}\nregistration_node:\n  ros__parameters: {}\n"
                    "robot1:\n  registration_node:\n    ros__parameters: {odom_frame: odom1}\n"
                    "/robot2/registration_node:\n  ros__parameters: {}\n")  # fmt: skip
    assert bringup.configured_nodes(path) == [("", "registration_node"), ("/robot1", "registration_node"),
                                              ("/robot2", "registration_node")]  # fmt: skip
    assert bringup.node_class("registration_node") is rn.RegistrationNode


@pytest.mark.parametrize("text, message", [
    ("homography_nod:\n  ros__parameters: {}\n", "homography_nod is not a dlc_ros node \\(known: registration_node, lstm_demo_node, mnist_digit_publisher, homography_node\\)"),
    ("/**:\n  ros__parameters: {}\n", "configures no dlc_ros node"),
    ("registration_node: 3\n", "must be a mapping with ros__parameters"),
    ("a: [\n", "not valid YAML"),
    ("", "expected 'node_name"),
])  # fmt: skip
def test_bringup_refuses_bad_parameter_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        bringup.configured_nodes(path)
    with pytest.raises(InputError, match="cannot read"):
        bringup.configured_nodes(tmp_path / "missing.yaml")


def test_bag_play_selects_topics_and_message_classes() -> None:
    assert bag_play.message_class("sensor_msgs/msg/PointCloud2").__name__ == "PointCloud2"
    assert bag_play.message_class("tf2_msgs/msg/TFMessage") is None
    with open_bag(SAMPLE) as bag:
        assert list(bag_play.select_topics(bag, None)) == ["/ground_truth/odometry", "/velodyne_points"]
        assert list(bag_play.select_topics(bag, ["/velodyne_points"])) == ["/velodyne_points"]
        with pytest.raises(InputError, match="no topic /nope"):
            bag_play.select_topics(bag, ["/nope"])
    timeline = bag_play.Timeline(start=1_000, end=1_400, count=5)
    assert timeline.repeat_shift == 500 and bag_play.Timeline(7, 7, 1).repeat_shift == 100_000_000


@pytest.mark.parametrize("flags, message", [({"rate": 0.0}, "--rate must be > 0"), ({"wait_subscribers": -1.0}, ">= 0")])  # noqa: E501
def test_bag_play_refuses_bad_flags(flags: dict, message: str) -> None:
    args = argparse.Namespace(**{"bag": str(SAMPLE), "rate": 1.0, "loop": False, "topics": None, "clock": False,
                                 "wait_subscribers": 0.0, **flags})  # fmt: skip
    with pytest.raises(InputError, match=message):
        bag_play.run(args)
