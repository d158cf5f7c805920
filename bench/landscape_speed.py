"""Benchmark: seconds for one ``dlc landscape`` scan — a 41 x 41 grid plus 64 rays of 21 points (2,962 landscape
evaluations) — on one 1024-point ``shapes`` pair, for each landscape kind, with an untrained model of the shipped
size (DGCNN 32-32-64-128, 128-d embedding, feed-forward 256; 4 unrolled passes as the trainer's default).

    .venv/bin/python bench/landscape_speed.py [--kinds label,procrustes,rerun] [--rerun-points 128] [--full]
                                              [--out bench/results/landscape_speed.json]

Per kind: ``passes_s``, the unrolled passes and make_landscape (what the CLI does once per sample and model), and
``scan_s``, the landscape at all 2,962 points in chunks of the CLI's default size plus the scores. ``rerun`` costs
one network pass per point, in independent batches, so its time is linear in the number of points: unless
``--full``, it is timed on the first ``--rerun-points`` points of the same probe and projected to 2,962
(``projected: true``). Wall and process CPU seconds (all threads) are both recorded, with the load average,
because this 2-core machine is shared. Not a test.
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
from training.landscape import DEFAULT_CHART, DEFAULT_CHUNK, Subject, registration_landscape  # noqa: E402

NUM_POINTS, PASSES, GRID, RAYS, RAY_POINTS, RADIUS = 1024, 4, 41, 64, 21, 3.0
SHIPPED_SIZE = DCPConfig(emb_dims=128, channels=(32, 32, 64, 128), ff_dims=256)


class Clock:
    """Wall and process-CPU seconds since the last lap."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        """(wall, cpu) seconds since the previous lap, and restart."""
        wall, cpu = time.perf_counter(), time.process_time()
        out = (round(wall - self.wall, 3), round(cpu - self.cpu, 3))
        self.wall, self.cpu = wall, cpu
        return out


def measure(kind: str, model: IterativeDCP, pair: dict, probe: analysis.Probe, prefix: int | None) -> dict:
    """Time the passes and the scan of one pair with one kind (the scan on `prefix` points, projected, if given)."""
    subject = Subject("untrained", model, {"dlc": {"enabled": False}}, kind, "bench", PASSES)
    chunk, offsets = DEFAULT_CHUNK[kind], analysis.probe_offsets(probe)
    clock = Clock()
    landscape, truth = registration_landscape(subject, pair, torch.device("cpu"))
    passes_s, passes_cpu_s = clock.lap()
    row: dict = {"passes_s": passes_s, "passes_cpu_s": passes_cpu_s, "points": len(offsets), "chunk": chunk}
    if prefix is None:
        row["scores"] = analysis.scores(analysis.scan(landscape, truth, probe, mu=0.1, chunk=chunk), probe)
        scan_s, scan_cpu_s = clock.lap()
        row.update(timed_points=len(offsets), projected=False)
    else:
        analysis.evaluate(landscape, truth, offsets[:prefix], chunk)
        wall, cpu = clock.lap()
        factor = len(offsets) / prefix
        scan_s, scan_cpu_s = round(wall * factor, 3), round(cpu * factor, 3)
        row.update(timed_points=prefix, projected=True)
    row.update(scan_s=scan_s, scan_cpu_s=scan_cpu_s, seconds=round(passes_s + scan_s, 3))
    row["scan_ms_per_point"] = round(1000 * scan_s / len(offsets), 3)
    print(f"{kind}: {row['seconds']:.1f} s ({passes_s:.1f} s passes + {scan_s:.1f} s scan"
          f"{', projected' if prefix else ''}) for {len(offsets)} points", flush=True)  # fmt: skip
    return row


def main() -> None:
    """Time each kind on the same pair and probe, and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="label,procrustes,rerun", help="landscape kinds to time")
    parser.add_argument("--rerun-points", type=int, default=128, help="rerun: time this many points and project")
    parser.add_argument("--full", action="store_true", help="rerun: time all 2,962 points (about an hour here)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "landscape_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)
    model = IterativeDCP(SHIPPED_SIZE).eval()
    pair = evaluation_set(parse_spec("shapes", ("shapes",)), "clean", NUM_POINTS, 0)[0]
    probe = analysis.make_probe(DEFAULT_CHART.scales, RADIUS, RAYS, RAY_POINTS, GRID, (0, 3), seed=0)
    load_before = os.getloadavg()
    results = {}
    for kind in args.kinds.split(","):
        prefix = args.rerun_points if kind == "rerun" and not args.full else None
        results[kind] = measure(kind, model, pair, probe, prefix)
    write_json(args.out, {
        "benchmark": "landscape_speed",
        "command": " ".join(["python", *sys.argv]),
        "setup": {"num_points": NUM_POINTS, "passes": PASSES, "grid": GRID, "rays": RAYS, "ray_points": RAY_POINTS,
                  "radius_sigma": RADIUS, "model": f"untrained IterativeDCP({SHIPPED_SIZE})",
                  "torch_threads": torch.get_num_threads()},
        "results": results,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": common.machine(),
        "date": common.now_iso(),
    })  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
