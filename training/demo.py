"""``dlc demo`` / ``make demo``: the shipped object-registration models (DLC+DCP and its no-DLC twin) on the real
Stanford bunny pairs, with and without ICP refinement; prints the metrics table. No training."""

from __future__ import annotations

import argparse

from dlc_core.data.registration_data import evaluation_set, parse_spec

from . import common
from .registration import ICPConfig, load_registration_model, pair_metrics, print_table, register_pairs

MODELS = ("models/dcp_dlc_shapes", "models/dcp_shapes")
BUNNY = "data/bunny"
# one thread: open3d's multi-threaded ICP converged differently from run to run on 2 of the 80 pairs (ICPConfig)
DEMO_ICP = ICPConfig(method="point-to-plane", max_correspondence_distance=0.2, min_correspondence_distance=0.02,
                     iterations=50, num_threads=1)


def run(args: argparse.Namespace) -> int:
    """Evaluate each shipped model on the real bunny pairs, without and with ICP, and print one table."""
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
