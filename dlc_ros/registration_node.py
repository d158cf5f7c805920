"""``registration_node``: LiDAR odometry as a ROS 2 node. sensor_msgs/PointCloud2 in; nav_msgs/Odometry, nav_msgs/Path,
/diagnostics and the odom -> base TF out. A thin shell around dlc_core's ``Odometry`` and ``ScanRegistrar``: the
same code ``dlc bag eval`` runs, so offline numbers are the node's numbers.

Threads: the executor thread only decodes and checks each cloud and puts it in a one-scan slot; a worker thread
registers the newest scan. A scan still waiting when a newer one arrives is dropped and counted, so stale scans
never queue up and the latency stays one registration.

Admission (each refusal is counted in the diagnostics by kind, with a throttled warning):

* ``malformed``: the PointCloud2 cannot be decoded safely (``pointcloud2.decode_cloud``) or has < 3 finite points;
* ``frame_id``: empty, or not the frame of the first accepted cloud;
* ``stamp``: not after the last accepted stamp (repeated or backwards). One exception: a stamp at or before the
  first stamp of the current trajectory, once the trajectory has moved on, means that the stream restarted (a bag
  played again, ``ros2 bag play --loop``, a simulator reset); the odometry then resets and the scan starts a new
  trajectory. ``dlc bag play --loop`` keeps stamps increasing (DECISIONS D4) and calls ``~/reset`` instead;
* ``unusable``: decoded, but the pipeline cannot use it (e.g. too few points within range).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry as OdometryMsg
from nav_msgs.msg import Path as PathMsg
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import (
    QoSMessageLostInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
    qos_policy_name_from_kind,
)
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from dlc_core.errors import InputError
from dlc_core.icp import METHODS
from dlc_core.odometry import Odometry
from dlc_core.pipeline import PipelineConfig, ScanRegistrar, scan_icp
from dlc_core.pointcloud import transform_cloud
from dlc_core.scan_preprocess import ScanPreprocess
from dlc_core.trajectory_metrics import write_kitti, write_tum

from .params import RELIABILITY, Param, declare, input_qos, shipped_model
from .pointcloud2 import PointCloudError, decode_cloud, xyz_to_cloud
from .ros_convert import diagnostic_array, odometry_msg, pose_stamped_msg, stamp_ns, transform_msg, twist_msg

NODE_NAME = "registration_node"
DIAGNOSTIC_NAME = "dlc_ros: registration_node"
SHIPPED_MODEL = "lidar_dlc"
REJECTIONS = ("malformed", "frame_id", "stamp", "unusable")
LATENCY_WINDOW = 100  # latest scans in the latency percentiles of the diagnostics
WARN_THROTTLE_S = 1.0
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
PATH_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TRAJECTORY_FILES = ("poses_kitti.txt", "poses_tum.txt")


# ---------------------------------------------------------------- parameters


PIPELINE, PREPROCESS = PipelineConfig(), ScanPreprocess()  # the defaults below are theirs (as in dlc bag eval)
PARAMETERS = (
    Param("model_path", "", "LiDAR model folder (model.pt + model_card.json); 'none' = ICP from the constant-velocity "
          "prior alone; empty = the shipped model (share/dlc_ros/models/lidar_dlc)"),  # fmt: skip
    Param("device", "auto", "where the network runs: auto = cuda when available", choices=("auto", "cpu", "cuda")),
    Param("points_topic", "points", "input PointCloud2 topic (remappable)", non_empty=True),
    Param("qos_reliability", "reliable", "input QoS reliability; best_effort is needed for best-effort publishers "
          "(SensorDataQoS) but loses most clouds over 1 MB with Fast DDS defaults",
          choices=tuple(RELIABILITY)),  # fmt: skip
    Param("qos_depth", 5, "input QoS history depth (keep last)", bounds=(1, 100)),
    Param("odom_frame", "odom", "frame of the odometry, the path and the TF parent (REP-105)", non_empty=True),
    Param("base_frame", "", "child frame of the odometry and TF; empty = the cloud's frame_id (no extrinsic is "
          "applied)"),  # fmt: skip
    Param("publish_tf", True, "broadcast odom_frame -> base frame with tf2_ros (where tf2_ros is installed)",
          dynamic=True),  # fmt: skip
    Param("publish_registered_cloud", False, "publish each scan moved into odom_frame on ~/registered_cloud",
          dynamic=True),  # fmt: skip
    Param("min_range", PREPROCESS.min_range, "ignore returns closer than this (m)", bounds=(0.0, 100.0)),
    Param("max_range", PREPROCESS.icp_max_range, "ignore returns farther than this (m); the network also keeps its "
          "card's limit", bounds=(1.0, 500.0)),  # fmt: skip
    Param("voxel_size", PREPROCESS.icp_voxel, "voxel size of the clouds ICP refines on (m)", bounds=(0.05, 5.0)),
    Param("passes", 0, "maximum network passes; 0 = the model card's", bounds=(0, 20)),
    Param("icp_method", PIPELINE.icp.method, "ICP refinement method from the motion prior", choices=METHODS),
    Param("icp_iterations", PIPELINE.icp.iterations, "ICP iterations per stage", bounds=(1, 500)),
    Param("icp_max_distance", PIPELINE.icp.max_correspondence_distance, "ICP correspondence distance, coarse "
          "stage (m)", bounds=(0.01, 50.0)),  # fmt: skip
    Param("icp_min_distance", PIPELINE.icp.min_correspondence_distance or 0.0, "ICP correspondence distance, fine "
          "stage (m); 0 = a single stage", bounds=(0.0, 50.0)),  # fmt: skip
    Param("network_icp_method", PIPELINE.network_icp_method, "ICP refinement method from the network's guess",
          choices=METHODS),
    Param("network_icp_max_distance", PIPELINE.network_icp_max_distance, "ICP from the network's guess: "
          "correspondence distance of its coarse stage (m)", bounds=(0.01, 50.0)),  # fmt: skip
    Param("min_fitness", PIPELINE.min_fitness, "consistency check: ICP fitness below this is a failed registration",
          bounds=(0.0, 1.0)),  # fmt: skip
    Param("fallback", PIPELINE.fallback, "try FPFH + RANSAC when the check fails (as dlc bag eval; about 1 s on a "
          "CPU)"),  # fmt: skip
    Param("keyframe_distance", PIPELINE.keyframe_distance, "odometry: scans register onto a keyframe until the "
          "vehicle has moved this far (m) or turned 10 deg; 0 = onto the previous scan", bounds=(0.0, 100.0)),  # fmt: skip
    Param("local_map_keyframes", PIPELINE.local_map_keyframes, "odometry: register onto the last this-many keyframes "
          "merged into a local map; 1 = onto the newest keyframe alone", bounds=(1, 50)),  # fmt: skip
    Param("num_threads", 0, "CPU threads for torch and GICP; 0 = all cores", bounds=(0, 256)),
    Param("max_points", 1_000_000, "refuse clouds with more points than this", bounds=(1_000, 10_000_000)),
    Param("path_max_poses", 1_000, "poses in the published path, the latest; 0 = all (each message carries them "
          "all: about 8 ms per 1000 poses on a CPU)", bounds=(0, 10_000_000)),  # fmt: skip
    Param("trajectory_dir", "", "folder for poses_kitti.txt and poses_tum.txt, written by ~/save_trajectory and at "
          "shutdown; empty = do not save", dynamic=True),  # fmt: skip
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", bounds=(0.1, 60.0)),
)


def default_model_path() -> Path:
    """The shipped model this node loads when model_path is empty."""
    return shipped_model(SHIPPED_MODEL)


# ---------------------------------------------------------------- the pipeline


def threads(values: dict[str, Any]) -> int:
    """num_threads, with 0 meaning every core."""
    return values["num_threads"] or os.cpu_count() or 1


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """The pipeline settings the parameters ask for."""
    try:
        icp = scan_icp(values["icp_method"], values["icp_max_distance"], values["icp_min_distance"] or None,
                       values["icp_iterations"], threads(values))  # fmt: skip
    except InputError as exc:
        raise InputError(f"ICP parameters: {exc}") from None
    return PipelineConfig(passes=values["passes"] or None, icp=icp, min_fitness=values["min_fitness"],
                          network_icp_method=values["network_icp_method"],
                          network_icp_max_distance=values["network_icp_max_distance"], fallback=values["fallback"],
                          keyframe_distance=values["keyframe_distance"],
                          local_map_keyframes=values["local_map_keyframes"])  # fmt: skip


def build_registrar(values: dict[str, Any]) -> tuple[ScanRegistrar, str]:
    """The pipeline around the model the parameters name (or none), and the model's path as reported."""
    from training.common import resolve_device

    if values["min_range"] >= values["max_range"]:
        raise InputError(f"min_range ({values['min_range']}) must be below max_range ({values['max_range']})")
    device, config, model = resolve_device(values["device"]), pipeline_config(values), values["model_path"]
    if model == "none":
        registrar = ScanRegistrar(ScanPreprocess(), config, device=device)
    else:
        folder = Path(model) if model else default_model_path()
        if not model and not folder.is_dir():
            raise InputError(f"{folder}: the shipped model is not installed; set model_path to a model folder, "
                             "or to 'none' for ICP alone")  # fmt: skip
        registrar, model = ScanRegistrar.load(folder, config, device), str(folder)
    card = registrar.preprocess
    crop = replace(card, min_range=values["min_range"], icp_max_range=values["max_range"],
                   max_range=min(card.max_range, values["max_range"]), icp_voxel=values["voxel_size"])  # fmt: skip
    return ScanRegistrar(crop, config, registrar.model, registrar.card, registrar.device), model


