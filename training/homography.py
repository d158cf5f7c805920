"""``dlc train homography`` and ``dlc eval homography``: the DeepLK-style model with DLC (PRISE) or with DeepLK's own
convex loss (the no-DLC arm), on pairs made from photos (dlc_core.homography.pairs).

Training has two stages, as in DeepLK: first the regression network (smooth-L1 on the corners, --regression-steps),
then the feature pyramids (--steps) on the LK objective at the true H summed over the 3 levels, plus either the
DLC hinges (EntryChart, through the shared DLCLoss) or DeepLK's convexity terms — the only difference between the
arms. All levels train together rather than stage by stage (a CPU budget). Training pairs come from random
windows of the training photos (--augment, default on); --workers processes make them while the device trains, or
(--pairs-on-device) the training device makes them itself, for a GPU whose host has few cores.
--init DIR starts from a trained model instead (with --regression-steps 0: fine-tune the feature pyramids only, as
PRISE fine-tunes DeepLK); --regression-from DIR takes the regression network from another run (the two stages
never see each other, so a seed's arms can share one regression run; with no steps this only composes).
Validation: corner error of the full model (regression + LK) on fixed, unaugmented pairs from the training photos;
the test photos are never seen in training.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dlc_core.atomic import write_json
from dlc_core.dlc_loss import DLCLoss
from dlc_core.errors import InputError
from dlc_core.homography.geometry import corner_error, success_rates
from dlc_core.homography.model import HomographyConfig, HomographyModel, load_homography_model
from dlc_core.homography.objective import EntryChart, deeplk_convex_loss
from dlc_core.homography.pairs import DevicePairs, DLKSample, PairDataset, make_pair, read_dlk, read_grey, split_photos, stacked
from dlc_core.homography.sift import sift_homography

from . import common
from .registration import dlc_config

VAL_PAIRS = 32
RESUME_KEYS = ("images", "init", "regression_from", "multimodal", "augment", "dlc", "batch_size", "seed", "channels",
               "lr", "regression_lr", "K", "beta", "alpha", "mu", "agg", "terms", "trainable", "convex_weight", "pairs_per_epoch",
               "pairs_on_device", "features", "standardise_regression")  # fmt: skip


@dataclass
class Training:
    model: HomographyModel
    dlc: DLCLoss | None
    regression_opt: torch.optim.Optimizer
    feature_opt: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0  # regression steps, then feature steps
    epoch: int = 0
    wall_s: float = 0.0


OPTIMISERS = ("regression_opt", "feature_opt")


def model_config(args: argparse.Namespace) -> HomographyConfig:
    return HomographyConfig(channels=args.channels, features=args.features)


def batches(dataset: PairDataset, batch_size: int, epoch: int, workers: int) -> DataLoader:
    dataset.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True, num_workers=workers)


def as_images(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["input"].unsqueeze(1), batch["template"].unsqueeze(1)


def regression_step(t: Training, batch: dict) -> float:
    t.model.train()
    image, template = as_images(batch)
    loss = F.smooth_l1_loss(t.model.regression.corners(image, template), batch["corners"])
    t.regression_opt.zero_grad(set_to_none=True)
    loss.backward()
    t.regression_opt.step()
    return loss.item()


def feature_step(t: Training, batch: dict, args: argparse.Namespace) -> dict[str, float]:
    t.model.train()
    image, template = as_images(batch)
    image_maps, template_maps = t.model.pyramids(image, template)
    h = batch["H"].double()

    def landscape(points: torch.Tensor) -> torch.Tensor:
        return t.model.landscape(image_maps, template_maps, points)

    chart = EntryChart()
    if t.dlc is not None:
        terms = t.dlc(landscape, h, chart, t.generator)
        task, extra = terms.landscape_at_truth.mean(), terms.loss
        stats = {"h1": terms.h1.item(), "h2": terms.h2.item(), "h3": terms.h3.item()}
    else:
        task = landscape(h.unsqueeze(0))[0].mean()
        extra, stats = args.convex_weight * deeplk_convex_loss(landscape, h, chart, args.K, t.generator), {}
    loss = task + extra
    t.feature_opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(t.model.parameters(), 1.0)
    t.feature_opt.step()
    return {"lk_at_truth": task.item(), **stats, "loss": loss.item()}


def validate(model: HomographyModel, pairs: list[dict]) -> dict[str, float]:
    pe, pe_reg = estimate(model, pairs)
    return {"val_pe_mean": float(pe.mean()), "val_pe_regression_mean": float(pe_reg.mean()),
            "val_sr3": success_rates(pe)["3"]}  # fmt: skip


def estimate(model: HomographyModel, pairs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Corner errors of the full model and of its regression stage alone on labelled pairs (on the model's device)."""
    model.eval()
    image, template, corners = stacked(pairs, next(model.parameters()).device)
    out = model(image, template)
    return corner_error(out["h"], corners).cpu().numpy(), corner_error(out["h_regression"], corners).cpu().numpy()


