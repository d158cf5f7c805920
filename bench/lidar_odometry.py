"""Consecutive-scan odometry, ours against KISS-ICP on the same scans in the same run (issue 3 §4).

For each sequence (real kitti_mini sequences, and simulated ones written by `dlc sim` when --sim is given) and each
method, a fresh Python process reads the scans one at a time and times every odometry step (reading excluded, so
the peak memory is the method's plus one scan), and reports
mean RTE/RRE per consecutive pair, ATE, the KITTI devkit t_err/r_err when the path is long enough, the median and
p95 time per frame and the process's peak memory. Methods: our pipeline with each --models folder ("none" = ICP
from the constant-velocity prior only), each once per --modes entry, and KISS-ICP 1.3 (1 m voxel, no deskew, as in DECISIONS D4). Each process
runs on one thread (OMP_NUM_THREADS=1, KISS-ICP max_num_threads=1), so the comparison is per core.

    python bench/lidar_odometry.py --models models/lidar_dlc,models/lidar_nodlc,none --modes 0:1,3:1,3:6 \
        --sim runs/sim/00,runs/sim/05
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlc_core.atomic import write_json  # noqa: E402
from dlc_core.data.kitti import KittiSequence  # noqa: E402
from dlc_core.trajectory_metrics import ate_rmse, devkit_errors, pair_errors  # noqa: E402
from bench.experiment_common import shared_data  # noqa: E402
from training import common  # noqa: E402

KISS = "kiss-icp"


def open_sequence(spec: str, kitti: str) -> KittiSequence:
    """'kitti:SS' (a sequence of --kitti, poses.txt) or a folder written by dlc sim."""
    if spec.startswith("kitti:"):
        return KittiSequence.open(kitti, spec.split(":", 1)[1], "poses.txt")
    return KittiSequence.open_folder(spec)


def kiss_steps(scans: Iterator[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
    """KISS-ICP poses (first scan's frame) and seconds per frame."""
    from kiss_icp.config import KISSConfig
    from kiss_icp.kiss_icp import KissICP

    config = KISSConfig()
    config.data.deskew, config.data.max_range, config.mapping.voxel_size = False, 100.0, 1.0
    config.registration.max_num_threads = 1
    odometry, poses, seconds = KissICP(config), [], []
    for scan in scans:
        started = time.perf_counter()
        odometry.register_frame(scan[:, :3].astype(np.float64), np.zeros(len(scan)))
        seconds.append(time.perf_counter() - started)
        poses.append(odometry.last_pose.copy())
    return poses, seconds


def our_steps(scans: Iterator[np.ndarray], stamps: np.ndarray, model: str, mode: tuple[float, int], icp: str
              ) -> tuple[list[np.ndarray], list[float], dict]:  # fmt: skip
    """Our odometry's poses, seconds per frame and status counts (keyframes counted as "keyframes"); ICP method
    `icp` on one thread, the rest of the pipeline as shipped."""
    from dlc_core.odometry import Odometry
    from dlc_core.pipeline import PipelineConfig, ScanRegistrar
    from dlc_core.scan_preprocess import ScanPreprocess

    config = PipelineConfig(icp=replace(PipelineConfig().icp, method=icp, num_threads=1), keyframe_distance=mode[0],
                            local_map_keyframes=mode[1])  # fmt: skip
    registrar = ScanRegistrar(ScanPreprocess(), config) if model == "none" else ScanRegistrar.load(REPO / model, config)
    odometry, seconds, statuses = Odometry(registrar), [], {}
    for scan, stamp in zip(scans, stamps):
        started = time.perf_counter()
        step = odometry.step(scan, float(stamp))
        seconds.append(time.perf_counter() - started)
        if step.pair is not None:
            statuses[step.pair.status] = statuses.get(step.pair.status, 0) + 1
        statuses["keyframes"] = statuses.get("keyframes", 0) + step.keyframe
    return odometry.poses, seconds, statuses


def measure(method: str, spec: str, kitti: str, frames: int, mode: tuple[float, int], icp: str) -> dict:
    """One method on one sequence (run in its own process: the peak memory is this run's)."""
    seq = open_sequence(spec, kitti)
    count = min(len(seq), frames)
    scans = (seq.scan(k) for k in range(count))
    gt = np.stack([seq.relative(0, k) for k in range(count)])
    statuses: dict = {}
    if method == KISS:
        poses, seconds = kiss_steps(scans)
    else:
        from dlc_core.pipeline import PipelineConfig  # not imported for KISS-ICP: its peak memory is its own

        icp = icp or PipelineConfig().icp.method
        poses, seconds, statuses = our_steps(scans, seq.times[:count], method, mode, icp)
    poses = np.array(poses).reshape(-1, 4, 4)
    te, re = pair_errors(poses, gt)
    ours = method != KISS
    return {"method": method, "keyframe_distance": mode[0] if ours else None,
            "local_map_keyframes": mode[1] if ours else None, "icp": icp if ours else None,
            "sequence": spec, "frames": count, "rte_m_mean": float(te.mean()),
            "rre_deg_mean": float(re.mean()), "ate_m": ate_rmse(poses, gt), **devkit_errors(poses, gt),
            "time_ms": common.time_stats_ms(seconds[1:]), "peak_rss_mb": round(common.peak_rss_mb(), 1),
            "statuses": statuses}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kitti", default=shared_data("kitti_mini"),
                        help="KITTI root (relative paths: from the repository root)")
    parser.add_argument("--sequences", default="01,02,10", help="kitti_mini sequences")
    parser.add_argument("--sim", default="", help="comma-separated folders written by dlc sim")
    parser.add_argument("--models", default="models/lidar_dlc,models/lidar_nodlc,none")
    parser.add_argument("--frames", type=int, default=100000, help="at most this many frames per sequence")
    parser.add_argument("--modes", default="0:1,3:1,3:6", help="our methods run once per DISTANCE:KEYFRAMES entry "
                        "(keyframe distance in m, 0 = scan-to-scan; keyframes in the local map, 1 = none)")  # fmt: skip
    parser.add_argument("--icp", default="", help="ICP method of our pipeline (dlc eval pairs --icp; default the pipeline's)")
    parser.add_argument("--json", default=str(REPO / "bench/results/lidar_odometry.json"))
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SEQUENCE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        distance, keyframes = args.one[2].split(":")
        print(json.dumps(measure(args.one[0], args.one[1], args.kitti, args.frames, (float(distance), int(keyframes)),
                                 args.icp)))  # fmt: skip
        return
    specs = [f"kitti:{s}" for s in args.sequences.split(",") if s] + [s for s in args.sim.split(",") if s]
    modes = [(float(d), int(k)) for d, k in (entry.split(":") for entry in args.modes.split(","))]
    methods = [(m, mode) for m in args.models.split(",") if m for mode in modes] + [(KISS, (0.0, 1))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    for spec in specs:
        for method, mode in methods:
            cmd = [sys.executable, __file__, "--kitti", args.kitti, "--frames", str(args.frames), "--icp", args.icp, "--one", method, spec,
                   f"{mode[0]}:{mode[1]}"]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if proc.returncode:
                sys.exit(f"{method} on {spec} failed:\n{proc.stderr[-2000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[-1]
            label = method if method == KISS else f"{method} {mode[0]:g} m x {mode[1]}"
            print(f"{spec:>16} {label:>28}  RTE {r['rte_m_mean']:.3f} m  ATE {r['ate_m']:.3f} m  "
                  f"t_err {r['t_err_pct'] if r['t_err_pct'] is None else round(r['t_err_pct'], 2)}  "
                  f"median {r['time_ms']['median']:.0f} ms  peak {r['peak_rss_mb']:.0f} MB  {r['statuses']}", flush=True)
    write_json(args.json, {"benchmark": "lidar_odometry", "command": "python " + shlex.join(sys.argv),
                           "date": common.now_iso(), "machine": common.machine(), "threads_per_method": 1,
                           "kiss_icp": {"version": kiss_version(), "voxel_size": 1.0, "deskew": False, "max_range": 100.0},
                           "runs": runs})  # fmt: skip
    print(f"wrote {args.json}")


def kiss_version() -> str:
    from importlib.metadata import version

    return version("kiss-icp")


if __name__ == "__main__":
    main()
