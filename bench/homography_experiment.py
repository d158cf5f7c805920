"""Experiment: the DeepLK-style homography model with DLC (PRISE hinges) and without (DeepLK's convex loss), same
budget and seeds, against SIFT + RANSAC on the same pairs (issue 5). Pairs are made from the held-out photos of
../shared/data/homography/photos (--pairs per test set, seed fixed), single-modal and --multimodal.

Every arm is a ``dlc train homography`` run (resumed when interrupted) followed by ``dlc eval homography`` on each
test set; the results file has every run's PE and success rates, the mean ± std over seeds, and SIFT's rows.

    .venv/bin/python bench/homography_experiment.py --name homography --seeds 0,1,2 --regression-steps 600 --steps 600

On a GPU machine, train all runs at once and evaluate later on the CPU (the evaluation reuses the trained folders;
--eval-only when a time limit stopped the training, each row then says how many steps its run had):

    python3 bench/homography_experiment.py --name homography --regression-steps 4000 --steps 1000 --batch-size 32 \
        --pairs-per-epoch 3200 --device cuda --workers 2 --parallel --train-only

A GPU machine whose job gets 2 host cores starves on CPU-made pairs: there, --pairs-on-device, and with
--shared-regression one regression run per seed (--regression-batch-size) serves all its arms.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiment_common import DLC, REPO, cached_eval, names, run, run_root, shared_data, summarise, train_arms

sys.path.insert(0, str(REPO))

# dlc: the DLC flags' defaults (as every trainer); dlc-prise: PRISE's settings for homography (μ 1, λ 5; METHOD §3.3)
ARMS = {"no-dlc": ["--no-dlc"], "dlc": ["--dlc"], "dlc-prise": ["--dlc", "--mu", "1", "--beta", "5"],
        "intensity": ["--no-dlc"]}  # intensity: LK on the grey levels, nothing but the regression to train
TESTS = {"single": [], "multimodal": ["--multimodal"], "photometric": ["--photometric"]}  # dlc eval homography flags
SR = ("0.1", "0.5", "1", "3", "5", "10", "20")


def train(arm: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    """Train (or finish training) one arm with one seed; returns its model card. With --shared-regression the arm
    "regression" trains only the regression network and the other arms only their pyramids."""
    steps = (args.regression_steps, args.steps)
    if args.shared_regression:
        steps = (args.regression_steps, 0) if arm == "regression" else (0, args.steps)
    flags = ["--no-dlc"] if arm == "regression" else ARMS[arm]
    batch = args.regression_batch_size if arm == "regression" and args.regression_batch_size else args.batch_size
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if args.eval_only and not card:
        sys.exit(f"--eval-only: {folder} has no trained model")
    if card.get("train", {}).get("done_steps", 0) < sum(steps) and not args.eval_only:
        cmd = [*DLC, "train", "homography", "--images", args.images, "--out", str(folder), "--seed", str(seed),
               "--regression-steps", str(steps[0]), "--steps", str(steps[1]), *flags,
               "--batch-size", str(batch), "--pairs-per-epoch", str(args.pairs_per_epoch), "--device", args.device,
               "--workers", str(args.workers), "--lr", str(args.lr), *(["--init", args.init] if args.init else []),
               *(["--pairs-on-device"] if args.pairs_on_device else [])]  # fmt: skip
        run(cmd + (["--resume"] if (folder / "train_state.pt").is_file() else []), folder.parent / f"{folder.name}.log")
        card = json.loads(card_path.read_text())
    return card


def compose(runs: list[dict], arms: list[str], root: Path, args: argparse.Namespace) -> list[dict]:
    """--shared-regression: each arm's pyramids with its seed's regression network, in root/composed/<arm>_seed<s>
    (``dlc train homography --init --regression-from``, no steps; the arm "intensity" has no pyramids: its seed's
    regression with LK on the grey levels); the card's steps and wall time are the sum of the parts'."""
    regression = {r["seed"]: r for r in runs if r["arm"] == "regression"}
    features = {(r["arm"], r["seed"]): r for r in runs if r["arm"] != "regression"}
    composed = []
    (root / "composed").mkdir(exist_ok=True)
    for seed, donor in regression.items():
        for arm in arms:
            folder, part = root / "composed" / f"{arm}_seed{seed}", features.get((arm, seed))
            start = ["--init", str(part["folder"])] if part else ["--features", "intensity"]
            if not (folder / "model_card.json").is_file():
                run([*DLC, "train", "homography", "--images", args.images, "--out", str(folder), "--seed", str(seed),
                     *start, "--regression-from", str(donor["folder"]), "--regression-steps", "0", "--steps", "0",
                     *ARMS[arm]], folder.parent / f"{folder.name}.log")  # fmt: skip
            card = json.loads((folder / "model_card.json").read_text())
            parts = [donor["card"]["train"], *([part["card"]["train"]] if part else [])]
            card["train"] = {**parts[-1], "done_steps": sum(t["done_steps"] for t in parts),
                             "wall_s": round(sum(t["wall_s"] for t in parts), 1)}  # fmt: skip
            composed.append({"arm": arm, "seed": seed, "folder": folder, "card": card})
    return composed


def as_trained(runs: list[dict]) -> dict:
    """Per arm, what its runs really did (a time limit may have stopped one early): steps and validation per seed,
    batch size and where the pairs were made."""
    cards: dict[str, list[dict]] = {}
    for r in runs:
        cards.setdefault(r["arm"], []).append(r["card"])
    return {arm: {"done_steps": [c["train"]["done_steps"] for c in cs], "validation": [c["metrics"] for c in cs],
                  "batch_size": cs[0]["train"]["batch_size"], "pairs_on_device": cs[0]["train"].get("pairs_on_device")}
            for arm, cs in cards.items()}  # fmt: skip


def evaluate(folder: Path, sha256: str | None, test: str, args: argparse.Namespace) -> dict:
    """One test set for a trained arm (or SIFT when sha256 is None), cached by the model's sha256."""
    out = folder / f"eval_{test}.json"
    method = ["--method", "sift"] if sha256 is None else ["--model", str(folder)]
    cmd = [*DLC, "eval", "homography", *method, "--images", args.images, "--pairs", str(args.pairs), "--seed", "1234",
           *TESTS[test], "--json", str(out)]  # fmt: skip
    return cached_eval(out, sha256 or "sift", cmd, folder.parent / f"{folder.name}.log")


