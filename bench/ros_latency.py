"""Benchmark: end-to-end latency of registration_node over DDS, and its overhead over the offline pipeline.

The node runs in its own process (as under ros2 run). This script publishes real KITTI scans to it at --rate Hz
(10 Hz, the HDL-64E's rate), each stamped with the wall clock at publication, and takes the wall clock when the
matching nav_msgs/Odometry arrives: latency = receipt - stamp, i.e. transport + decoding + registration + transport
back. A scan without odometry was dropped (the node keeps only the newest scan; its diagnostics say why). The scans
come from a bag that is made from ../shared/data/kitti_mini at run time (DECISIONS D4; --bag plays another), in
ping-pong order (0, 1, ..., n-1, n-2, ..., 0, 1, ...) so that every pair is a real consecutive KITTI pair however
many frames are sent. Before the node starts, the same frames go through the same pipeline offline (dlc_core's
Odometry, the node's default settings). The ROS overhead is the latency's median minus the registration time's
median, both as the node measured them on the scans it registered (its diagnostics): transport both ways, decoding
and the wait for the worker. When scans are dropped the node registers wider gaps than the offline run (harder
pairs, fallbacks), so its registration time is compared with the offline one as well.

    .venv/bin/python bench/ros_latency.py [--frames 200] [--rate 10] [--model models/lidar_dlc|none]
        [--keyframe-distance M] [--qos reliable|best_effort] [--transport DEFAULT|UDPv4|SHM|LARGE_DATA] [--out bench/results/ros_latency.json]

The transport is Fast DDS's FASTDDS_BUILTIN_TRANSPORTS for both processes (DEFAULT = UDPv4 + shared memory).
Discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a ROS_DOMAIN_ID of this run's own).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Before rclpy starts: discovery on this machine only, and a domain of our own unless the caller chose one.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 199)))

TOPIC = "/bench/points"
SETTLE_S = 1.0  # after the subscription matched, before the first scan (see bag_play.DISCOVERY_SETTLE_S)
DRAIN_S = 10.0  # how long to wait for the odometry of the last scans


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200, help="scans to publish (default 200: 20 s at 10 Hz)")
    p.add_argument("--rate", type=float, default=10.0, help="publication rate in Hz (default 10)")
    p.add_argument("--model", default="none", help="model folder for the node, or 'none' (ICP alone; default)")
    p.add_argument("--bag", default=None, help="bag to play (default: kitti_mini sequence --sequence, converted now)")
    p.add_argument("--sequence", default="02", help="kitti_mini sequence to convert (default 02)")
    p.add_argument("--keyframe-distance", type=float, default=None, help="the node's keyframe_distance (default: its own)")
    p.add_argument("--qos", default="reliable", choices=("reliable", "best_effort"), help="input QoS (both sides)")
    p.add_argument("--transport", default="DEFAULT", choices=("DEFAULT", "UDPv4", "SHM", "LARGE_DATA"))
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "ros_latency.json"))
    return p.parse_args()


def shared_data() -> Path:
    """$DLC_SHARED_DATA, else <repo>/../shared/data (as the tests find it)."""
    return Path(os.environ.get("DLC_SHARED_DATA") or REPO.parent / "shared" / "data")


def load_clouds(args: argparse.Namespace, workdir: Path) -> tuple[list, str]:
    """The bag's PointCloud2 messages (rclpy) and a description of where they came from."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2

    from dlc_ros.bag_io import convert_sequence, open_bag, pointcloud_topic

    bag = Path(args.bag) if args.bag else workdir / "bag"
    if not args.bag:
        convert_sequence(shared_data() / "kitti_mini" / "sequences" / args.sequence, bag)
    with open_bag(bag) as reader:
        clouds = [deserialize_message(raw, PointCloud2) for _, raw, _ in reader.messages(pointcloud_topic(reader))]
    return clouds, str(args.bag or f"kitti_mini sequence {args.sequence} (converted at run time)")


def ping_pong(frames: int, scans: int) -> list[int]:
    """0, 1, ..., scans-1, scans-2, ..., 0, 1, ... (frames entries)."""
    period = max(1, 2 * scans - 2)
    return [abs((i + scans - 1) % period - (scans - 1)) for i in range(frames)]


def node_parameters(args: argparse.Namespace) -> dict:
    """The parameters this run sets on the node (the rest keep the node's defaults)."""
    chosen = {"model_path": args.model, "points_topic": TOPIC, "qos_reliability": args.qos, "diagnostics_period": 1.0}
    if args.keyframe_distance is not None:
        chosen["keyframe_distance"] = args.keyframe_distance
    return chosen


def node_settings(params: dict) -> dict:
    """Every node parameter in effect: its defaults with `params` over them."""
    from dlc_ros.registration_node import PARAMETERS

    return {**{p.name: p.default for p in PARAMETERS}, **params}


def offline_ms(clouds: list, order: list[int], settings: dict) -> list[float]:
    """Milliseconds per Odometry.step of the same frames with the node's settings."""
    from dlc_core.odometry import Odometry
    from dlc_ros.pointcloud2 import decode_cloud
    from dlc_ros.registration_node import build_registrar, warm_up

    registrar, _ = build_registrar(settings)
    warm_up(registrar)
    odometry, points, times = Odometry(registrar), [decode_cloud(c).points for c in clouds], []
    for k, frame in enumerate(order):
        started = time.perf_counter()
        odometry.step(points[frame], float(k))
        times.append(1000 * (time.perf_counter() - started))
    return times[1:]  # the first scan has no registration


