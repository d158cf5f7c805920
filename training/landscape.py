"""``dlc landscape``: look at the landscape L_θ(p; x) a model was trained on, around the truth of a few samples.

For each sample and each model (``--model``, and ``--compare`` for a twin), the landscape callable is built by the
same function the DLC loss trains (registration: ``make_landscape`` of dlc_core.registration_objective, after the
card's unrolled training passes, in eval mode), and dlc_core.landscape evaluates it on one shared probe: M rays
in the full chart and a G × G grid over two chart coordinates. Out come one PNG per sample (models side by side)
and one JSON with per-sample star-convexity scores and their mean/median per model.

Choices (README-worthy):
- Units: a chart point is truth + σ ⊙ z with |z| <= R, σ the noise law of the DLC card (registration: σ per Euler
  angle and per translation axis), so ``--radius`` counts σ; R = 3 with the trainer's default σ (10°, 0.1) reaches
  30° and 0.3. Both models use the same σ: the first DLC card's (``--model``, then ``--compare``), else the
  trainer's defaults. The JSON records σ and where it came from.
- μ of the strong-ray test: ``--mu``, else the first DLC card's μ, else the trainer's default — one μ for both
  models, so their ``strong_rays`` are measured against the same envelope.
- Samples: ``--samples`` pairs spread evenly over the fixed evaluation set of ``--data``/``--protocol``/``--seed``;
  both models see the same clouds (``--model``'s point count).
- Cost: ``label`` and ``procrustes`` scans take well under a second beyond the model's own passes; ``rerun`` runs
  one network pass per point (bench/landscape_speed.py: ~0.9 s per point for the shipped size on 1024 points on
  the shared 2-core CPU), so on a CPU use a smaller probe with it, e.g. ``--grid 15 --rays 16``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dlc_core import landscape as analysis
from dlc_core.atomic import write_json
from dlc_core.checkpoint import read_card
from dlc_core.data.registration_data import evaluation_set, parse_spec
from dlc_core.errors import InputError
from dlc_core.landscape_plots import Axis, plot_sample
from dlc_core.models import RegistrationModel, load_registration_model
from dlc_core.registration_objective import LANDSCAPES, chart_point, make_landscape, rigid_chart

from . import common

DATA_SPECS = ("shapes", "modelnet40", "bunny")
DEFAULT_NOISE_ROT_DEG, DEFAULT_NOISE_TRANS, DEFAULT_MU = 10.0, 0.1, 0.1  # the trainer's --noise-* and --mu defaults
DEFAULT_CHART = rigid_chart(DEFAULT_NOISE_ROT_DEG, DEFAULT_NOISE_TRANS)
CHART_NAMES = DEFAULT_CHART.names  # euler_z_rad, euler_y_rad, euler_x_rad, t_x, t_y, t_z
DEFAULT_DIMS = "euler_z,t_x"
DIM_ALIASES = {"euler_z": 0, "euler_y": 1, "euler_x": 2, "yaw": 0, "pitch": 1, "roll": 2}
DEFAULT_CHUNK = {"label": 8192, "procrustes": 1024, "rerun": 16}  # points per landscape call (memory bound)


@dataclass
class Subject:
    """One model under study and the landscape kind it is looked at with."""

    folder: str
    model: RegistrationModel
    card: dict
    kind: str
    kind_source: str
    passes: int

    @property
    def dlc(self) -> bool:
        """Whether the model was trained with the DLC hinges."""
        return bool(self.card.get("dlc", {}).get("enabled", False))

    def title(self) -> str:
        """A panel title: folder name, DLC or not, landscape kind."""
        return f"{Path(self.folder).name} ({'DLC' if self.dlc else 'no DLC'}, {self.kind} landscape)"

    def card_block(self) -> dict:
        """What the JSON says about this model."""
        return {"model": self.folder, "dlc": self.dlc, "landscape": self.kind, "landscape_source": self.kind_source,
                "passes": self.passes, "backbone": self.card.get("backbone")}  # fmt: skip


def check_task(folder: str) -> None:
    """Refuse, with one line, a model whose task has no landscape here."""
    task = read_card(folder).get("task")
    if task != "registration":
        raise InputError(f"{folder}: task {task!r} has no landscape in dlc landscape (supported: registration)")


def load_subject(folder: str, override: str | None, device: torch.device) -> Subject:
    """Load a registration model and decide its landscape kind: --landscape, else the card's, else 'label'."""
    check_task(folder)
    model, card = load_registration_model(folder, device)
    card_kind = card.get("dlc", {}).get("landscape")
    kind, source = (override, "flag") if override else (card_kind, "card") if card_kind else ("label", "default")
    if kind not in LANDSCAPES:
        raise InputError(f"--landscape must be one of {', '.join(LANDSCAPES)}, got {kind!r}")
    passes = int(card.get("train", {}).get("passes") or card.get("inference", {}).get("passes") or 1)
    return Subject(str(folder), model, card, kind, source, passes)


def chart_scale(subjects: list[Subject]) -> tuple[list[float], str]:
    """σ per chart coordinate (radians, translation) from the first DLC card, else the trainer's defaults."""
    for s in subjects:
        sigma = s.card.get("dlc", {}).get("noise", {}).get("sigma")
        if s.dlc and isinstance(sigma, dict) and set(CHART_NAMES) <= set(sigma):
            return [float(sigma[n]) for n in CHART_NAMES], f"{s.folder} model card (dlc.noise.sigma)"
    return list(DEFAULT_CHART.scales), "trainer defaults (10 deg, 0.1)"


