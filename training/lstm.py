"""``dlc train lstm`` and ``dlc eval lstm``: the LSTM digit classifier of METHOD.md §3.2, with or without DLC.

Training is a plain loop over epochs and batches (Adam, cosine learning-rate decay over the planned steps,
gradient clipping, optional random rotations and zooms (--rotate, --zoom) followed by random whole-pixel shifts of
up to --shift pixels). With DLC the hinges of the classification chart (dlc_core.classification_objective) are
added to the cross-entropy through the same DLCLoss the registration trainer uses; the no-DLC twin is the same run
without them. A stratified tenth of the training digits (the same for every seed) is held out for validation;
after every epoch the model is validated and written atomically with its card, and the full state is written for
--resume. The model kept is the one at the end of the budget, as for registration.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from dlc_core.atomic import write_json
from dlc_core.classification_objective import SoftmaxChart, cross_entropy_landscape, one_hot
from dlc_core.data.mnist import load_mnist, stratified_split
from dlc_core.dlc_loss import DLCLoss
from dlc_core.errors import InputError
from dlc_core.models.lstm import CLASSES, LSTMClassifier, LSTMConfig, load_lstm_model

from . import common
from .distributed import Rank, launch
from .registration import dlc_config

SPLIT_SEED = 0  # the validation digits are the same for every seed and arm
EVAL_BATCH = 1000
RESUME_KEYS = (
    "data", "mode", "hidden", "dlc", "batch_size", "seed", "lr", "weight_decay", "val_fraction", "shift", "rotate",
    "zoom", "K", "beta", "alpha", "mu", "agg", "terms", "trainable", "noise_sigma",
)  # fmt: skip


def model_config(args: argparse.Namespace) -> LSTMConfig:
    """The architecture the flags ask for."""
    try:
        return LSTMConfig(mode=args.mode, hidden=args.hidden)
    except ValueError as exc:
        raise InputError(f"LSTM option: {exc}") from None


def shift_images(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by a random whole-pixel offset in [-max_shift, max_shift]² (zeros shifted in)."""
    if max_shift == 0:
        return images
    n, side = len(images), images.shape[-1]
    padded = F.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator, device=generator.device).tolist()
    return torch.stack([padded[i, r : r + side, c : c + side] for i, (r, c) in enumerate(offsets)])


