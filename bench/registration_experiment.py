"""Experiment: a model with and without DLC on the procedural shapes, same budget and seeds, each with and without
ICP, on the clean (held-out instances of the training categories) and unseen-category protocols (--protocols also
takes partial, noisy and bunny, the real scan pairs). Used for DCP vs DLC+DCP, for the landscape comparison of
DECISIONS.md D1 (arms dlc-label, dlc-procrustes, dlc-rerun) and, with --extra '--backbone prnet --protocol
partial', for PRNet (issue 7).

Every arm is a ``dlc train registration`` run (resumable: an interrupted run continues with --resume) followed by
``dlc eval registration`` runs; the results file has every run's metrics and mean ± std over seeds.

    .venv/bin/python bench/registration_experiment.py --name dlc_vs_dcp --arms no-dlc,dlc-label,dcp-1pass \\
        --seeds 0,1,2 --steps 600
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiment_common import DLC, REPO, cached_eval, names, run, run_root, summarise, train_arms

sys.path.insert(0, str(REPO))

ARMS = {
    "no-dlc": ["--no-dlc"],
    "dlc-label": ["--dlc", "--landscape", "label"],
    "dlc-procrustes": ["--dlc", "--landscape", "procrustes"],
    "dlc-rerun": ["--dlc", "--landscape", "rerun"],
    "dcp-1pass": ["--no-dlc", "--passes", "1", "--test-passes", "1"],
}
PROTOCOLS = ("clean", "unseen", "partial", "noisy", "bunny")  # bunny: the real scan pairs of data/bunny
ICP = (None, "point-to-plane")
METRICS = ("euler_mse_deg2", "euler_rmse_deg", "euler_mae_deg", "r_mse", "t_mse", "t_rmse", "t_mae", "rre_deg_mean",
           "rte_mean", "success_rate", "passes_mean")  # fmt: skip


def train(arm: str, seed: int, steps: int, folder: Path, extra: list[str]) -> dict:
    """Train (or finish training) one arm with one seed; returns its model card."""
    card_path = folder / "model_card.json"
    state = folder / "train_state.pt"
    trained = json.loads(card_path.read_text())["train"]["steps"] if card_path.is_file() else 0
    if trained > steps:
        sys.exit(f"{folder} was trained for {trained} steps, more than this budget ({steps}); use another --name")
    if trained < steps:
        cmd = [*DLC, "train", "registration", "--data", "shapes", "--out", str(folder), "--seed", str(seed),
               "--steps", str(steps), "--epochs", "1000", *ARMS[arm], *extra]  # fmt: skip
        run(cmd + (["--resume"] if state.is_file() else []), folder.parent / f"{folder.name}.log")
    return json.loads(card_path.read_text())


def evaluate(folder: Path, sha256: str, protocol: str, icp: str | None) -> dict:
    """Evaluate a trained arm (its model's sha256) on one protocol, with or without ICP, cached in the run folder."""
    out = folder / f"eval_{protocol}_{icp or 'none'}.json"
    data, variant = ("bunny:data/bunny", "clean") if protocol == "bunny" else ("shapes", protocol)
    cmd = [*DLC, "eval", "registration", "--model", str(folder), "--data", data, "--protocol", variant,
           "--json", str(out)] + (["--icp", icp] if icp else [])  # fmt: skip
    return cached_eval(out, sha256, cmd, folder.parent / f"{folder.name}.log")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="results file bench/results/<name>.json")
    p.add_argument("--arms", default="no-dlc,dlc-label", help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps per arm (the shared budget)")
    p.add_argument("--runs", default="runs", help="where the trained models go (not committed)")
    p.add_argument("--train-only", action="store_true", help="train, skip evaluation and the results file")
    p.add_argument("--protocols", default="clean,unseen", help=f"evaluation sets, from {', '.join(PROTOCOLS)}")
    p.add_argument("--extra", default="", help="extra flags for every training run, e.g. '--beta 2'")
    args = p.parse_args()
    arms, protocols = names(args.arms, ARMS, "arms"), names(args.protocols, PROTOCOLS, "protocols")
    seeds = [int(s) for s in args.seeds.split(",")]
    root = run_root(args.runs, args.name)
    extra = args.extra.split()

    runs = train_arms(root, arms, seeds, lambda arm, seed, folder: train(arm, seed, args.steps, folder, extra))
    if args.train_only:
        return

    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    rows = []
    for r in runs:
        for protocol in protocols:
            for icp in ICP:
                result = evaluate(r["folder"], r["card"]["sha256"], protocol, icp)
                rows.append({"arm": r["arm"], "seed": r["seed"], "protocol": protocol, "icp": icp,
                             "pairs": result["samples"], "train_wall_s": r["card"]["train"]["wall_s"],
                             "time_ms_median": result["time_ms"]["median"], **{m: result[m] for m in METRICS}})  # fmt: skip
                print(f"{r['folder'].name} {protocol} icp={icp}: RRE {result['rre_deg_mean']:.3f} deg, "
                      f"MSE(Euler) {result['euler_mse_deg2']:.4g}, success {result['success_rate']:.1%}", flush=True)  # fmt: skip
    summary = []
    for arm in arms:
        for protocol in protocols:
            for icp in ICP:
                sel = [r for r in rows if r["arm"] == arm and r["protocol"] == protocol and r["icp"] == icp]
                summary.append({"arm": arm, "protocol": protocol, "icp": icp,
                                **{m: summarise([r[m] for r in sel]) for m in METRICS}})  # fmt: skip
    card0 = runs[0]["card"]
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "experiment": args.name,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": now_iso(),
        "machine": machine(),
        "budget": {"steps": args.steps, "batch_size": card0["train"]["batch_size"], "seeds": seeds,
                   "num_points": card0["preprocess"]["num_points"], "config": card0["config"], "extra": extra},
        "data": "shapes: train on 14 categories x 200 instances; clean = 280 held-out instances of those "
                "categories, unseen = 240 instances of the 6 held-out categories, partial/noisy = the clean set "
                "cropped/jittered; bunny = 80 real Stanford scan pairs (data/bunny)",
        "protocols": protocols,
        "summary": summary,
        "runs": rows,
    })  # fmt: skip
    print(f"wrote bench/results/{args.name}.json")


if __name__ == "__main__":
    main()