def _card(args: argparse.Namespace, t: Training, metrics: dict, facts: dict) -> dict:
    """The model card; `facts`: what the run found before training (photo split, starting model, device)."""
    dlc_block: dict = {"enabled": False, "baseline": f"DeepLK convex loss, weight {args.convex_weight}"}
    if t.dlc is not None:
        dlc_block = {**t.dlc.config.card(), "noise": EntryChart().card()}
    return {
        "task": "homography",
        "backbone": "deeplk",
        "config": t.model.config.card(),
        "preprocess": {"input": "192x192 grey [0, 1]", "template": "128x128 grey [0, 1]", "h": "template px -> input px"},
        "dlc": dlc_block,
        "train": {
            "images": args.images, **facts, "multimodal": args.multimodal, "augment": args.augment,
            "pairs_on_device": args.pairs_on_device,
            "regression_steps": args.regression_steps, "steps": args.steps, "done_steps": t.step,
            "batch_size": args.batch_size, "lr": args.lr, "regression_lr": args.regression_lr, "seed": args.seed,
            "command": args.command, "git_commit": common.git_commit(), "torch": torch.__version__,
            "wall_s": round(t.wall_s, 1), "date": common.now_iso(),
        },
        "metrics": metrics,
    }  # fmt: skip


def _save(out: Path, args: argparse.Namespace, t: Training, val: list[dict], facts: dict) -> None:
    metrics = validate(t.model, val)
    common.save_progress(out, t, metrics, _card(args, t, metrics, facts), args, RESUME_KEYS, OPTIMISERS)


def initial_model(args: argparse.Namespace, device: torch.device) -> tuple[HomographyModel, dict]:
    """A fresh model, or (--init DIR) a trained one to fine-tune, as PRISE fine-tunes DeepLK; with
    --regression-from DIR, its regression network replaces the model's (the two stages are independent, so one
    regression can serve every arm of a seed; a fresh model takes its architecture). Returns the model and what it
    started from, for the card."""
    started: dict = {"init": None}
    donor, donor_card = load_homography_model(args.regression_from, device) if args.regression_from else (None, None)
    if args.init:
        model, card = load_homography_model(args.init, device)
        if model.config.channels != args.channels:
            raise InputError(f"--init {args.init}: its pyramids have {model.config.channels} channels, "
                             f"--channels is {args.channels}")  # fmt: skip
        started["init"] = provenance(args.init, card)
    else:
        config = model_config(args)
        if donor is not None:
            config = replace(config, **{f: getattr(donor.config, f) for f in REGRESSION_FIELDS})
        model = HomographyModel(config).to(device)
    if donor is not None:
        if regression_shape(donor.config) != regression_shape(model.config):
            raise InputError(f"--regression-from {args.regression_from}: its regression network "
                             f"{regression_shape(donor.config)} differs from this model's {regression_shape(model.config)}")
        model.regression.load_state_dict(donor.regression.state_dict())
        regression_inputs(model, donor.config.regression_standardise)  # the inputs the donor was trained on
        started["regression_from"] = provenance(args.regression_from, donor_card)
    if args.standardise_regression is not None:
        regression_inputs(model, args.standardise_regression)
    return model.train(), started


