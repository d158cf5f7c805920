"""Diagnosis: how many hidden units of a homography model's regression head still fire. A ReLU unit that is
negative for every input is dead (no gradient reaches it again); when all are, the head can only output its bias,
the mean corner offset, and the regression's corner error stays at the untrained ~23 px.

    .venv/bin/python bench/regression_units.py --name regression_units runs/homography_v3/regression_seed{0,1,2}
    .venv/bin/python bench/regression_units.py --name regression_units_train --train 150

Counted on --pairs unaugmented pairs from the training photos of --images. With --train N, instead: the
regression network trained N steps here (as ``dlc train homography`` trains it: smooth-L1, Adam 10^-3, --batch
pairs made by DevicePairs, --seed) with and without LayerNorm before the hidden ReLU. Writes
bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dlc_core.atomic import write_json  # noqa: E402
from dlc_core.homography.model import HomographyConfig, RegressionNet, load_homography_model  # noqa: E402
from dlc_core.homography.pairs import DevicePairs, make_pair, read_grey, split_photos, stacked  # noqa: E402
from training.common import machine, now_iso  # noqa: E402


def probe_pairs(greys: list[np.ndarray], count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input, template, corners) of `count` fixed unaugmented pairs."""
    return stacked([make_pair(greys[i % len(greys)], np.random.default_rng((99, i))) for i in range(count)])


def activity(net: RegressionNet, probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
    """Fraction of (pair, unit) activations above zero, the units that fire for at least one pair, corner error."""
    image, template, corners = probe
    net.eval()
    with torch.no_grad():
        hidden = net.body(net.stacked(image, template))
        error = (net.corners(image, template) - corners).norm(dim=-1).mean()
    net.train()
    return {"hidden_units": hidden.shape[1], "active_fraction": float((hidden > 0).float().mean()),
            "units_ever_active": int((hidden > 0).any(0).sum()), "corner_error_px": float(error)}  # fmt: skip


def trained_model(model_dir: str, probe: tuple) -> dict:
    model, card = load_homography_model(model_dir, torch.device("cpu"))
    return {"model": model_dir, "sha256": card["sha256"], "done_steps": card["train"]["done_steps"],
            **activity(model.regression, probe)}  # fmt: skip


def train_head(norm: bool, greys: list[np.ndarray], args: argparse.Namespace, probe: tuple) -> dict:
    """The default regression network, with or without the LayerNorm, trained --train steps; activity every 50."""
    torch.manual_seed(args.seed)
    c = HomographyConfig()
    # inputs as they were when this experiment was run (before the regression standardised them): LayerNorm only
    net = RegressionNet(c.regression_channels, c.regression_grid, c.regression_hidden, norm, standardise=False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    pairs, trace = DevicePairs(greys, args.seed, augment=True, device=torch.device("cpu")), []
    for step, batch in enumerate(pairs.epoch(0, args.train, args.batch), 1):
        loss = F.smooth_l1_loss(net.corners(batch["input"][:, None], batch["template"][:, None]), batch["corners"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            trace.append({"step": step, **activity(net, probe)})
            print(f"norm={norm} step {step}: {trace[-1]}", flush=True)
    return {"layer_norm": norm, "trace": trace}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*")
    p.add_argument("--name", required=True)
    p.add_argument("--images", default="runs/photos_plus")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--train", type=int, default=0, help="train the head this many steps, with and without LayerNorm")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train_photos, _ = split_photos(args.images)
    greys = [read_grey(p) for p in train_photos]
    probe = probe_pairs(greys, args.pairs)
    if args.train:
        rows = [train_head(norm, greys, args, probe) for norm in (False, True)]
    else:
        rows = [trained_model(m, probe) for m in args.models]
        for r in rows:
            print(f"{r['model']}: {r['units_ever_active']}/{r['hidden_units']} hidden units fire, "
                  f"{100 * r['active_fraction']:.1f}% of activations; corner error {r['corner_error_px']:.1f} px")
    write_json(REPO / "bench/results" / f"{args.name}.json", {
        "experiment": args.name, "command": shlex.join([Path(sys.executable).name, *sys.argv]), "date": now_iso(),
        "machine": machine(), "data": f"{args.pairs} pairs from the training photos of {args.images}", "models": rows})  # fmt: skip


if __name__ == "__main__":
    main()