def synthetic_scan() -> np.ndarray:
    """A fixed street-like scene in the sensor frame (ground 1.73 m below, walls, posts) for the warm-up."""
    rng = np.random.default_rng(0)
    ground = np.column_stack([rng.uniform(-30, 30, (6000, 2)), np.full(6000, -1.73)])
    along = rng.uniform(-30, 30, 6000)
    walls = np.column_stack([along, np.where(np.arange(6000) % 2, 12.0, -9.0), rng.uniform(-1.7, 4.0, 6000)])
    posts = np.column_stack([rng.integers(-6, 6, 2000) * 5.0 + rng.normal(0, 0.2, 2000),
                             rng.choice([-6.0, 7.0], 2000), rng.uniform(-1.7, 2.0, 2000)])  # fmt: skip
    return np.vstack([ground, walls, posts])


def warm_up(registrar: ScanRegistrar) -> float:
    """One registration of a synthetic scan with itself, so that the first real scan pays no import or
    first-call cost (open3d, torch kernels); returns its milliseconds."""
    started = time.perf_counter()
    prepared = registrar.prepare(synthetic_scan(), "warm-up scan")
    registrar.register(prepared, prepared)
    return 1000 * (time.perf_counter() - started)


def describe_device(registrar: ScanRegistrar) -> str:
    """'cpu' or 'cuda:0 (GPU name)'."""
    device = registrar.device
    if device.type != "cuda":
        return device.type
    return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"


