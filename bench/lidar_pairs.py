"""Wide-baseline LiDAR registration (issue 3 §4): `dlc eval pairs --max-gap 9` on the held-out real sequences 01 and
02 for each model, in one run, collected into one results file with the per-gap rates and the fallback rate.

"none" is the classical peer: ICP from the identity, with the same FPFH + RANSAC fallback when its check fails.
Every model runs twice: with the fallback (the pipeline as shipped) and without it (what the network and ICP carry
on their own).

    python bench/lidar_pairs.py --models models/lidar_dlc,models/lidar_nodlc,none
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.experiment_common import DLC, run, run_root, shared_data  # noqa: E402
from dlc_core.atomic import write_json  # noqa: E402
from training import common  # noqa: E402

KEEP = ("pairs", "skipped", "success_rate", "rte_m_mean", "rre_deg_mean", "rte_m_median", "rre_deg_median",
        "fallback_rate", "status_rates", "per_gap", "pipeline", "time_ms", "peak_rss_mb")  # fmt: skip
KITTI = shared_data("kitti_mini")


def evaluate_models(models: list[str], kitti: str, sequences: str, max_gap: int, root: Path) -> dict[str, dict]:
    """`dlc eval pairs` of every model (or "none") with and without the fallback; {variant: {model: metrics}}, the
    per-model JSON and the log in root."""
    results: dict[str, dict] = {"with fallback": {}, "without fallback": {}}
    for variant, flag in (("with fallback", "--fallback"), ("without fallback", "--no-fallback")):
        for model in models:
            out = root / f"{Path(model).name}{flag}.json"
            run(DLC + ["eval", "pairs", "--kitti", kitti, "--sequences", sequences, "--poses-name", "poses.txt",
                       "--max-gap", str(max_gap), "--model", model, flag, "--json", str(out)], root / "eval.log")  # fmt: skip
            report = json.loads(out.read_text())
            results[variant][model] = {k: report[k] for k in KEEP}
            print(f"{variant:>16} {model:>22}  success {100 * report['success_rate']:.1f}%  fallback "
                  f"{100 * report['fallback_rate']:.1f}%  median {report['time_ms']['median']:.0f} ms", flush=True)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kitti", default=KITTI, help="KITTI root (relative paths: from the repository root)")
    parser.add_argument("--sequences", default="01,02")
    parser.add_argument("--models", default="models/lidar_dlc,models/lidar_nodlc,none")
    parser.add_argument("--max-gap", type=int, default=9)
    parser.add_argument("--runs", default=str(REPO / "runs"), help="where the per-model JSON and logs go")
    parser.add_argument("--json", default=str(REPO / "bench/results/lidar_pairs.json"))
    args = parser.parse_args()
    results = evaluate_models(args.models.split(","), args.kitti, args.sequences, args.max_gap, run_root(args.runs, "lidar_pairs"))
    write_json(args.json, {"benchmark": "lidar_pairs", "command": "python " + shlex.join(sys.argv),
                           "date": common.now_iso(), "machine": common.machine(), "data": "kitti_mini " + args.sequences,
                           "results": results})  # fmt: skip
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
