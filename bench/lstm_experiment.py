"""Experiment: the LSTM digit classifier with and without DLC (issue 6), same budget and seeds, scored on the
standard 10k MNIST test digits; trained on the 5,000 real training digits of ../shared/data/mnist_5k (4,500 after
the stratified validation split).

Every arm is a ``dlc train lstm`` run (resumed when interrupted) followed by ``dlc eval lstm``; the results file
has every run's accuracy and the mean ± std over seeds.

    .venv/bin/python bench/lstm_experiment.py --name lstm_pixel --mode pixel --epochs 40 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiment_common import DLC, REPO, cached_eval, names, run, run_root, shared_data, summarise, train_arms

sys.path.insert(0, str(REPO))

ARMS = {"no-dlc": ["--no-dlc"], "dlc": ["--dlc", "--beta", "0.1"]}  # β 0.1: the better of 0.1 and 1 on validation


def train(arm: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """Train (or finish training) one arm with one seed; returns its model card."""
    card_path, state = folder / "model_card.json", folder / "train_state.pt"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    asked = {"hidden": args.hidden, "rotate": args.rotate, "zoom": args.zoom}
    held = {**card.get("train", {}), **card.get("config", {})}
    if card and any(held.get(k, 0.0) != v for k, v in asked.items()):
        sys.exit(f"{folder} holds a run with other options than {asked}: use another --name")
    if card.get("train", {}).get("epochs", 0) < args.epochs:
        cmd = [*DLC, "train", "lstm", "--data", args.data, "--mode", args.mode, "--out", str(folder),
               "--epochs", str(args.epochs), "--hidden", str(args.hidden), "--rotate", str(args.rotate),
               "--zoom", str(args.zoom), *ARMS[arm], "--seed", str(seed)]  # fmt: skip
        run(cmd + (["--resume"] if state.is_file() else []), folder.parent / f"{folder.name}.log")
        card = json.loads(card_path.read_text())
    return card


def evaluate(folder: Path, sha256: str, data: str) -> dict:
    """Accuracy of a trained arm on the test digits, cached in the run folder by the model's sha256."""
    out = folder / "eval_test.json"
    cmd = [*DLC, "eval", "lstm", "--model", str(folder), "--data", data, "--json", str(out)]
    return cached_eval(out, sha256, cmd, folder.parent / f"{folder.name}.log")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="results file bench/results/<name>.json")
    p.add_argument("--arms", default="no-dlc,dlc", help=f"comma-separated, from {', '.join(ARMS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--mode", default="pixel", choices=("pixel", "row"))
    p.add_argument("--epochs", type=int, required=True, help="epochs per arm (the shared budget)")
    p.add_argument("--hidden", type=int, default=64, help="LSTM hidden size (default 64)")
    p.add_argument("--rotate", type=float, default=0.0, help="augmentation: rotations of up to ± this many degrees")
    p.add_argument("--zoom", type=float, default=0.0, help="augmentation: scaling by 1 ± up to this")
    p.add_argument("--data", default=shared_data("mnist_5k"),
                   help="MNIST folder (default ../shared/data/mnist_5k)")  # fmt: skip
    p.add_argument("--runs", default="runs", help="where the trained models go (not committed)")
    p.add_argument("--train-only", action="store_true", help="train, skip evaluation and the results file")
    args = p.parse_args()
    arms, seeds = names(args.arms, ARMS, "arms"), [int(s) for s in args.seeds.split(",")]
    root = run_root(args.runs, args.name)

    runs = train_arms(root, arms, seeds, lambda arm, seed, folder: train(arm, seed, args, folder))
    if args.train_only:
        return

    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    rows = []
    for r in runs:
        result = evaluate(r["folder"], r["card"]["sha256"], args.data)
        rows.append({"arm": r["arm"], "seed": r["seed"], "test_digits": result["samples"], "accuracy": result["accuracy"],
                     "val_accuracy": r["card"]["metrics"]["val_accuracy"], "train_wall_s": r["card"]["train"]["wall_s"],
                     "time_ms_per_digit_median": result["time_ms"]["median"]})  # fmt: skip
        print(f"{r['folder'].name}: test accuracy {result['accuracy']:.2%}", flush=True)
    summary = [{"arm": arm, **{m: summarise([r[m] for r in rows if r["arm"] == arm]) for m in ("accuracy", "val_accuracy")}}
               for arm in arms]  # fmt: skip
    train0 = runs[0]["card"]["train"]
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "experiment": args.name,
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": now_iso(),
        "machine": machine(),
        "budget": {"mode": args.mode, "epochs": args.epochs, "steps": train0["steps"], "batch_size": train0["batch_size"],
                   "seeds": seeds, "config": runs[0]["card"]["config"],
                   "augment": {k: train0.get(k, 0.0) for k in ("shift", "rotate", "zoom")}, "arms": {a: ARMS[a] for a in arms}},
        "data": f"train: {train0['train_digits']} of the 5,000 real MNIST training digits in mnist_5k (validation: the "
                f"other {train0['val_digits']}, stratified); test: the standard 10,000 MNIST test digits",
        "summary": summary,
        "runs": rows,
    })  # fmt: skip
    print(f"wrote bench/results/{args.name}.json")


if __name__ == "__main__":
    main()
