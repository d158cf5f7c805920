"""``dlc demo`` / ``make demo``: the shipped models on real data, no training (DECISIONS D8). First the main job:
the shipped LiDAR models (DLC and its no-DLC twin) replay the real sample bag through the odometry pipeline (``dlc bag
eval``: metrics, poses and plots per model); then the shipped object-registration models on the real Stanford bunny
pairs, with and without ICP refinement. Prints both metrics tables and where the plots are."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dlc_core.data.registration_data import evaluation_set, parse_spec
from dlc_core.errors import InputError

from . import common
from .registration import ICPConfig, load_registration_model, pair_metrics, print_table, register_pairs

LIDAR_MODELS = ("models/lidar_dlc", "models/lidar_nodlc")
SAMPLE_BAG = "bags/sample"
MODELS = ("models/dcp_dlc_shapes", "models/dcp_shapes")
BUNNY = "data/bunny"
# one thread: open3d's multi-threaded ICP converged differently from run to run on 2 of the 80 pairs (ICPConfig)
DEMO_ICP = ICPConfig(method="point-to-plane", max_correspondence_distance=0.2, min_correspondence_distance=0.02,
                     iterations=50, num_threads=1)


def replay_sample_bag(out: Path, device: str) -> list[dict]:
    """`dlc bag eval` of the sample bag with each shipped LiDAR model; their metrics (outputs in out/<model>/)."""
    from dlc_ros.cli import main as dlc

    results = []
    for folder in LIDAR_MODELS:
        target = out / Path(folder).name
        print(f"{folder}: replaying {SAMPLE_BAG} (dlc bag eval)", flush=True)
        code = dlc(["bag", "eval", str(common.REPO_ROOT / SAMPLE_BAG), "--model", str(common.REPO_ROOT / folder),
                    "--out", str(target), "--device", device])  # fmt: skip
        if code:
            raise InputError(f"dlc bag eval of {SAMPLE_BAG} with {folder} failed (exit code {code})")
        results.append({**json.loads((target / "metrics.json").read_text()), "model": folder})
    return results


def print_replay_table(results: list[dict], out: Path) -> None:
    """One row per LiDAR model: accuracy against the bag's ground truth, which stage produced the poses, time."""
    print(f"\n{'model':>18} {'frames':>6} {'RTE cm':>7} {'RRE deg':>8} {'ATE m':>6} {'network':>8} {'prior':>6} "
          f"{'fallback':>8} {'median ms':>9}")  # fmt: skip
    for r in results:
        rates = r["status_rates"]
        print(f"{r['model']:>18} {r['frames']:>6} {100 * r['rte_m_mean']:>7.1f} {r['rre_deg_mean']:>8.3f} {r['ate_m']:>6.3f} "
              f"{rates['network']:>8.0%} {rates['prior']:>6.0%} {rates['fallback']:>8.0%} {r['time_ms']['median']:>9.0f}")  # fmt: skip
    print(f"\nRTE/RRE: mean error per consecutive pair against the bag's ground truth; network/prior/fallback: which stage"
          f" gave each pose.\nPlots (trajectory.png, errors.png), poses (KITTI, TUM) and metrics.json: {out}/<model>/")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """The LiDAR bag replay, then each shipped object model on the real bunny pairs without and with ICP."""
    out = Path(args.out)
    print_replay_table(replay_sample_bag(out, args.device), out)
    print()
    device = common.resolve_device(args.device)
    rows = []
    for folder in MODELS:
        model, card = load_registration_model(common.REPO_ROOT / folder, device)
        pairs = evaluation_set(parse_spec(f"bunny:{common.REPO_ROOT / BUNNY}", ("bunny",)), "clean", card["preprocess"]["num_points"], args.seed)
        for icp in (None, DEMO_ICP):
            print(f"{folder}: {len(pairs)} real bunny pairs, {'ICP ' + icp.method if icp else 'network only'}", flush=True)
            result = register_pairs(model, card, pairs, card["inference"]["passes"], icp, device)
            rows.append({"model": folder, "icp": icp.method if icp else None, "samples": len(result["seconds"]),
                         **pair_metrics(result), "time_ms": common.time_stats_ms(list(result["seconds"]))})  # fmt: skip
    print()
    print_table(rows)
    print("\nRRE/RTE: mean rotation (deg) / translation error (bunny radius = 1); success: RRE < 1 deg and RTE < 1% of the diagonal.")
    return 0