def regression_inputs(model: HomographyModel, standardise: bool) -> None:
    """Set whether the regression standardises its images, in the network and in the config the card records."""
    model.config = replace(model.config, regression_standardise=standardise)
    model.regression.standardise = standardise


def provenance(folder: str, card: dict) -> dict:
    return {"model": folder, "sha256": card["sha256"], "git_commit": card["train"].get("git_commit"),
            "done_steps": card["train"]["done_steps"], "wall_s": card["train"]["wall_s"]}  # fmt: skip


REGRESSION_FIELDS = ("regression_channels", "regression_grid", "regression_hidden", "regression_norm")  # its architecture


def regression_shape(config: HomographyConfig) -> tuple:
    return tuple(getattr(config, f) for f in REGRESSION_FIELDS)


def train(args: argparse.Namespace) -> int:
    """Entry point of ``dlc train homography``."""
    common.seed_everything(args.seed)
    device = common.resolve_device(args.device)
    train_photos, test_photos = split_photos(args.images)
    if args.features == "intensity" and args.steps:
        raise InputError("--features intensity has no feature pyramids to train: use --steps 0")
    if args.pairs_on_device and args.multimodal:
        raise InputError("--pairs-on-device makes single-modal pairs only; drop it for --multimodal")
    greys = [read_grey(p) for p in train_photos]
    if args.pairs_on_device:
        source: PairDataset | DevicePairs = DevicePairs(greys, args.seed, args.augment, device)
    else:
        source = PairDataset(greys, args.pairs_per_epoch, args.seed, args.multimodal, args.augment)
    val = [make_pair(greys[i % len(greys)], np.random.default_rng((10_000 + i,)), args.multimodal) for i in range(VAL_PAIRS)]
    model, started = initial_model(args, device)
    facts = {"train_photos": [p.name for p in train_photos], "held_out_photos": [p.name for p in test_photos],
             **started, "device": device.type}  # fmt: skip
    dlc = DLCLoss(dlc_config(args)).to(device) if args.dlc else None
    features = list(model.input_features.parameters()) + list(model.template_features.parameters())
    t = Training(model, dlc, torch.optim.Adam(model.regression.parameters(), lr=args.regression_lr),
                 torch.optim.Adam(features + (list(dlc.parameters()) if dlc else []), lr=args.lr),
                 torch.Generator(device=device).manual_seed(args.seed))  # fmt: skip
    out = Path(args.out)
    if args.resume:
        common.resume(t, out, args, RESUME_KEYS, OPTIMISERS)
    total = args.regression_steps + args.steps
    if total == 0 and not args.regression_from:
        raise InputError("--regression-steps and --steps are both 0: nothing to train")
    per_epoch = args.pairs_per_epoch // args.batch_size
    if per_epoch == 0:
        raise InputError(f"--pairs-per-epoch {args.pairs_per_epoch} is smaller than --batch-size {args.batch_size}")
    started = time.time()
    while t.step < total:
        t.epoch = epoch = t.step // per_epoch
        stage = "regression" if t.step < args.regression_steps else "features"
        if isinstance(source, DevicePairs):
            loader = source.epoch(epoch, per_epoch, args.batch_size)
        else:
            loader = batches(source, args.batch_size, epoch, args.workers)
        bar = common.progress(loader, per_epoch, f"{stage} epoch {epoch + 1}")
        for i, batch in enumerate(bar):
            if i < t.step % per_epoch:
                continue  # resuming inside an epoch
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            if t.step < args.regression_steps:
                stats = {"corner_loss": regression_step(t, batch)}
            else:
                stats = feature_step(t, batch, args)
            t.step += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items()}, refresh=False)
            if t.step in (args.regression_steps, total) or t.step % per_epoch == 0:
                break
        t.wall_s += time.time() - started
        started = time.time()
        _save(out, args, t, val, facts)
    if total == 0:  # --regression-from alone: the composed model, untrained further
        _save(out, args, t, val, facts)
    print(f"saved {out}/model.pt and model_card.json after {t.step} steps", flush=True)
    return 0


# ---------------------------------------------------------------- evaluation


