"""``dlc eval pairs``: wide-baseline LiDAR registration on KITTI-layout sequences.

Every pair (i, i+g), g = 1..max-gap, is registered from the identity (no prior) by the full pipeline (network,
ICP, consistency check, optional fallback) and scored against the ground truth with RTE/RRE and DGR's success
criterion (RTE < 0.6 m and RRE < 5 deg). Means are over all pairs, failures included. ``--model none`` runs the
pipeline without a network: ICP from the identity, the classical baseline.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from dlc_core.atomic import write_json
from dlc_core.data.kitti import KittiSequence, finite_points
from dlc_core.errors import InputError
from dlc_core.metrics import pose_errors, success_mask
from dlc_core.pipeline import PipelineConfig, ScanRegistrar, scan_icp
from dlc_core.scan_preprocess import ScanPreprocess

from . import common

SUCCESS_RTE_M, SUCCESS_RRE_DEG = 0.6, 5.0


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline settings the flags ask for."""
    try:
        icp = scan_icp(args.icp, args.icp_max_dist, args.icp_min_dist, args.icp_iters)
    except InputError as exc:
        raise InputError(f"ICP option: {exc}") from None
    return PipelineConfig(passes=args.iters, icp=icp, min_fitness=args.min_fitness, fallback=args.fallback,
                          network_icp_method=args.net_icp, network_icp_max_distance=args.net_icp_max_dist,
                          keyframe_distance=getattr(args, "keyframe_distance", PipelineConfig.keyframe_distance),
                          local_map_keyframes=getattr(args, "local_map_keyframes", PipelineConfig.local_map_keyframes))  # fmt: skip


def build_registrar(args: argparse.Namespace) -> ScanRegistrar:
    """The pipeline around the model folder, or around no model at all for ``--model none``."""
    device = common.resolve_device(args.device)
    if args.model == "none":
        return ScanRegistrar(ScanPreprocess(), pipeline_config(args), device=device)
    return ScanRegistrar.load(args.model, pipeline_config(args), device)


def evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``dlc eval pairs``: per-gap table on stdout, JSON written atomically."""
    registrar = build_registrar(args)
    sequences = [KittiSequence.open(args.kitti, s, args.poses_name) for s in args.sequences]
    rows: list[dict] = []
    skipped = 0
    for seq in sequences:
        prepared = {}
        for k in range(len(seq)):
            points, dropped = finite_points(seq.scan(k))
            try:
                prepared[k] = registrar.prepare(points, name=f"sequence {seq.sequence} frame {seq.frames[k]}")
            except InputError as exc:
                print(f"skipped: {exc}", flush=True)
        pairs = [(i, i + g) for g in range(1, args.max_gap + 1) for i in range(len(seq) - g)]
        for i, j in common.progress(pairs, len(pairs), f"sequence {seq.sequence}"):
            if i not in prepared or j not in prepared:
                skipped += 1
                continue
            result = registrar.register(prepared[j], prepared[i])
            rte_m, rre = pose_errors(result.transform, seq.relative(i, j))
            rows.append({"sequence": seq.sequence, "gap": j - i, "status": result.status, "fitness": result.fitness,
                         "rte_m": rte_m, "rre_deg": rre, "ms": result.timings_ms["total"]})  # fmt: skip
    if not rows:
        raise InputError("no pair could be registered (every frame was skipped)")
    report = summarise(rows)
    result = {
        "task": "pairs",
        "model": args.model,
        "data": f"kitti:{args.kitti}",
        "sequences": args.sequences,
        "command": args.command,
        "pairs": len(rows),
        "skipped": skipped,
        **report,
        "pipeline": {"icp": args.icp, "icp_max_dist": args.icp_max_dist, "icp_min_dist": args.icp_min_dist,
                     "net_icp": args.net_icp, "net_icp_max_dist": args.net_icp_max_dist,
                     "min_fitness": args.min_fitness, "fallback": args.fallback, "passes": registrar.passes},  # fmt: skip
        "time_ms": common.time_stats_ms([r["ms"] / 1000 for r in rows]),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "device": registrar.device.type,
        "machine": common.machine(),
        "date": common.now_iso(),
        "per_pair": rows,
    }
    print_gaps(result)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def _stats(rows: list[dict]) -> dict:
    te, re = np.array([r["rte_m"] for r in rows]), np.array([r["rre_deg"] for r in rows])
    ok = success_mask(re, te, SUCCESS_RRE_DEG, SUCCESS_RTE_M)
    return {"pairs": len(rows), "success_rate": float(ok.mean()), "rte_m_mean": float(te.mean()), "rre_deg_mean": float(re.mean()),
            "rte_m_median": float(np.median(te)), "rre_deg_median": float(np.median(re)),
            "time_ms_median": float(np.median([r["ms"] for r in rows]))}  # fmt: skip


def summarise(rows: list[dict]) -> dict:
    """The DESIGN.md §2 'pairs' keys: overall rates and errors, fallback and stage shares, and per_gap."""
    counts = Counter(r["status"] for r in rows)
    overall = _stats(rows)
    overall.pop("pairs")
    overall.pop("time_ms_median")
    gaps = sorted({r["gap"] for r in rows})
    return {
        **overall,
        "fallback_rate": counts["fallback"] / len(rows),
        "status_rates": {s: counts[s] / len(rows) for s in ("network", "prior", "fallback", "failed")},
        "per_gap": {str(g): _stats([r for r in rows if r["gap"] == g]) for g in gaps},
    }


def print_gaps(result: dict) -> None:
    """One line per gap and a total, as a fixed-width table."""
    print(f"{'gap':>4} {'pairs':>6} {'success':>8} {'RTE m':>8} {'RRE deg':>8} {'ms':>7}")
    for gap, s in result["per_gap"].items():
        print(f"{gap:>4} {s['pairs']:>6} {s['success_rate']:>8.1%} {s['rte_m_mean']:>8.3f} {s['rre_deg_mean']:>8.2f} {s['time_ms_median']:>7.0f}")
    print(f"{'all':>4} {result['pairs']:>6} {result['success_rate']:>8.1%} {result['rte_m_mean']:>8.3f} {result['rre_deg_mean']:>8.2f} "
          f"{result['time_ms']['median']:>7.0f}   fallback {result['fallback_rate']:.1%}")  # fmt: skip
