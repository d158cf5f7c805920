"""Robustness: the shipped homography models and SIFT + RANSAC on the held-out test pairs as made (DeepLK protocol:
the template is the input resampled, same exposure) and on the same pairs seen as two exposures (``dlc eval
homography --photometric``: template gain 0.8-1.2, offset ±0.1, sensor noise σ 0.02 on both). Grey-level LK has
an exact zero at the truth only in the first case; this says what is left of it in the second.

    .venv/bin/python bench/homography_photometric.py --name homography_photometric

The README's run adds the grey-level model shipped before the regression standardised its inputs, read from git:

    mkdir -p runs/homography_intensity_f386363 && for f in model.pt model_card.json; do
        git show f386363:models/homography_intensity/$f > runs/homography_intensity_f386363/$f; done
    .venv/bin/python bench/homography_photometric.py --name homography_photometric --models \
        models/homography_intensity,runs/homography_intensity_f386363,models/homography_nodlc,models/homography_dlc,sift

Writes bench/results/<name>.json (every run's ``dlc eval`` result) and runs/<name>/ (the per-run JSONs).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from experiment_common import DLC, REPO, run, shared_data

sys.path.insert(0, str(REPO))

MODELS = ("models/homography_intensity", "models/homography_nodlc", "models/homography_dlc", "sift")
KEEP = ("pe_mean", "pe_median", "pe_regression_median", "sr", "lk_diverged_rate", "time_ms", "photometric", "data")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--images", default=shared_data("homography", "photos"))
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--models", default=",".join(MODELS), help="model folders and/or sift, comma-separated")
    args = p.parse_args()

    from dlc_core.atomic import write_json
    from training.common import machine, now_iso

    folder = REPO / "runs" / args.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models.split(","):
        for photometric in (False, True):
            out = folder / f"{Path(model).name}{'_photometric' if photometric else ''}.json"
            method = ["--method", "sift"] if model == "sift" else ["--model", model]
            run([*DLC, "eval", "homography", *method, "--images", args.images, "--pairs", str(args.pairs), "--seed", "1234",
                 *(["--photometric"] if photometric else []), "--json", str(out)], folder / "eval.log")  # fmt: skip
            result = json.loads(out.read_text())
            rows.append({"model": model, **{k: result[k] for k in KEEP}})
            print(f"{model} photometric={photometric}: SR<1 {result['sr']['1']:.1f}%, SR<3 {result['sr']['3']:.1f}%",
                  flush=True)  # fmt: skip
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "experiment": args.name, "command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": now_iso(),
        "machine": machine(), "data": f"{args.pairs} pairs from the held-out photos of {args.images} (seed 1234)",
        "runs": rows})  # fmt: skip


if __name__ == "__main__":
    main()
