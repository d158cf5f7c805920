"""Small pieces every trainer and evaluator shares: device choice, seeding, progress bars, run facts, timing."""

from __future__ import annotations

import os
import platform
import random
import resource
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dlc_core.atomic import atomic_path
from dlc_core.checkpoint import save_checkpoint
from dlc_core.errors import InputError
from dlc_core.progress import progress

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_FILE = "train_state.pt"  # the resumable state beside model.pt and model_card.json


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is refused with a clear line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """$DLC_GIT_COMMIT when set (a copy of the tree on another machine, whose .git may be stale or absent), else
    the repository's HEAD commit, else None."""
    if os.environ.get("DLC_GIT_COMMIT"):
        return os.environ["DLC_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now_iso() -> str:
    """The current UTC time, ISO-8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict[str, object]:
    """CPU model, core count, GPU and library versions, for results files."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1min": round(os.getloadavg()[0], 2),  # other work on the machine while this ran
    }


def time_stats_ms(seconds: list[float]) -> dict[str, float | None]:
    """{mean, median, p95} in milliseconds of per-item times (None when there are none)."""
    if not seconds:
        return {"mean": None, "median": None, "p95": None}
    ms = np.asarray(seconds) * 1000.0
    return {"mean": float(ms.mean()), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95))}


def write_train_state(path: Path, state: dict[str, Any], args: Any, keys: tuple[str, ...]) -> None:
    """Write a run's full state for --resume (atomically), with torch's global RNG (dropout draws from it) and the
    flags that must match when it resumes."""
    rng = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    with atomic_path(path) as tmp:
        torch.save({**state, "rng": rng, "args": {k: getattr(args, k) for k in keys}}, tmp)


