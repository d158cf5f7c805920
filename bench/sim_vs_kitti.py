"""Benchmark: a simulated scan beside a real KITTI scan (the README figure), their statistics, and the simulator's
time per frame.

The real scan is KITTI sequence 10, frame 0 (../shared/data/kitti_mini); the simulated one is frame 0 of a drive
along the first frames of the official sequence-10 trajectory (same Tr), in a world made from --seed. Both are
drawn as a top view and a side view with the same axis ranges (+-50 m) and the same height colours, and as range
images (azimuth x elevation, coloured by range) that show the rings, the body shadow and the returns per beam.
Timing drives the simulator along the first --timing-frames poses of sequence 02 (about 1.5 m per frame, so the
scene is rebuilt every ~20 frames) and reports the first frame (which builds the world) apart from the rest.

    .venv/bin/python bench/sim_vs_kitti.py [--seed 0] [--timing-frames 100] [--out bench/results/sim_vs_kitti]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlc_core.atomic import atomic_path, write_json  # noqa: E402
from dlc_core.sim.lidar import Sensor  # noqa: E402
from dlc_core.sim.writer import drive, parse_calib, velodyne_poses  # noqa: E402

RANGE_BINS = [0.0, 10.0, 20.0, 40.0, 80.0, np.inf]
RANGE_LABELS = ["0-10", "10-20", "20-40", "40-80", ">80"]
GROUND_Z = -1.4
VIEW_M = 50.0
SIM_PATH_FRAMES = 300  # the road follows the first 300 poses of sequence 10 (about 45 m, turning)


def shared_data() -> Path:
    """$DLC_SHARED_DATA, else <repo>/../shared/data (as the tests find it)."""
    return Path(os.environ.get("DLC_SHARED_DATA") or REPO.parent / "shared" / "data")


def statistics(points: np.ndarray) -> dict[str, object]:
    """Point count, fraction of points per range bin, fraction below the ground threshold, reflectance mean."""
    ranges = np.linalg.norm(points[:, :3], axis=1)
    counts, _ = np.histogram(ranges, RANGE_BINS)
    return {
        "points": int(len(points)),
        "range_fraction": {k: round(float(c) / len(points), 4) for k, c in zip(RANGE_LABELS, counts)},
        "ground_fraction_z_below_-1.4m": round(float(np.mean(points[:, 2] < GROUND_Z)), 4),
        "reflectance_mean": round(float(points[:, 3].mean()), 4),
    }


def mean_statistics(rows: list[dict]) -> dict[str, object]:
    """The mean of several `statistics` results (point counts, range fractions, ground share, reflectance)."""
    return {
        "points": round(float(np.mean([r["points"] for r in rows]))),
        "range_fraction": {k: round(float(np.mean([r["range_fraction"][k] for r in rows])), 4) for k in RANGE_LABELS},
        "ground_fraction_z_below_-1.4m": round(float(np.mean([r["ground_fraction_z_below_-1.4m"] for r in rows])), 4),
        "reflectance_mean": round(float(np.mean([r["reflectance_mean"] for r in rows])), 4),
    }


def poses_of(sequence: str, frames: int, calib: Path) -> np.ndarray:
    """Velodyne poses of the first `frames` lines of an official KITTI ground-truth trajectory."""
    lines = (shared_data() / "kitti_mini" / "poses_full_kitti_gt" / f"{sequence}.txt").read_text().splitlines()
    return velodyne_poses(lines[:frames], parse_calib(calib.read_text(), str(calib)).tr, sequence)


def time_drive(poses: np.ndarray, seed: int) -> dict[str, object]:
    """Seconds for the first frame (world and scene build + scan) and per later frame (scan + occasional rebuild)."""
    seconds, counts, started = [], [], time.perf_counter()
    for points in drive(poses, range(len(poses)), seed, Sensor()):
        seconds.append(time.perf_counter() - started)
        counts.append(len(points))
        started = time.perf_counter()
    later = np.asarray(seconds[1:])
    travelled = float(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum())
    return {"frames": len(poses), "metres": round(travelled, 1), "first_frame_s": round(seconds[0], 3),
            "later_frame_s_mean": round(float(later.mean()), 3),
            "later_frame_s_median": round(float(np.median(later)), 3),
            "later_frame_s_max": round(float(later.max()), 3), "points_mean": round(float(np.mean(counts)))}


def draw(real: np.ndarray, sim: np.ndarray, path: Path) -> None:
    """Both scans side by side as a top view, a side view (both coloured by height, +-50 m) and a range image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(16, 17), gridspec_kw={"height_ratios": [3.0, 1.0, 1.0]})
    height = dict(cmap="turbo", vmin=-3.0, vmax=4.0, s=0.08, linewidths=0)
    for column, (name, points) in enumerate([("real: KITTI 10, frame 0", real), ("simulated", sim)]):
        p = points[np.all(np.abs(points[:, :2]) <= VIEW_M, axis=1)]
        top, side, image = axes[:, column]
        top.scatter(p[:, 0], p[:, 1], c=np.clip(p[:, 2], -3.0, 4.0), **height)
        top.set(xlim=(-VIEW_M, VIEW_M), ylim=(-VIEW_M, VIEW_M), aspect="equal", xlabel="x (m, forward)",
                ylabel="y (m, left)", title=f"{name}: top view, {len(points):,} points")
        side.scatter(p[:, 0], p[:, 2], c=np.clip(p[:, 2], -3.0, 4.0), **height)
        side.set(xlim=(-VIEW_M, VIEW_M), ylim=(-5.0, 5.0), xlabel="x (m, forward)", ylabel="z (m, up)",
                 title="side view (all y within +-50 m)")
        distance = np.linalg.norm(points[:, :3], axis=1)
        azimuth = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
        elevation = np.degrees(np.arcsin(points[:, 2] / distance))
        image.scatter(azimuth, elevation, c=np.minimum(distance, 60.0), cmap="viridis_r", s=0.08, linewidths=0)
        image.set(xlim=(180, -180), ylim=(-26.0, 4.0), xlabel="azimuth (deg, left = +)", ylabel="elevation (deg)",
                  title="range image (colour: range, 0-60 m)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main() -> None:
    """Simulate, compare, time, and write the PNG and the JSON."""
    from training.common import machine, now_iso

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--timing-frames", type=int, default=100, help="frames of sequence 02 to time (default 100)")
    parser.add_argument("--stat-seeds", type=int, default=5, help="worlds whose frame-0 statistics are summarised")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sim_vs_kitti", help="path stem")
    args = parser.parse_args()

    kitti = shared_data() / "kitti_mini"
    real = np.fromfile(kitti / "sequences/10/velodyne/000000.bin", np.float32).reshape(-1, 4)
    poses = poses_of("10", SIM_PATH_FRAMES, kitti / "sequences/10/calib.txt")
    sim = next(drive(poses, [0], args.seed, Sensor()))
    others = [statistics(next(drive(poses, [0], seed, Sensor()))) for seed in range(args.stat_seeds)]
    first_scans = sorted((kitti / "sequences").glob("*/velodyne/000000.bin"))
    reals = [statistics(np.fromfile(p, np.float32).reshape(-1, 4)) for p in first_scans]
    timing = time_drive(poses_of("02", args.timing_frames, kitti / "sequences/02/calib.txt"), args.seed)
    draw(real, sim, args.out.with_suffix(".png"))
    result = {
        "real": {"scan": "kitti_mini/sequences/10/velodyne/000000.bin", **statistics(real)},
        "simulated": {"trajectory": f"kitti_mini/poses_full_kitti_gt/10.txt, frame 0 (road along frames "
                                    f"0-{SIM_PATH_FRAMES - 1})", "seed": args.seed, **statistics(sim)},
        "simulated_seeds_mean": {"seeds": list(range(args.stat_seeds)), **mean_statistics(others)},
        "real_frame0_mean": {"sequences": [p.parents[1].name for p in first_scans], **mean_statistics(reals)},
        "timing_sequence_02": timing,
        "sensor": Sensor().as_dict(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": now_iso(),
        "machine": machine(),
    }
    write_json(args.out.with_suffix(".json"), result)
    print(f"real {result['real']['points']} points, simulated {result['simulated']['points']} points; "
          f"first frame {timing['first_frame_s']} s, later frames {timing['later_frame_s_mean']} s mean")


if __name__ == "__main__":
    main()