# ---------------------------------------------------------------- threads and admission


@dataclass(eq=False)
class Scan:
    """A decoded, admitted cloud waiting for registration."""

    points: np.ndarray
    intensity: np.ndarray | None
    stamp: int  # ns
    frame_id: str
    received: float  # time.monotonic() when the callback got it


class LatestSlot:
    """The newest unprocessed scan and a pending reset, handed from the executor thread to the worker.

    ``take`` returns the scan together with the reset flag under one lock, so a reset applies exactly to the scans
    admitted after it, however the two threads interleave."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._item: Scan | None = None
        self._reset = False
        self._closed = False

    def put(self, item: Scan, reset: bool = False) -> bool:
        """Offer the newest scan (reset the odometry first if `reset`); True when it replaced a waiting scan."""
        with self._ready:
            replaced = self._item is not None
            self._item, self._reset = item, self._reset or reset
            self._ready.notify()
        return replaced

    def request_reset(self) -> bool:
        """Discard the waiting scan and reset before the next one; True when a scan was discarded."""
        with self._ready:
            discarded = self._item is not None
            self._item, self._reset = None, True
        return discarded

    def take(self) -> tuple[Scan | None, bool]:
        """Wait for a scan: (scan, reset the odometry first?); (None, False) once closed."""
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed)
            if self._closed:
                return None, False
            item, reset = self._item, self._reset
            self._item, self._reset = None, False
            return item, reset

    def close(self) -> None:
        """Wake the worker for good."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