def run_node(params: dict, log: Path) -> subprocess.Popen:
    """registration_node in its own process with these parameters."""
    ros_args = [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "dlc_ros.registration_node", "--ros-args", *ros_args],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip


def measure(args: argparse.Namespace, clouds: list, order: list[int], node: subprocess.Popen) -> dict:
    """Publish the frames at args.rate with live stamps; latency per received odometry, and the node's last
    diagnostics."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from dlc_ros.ros_convert import stamp_ns, time_msg

    rclpy.init()
    bench, received, diagnostics = Node("ros_latency_bench"), {}, []
    reliability = ReliabilityPolicy.RELIABLE if args.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT
    publisher = bench.create_publisher(PointCloud2, TOPIC, QoSProfile(depth=5, reliability=reliability))
    def on_odometry(msg: Odometry) -> None:  # noqa: E306
        received.setdefault(stamp_ns(msg.header.stamp), time.time_ns())

    bench.create_subscription(Odometry, "/odometry", on_odometry, 50)
    bench.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.append(m), 10)
    executor = SingleThreadedExecutor()
    executor.add_node(bench)
    try:
        deadline = time.monotonic() + 180
        while not publisher.get_subscription_count():
            if node.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("error: the node did not start (see its log)")
            executor.spin_once(timeout_sec=0.1)
        executor.spin_until_future_complete(rclpy.task.Future(), timeout_sec=SETTLE_S)
        sent, start = [], time.monotonic()
        for k, frame in enumerate(order):
            due = start + k / args.rate
            while (left := due - time.monotonic()) > 0:
                executor.spin_once(timeout_sec=left)
            cloud = clouds[frame]
            stamp = time.time_ns()
            cloud.header.stamp = time_msg(stamp)
            publisher.publish(cloud)
            sent.append(stamp)
        drain = time.monotonic() + DRAIN_S
        while time.monotonic() < drain and not all(s in received for s in sent[-3:]):
            executor.spin_once(timeout_sec=0.1)
        executor.spin_until_future_complete(rclpy.task.Future(), timeout_sec=1.5)  # one more diagnostics message
    finally:
        bench.destroy_node()
        rclpy.try_shutdown()
    latency = [(received[s] - s) / 1e6 for s in sent if s in received]
    statuses = [s for m in diagnostics for s in m.status if s.name == "dlc_ros: registration_node"]
    node_values = {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}
    return {"sent": len(sent), "latency": latency, "node": node_values}


def stats(ms: list[float]) -> dict[str, float | None]:
    """p50, p95, mean, max of milliseconds (None when empty)."""
    if not ms:
        return {"p50": None, "p95": None, "mean": None, "max": None}
    a = np.asarray(ms)
    return {"p50": round(float(np.median(a)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "mean": round(float(a.mean()), 1), "max": round(float(a.max()), 1)}  # fmt: skip


def main() -> int:
    args = parse_args()
    if args.transport != "DEFAULT":
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = args.transport
    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        clouds, source = load_clouds(args, Path(tmp))
        order = ping_pong(args.frames, len(clouds))
        print(f"offline: {len(order)} frames of {source} through the pipeline", flush=True)
        params = node_parameters(args)
        settings = node_settings(params)
        offline = offline_ms(clouds, order, settings)
        print(f"ROS: publishing {len(order)} frames at {args.rate:g} Hz to registration_node", flush=True)
        node = run_node(params, Path(tmp) / "node.log")
        try:
            result = measure(args, clouds, order, node)
        finally:
            node.send_signal(signal.SIGINT)
            node.wait(timeout=60)
    latency, offline_stats = stats(result["latency"]), stats(offline)
    node_text = result["node"].get("registration ms p50", "-")  # '-' when the node registered nothing
    node_ms = None if node_text == "-" else float(node_text)
    report = {
        "benchmark": "ros_latency", "command": " ".join([Path(sys.executable).name, *sys.argv]), "date": now_iso(),
        "machine": machine(), "load_average_1_5_15": [round(x, 2) for x in load], "model": args.model, "data": source,
        "node_parameters": params, "keyframe_distance_m": settings["keyframe_distance"],
        "local_map_keyframes": settings["local_map_keyframes"],
        "rate_hz": args.rate, "frames_published": result["sent"], "frames_received": len(result["latency"]),
        "dropped_share": round(1 - len(result["latency"]) / max(1, result["sent"]), 4), "latency_ms": latency,
        "offline_ms": offline_stats, "node_registration_ms_p50": node_ms,
        "ros_overhead_ms": None if latency["p50"] is None or node_ms is None else round(latency["p50"] - node_ms, 1),
        "qos": {"input": f"{args.qos}, keep last 5, volatile", "odometry": "reliable, keep last 10, volatile"},
        "transport": {"FASTDDS_BUILTIN_TRANSPORTS": args.transport, "rmw": "rmw_fastrtps_cpp (default)"},
        "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]), "node_diagnostics": result["node"],
    }  # fmt: skip
    write_json(args.out, report)
    print(f"latency p50 {latency['p50']} ms, p95 {latency['p95']} ms; dropped {report['dropped_share']:.0%}; offline "
          f"p50 {offline_stats['p50']} ms, in the node {node_ms} ms; ROS overhead {report['ros_overhead_ms']} ms "
          f"-> {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