def row(arm: str, seed: int | None, test: str, r: dict, card: dict | None = None) -> dict:
    """One results row; a trained arm's row also says where and how long it trained (from its card)."""
    trained = {k: card["train"][k] for k in ("device", "torch", "wall_s", "done_steps")} if card else {}
    return {"arm": arm, "seed": seed, "test": test, "pairs": r["pairs"], "pe_mean": r["pe_mean"], "pe_median": r["pe_median"],
            **{f"sr_{t}": r["sr"][t] for t in SR}, "lk_diverged_rate": r["lk_diverged_rate"],
            "time_ms_median": r["time_ms"]["median"], **{f"train_{k}": v for k, v in trained.items()}}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="results file bench/results/<name>.json")
    p.add_argument("--arms", default="no-dlc,dlc")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--regression-steps", type=int, required=True)
    p.add_argument("--steps", type=int, required=True, help="feature-stage steps per arm (the shared budget)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--regression-batch-size", type=int, default=None,
                   help="--shared-regression: the regression runs' batch size (default --batch-size)")
    p.add_argument("--lr", type=float, default=1e-3, help="feature pyramids' learning rate")
    p.add_argument("--init", default=None, help="every arm starts from this trained model (fine-tuning)")
    p.add_argument("--pairs-per-epoch", type=int, default=512, help="training pairs between validations")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training device")
    p.add_argument("--workers", type=int, default=0, help="pair-making processes per training run")
    p.add_argument("--parallel", action="store_true", help="train all arms and seeds at once (one GPU)")
    p.add_argument("--pairs-on-device", action="store_true", help="training pairs made on --device (few host cores)")
    p.add_argument("--pairs", type=int, default=200, help="pairs per test set")
    p.add_argument("--tests", default="single,multimodal", help=f"test sets, from {', '.join(TESTS)}")
    p.add_argument("--images", default=shared_data("homography", "photos"))
    p.add_argument("--runs", default="runs")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--eval-only", action="store_true",
                   help="evaluate the runs as they are (e.g. stopped by a time limit; each row records its steps)")
    p.add_argument("--shared-regression", action="store_true",
                   help="one regression run per seed, composed with every arm's pyramids (the stages are independent)")
    args = p.parse_args()
    arms, seeds = names(args.arms, ARMS, "arms"), [int(s) for s in args.seeds.split(",")]
    tests = names(args.tests, TESTS, "test sets")
    root = run_root(args.runs, args.name)
    if "intensity" in arms and not args.shared_regression:
        sys.exit("--arms intensity needs --shared-regression (its model is a regression run composed with grey-level LK)")
    learned = [a for a in arms if a != "intensity"]
    runs = train_arms(root, ["regression", *learned] if args.shared_regression else arms, seeds,
                      lambda arm, seed, folder: train(arm, seed, args, folder), "done_steps", args.parallel)  # fmt: skip
    trained = as_trained(runs)
    if args.shared_regression:
        runs = compose(runs, arms, root, args)
    if args.train_only:
        return

    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    sift_folder = root / "sift"
    sift_folder.mkdir(exist_ok=True)
    rows = [row("sift", None, test, evaluate(sift_folder, None, test, args)) for test in tests]
    for r in runs:
        rows += [row(r["arm"], r["seed"], test, evaluate(r["folder"], r["card"]["sha256"], test, args), r["card"])
                 for test in tests]  # fmt: skip
    metrics = ("pe_mean", "pe_median", *(f"sr_{t}" for t in SR), "lk_diverged_rate", "time_ms_median")
    summary = [{"arm": arm, "test": test, **{m: summarise([r[m] for r in rows if r["arm"] == arm and r["test"] == test])
                                              for m in metrics}}
               for arm in ["sift", *arms] for test in tests]  # fmt: skip
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "experiment": args.name, "command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": now_iso(),
        "machine": machine(), "evaluated_on": "this machine's CPU (machine); each run's training device is in its row",
        "budget": {"regression_steps": args.regression_steps, "steps": args.steps, "seeds": seeds,
                   "batch_size": runs[0]["card"]["train"]["batch_size"], "config": runs[0]["card"]["config"],
                   "dlc": {r["arm"]: r["card"]["dlc"] for r in runs}, "lr": args.lr,
                   "init": runs[0]["card"]["train"].get("init"), "shared_regression": args.shared_regression,
                   "trained": trained},
        "data": f"{args.pairs} pairs per test set from the held-out photos {runs[0]['card']['train']['held_out_photos']}",
        "summary": summary, "runs": rows,
    })  # fmt: skip
    print(f"wrote bench/results/{args.name}.json")


if __name__ == "__main__":
    main()
