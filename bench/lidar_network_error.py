"""Diagnosis: what the LiDAR network alone does on wide-baseline pairs. Every pair (i, i+g), g = 1..max-gap, of the
held-out real sequences is registered by the network only (from the identity, the card's passes, no ICP, no check),
and its translation and rotation errors are set against the identity's — the motion itself. A network that carries
wide baselines must end well inside ICP's reach (its first gate is 2 m) at every gap; this says how far off it is,
and what the network costs per pair on one thread.

    .venv/bin/python bench/lidar_network_error.py --models models/lidar_dlc,models/lidar_nodlc

Writes bench/results/<name>.json (default lidar_network_error).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lidar_pairs import KITTI  # noqa: E402
from dlc_core.atomic import write_json  # noqa: E402
from dlc_core.data.kitti import KittiSequence, finite_points  # noqa: E402
from dlc_core.metrics import pose_errors  # noqa: E402
from dlc_core.pipeline import ScanRegistrar  # noqa: E402
from training import common  # noqa: E402


def per_gap(model: str, sequences: list[KittiSequence], max_gap: int) -> tuple[dict[str, dict], float]:
    """Median errors of the network alone and of the identity, per gap; and the network's median time per pair (ms)."""
    registrar = ScanRegistrar.load(model)
    rows: dict[int, list[tuple[float, float, float, float]]] = {}
    seconds = []
    for seq in sequences:
        prepared = [registrar.prepare(finite_points(seq.scan(k))[0]) for k in range(len(seq))]
        for g in range(1, max_gap + 1):
            for i in range(len(seq) - g):
                truth = seq.relative(i, i + g)
                started = time.perf_counter()
                estimate, _ = registrar.network_estimate(prepared[i + g], prepared[i], np.eye(4))
                seconds.append(time.perf_counter() - started)
                rows.setdefault(g, []).append((*pose_errors(estimate, truth), *pose_errors(np.eye(4), truth)))
    keys = ("network_rte_m_median", "network_rre_deg_median", "identity_rte_m_median", "identity_rre_deg_median")
    gaps = {str(g): {"pairs": len(r), **{key: float(np.median([x[k] for x in r])) for k, key in enumerate(keys)}}
            for g, r in sorted(rows.items())}  # fmt: skip
    return gaps, 1000 * float(np.median(seconds))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="models/lidar_dlc,models/lidar_nodlc")
    p.add_argument("--kitti", default=KITTI, help="KITTI root (relative paths: from the repository root)")
    p.add_argument("--sequences", default="01,02")
    p.add_argument("--max-gap", type=int, default=9)
    p.add_argument("--name", default="lidar_network_error")
    args = p.parse_args()
    torch.set_num_threads(1)
    kitti = Path(args.kitti) if Path(args.kitti).is_absolute() else REPO / args.kitti
    sequences = [KittiSequence.open(kitti, s, "poses.txt") for s in args.sequences.split(",")]
    results, network_ms = {}, {}
    for model in args.models.split(","):
        results[model], network_ms[model] = per_gap(model, sequences, args.max_gap)
        print(f"{model}: the network takes a median {network_ms[model]:.0f} ms per pair (one thread)", flush=True)
        for g, r in results[model].items():
            print(f"{model} gap {g}: network RTE {r['network_rte_m_median']:.2f} m, RRE {r['network_rre_deg_median']:.2f} deg; "
                  f"identity {r['identity_rte_m_median']:.2f} m, {r['identity_rre_deg_median']:.2f} deg", flush=True)  # fmt: skip
    out = REPO / "bench/results" / f"{args.name}.json"
    write_json(out, {"benchmark": "lidar_network_error", "command": "python " + shlex.join(sys.argv), "date": common.now_iso(),
                     "machine": common.machine(), "data": f"kitti_mini {args.sequences}", "results": results,
                     "network_ms_median": network_ms})  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