def format_stamp(stamp: int) -> str:
    """Nanoseconds as seconds with 9 decimals."""
    return f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}"


class ScanGate:
    """The frame and stamp admission rules of the module docstring (used by the executor thread only)."""

    def __init__(self) -> None:
        self.frame_id: str | None = None
        self.first: int | None = None
        self.last: int | None = None

    def admit(self, frame_id: str, stamp: int) -> tuple[str, str]:
        """('accept' | 'restart', '') and the stamp becomes the last one; or (rejection kind, reason)."""
        if not frame_id:
            return "frame_id", "empty header.frame_id"
        if self.frame_id is not None and frame_id != self.frame_id:
            return "frame_id", f"frame_id {frame_id!r} is not the stream's {self.frame_id!r}"
        verdict = "accept"
        if self.last is not None and stamp <= self.last:
            if not stamp <= self.first < self.last:
                how = "repeats" if stamp == self.last else "is before"
                return "stamp", f"stamp {format_stamp(stamp)} {how} the last accepted {format_stamp(self.last)}"
            verdict = "restart"
        if self.first is None or verdict == "restart":
            self.first = stamp
        self.frame_id, self.last = frame_id, stamp
        return verdict, ""

    def restart(self) -> None:
        """Forget the stamps (after a reset): the next scan starts a new trajectory whatever its stamp."""
        self.first = self.last = None


