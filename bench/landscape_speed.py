"""Benchmark: seconds for one ``dlc landscape`` scan — a 41 x 41 grid plus 64 rays of 21 points (2,962 landscape
evaluations) — on one 1024-point ``shapes`` pair, for each landscape kind, with an untrained model of the shipped
size (DGCNN 32-32-64-128, 128-d embedding, feed-forward 256; 4 unrolled passes as the trainer's default).

    .venv/bin/python bench/landscape_speed.py [--kinds label,procrustes,rerun] [--out PATH]
    (default PATH: bench/results/landscape_speed.json)

``seconds`` is what the CLI spends per sample and model: ``passes_s``, the unrolled passes and make_landscape, plus
``scan_s``, dlc_core.landscape.scan of all points in chunks of the CLI's default size. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from dlc_core import landscape as analysis  # noqa: E402
from dlc_core.atomic import write_json  # noqa: E402
from dlc_core.data.registration_data import evaluation_set, parse_spec  # noqa: E402
from dlc_core.models.dcp import DCPConfig, IterativeDCP  # noqa: E402
from training import common  # noqa: E402
from training.landscape import DEFAULT_CHUNK, Subject, registration_landscape  # noqa: E402

NUM_POINTS, PASSES, GRID, RAYS, RAY_POINTS, RADIUS = 1024, 4, 41, 64, 21, 3.0
SHIPPED_SIZE = DCPConfig(emb_dims=128, channels=(32, 32, 64, 128), ff_dims=256)
MODEL = f"untrained IterativeDCP({SHIPPED_SIZE})"
SCALE = [0.17453292519943295] * 3 + [0.1] * 3  # the trainer's default noise σ (10 deg, 0.1)


def measure(kind: str, model: IterativeDCP, pair: dict, probe: analysis.Probe) -> dict:
    """Wall seconds of one full scan of one pair with one landscape kind, and the scores it gave."""
    subject = Subject("untrained", model, {"dlc": {"enabled": False}}, kind, "bench", PASSES)
    started = time.perf_counter()
    landscape, truth = registration_landscape(subject, pair, torch.device("cpu"))
    built = time.perf_counter()
    result = analysis.scan(landscape, truth, probe, mu=0.1, chunk=DEFAULT_CHUNK[kind])
    done = time.perf_counter()
    points = 1 + RAYS * (RAY_POINTS - 1) + GRID * GRID
    print(f"{kind}: {done - started:.2f} s for {points} points ({done - built:.2f} s in the scan)", flush=True)
    return {
        "seconds": round(done - started, 3),
        "passes_s": round(built - started, 3),
        "scan_s": round(done - built, 3),
        "points": points,
        "scan_ms_per_point": round(1000 * (done - built) / points, 3),
        "chunk": DEFAULT_CHUNK[kind],
        "scores": analysis.scores(result, probe),
    }


def main() -> None:
    """Time each kind on the same pair and probe, and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="label,procrustes,rerun", help="landscape kinds to time")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "landscape_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)
    model = IterativeDCP(SHIPPED_SIZE).eval()
    pair = evaluation_set(parse_spec("shapes", ("shapes",)), "clean", NUM_POINTS, 0)[0]
    probe = analysis.make_probe(SCALE, RADIUS, RAYS, RAY_POINTS, GRID, (0, 3), seed=0)
    load_before = os.getloadavg()
    results = {kind: measure(kind, model, pair, probe) for kind in args.kinds.split(",")}
    write_json(args.out, {
        "benchmark": "landscape_speed",
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "setup": {"num_points": NUM_POINTS, "passes": PASSES, "grid": GRID, "rays": RAYS, "ray_points": RAY_POINTS,
                  "radius_sigma": RADIUS, "model": MODEL, "torch_threads": torch.get_num_threads()},
        "results": results,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": common.machine(),
        "date": common.now_iso(),
    })  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
