"""What the seeded experiment scripts share: running a dlc command into a log, the run folder, mean ± std."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# the project's venv when there is one, else the running interpreter (a GPU machine with its own torch)
DLC = [str(REPO / ".venv/bin/dlc")] if (REPO / ".venv/bin/dlc").is_file() else [sys.executable, "-m", "dlc_ros.cli"]


def shared_data(*parts: str) -> str:
    """A path in the shared data, as a flag's default: under $DLC_SHARED_DATA, else ../shared/data, relative to the
    repository root (where the benches run their commands), so results record no machine's absolute path."""
    return os.path.join(os.environ.get("DLC_SHARED_DATA", "../shared/data"), *parts)


def run(cmd: list[str], log: Path) -> None:
    """Run a command, its output appended to a log; stop the experiment with the log's tail if it fails."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n" + "".join(open(log).readlines()[-20:]))


def run_root(runs: str, name: str) -> Path:
    """runs/<name>, relative to the repository when inside it (cards record the command: no absolute paths)."""
    root = Path(runs).resolve() / name
    if root.is_relative_to(REPO):
        root = root.relative_to(REPO)
    root.mkdir(parents=True, exist_ok=True)
    return root


def summarise(values: list[float]) -> dict:
    """Mean, sample std and count."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def cached_eval(out: Path, sha256: str, cmd: list[str], log: Path) -> dict:
    """The JSON `cmd` writes to `out`, run again only when the cached file is not of the model with this sha256."""
    cached = json.loads(out.read_text()) if out.is_file() else {}
    if cached.get("model_sha256") != sha256:
        run(cmd, log)
        cached = {**json.loads(out.read_text()), "model_sha256": sha256}
        out.write_text(json.dumps(cached, indent=2))
    return cached


def names(text: str, known: object, kind: str) -> list[str]:
    """A comma-separated list of names, each one of `known`; an unknown one ends the script with one line."""
    chosen = text.split(",")
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        sys.exit(f"unknown {kind}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def train_arms(root: Path, arms: list[str], seeds: list[int], train: Callable[[str, int, Path], dict],
               steps_key: str = "steps", parallel: bool = False) -> list[dict]:  # fmt: skip
    """Train (or finish) every arm for every seed in root/<arm>_seed<seed>, one after another or (`parallel`) all at
    once, e.g. sharing one GPU; [{arm, seed, folder, card}]."""
    jobs = [(arm, seed, root / f"{arm}_seed{seed}") for seed in seeds for arm in arms]

    def one(job: tuple[str, int, Path]) -> dict:
        arm, seed, folder = job
        card = train(arm, seed, folder)
        print(f"trained {folder.name}: {card['train'][steps_key]} steps, {card['train']['wall_s']:.0f} s", flush=True)
        return {"arm": arm, "seed": seed, "folder": folder, "card": card}

    with ThreadPoolExecutor(len(jobs) if parallel else 1) as pool:
        return list(pool.map(one, jobs))
