"""Benchmark: time and peak memory per training step, plain vs DLC (each landscape), on the same batch and model;
and the inference latency of DCP and PRNet (shipped size) with 1 to 5 passes on 1024-point pairs (issues 2 and 7).
Each configuration runs in its own process so that its peak memory is its own.

    .venv/bin/python bench/train_step_cost.py [--steps 5] [--out bench/results/train_step_cost.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = [("plain", None), ("dlc-label", "label"), ("dlc-procrustes", "procrustes"), ("dlc-rerun", "rerun")]


def measure_training(landscape: str | None, steps: int, batch_size: int, num_points: int) -> dict:
    """Median seconds per optimiser step (after one warm-up step) and peak RSS, in this process."""
    import torch

    from dlc_core.data.registration_data import parse_spec, training_sets
    from dlc_ros.cli import build_parser
    from training.common import peak_rss_mb
    from training.distributed import Rank
    from training.registration import build_training, train_step

    torch.set_num_threads(2)
    flags = ["train", "registration", "--out", "/dev/null", "--num-points", str(num_points), "--batch-size", str(batch_size)]
    flags += ["--no-dlc"] if landscape is None else ["--landscape", landscape]
    args = build_parser().parse_args(flags)
    train_set, _ = training_sets(parse_spec("shapes", ("shapes",)), "clean", num_points, 0)
    batch = {k: torch.stack([train_set[i][k] for i in range(batch_size)]) for k in train_set[0]}
    t = build_training(args, Rank(), torch.device("cpu"), 1000)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        train_step(t, batch, args, Rank())
        times.append(time.perf_counter() - started)
    times = sorted(times[1:])
    return {"step_s_median": times[len(times) // 2], "step_s_all": times, "peak_rss_mb": peak_rss_mb()}


def measure_inference(backbone: str, passes: int, num_points: int, repeats: int) -> dict:
    """Median latency of one pair through a shipped-size model with a fixed number of passes (no early stop)."""
    import torch

    from dlc_core.data.registration_data import evaluation_set, parse_spec
    from dlc_core.models import registration_model
    from dlc_ros.cli import build_parser
    from training.common import peak_rss_mb
    from training.registration import model_config

    torch.set_num_threads(2)
    args = build_parser().parse_args(["train", "registration", "--out", "/dev/null", "--backbone", backbone])
    model = registration_model(model_config(args)).eval()
    pair = evaluation_set(parse_spec("shapes", ("shapes",)), "clean", num_points)[0]
    src, tgt = pair["src"][None], pair["tgt"][None]
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            model(src, tgt, passes=passes)
            times.append(time.perf_counter() - started)
    times = sorted(times[1:])
    return {"latency_ms_median": 1000 * times[len(times) // 2], "peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, value: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, value, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--num-points", str(args.num_points)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-points", type=int, default=256, help="training points per cloud (the shipped models' size)")
    p.add_argument("--out", default=str(REPO / "bench/results/train_step_cost.json"))
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, value = args.child
        if kind == "train":
            result = measure_training(None if value == "none" else value, args.steps, args.batch_size, args.num_points)
        else:
            backbone, passes = value.split(":")
            result = measure_inference(backbone, int(passes), 1024, repeats=10)
        print(json.dumps(result))
        return

    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    training = {name: run_child("train", kind or "none", args) for name, kind in CONFIGS}
    plain = training["plain"]["step_s_median"]
    for name in training:
        training[name]["ratio_to_plain"] = training[name]["step_s_median"] / plain
    inference = {b: {str(n): run_child("infer", f"{b}:{n}", args) for n in range(1, 6)} for b in ("dcp", "prnet")}
    result = {
        "benchmark": "train_step_cost",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": now_iso(),
        "machine": machine(),
        "training": {"batch_size": args.batch_size, "num_points": args.num_points, "steps_timed": args.steps,
                     "model": "shipped size (DGCNN 32-32-64-128, emb 128, 4 unrolled passes, K=3)", **training},
        "inference": {"num_points": 1024, "batch": 1, "note": "fixed number of passes, no early stop",
                      "backbones": inference},
    }  # fmt: skip
    write_json(args.out, result)
    for name, r in training.items():
        print(f"train {name:15s} {r['step_s_median']:.2f} s/step  x{r['ratio_to_plain']:.2f}  peak {r['peak_rss_mb']:.0f} MB")
    for backbone, passes in inference.items():
        for n, r in passes.items():
            print(f"infer {backbone} {n} passes  {r['latency_ms_median']:.0f} ms  peak {r['peak_rss_mb']:.0f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
