"""Experiment: the LiDAR registration model with DLC and without, same data, budget and seeds (issue 3), scored on
the wide-baseline pairs of the held-out real sequences (bench/lidar_pairs.py: `dlc eval pairs --max-gap 9`, with and
without the FPFH + RANSAC fallback), beside ICP alone.

Every run is the shipped models' training command (their cards) with this budget: `dlc train registration` on the
scan cache (`dlc cache scans`, README), resumed when a time limit stopped it. Made for a rented GPU whose job gets
2 host cores and no open3d (the cache needs none): train there, evaluate here (the evaluation needs open3d).

    python3 bench/lidar_experiment.py --name lidar_v2 --data cache:runs/lidar_cache.npz --steps 6000 \\
        --batch-size 32 --device cuda --parallel --train-only                     # on the GPU machine
    .venv/bin/python bench/lidar_experiment.py --name lidar_v2 --data cache:runs/lidar_cache.npz --steps 6000 \\
        --batch-size 32 --eval-only                                               # here

Writes bench/results/<name>.json: the steps each run really did and its validation, and lidar_pairs' results per run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiment_common import DLC, REPO, names, run, run_root, train_arms
from lidar_pairs import KITTI, evaluate_models

sys.path.insert(0, str(REPO))

ARMS = {"dlc": ["--dlc"], "no-dlc": ["--no-dlc"]}
# the shipped models' data and model flags (models/lidar_dlc/model_card.json), less budget, seed and arm
SHIPPED = ["--poses-name", "poses.txt", "--kitti-sequences", "10", "--val-sequences", "01,02", "--num-points", "256",
           "--noise-rot-deg", "5", "--noise-trans", "0.05", "--lr-milestones", "0.8"]  # fmt: skip


def train(arm: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """Train (or finish training) one arm with one seed; returns its model card."""
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if args.eval_only and not card:
        sys.exit(f"--eval-only: {folder} has no trained model")
    if card.get("train", {}).get("steps", 0) < args.steps and not args.eval_only:
        cmd = [*DLC, "train", "registration", "--data", args.data, *SHIPPED, "--out", str(folder), "--seed", str(seed),
               "--steps", str(args.steps), "--epochs", "1000", "--batch-size", str(args.batch_size),
               "--device", args.device, *ARMS[arm], *args.extra.split()]  # fmt: skip
        run(cmd + (["--resume"] if (folder / "train_state.pt").is_file() else []), folder.parent / f"{folder.name}.log")
        card = json.loads(card_path.read_text())
    return card


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="results file bench/results/<name>.json")
    p.add_argument("--data", required=True, help="training data, e.g. cache:runs/lidar_cache.npz (dlc cache scans)")
    p.add_argument("--arms", default="dlc,no-dlc", help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps per run (the shared budget)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--parallel", action="store_true", help="train every arm and seed at once (one GPU)")
    p.add_argument("--runs", default="runs", help="where the trained models go (not committed)")
    p.add_argument("--train-only", action="store_true", help="train, skip evaluation and the results file")
    p.add_argument("--eval-only", action="store_true", help="evaluate the runs as they are (e.g. stopped by a time limit)")
    p.add_argument("--extra", default="", help="more flags for every training run, e.g. '--backbone prnet'")
    p.add_argument("--kitti", default=KITTI, help="KITTI root with the held-out sequences")
    args = p.parse_args()
    arms, seeds = names(args.arms, ARMS, "arms"), [int(s) for s in args.seeds.split(",")]
    root = run_root(args.runs, args.name)
    runs = train_arms(root, arms, seeds, lambda arm, seed, folder: train(arm, seed, args, folder), "steps", args.parallel)
    if args.train_only:
        return

    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    models = [str(r["folder"]) for r in runs] + ["none"]
    results = evaluate_models(models, args.kitti, "01,02", 9, root)
    trained = {str(r["folder"]): {"arm": r["arm"], "seed": r["seed"], "steps": r["card"]["train"]["steps"],
                                  "device": r["card"]["train"]["device"], "torch": r["card"]["train"]["torch"],
                                  "wall_s": r["card"]["train"]["wall_s"], "validation": r["card"]["metrics"]}
               for r in runs}  # fmt: skip
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "benchmark": "lidar_experiment", "experiment": args.name,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": now_iso(), "machine": machine(),
        "budget": {"steps": args.steps, "batch_size": args.batch_size, "seeds": seeds, "data": args.data,
                   "extra": args.extra, "trained": trained},
        "data": "kitti_mini 01,02", "results": results,
    })  # fmt: skip
    print(f"wrote bench/results/{args.name}.json")


if __name__ == "__main__":
    main()