def evaluation_pairs(args: argparse.Namespace) -> tuple[list[dict], str]:
    """The labelled pairs to score and a description: a DeepLK-format folder's val2014 samples, or --pairs pairs
    made (with --seed) from the held-out photos of an image folder (--split all: every photo)."""
    root = Path(args.images)
    if (root / "val2014_input").is_dir():
        if args.photometric:
            raise InputError(f"{root}: --photometric changes pairs made from photos, not a DeepLK-format folder's")
        samples: list[DLKSample] = read_dlk(root, "val2014")
        return [{"input": s.input, "template": s.template, "corners": s.corners} for s in samples], f"deeplk:{root}"
    train_photos, test_photos = split_photos(root)
    photos = test_photos if args.split == "test" else train_photos + test_photos
    if not photos:
        raise InputError(f"{root}: none of the held-out photos is here; use --split all to make pairs from every photo")
    greys = [read_grey(p) for p in photos]
    pairs = [make_pair(greys[i % len(greys)], np.random.default_rng((args.seed, i)), args.multimodal, photometric=args.photometric)
             for i in range(args.pairs)]  # fmt: skip
    return pairs, f"{root} ({args.split}: {', '.join(p.name for p in photos)})"


def evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``dlc eval homography``."""
    if args.method == "model" and not args.model:
        raise InputError("--method model needs --model DIR (or use --method sift)")
    pairs, data = evaluation_pairs(args)
    pe, pe_regression, seconds, diverged, iterations = [], [], [], [], []
    if args.method == "sift":
        for p in pairs:
            started = time.perf_counter()
            h = sift_homography(p["template"], p["input"])
            seconds.append(time.perf_counter() - started)
            pe.append(float(corner_error(torch.as_tensor(h)[None], torch.as_tensor(p["corners"], dtype=torch.float64)[None])))
            diverged.append(False)
    else:
        model, _ = load_homography_model(args.model, torch.device("cpu"))
        model(torch.zeros(1, 1, 192, 192), torch.zeros(1, 1, 128, 128))  # warm-up
        for p in pairs:
            started = time.perf_counter()
            out = model(torch.as_tensor(p["input"])[None, None], torch.as_tensor(p["template"])[None, None])
            seconds.append(time.perf_counter() - started)
            truth = torch.as_tensor(p["corners"], dtype=torch.float64)[None]
            pe.append(float(corner_error(out["h"], truth)))
            pe_regression.append(float(corner_error(out["h_regression"], truth)))
            diverged.append(bool(out["diverged"][0]))
            iterations.append(int(out["iterations"][0]))
    pe_arr = np.asarray(pe)
    result = {
        "task": "homography", "model": str(args.model) if args.method == "model" else None, "method": args.method,
        "data": data, "command": args.command, "pairs": len(pairs), "samples": len(pairs), "skipped": 0,
        "multimodal": args.multimodal, "photometric": args.photometric, "seed": args.seed,
        "pe_mean": float(pe_arr.mean()), "pe_median": float(np.median(pe_arr)), "sr": success_rates(pe_arr),
        # the first guess LK starts from: where a model loses pairs, the regression or the LK stage
        "pe_regression_median": float(np.median(pe_regression)) if pe_regression else None,
        "lk_diverged_rate": float(np.mean(diverged)), "lk_iterations_mean": float(np.mean(iterations)) if iterations else None,
        "time_ms": common.time_stats_ms(seconds), "peak_rss_mb": round(common.peak_rss_mb(), 1), "device": "cpu",
        "machine": common.machine(), "date": common.now_iso(),
    }  # fmt: skip
    if args.json:
        write_json(args.json, result)
    sr = result["sr"]
    print(f"{args.method}: {len(pairs)} pairs, PE mean {result['pe_mean']:.2f} px, median {result['pe_median']:.2f} px, "
          f"SR<1px {sr['1']:.1f}%, SR<3px {sr['3']:.1f}%, LK diverged {100 * result['lk_diverged_rate']:.1f}%, "
          f"median {result['time_ms']['median']:.0f} ms/pair")  # fmt: skip
    return 0