def star_mu(subjects: list[Subject], flag: float | None) -> tuple[float, str]:
    """μ of the strong-ray test: --mu, else the first DLC card's μ, else the trainer's default."""
    if flag is not None:
        if flag < 0 or not math.isfinite(flag):
            raise InputError(f"--mu must be >= 0, got {flag}")
        return float(flag), "flag"
    for s in subjects:
        if s.dlc and "mu" in s.card["dlc"]:
            return float(s.card["dlc"]["mu"]), f"{s.folder} model card (dlc.mu)"
    return DEFAULT_MU, "trainer default"


def sample_indices(total: int, samples: int) -> list[int]:
    """`samples` indices spread evenly over 0 .. total − 1 (all of them when there are fewer)."""
    if samples < 1:
        raise InputError(f"--samples must be >= 1, got {samples}")
    if total == 0:
        raise InputError("the data set has no evaluation pairs")
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(samples, total))})


def registration_landscape(subject: Subject, pair: dict, device: torch.device) -> tuple[Callable, torch.Tensor]:
    """(L_θ(·; x) of one pair as the DLC loss builds it, the truth chart point (6,))."""
    src, tgt = pair["src"][None].to(device), pair["tgt"][None].to(device)
    r_gt, t_gt = pair["rotation"][None].to(device), pair["translation"][None].to(device)
    with torch.no_grad():
        passes = subject.model(src, tgt, passes=subject.passes)
    landscape = make_landscape(subject.kind, subject.model, src, tgt, passes, r_gt, t_gt)
    return landscape, chart_point(pair["euler"], pair["translation"]).to(device)


def display_axes(names: tuple[str, ...], dims: tuple[int, int]) -> tuple[Axis, Axis]:
    """Axis labels of the grid plot: angles in degrees, translations in cloud units."""
    return tuple(
        Axis(f"{names[d][:-4]} (deg)", math.degrees(1.0))
        if names[d].endswith("_rad")
        else Axis(f"{names[d]} (cloud units)")
        for d in dims
    )  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    """Entry point of ``dlc landscape``."""
    started = time.perf_counter()
    device = common.resolve_device(args.device)
    subjects = [load_subject(folder, args.landscape, device) for folder in [args.model, args.compare] if folder]
    scale, scale_source = chart_scale(subjects)
    mu, mu_source = star_mu(subjects, args.mu)
    dims = analysis.parse_dims(args.dims or DEFAULT_DIMS, CHART_NAMES, DIM_ALIASES)
    probe = analysis.make_probe(scale, args.radius, args.rays, args.ray_points, args.grid, dims, args.seed)
    num_points = subjects[0].card["preprocess"]["num_points"]
    pairs = evaluation_set(parse_spec(args.data, DATA_SPECS), args.protocol, num_points, args.seed)
    indices = sample_indices(len(pairs), args.samples)
    per_model, seconds, pngs = scan_samples(subjects, pairs, indices, probe, mu, args, device)
    report = {
        "task": "registration",
        "model": str(args.model),
        "compare": str(args.compare) if args.compare else None,
        "data": args.data,
        "protocol": args.protocol,
        "command": args.command,
        "samples": len(indices),
        "sample_indices": indices,
        "skipped": 0,
        "seed": args.seed,
        "num_points": num_points,
        "probe": {**probe.card(CHART_NAMES), "scale_source": scale_source, "mu": mu, "mu_source": mu_source},
        "models": [
            {**s.card_block(), "summary": analysis.summarise(rows), "per_sample": rows}
            for s, rows in zip(subjects, per_model, strict=True)
        ],
        "pngs": pngs,
        "time_ms": common.time_stats_ms(seconds),
        "wall_s": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "device": device.type,
        "machine": common.machine(),
        "date": common.now_iso(),
    }
    json_path = args.json or Path(args.out) / "landscape.json"
    write_json(json_path, report)
    print_summary(report)
    print(f"wrote {len(pngs)} PNGs to {args.out} and {json_path}")
    return 0


def scan_samples(
    subjects: list[Subject],
    pairs: Dataset,
    indices: list[int],
    probe: analysis.Probe,
    mu: float,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[list[list[dict]], list[float], list[str]]:
    """Scan every sample with every model and draw one PNG per sample: (per-model score rows, seconds, PNG paths)."""
    per_model: list[list[dict]] = [[] for _ in subjects]
    seconds, pngs = [], []
    axes = display_axes(CHART_NAMES, probe.dims)
    for index in common.progress(indices, len(indices), "samples"):
        pair = pairs[index]
        scans = []
        for subject, rows in zip(subjects, per_model, strict=True):
            tic = time.perf_counter()
            landscape, truth = registration_landscape(subject, pair, device)
            scanned = analysis.scan(landscape, truth, probe, mu, args.chunk or DEFAULT_CHUNK[subject.kind])
            seconds.append(time.perf_counter() - tic)
            rows.append({"index": index, **analysis.scores(scanned, probe), "time_s": round(seconds[-1], 3)})
            scans.append(scanned)
        png = Path(args.out) / f"sample_{index:04d}.png"
        titles = [s.title() for s in subjects]
        plot_sample(png, scans, titles, probe, truth.double().cpu().numpy(), axes, "σ units")
        pngs.append(str(png))
    return per_model, seconds, pngs


def print_summary(result: dict) -> None:
    """One line per model: the mean (median) of each score over the samples."""
    for m in result["models"]:
        parts = [f"{k} {v['mean']:.3g} ({v['median']:.3g})" for k, v in m["summary"].items()]
        print(f"{Path(m['model']).name} [{m['landscape']}]: " + ", ".join(parts) + "   mean (median)")