@dataclass
class Counters:
    """Cumulative event counts reported in the diagnostics (guarded by the node's stats lock)."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    lost: int = 0
    resets: int = 0
    errors: int = 0
    rejected: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict[str, int]:
        """Flat copy: totals and one key per rejection kind and registration status."""
        flat = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        flat["rejected"] = sum(self.rejected.values())
        flat.update({f"rejected {k}": self.rejected[k] for k in REJECTIONS})
        flat.update({f"status {k}": self.statuses[k] for k in ("network", "prior", "fallback", "failed")})
        return flat


def percentile_ms(values: list[float], q: float) -> str:
    """The q-th percentile of a window of milliseconds, formatted; '-' when empty."""
    return f"{np.percentile(np.array(values), q):.1f}" if values else "-"


# ---------------------------------------------------------------- the node


class RegistrationNode(Node):
    """The LiDAR odometry node (module docstring). Raises InputError at construction for a bad parameter or an
    unusable model; ``close()`` stops the worker and saves the trajectory."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        values = declare(self, PARAMETERS, self._extra_check)
        self._registrar, self._model = build_registrar(values)
        torch.set_num_threads(threads(values))  # GICP takes its count from the ICP config
        self._device = describe_device(self._registrar)
        self._warm_up_ms = warm_up(self._registrar)
        self._odometry = Odometry(self._registrar)
        self._odometry_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._counters, self._reported = Counters(), Counters().snapshot()
        self._latency_ms = {k: deque(maxlen=LATENCY_WINDOW) for k in ("received", "stamp", "registration")}
        self._last_problem = ""
        self._slot, self._gate = LatestSlot(), ScanGate()
        self._path: deque = deque(maxlen=values["path_max_poses"] or None)  # the worker's alone
        self._closed = False
        self._log_start(values)
        self._create_interfaces(values)
        self._worker = threading.Thread(target=self._work, name="registration", daemon=True)
        self._worker.start()

    # -- set-up

    @staticmethod
    def _extra_check(name: str, value: Any) -> str | None:
        """A trajectory_dir that is a file is refused (the descriptors cannot say so)."""
        if name == "trajectory_dir" and value and Path(value).is_file():
            return f"trajectory_dir {value!r} is a file, not a folder"
        return None

    def _log_start(self, values: dict[str, Any]) -> None:
        """One line with the model, the device and the warm-up time."""
        card, registrar = self._registrar.card, self._registrar
        what = "none (ICP from the prior alone)" if registrar.model is None else (
            f"{self._model} ({card.get('backbone')}, sha256 {str(card.get('sha256', ''))[:12]}, up to "
            f"{registrar.passes} passes)")  # fmt: skip
        self.get_logger().info(f"model {what} on {self._device}; ICP {values['icp_method']}; "
                               f"warm-up {self._warm_up_ms:.0f} ms")  # fmt: skip

    def _create_interfaces(self, values: dict[str, Any]) -> None:
        """Publishers, TF, services and the diagnostics timer; the subscription last, so that a matched
        subscriber means a node ready to register."""
        self._odometry_pub = self.create_publisher(OdometryMsg, "odometry", OUTPUT_QOS)
        self._path_pub = self.create_publisher(PathMsg, "path", PATH_QOS)
        self._cloud_pub = self.create_publisher(PointCloud2, "~/registered_cloud", OUTPUT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._tf = self._tf_broadcaster()
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/save_trajectory", self._on_save)
        # A steady clock: health reports keep coming when simulated time stops.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(values["diagnostics_period"], self._publish_diagnostics, clock=steady)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos,
                                            message_lost=self._on_message_lost)  # fmt: skip
        self._max_points = values["max_points"]
        self._subscription = self.create_subscription(PointCloud2, values["points_topic"], self._on_cloud,
                                                      input_qos(values), event_callbacks=events)  # fmt: skip
        self.get_logger().info(f"listening on {self._subscription.topic_name} ({values['qos_reliability']}, depth "
                               f"{values['qos_depth']}); publishing {self._odometry_pub.topic_name} in "
                               f"{values['odom_frame']}")  # fmt: skip

    def _tf_broadcaster(self) -> Any:
        """A tf2_ros TransformBroadcaster, or None (with one log line) where tf2_ros is not installed."""
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            self.get_logger().info("tf2_ros is not installed: the odom -> base TF is not broadcast (Odometry is)")
            return None
        return TransformBroadcaster(self)

    # -- executor thread

    def _on_cloud(self, msg: PointCloud2) -> None:
        """Decode and admit a cloud, then hand it to the worker (replacing, and counting, a stale one)."""
        received = time.monotonic()
        with self._stats_lock:
            self._counters.received += 1
        try:
            cloud = decode_cloud(msg, max_points=self._max_points)
        except PointCloudError as exc:
            return self._reject("malformed", str(exc))
        if len(cloud.points) < 3:
            return self._reject("malformed", f"PointCloud2: {len(cloud.points)} finite points")
        stamp = stamp_ns(msg.header.stamp)
        verdict, reason = self._gate.admit(msg.header.frame_id, stamp)
        if reason:
            return self._reject(verdict, reason)
        if verdict == "restart":
            self.get_logger().info(f"stamp {format_stamp(stamp)} is at or before the trajectory's first: the stream "
                                   "restarted (bag loop); starting a new trajectory")  # fmt: skip
        scan = Scan(cloud.points, cloud.intensity, stamp, msg.header.frame_id, received)
        if self._slot.put(scan, reset=verdict == "restart"):
            with self._stats_lock:
                self._counters.dropped += 1

    def _reject(self, kind: str, reason: str) -> None:
        """Count a refused scan and warn (at most once a second)."""
        with self._stats_lock:
            self._counters.rejected[kind] += 1
            total = sum(self._counters.rejected.values())
            self._last_problem = f"rejected ({kind}): {reason}"
        self.get_logger().warning(f"rejected a scan ({kind}): {reason} [{total} rejected so far]",
                                  throttle_duration_sec=WARN_THROTTLE_S)  # fmt: skip

    def _on_incompatible_qos(self, info: QoSRequestedIncompatibleQoSInfo) -> None:
        """One clear warning per publisher whose QoS cannot match this subscription."""
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        hint = " (set qos_reliability:=best_effort to accept best-effort publishers)" if policy == "RELIABILITY" else ""
        self.get_logger().warning(f"{self._subscription.topic_name}: a publisher offers an incompatible QoS "
                                  f"({policy}), its clouds will not arrive{hint}")  # fmt: skip

    def _on_message_lost(self, info: QoSMessageLostInfo) -> None:
        """Clouds the middleware lost before the callback (e.g. best-effort fragments) count as lost."""
        with self._stats_lock:
            self._counters.lost += info.total_count_change

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """~/reset: the next scan starts a new trajectory at the identity (a waiting scan is discarded)."""
        self._gate.restart()
        if self._slot.request_reset():
            with self._stats_lock:
                self._counters.dropped += 1
        response.success, response.message = True, "the odometry restarts at the next scan"
        return response

    def _on_save(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """~/save_trajectory: write the trajectory so far to trajectory_dir."""
        try:
            response.message, response.success = self.save_trajectory(), True
        except InputError as exc:
            response.message, response.success = str(exc), False
        return response

    # -- worker thread

    def _work(self) -> None:
        """Register the newest scan until closed; no exception ends the thread while the node runs."""
        while True:
            scan, reset = self._slot.take()
            if scan is None:
                return
            try:
                if reset:
                    self._reset_trajectory()
                self._register(scan)
            except InputError as exc:
                self._reject("unusable", str(exc))
            except Exception as exc:  # noqa: BLE001  (a failing model or library must not kill the node)
                if not self.context.ok():
                    return
                with self._stats_lock:
                    self._counters.errors += 1
                    self._last_problem = f"registration error: {type(exc).__name__}: {exc}"
                self.get_logger().error(self._last_problem, throttle_duration_sec=WARN_THROTTLE_S)

    def _reset_trajectory(self) -> None:
        """Start a new trajectory (the odometry and the path)."""
        with self._odometry_lock:
            self._odometry.reset()
        self._path.clear()
        with self._stats_lock:
            self._counters.resets += 1
        self.get_logger().info("odometry reset: the next scan starts a new trajectory")

    def _register(self, scan: Scan) -> None:
        """Add one scan to the odometry and publish the result."""
        started = time.perf_counter()
        with self._odometry_lock:
            step = self._odometry.step(scan.points, scan.stamp * 1e-9)
            previous = self._odometry.stamps[-2] if step.motion is not None else None
        registration_ms = 1000 * (time.perf_counter() - started)
        twist = twist_msg(step.motion, scan.stamp * 1e-9 - previous) if step.motion is not None else None
        self._publish(scan, step.pose, twist)
        with self._stats_lock:
            self._counters.processed += 1
            self._counters.statuses[step.pair.status if step.pair else "first"] += 1
            self._latency_ms["received"].append(1000 * (time.monotonic() - scan.received))
            self._latency_ms["stamp"].append((self.get_clock().now().nanoseconds - scan.stamp) / 1e6)
            self._latency_ms["registration"].append(registration_ms)

    def _publish(self, scan: Scan, pose: np.ndarray, twist: Any) -> None:
        """Odometry first (its latency is what users feel), then TF, the path and the optional cloud."""
        odom_frame = self.get_parameter("odom_frame").value
        child = self.get_parameter("base_frame").value or scan.frame_id
        self._odometry_pub.publish(odometry_msg(pose, scan.stamp, odom_frame, child, twist))
        if self._tf is not None and self.get_parameter("publish_tf").value:
            self._tf.sendTransform(transform_msg(pose, scan.stamp, odom_frame, child))
        self._path.append(pose_stamped_msg(pose, scan.stamp, odom_frame))
        path = PathMsg(poses=list(self._path))
        path.header.stamp, path.header.frame_id = self._path[-1].header.stamp, odom_frame
        self._path_pub.publish(path)
        if self.get_parameter("publish_registered_cloud").value:
            moved = transform_cloud(scan.points, pose)
            self._cloud_pub.publish(xyz_to_cloud(moved, scan.intensity, odom_frame, scan.stamp))

    # -- diagnostics

    def _publish_diagnostics(self) -> None:
        """One DiagnosticStatus: level and summary for the last period, cumulative counts, latency, device, model."""
        with self._stats_lock:
            now, ms = self._counters.snapshot(), {k: list(v) for k, v in self._latency_ms.items()}
            window = {k: now[k] - self._reported.get(k, 0) for k in now}
            self._reported, problem = now, self._last_problem
        level, message = self._health(window, problem)
        qos = f"{self.get_parameter('qos_reliability').value}, depth {self.get_parameter('qos_depth').value}"
        values = {
            "device": self._device, "model": self._model, "backbone": self._registrar.card.get("backbone", "none"),
            "warm-up ms": f"{self._warm_up_ms:.0f}", "points topic": self._subscription.topic_name, "input qos": qos,
            "latency ms p50": percentile_ms(ms["received"], 50), "latency ms p95": percentile_ms(ms["received"], 95),
            "stamp to publish ms p50": percentile_ms(ms["stamp"], 50),
            "registration ms p50": percentile_ms(ms["registration"], 50), **now, "last problem": problem or "-",
        }  # fmt: skip
        self._diagnostics_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), DIAGNOSTIC_NAME,
                                                       self._gate.frame_id or "", level, message, values))  # fmt: skip

    def _health(self, window: dict[str, int], problem: str) -> tuple[str, str]:
        """(OK | WARN | ERROR, summary) of the last diagnostics period."""
        if window["errors"]:
            return "ERROR", f"{window['errors']} registration errors; last: {problem}"
        kinds = ("dropped", "lost", "rejected", "status fallback", "status failed")
        issues = [f"{window[k]} {k}" for k in kinds if window[k]]
        if issues:
            return "WARN", ", ".join(issues) + " in the last period"
        if not window["received"] and not window["processed"]:
            return "WARN", f"no scan on {self._subscription.topic_name} in the last period"
        return "OK", f"{window['processed']} scans registered"

    # -- trajectory and shutdown

    def save_trajectory(self) -> str:
        """Write the current trajectory to trajectory_dir (KITTI and TUM); returns what was written, in one line."""
        folder = self.get_parameter("trajectory_dir").value
        if not folder:
            raise InputError("trajectory_dir is empty: set it to a folder to save the trajectory")
        with self._odometry_lock:
            poses, stamps = np.array(self._odometry.poses).reshape(-1, 4, 4), np.array(self._odometry.stamps)
        if not len(poses):
            raise InputError("no pose yet: nothing to save")
        kitti, tum = (Path(folder) / name for name in TRAJECTORY_FILES)
        try:
            write_kitti(kitti, poses)
            write_tum(tum, stamps, poses)
        except OSError as err:
            raise InputError(f"{folder}: cannot write the trajectory ({err.strerror})") from None
        return f"saved {len(poses)} poses to {kitti} and {tum}"

    def close(self) -> None:
        """Stop the worker (after the scan in progress) and save the trajectory when trajectory_dir is set."""
        if self._closed:
            return
        self._closed = True
        self._slot.close()
        self._worker.join()
        if self.get_parameter("trajectory_dir").value:
            try:
                print(f"registration_node: {self.save_trajectory()}", file=sys.stderr, flush=True)
            except InputError as exc:
                print(f"registration_node: trajectory not saved: {exc}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- entry points


def cli_main(args: argparse.Namespace) -> int:
    """``dlc node registration [--ros-args ...]``."""
    from .bringup import spin_nodes

    return spin_nodes([RegistrationNode], args.ros_args)


def main(argv: list[str] | None = None) -> int:
    """Console script ``registration_node`` (``ros2 run dlc_ros registration_node [--ros-args ...]``)."""
    from .bringup import console_main

    return console_main(RegistrationNode, NODE_NAME, PARAMETERS, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
