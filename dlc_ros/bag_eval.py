"""``dlc bag eval``: replay a bag through the odometry pipeline offline (no DDS), the same code the node runs.

Outputs in --out: poses in KITTI and TUM formats, PNG plots (top-view trajectory against the ground truth,
per-frame translation/rotation error, per-frame time), and the metrics JSON (DESIGN.md §2, odometry keys).
Frames that cannot be used (a corrupt message, a malformed cloud, too few points) are skipped, counted in the
JSON and listed on stderr; the run then exits with code 1 unless --allow-skips.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dlc_core.atomic import write_json
from dlc_core.errors import InputError
from dlc_core.odometry import Odometry
from dlc_core.plots import plot_series, plot_trajectory
from dlc_core.trajectory_metrics import ate_rmse, devkit_errors, pair_errors, write_kitti, write_tum
from training import common
from training.pairs import build_registrar

from .bag_io import ground_truth, iter_clouds, open_bag, pointcloud_topic

EXIT_SKIPPED = 1


def replay(bag_path: Path, registrar, topic: str | None) -> dict:
    """Run the odometry over every cloud of the bag; per-frame stamps, poses, times, statuses, skips, and the
    number of keyframes."""
    odometry = Odometry(registrar)
    seconds, statuses, skips, stamps_ns, keyframes = [], [], [], [], 0
    with open_bag(bag_path) as bag:
        topic = pointcloud_topic(bag, topic)
        gt = ground_truth(bag)
        for stamp, cloud in common.progress(iter_clouds(bag, topic), bag.count(topic), "frames"):
            if isinstance(cloud, str):
                skips.append(cloud)
                continue
            started = time.perf_counter()
            try:
                step = odometry.step(cloud.points, stamp * 1e-9)
            except InputError as exc:
                skips.append(f"frame at {stamp} ns: {exc}")
                continue
            seconds.append(time.perf_counter() - started)
            stamps_ns.append(stamp)
            statuses.append(step.pair.status if step.pair else "first")
            keyframes += step.keyframe
    return {"topic": topic, "stamps": np.array(odometry.stamps), "stamps_ns": stamps_ns, "poses": np.array(odometry.poses).reshape(-1, 4, 4),
            "seconds": seconds, "statuses": statuses, "skips": skips, "gt": gt, "keyframes": keyframes}  # fmt: skip


def matched_ground_truth(stamps_ns: list[int], gt: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """Ground-truth poses at the replayed frames' stamps (exact nanosecond match), re-based on the first frame."""
    if gt is None:
        return None
    index = {int(s): k for k, s in enumerate(gt[0])}
    keys = [int(s) for s in stamps_ns]
    if not all(k in index for k in keys):
        return None
    poses = gt[1][[index[k] for k in keys]]
    return np.linalg.inv(poses[0]) @ poses


def evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``dlc bag eval``."""
    registrar = build_registrar(args)
    run = replay(Path(args.bag), registrar, args.topic)
    for line in run["skips"]:
        print(f"skipped: {line}", file=sys.stderr)
    poses, stamps = run["poses"], run["stamps"]
    if len(poses) < 2:
        raise InputError(f"{args.bag}: fewer than two usable frames ({len(run['skips'])} skipped)")
    out = Path(args.out)
    write_kitti(out / "poses_kitti.txt", poses)
    write_tum(out / "poses_tum.txt", stamps, poses)
    gt = matched_ground_truth(run["stamps_ns"], run["gt"])
    metrics: dict = {"rte_m_mean": None, "rre_deg_mean": None, "t_err_pct": None, "r_err_deg_per_100m": None, "ate_m": None}
    series = {"time per frame": 1000 * np.array(run["seconds"][1:])}
    if gt is not None:
        te, re = pair_errors(poses, gt)
        metrics.update(rte_m_mean=float(te.mean()), rre_deg_mean=float(re.mean()), ate_m=ate_rmse(poses, gt),
                       rte_m_median=float(np.median(te)), **devkit_errors(poses, gt))  # fmt: skip
        series = {"translation error": te, "rotation error": re, **series}
    else:
        metrics["reason"] = "the bag has no ground truth matching the replayed frames"
    plot_trajectory(out / "trajectory.png", poses, gt, f"{Path(args.bag).name}: {len(poses)} frames")
    plot_series(out / "errors.png", series, {"translation error": "RTE (m)", "rotation error": "RRE (deg)",
                                             "time per frame": "ms"}, "per consecutive pair")  # fmt: skip
    counts = Counter(run["statuses"][1:])
    result = {
        "task": "odometry", "model": args.model, "data": str(args.bag), "topic": run["topic"], "command": args.command,
        "frames": len(poses), "skipped": len(run["skips"]), "skipped_reasons": run["skips"][:20], **metrics,
        "status_rates": {s: counts[s] / max(1, len(poses) - 1) for s in ("network", "prior", "fallback", "failed")},
        "keyframe_distance_m": registrar.config.keyframe_distance,
        "local_map_keyframes": registrar.config.local_map_keyframes, "keyframes": run["keyframes"],
        "time_ms": common.time_stats_ms(run["seconds"][1:]), "dropped": 0,
        "peak_rss_mb": round(common.peak_rss_mb(), 1), "device": registrar.device.type, "machine": common.machine(),
        "date": common.now_iso(), "outputs": sorted(p.name for p in out.iterdir()),
    }  # fmt: skip
    write_json(args.json or out / "metrics.json", result)
    print_summary(result, out)
    if result["skipped"] and not args.allow_skips:
        print(f"error: {result['skipped']} frames were skipped (see above); pass --allow-skips to accept", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def print_summary(result: dict, out: Path) -> None:
    """The metrics table and where the files are."""
    def fmt(v, spec):  # noqa: E306
        return "-" if v is None else format(v, spec)

    print(f"frames {result['frames']}  skipped {result['skipped']}")
    print(f"RTE per pair  mean {fmt(result['rte_m_mean'], '.3f')} m   RRE mean {fmt(result['rre_deg_mean'], '.3f')} deg")
    print(f"ATE {fmt(result['ate_m'], '.3f')} m   t_err {fmt(result['t_err_pct'], '.2f')} %   "
          f"r_err {fmt(result['r_err_deg_per_100m'], '.3f')} deg/100 m" + (f"  ({result['reason']})" if result.get("reason") else ""))
    print(f"time per frame  median {fmt(result['time_ms']['median'], '.0f')} ms  p95 {fmt(result['time_ms']['p95'], '.0f')} ms   "
          f"peak memory {result['peak_rss_mb']:.0f} MB")
    print(f"plots and poses in {out}/")  # fmt: skip
