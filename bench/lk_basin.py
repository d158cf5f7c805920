"""Diagnosis: how good must the regression's first guess be? The LK stage of a trained homography model is started
from the true corners moved by random offsets of a given size (instead of from the regression), on the held-out
test pairs, and scored as usual. The success rate against the start error is the LK basin the regression has to
hit; it says what corner error the regression needs for the 90% target.

    .venv/bin/python bench/lk_basin.py --name lk_basin models/homography_nodlc models/homography_dlc

Offsets: each corner coordinate moved by a uniform draw, scaled so the mean corner distance is --errors (px).
Writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.experiment_common import shared_data  # noqa: E402
from dlc_core.atomic import write_json  # noqa: E402
from dlc_core.homography.geometry import corner_error, homography_from_corners, success_rates  # noqa: E402
from dlc_core.homography.model import load_homography_model  # noqa: E402
from dlc_core.homography.pairs import stacked  # noqa: E402
from training.common import machine, now_iso  # noqa: E402
from training.homography import evaluation_pairs  # noqa: E402


def start_offsets(rng: np.random.Generator, mean_px: float) -> np.ndarray:
    """(4, 2) corner offsets in random directions whose mean length is exactly `mean_px`."""
    offsets = rng.uniform(-1, 1, size=(4, 2))
    return offsets * mean_px / np.linalg.norm(offsets, axis=1).mean()


def basin(model_dir: str, pairs: list[dict], errors: list[float]) -> dict:
    """Success of one model's LK stage from starts `errors` px away from the truth, on `pairs`."""
    model, card = load_homography_model(model_dir, torch.device("cpu"))
    image, template, truth = stacked(pairs)
    rows = []
    for mean_px in errors:
        rng = np.random.default_rng(7)
        start = truth + torch.as_tensor(np.stack([start_offsets(rng, mean_px) for _ in pairs]))
        out = model.lk_from(image, template, homography_from_corners(start))
        pe = corner_error(out["h"], truth).numpy()
        rows.append({"start_error_px": mean_px, "sr": success_rates(pe), "pe_median": float(np.median(pe)),
                     "lk_diverged_rate": float(out["diverged"].float().mean())})  # fmt: skip
        print(f"{model_dir}: start {mean_px:4.1f} px: SR<1 {rows[-1]['sr']['1']:5.1f}%  SR<3 {rows[-1]['sr']['3']:5.1f}%"
              f"  diverged {100 * rows[-1]['lk_diverged_rate']:.0f}%", flush=True)  # fmt: skip
    return {"model": model_dir, "sha256": card["sha256"], "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--name", required=True)
    p.add_argument("--images", default=shared_data("homography", "photos"),
                   help="photo folder (relative paths: from the repository root)")
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--errors", default="0,2,4,6,8,12,16,23")
    args = p.parse_args()
    torch.set_num_threads(1)
    os.chdir(REPO)  # relative paths, as recorded in the results, are the repository's
    pairs, data = evaluation_pairs(argparse.Namespace(images=args.images, split="test", seed=1234, pairs=args.pairs,
                                                      multimodal=False, photometric=False))  # the pairs dlc eval scores
    errors = [float(e) for e in args.errors.split(",")]
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "experiment": args.name, "command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": now_iso(),
        "machine": machine(), "data": f"{args.pairs} pairs from {data}, seed 1234 as dlc eval",
        "models": [basin(m, pairs, errors) for m in args.models]})  # fmt: skip


if __name__ == "__main__":
    main()