def affine_warp(images: torch.Tensor, angles_deg: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Image i rotated about its centre by angles_deg[i] and scaled by factors[i] (bilinear, zeros outside)."""
    angle = torch.deg2rad(angles_deg)
    cos, sin, zero = torch.cos(angle) / factors, torch.sin(angle) / factors, torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # output -> input
    grid = F.affine_grid(theta, (len(images), 1, *images.shape[-2:]), align_corners=False)
    return F.grid_sample(images[:, None].float(), grid, align_corners=False)[:, 0]


def warp_images(images: torch.Tensor, rotate_deg: float, zoom: float, generator: torch.Generator) -> torch.Tensor:
    """Each image rotated by a random angle in [-rotate_deg, rotate_deg] and scaled by a random factor in
    [1 - zoom, 1 + zoom]: the small affine changes of real handwriting."""
    if rotate_deg == 0 and zoom == 0:
        return images
    draw = (torch.rand(len(images), 2, generator=generator, device=generator.device) * 2 - 1).to(images.device)
    return affine_warp(images, draw[:, 0] * rotate_deg, 1 + draw[:, 1] * zoom)


def build_training(args: argparse.Namespace, rank: Rank, device: torch.device, steps_per_epoch: int) -> common.Training:
    """Model, DLC loss, optimiser and schedule, seeded so every rank starts identical."""
    common.seed_everything(args.seed)
    model = LSTMClassifier(model_config(args)).to(device)
    dlc = DLCLoss(dlc_config(args)).to(device) if args.dlc else None

    def cosine(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))

    return common.start_training(model, dlc, args, rank, device, steps_per_epoch, cosine)


def train_step(t: common.Training, images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, rank: Rank) -> dict[str, float]:
    """One optimiser step; returns the numbers the progress bar shows."""
    t.runner.train()
    logits = t.runner(shift_images(warp_images(images, args.rotate, args.zoom, t.generator), args.shift, t.generator))
    if t.dlc is None:
        task = F.cross_entropy(logits, labels)
        loss, stats = task, {}
    else:
        terms = t.dlc(cross_entropy_landscape(logits), one_hot(labels, CLASSES), SoftmaxChart(args.noise_sigma), t.generator)
        task = terms.landscape_at_truth.mean()  # L(y) = CE with the label
        loss = task + terms.loss
        stats = {"h1": terms.h1.item(), "h2": terms.h2.item(), "h3": terms.h3.item()}
    common.optimiser_step(t, loss, rank, args.grad_clip)
    return {"task": task.item(), **stats, "loss": loss.item()}


@torch.no_grad()
def predict(model: LSTMClassifier, images: np.ndarray, device: torch.device, batch: int = EVAL_BATCH) -> tuple[np.ndarray, list[float]]:
    """Class probabilities (N, 10) of uint8 images (N, 28, 28), and the seconds each batch took."""
    model.eval()
    probs, seconds = [], []
    for i in range(0, len(images), batch):
        started = time.perf_counter()
        logits = model(torch.as_tensor(images[i : i + batch], device=device))
        probs.append(torch.softmax(logits, -1).cpu().numpy())
        seconds.append(time.perf_counter() - started)
    return np.concatenate(probs) if probs else np.zeros((0, CLASSES), np.float32), seconds


def validate(model: LSTMClassifier, images: np.ndarray, labels: np.ndarray, device: torch.device) -> dict[str, float]:
    """Cross-entropy and accuracy on the validation digits."""
    probs, _ = predict(model, images, device)
    picked = probs[np.arange(len(labels)), labels]
    return {
        "val_loss": float(-np.log(np.clip(picked, 1e-12, None)).mean()),
        "val_accuracy": float((probs.argmax(1) == labels).mean()),
    }


def _card(args: argparse.Namespace, t: common.Training, metrics: dict, split: dict, device: torch.device) -> dict:
    dlc_block: dict = {"enabled": False}
    if t.dlc is not None:
        learned = {name: float(getattr(t.dlc, name)()) for name in t.dlc.config.trainable}
        dlc_block = {**t.dlc.config.card(), **learned, "noise": SoftmaxChart(args.noise_sigma).card()}
    return {
        "task": "lstm",
        "backbone": "lstm",
        "config": model_config(args).card(),
        "preprocess": {"input": "28x28 uint8, white digit on black", "normalise": "(x/255 - 0.1307) / 0.3081"},
        "dlc": dlc_block,
        "train": {
            "data": args.data, **split, "epochs": t.epoch, "steps": t.step, "batch_size": args.batch_size,
            "optimizer": "adam", "lr": args.lr, "schedule": "cosine", "weight_decay": args.weight_decay,
            "grad_clip": args.grad_clip, "shift": args.shift, "rotate": args.rotate, "zoom": args.zoom,
            "seed": args.seed, "command": args.command,
            "git_commit": common.git_commit(), "torch": torch.__version__, "device": device.type,
            "world_size": args.nproc, "wall_s": round(t.wall_s, 1), "date": common.now_iso(),
        },
        "metrics": metrics,
    }  # fmt: skip


def train_worker(rank: Rank, args: argparse.Namespace) -> None:
    """The training loop run by every rank; rank 0 validates and writes the files."""
    device = common.resolve_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank.rank % torch.cuda.device_count())
    images, labels = load_mnist(args.data, "train")
    train_idx, val_idx = stratified_split(labels, args.val_fraction, SPLIT_SEED)
    split = {"train_digits": len(train_idx), "val_digits": len(val_idx), "split_seed": SPLIT_SEED}
    train_set = TensorDataset(torch.as_tensor(images[train_idx]).float(), torch.as_tensor(labels[train_idx]))
    sampler = DistributedSampler(train_set, rank.world_size, rank.rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise InputError(f"{args.data}: {len(train_set)} training digits are fewer than one batch per process")
    t = build_training(args, rank, device, len(loader))
    out = Path(args.out)
    if args.resume:
        common.resume(t, out, args, RESUME_KEYS)

    def end_of_epoch() -> None:
        metrics = validate(t.model, images[val_idx], labels[val_idx], device)
        common.save_progress(out, t, metrics, _card(args, t, metrics, split, device), args, RESUME_KEYS)

    common.fit(t, loader, sampler, args.epochs, rank,
               lambda batch: train_step(t, batch[0].to(device), batch[1].to(device), args, rank), end_of_epoch)  # fmt: skip
    if rank.is_main:
        print(f"saved {out}/model.pt and model_card.json after {t.step} steps", flush=True)


def train(args: argparse.Namespace) -> int:
    """Entry point of ``dlc train lstm``."""
    device = common.resolve_device(args.device)
    dlc_config(args)  # refuse bad DLC options before any process starts
    model_config(args)
    launch(train_worker, args.nproc, device, args)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``dlc eval lstm``: accuracy on the test split of --data (the standard 10k digits)."""
    device = common.resolve_device(args.device)
    model, card = load_lstm_model(args.model, device)
    images, labels = load_mnist(args.data, "test")
    if args.samples is not None:
        images, labels = images[: args.samples], labels[: args.samples]
    probs, seconds = predict(model, images, device)
    per_digit = [s / min(EVAL_BATCH, len(images) - i * EVAL_BATCH) for i, s in enumerate(seconds)]
    result = {
        "task": "lstm",
        "model": str(args.model),
        "data": str(args.data),
        "command": args.command,
        "samples": int(len(labels)),
        "skipped": 0,
        "accuracy": float((probs.argmax(1) == labels).mean()) if len(labels) else None,
        "mode": card["config"]["mode"],
        "dlc": bool(card["dlc"].get("enabled")),
        "time_ms": common.time_stats_ms(per_digit),  # per digit, classified EVAL_BATCH at a time
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "device": device.type,
        "machine": common.machine(),
        "date": common.now_iso(),
    }
    if args.json:
        write_json(args.json, result)
    accuracy = "n/a" if result["accuracy"] is None else f"{100 * result['accuracy']:.2f}%"
    print(f"{args.model}: {result['samples']} digits, accuracy {accuracy} ({result['mode']} mode, "
          f"{'DLC' if result['dlc'] else 'no DLC'})")  # fmt: skip
    return 0