def read_train_state(path: Path, args: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The state written by write_train_state, refused with one line when missing, unreadable or made with other
    values of `keys` than `args` has; torch's global RNG is restored from it."""
    if not path.is_file():
        raise InputError(f"--resume: {path} does not exist (nothing to resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved = state["args"]
    except Exception as exc:  # a damaged file may fail in several ways inside torch.load
        raise InputError(f"--resume: {path} cannot be read ({type(exc).__name__})") from None
    changed = [k for k in keys if saved.get(k) != getattr(args, k)]
    if changed:
        raise InputError(f"--resume: these options differ from the saved run: {', '.join('--' + k.replace('_', '-') for k in changed)}")
    torch.set_rng_state(state["rng"]["cpu"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


@dataclass
class Training:
    """Everything an epoch-based training run holds: the model (maybe DDP-wrapped as `runner`), the DLC loss,
    optimiser and schedule, the generator of its noise draws, and the counters."""

    model: torch.nn.Module
    runner: torch.nn.Module
    dlc: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    total_steps: int
    step: int = 0
    epoch: int = 0
    wall_s: float = 0.0


def start_training(model: torch.nn.Module, dlc: torch.nn.Module | None, args: Any, rank: Any, device: torch.device,
                   steps_per_epoch: int, schedule: Callable[[torch.optim.Optimizer, int], Any]) -> Training:  # fmt: skip
    """Adam over the model's and the DLC loss's parameters, the LR schedule `schedule(optimizer, planned steps)`
    (planned: epochs x batches, capped by --steps), the model DDP-wrapped when there are several ranks, and a
    generator seeded per rank. The caller seeds before building the model, so every rank starts identical."""
    from torch.nn.parallel import DistributedDataParallel

    params = list(model.parameters()) + (list(dlc.parameters()) if dlc is not None else [])
    optimizer = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    total = steps_per_epoch * args.epochs if args.steps is None else min(args.steps, steps_per_epoch * args.epochs)
    runner: torch.nn.Module = model
    if rank.distributed:
        runner = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    generator = torch.Generator(device=device).manual_seed(args.seed * 1000 + rank.rank)
    return Training(model, runner, dlc, optimizer, schedule(optimizer, total), generator, total)


OPTIMISER_FIELDS = ("optimizer", "scheduler")  # what a trainer's Training holds beside model and dlc, by default


def snapshot(t: Any, fields: tuple[str, ...] = OPTIMISER_FIELDS) -> dict[str, Any]:
    """The resumable state of a trainer's Training: model, DLC loss, the objects named in `fields` (optimisers,
    schedules), generator and counters."""
    return {
        "model": t.model.state_dict(),
        "dlc": t.dlc.state_dict() if t.dlc is not None else None,
        **{name: getattr(t, name).state_dict() for name in fields},
        "generator": t.generator.get_state(),
        "step": t.step,
        "epoch": t.epoch,
        "wall_s": t.wall_s,
    }


def restore(t: Any, state: dict[str, Any], fields: tuple[str, ...] = OPTIMISER_FIELDS) -> None:
    """Put a snapshot back into a trainer's Training."""
    t.model.load_state_dict(state["model"])
    if t.dlc is not None:
        t.dlc.load_state_dict(state["dlc"])
    for name in fields:
        getattr(t, name).load_state_dict(state[name])
    t.generator.set_state(state["generator"])
    t.step, t.epoch, t.wall_s = state["step"], state["epoch"], state["wall_s"]


def optimiser_step(t: Any, loss: torch.Tensor, rank: Any, grad_clip: float) -> None:
    """One optimiser step of a trainer's Training: backward, DLC parameters averaged across DDP ranks (they live
    outside the DDP module), gradient clipping (a non-finite norm skips the step), BatchNorm buffers synced from
    rank 0, schedule and step counter advanced."""
    from .distributed import average_gradients, broadcast_buffers

    t.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if rank.distributed and t.dlc is not None:
        average_gradients(list(t.dlc.parameters()), rank.world_size)
    grad_norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), grad_clip)
    if torch.isfinite(grad_norm):
        t.optimizer.step()
    if rank.distributed:
        broadcast_buffers(t.model)
    t.scheduler.step()
    t.step += 1


def resume(t: Any, out: Path, args: Any, keys: tuple[str, ...], fields: tuple[str, ...] = OPTIMISER_FIELDS) -> None:
    """--resume: the state saved in `out` put back into a trainer's Training (refused when options differ)."""
    restore(t, read_train_state(out / STATE_FILE, args, keys), fields)


def save_progress(out: Path, t: Any, metrics: dict[str, float], card: dict[str, Any], args: Any, keys: tuple[str, ...],
                  fields: tuple[str, ...] = OPTIMISER_FIELDS) -> None:  # fmt: skip
    """What every trainer does after validating: one log line with the metrics, the model folder (weights + card,
    atomically) and the resumable state."""
    print(f"epoch {t.epoch}: step {t.step} " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)
    save_checkpoint(out, t.model.state_dict(), card)
    write_train_state(out / STATE_FILE, snapshot(t, fields), args, keys)


def fit(t: Any, loader: Any, sampler: Any, epochs: int, rank: Any, step: Callable[[Any], dict[str, float]],
        end_of_epoch: Callable[[], None]) -> None:  # fmt: skip
    """The epoch loop of the epoch-based trainers: until `epochs` or the step budget (t.total_steps) ends, shuffle
    per epoch (the sampler, and datasets that redraw pairs per epoch via set_epoch), run `step` on each batch with
    a progress bar, count wall time, and let rank 0 validate and save in `end_of_epoch`."""
    started = time.time()
    while t.epoch < epochs and t.step < t.total_steps:
        sampler.set_epoch(t.epoch)
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(t.epoch)
        bar = progress(loader, len(loader), f"epoch {t.epoch + 1}/{epochs}", enabled=rank.is_main)
        for batch in bar:
            stats = step(batch)
            if rank.is_main and hasattr(bar, "set_postfix"):
                bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items()}, refresh=False)
            if t.step >= t.total_steps:
                break
        t.epoch += 1
        t.wall_s += time.time() - started
        started = time.time()
        if rank.is_main:
            end_of_epoch()
