"""Calibration: the ICP-fitness threshold of the pipeline's consistency check, chosen on *simulated* pairs so that
the real KITTI sequences used for evaluation play no part in it.

For random simulated pairs (i, i+g), g = 1..10, ICP (the pipeline's settings) is started from the ground truth
perturbed by a random error, small (inside the basin) or large (outside it); each result is labelled correct
(RTE < 0.6 m, RRE < 5 deg) or not. The JSON holds both fitness distributions and the threshold that best separates
them (maximum balanced accuracy; the middle of the range of thresholds that reach it).

    .venv/bin/python bench/fitness_threshold.py --sim runs/sim --pairs 120
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlc_core.atomic import write_json  # noqa: E402
from dlc_core.data.scan_pairs import open_sequences  # noqa: E402
from dlc_core.metrics import pose_errors  # noqa: E402
from dlc_core.pipeline import PipelineConfig, ScanRegistrar  # noqa: E402
from dlc_core.scan_preprocess import ScanPreprocess  # noqa: E402
from training.common import machine, now_iso  # noqa: E402


def perturbation(rng: np.random.Generator, large: bool) -> np.ndarray:
    """A random rigid error: within ~1 m / 3 deg (small) or 4-12 m / 10-40 deg (large)."""
    m = np.eye(4)
    yaw = rng.uniform(10, 40) if large else rng.uniform(0, 3)
    m[:3, :3] = Rotation.from_euler("z", rng.choice([-1, 1]) * yaw, degrees=True).as_matrix()
    direction = rng.normal(size=3) * np.array([1, 1, 0.1])
    m[:3, 3] = direction / np.linalg.norm(direction) * (rng.uniform(4, 12) if large else rng.uniform(0, 1))
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", default=str(REPO / "runs/sim"), help="folder of dlc sim sequences")
    p.add_argument("--pairs", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "bench/results/fitness_threshold.json"))
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    sequences = open_sequences("sim", Path(args.sim), [], None)
    registrar = ScanRegistrar(ScanPreprocess(), PipelineConfig(fallback=False))
    rows = []
    for k in range(args.pairs):
        seq = sequences[rng.integers(len(sequences))]
        gap = int(rng.integers(1, 11))
        i = int(rng.integers(len(seq) - gap))
        gt = seq.relative(i, i + gap)
        start = gt @ perturbation(rng, large=bool(k % 2))
        src, tgt = registrar.prepare(seq.scan(i + gap)), registrar.prepare(seq.scan(i))
        result = registrar.register(src, tgt, init=start)
        rte_m, rre = pose_errors(result.transform, gt)
        ok = rte_m < 0.6 and rre < 5
        rows.append({"sequence": seq.sequence, "gap": gap, "large_start": bool(k % 2), "fitness": result.fitness, "correct": bool(ok)})
        print(f"{k + 1}/{args.pairs} gap {gap} fitness {result.fitness:.3f} {'ok' if ok else 'wrong'}", flush=True)
    fit = np.array([r["fitness"] for r in rows])
    good = np.array([r["correct"] for r in rows])
    candidates = np.round(np.arange(0.30, 0.91, 0.01), 2)
    balanced = np.array([0.5 * ((fit[good] >= c).mean() + (fit[~good] < c).mean()) for c in candidates])
    tied = candidates[balanced == balanced.max()]
    best = float(np.round((tied.min() + tied.max()) / 2, 2))  # the middle of the best range: margin on both sides
    write_json(args.out, {
        "benchmark": "fitness_threshold", "command": " ".join(["python", *sys.argv]), "date": now_iso(), "machine": machine(),
        "pairs": len(rows), "correct": int(good.sum()),
        "fitness_correct": {"min": float(fit[good].min()), "p05": float(np.percentile(fit[good], 5)), "median": float(np.median(fit[good]))},
        "fitness_wrong": {"max": float(fit[~good].max()), "p95": float(np.percentile(fit[~good], 95)), "median": float(np.median(fit[~good]))},
        "threshold": best, "balanced_accuracy": float(max(balanced)), "rows": rows,
    })  # fmt: skip
    print(f"threshold {best} (balanced accuracy {max(balanced):.3f}); wrote {args.out}")


if __name__ == "__main__":
    main()
