"""Landscape analysis: how star-convex is p ↦ L_θ(p; x) around the truth y? (METHOD.md §1, Def. 1, Lemma 1 Eq. 6)

Task-agnostic. A task supplies the landscape the DLC loss trains — a callable on stacked chart points
(S, B, *point_shape) -> (S, B), here always called with B = 1 — the truth y in chart coordinates, and a *scale*
per chart coordinate (registration: the model's noise σ). The analysis works in scaled coordinates z, with the
chart point p = y + scale ⊙ z, so one radius R serves coordinates of different units (radians and translation).

- **Rays**: M random unit directions u in the full scaled chart (fixed seed, the same for every sample and every
  model), each sampled at P radii r = 0 .. R, i.e. at p = y + scale ⊙ (r u).
  ``monotone``: the loss never decreases going outward (Def. 1 along the ray): L(r_{k+1}) >= L(r_k) − tol.
  ``strong``: monotone, and the quadratic envelope of Lemma 1 Eq. 6 holds at every sample,
  L(p) >= L(y) + μ/2 ‖p − y‖² − tol, with ‖p − y‖ in chart units (the d of the DLC loss).
- **Grid**: G × G points over two chart coordinates, offsets −R .. R (scaled) around y, the others held at y.
  ``grid_minima``: strict 8-neighbour local minima; a plateau (cells equal within tol, 8-connected) counts once,
  and only if every cell around it is higher by more than tol; border cells compare with the neighbours they
  have. ``argmin_dist``: chart-unit distance from y to the grid's lowest point.
- **Tolerance**: tol = REL_TOL · max |L| over the sample's rays and grid (and at least ABS_TOL): differences
  below it are float32 rounding of the network's losses (about 100 ulps), not shape.

All points of a sample go through the landscape in a few large calls of at most ``chunk`` points each.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from .dlc_loss import Landscape
from .errors import InputError

REL_TOL = 1e-5
ABS_TOL = 1e-12
NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
SCORES = ("monotone_rays", "strong_rays", "grid_minima", "argmin_dist")


@dataclass(frozen=True)
class Probe:
    """Where a landscape is looked at: the same rays and grid for every sample and every model."""

    scale: np.ndarray  # (n,) chart units per scaled unit, one per chart coordinate
    radius: float  # R, in scaled units
    directions: np.ndarray  # (M, n) unit vectors in scaled coordinates
    ray_points: int  # P, samples per ray including r = 0
    grid: int  # G, points per grid axis
    dims: tuple[int, int]  # the two chart coordinates of the grid
    seed: int  # of the ray directions

    @property
    def radii(self) -> np.ndarray:
        """The P sample radii of every ray, 0 .. R (scaled units)."""
        return np.linspace(0.0, self.radius, self.ray_points)

    @property
    def offsets(self) -> np.ndarray:
        """The G grid offsets along each grid axis, −R .. R (scaled units)."""
        return np.linspace(-self.radius, self.radius, self.grid)

    def card(self, names: Sequence[str]) -> dict:
        """The probe as JSON-ready data (directions are reproducible from the seed, so they are not listed)."""
        return {
            "radius": self.radius,
            "radius_units": "scale (chart point = truth + scale * z, |z| <= radius)",
            "scale": dict(zip(names, map(float, self.scale), strict=True)),
            "rays": len(self.directions),
            "ray_seed": self.seed,
            "ray_points": self.ray_points,
            "grid": self.grid,
            "dims": [names[d] for d in self.dims],
            "tolerance": {"rel": REL_TOL, "abs": ABS_TOL, "of": "max |L| over the sample's rays and grid"},
        }


@dataclass
class Scan:
    """One landscape seen through a probe: the losses and what they say about star-convexity."""

    loss_at_truth: float
    ray_losses: np.ndarray  # (M, P); column 0 is L(y)
    grid_losses: np.ndarray  # (G, G); [i, j] = offset i along dims[0], offset j along dims[1]
    monotone: np.ndarray  # (M,) bool
    strong: np.ndarray  # (M,) bool
    minima: list[tuple[int, int]]  # grid cell of each local minimum (its lowest cell)
    argmin: tuple[int, int]  # grid cell of the lowest grid point
    tolerance: float


def ray_directions(rays: int, dims: int, seed: int) -> np.ndarray:
    """`rays` unit vectors, uniformly distributed on the sphere in `dims` dimensions, from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(rays, dims, generator=g, dtype=torch.float64)
    return (u / u.norm(dim=1, keepdim=True)).numpy()


def make_probe(
    scale: Sequence[float], radius: float, rays: int, ray_points: int, grid: int, dims: tuple[int, int], seed: int
) -> Probe:
    """A probe, refusing sizes that cannot be analysed with one clear line."""
    n = len(scale)
    checks = [
        (radius > 0 and np.isfinite(radius), f"--radius must be > 0 and finite, got {radius}"),
        (rays >= 1, f"--rays must be >= 1, got {rays}"),
        (ray_points >= 2, f"--ray-points must be >= 2, got {ray_points}"),
        (grid >= 3, f"--grid must be >= 3, got {grid}"),
        (all(s > 0 for s in scale), f"every chart scale (e.g. noise σ) must be > 0, got {list(scale)}"),
        (len(set(dims)) == 2 and all(0 <= d < n for d in dims), f"--dims must name two different coordinates of {n}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    directions = ray_directions(rays, n, seed)
    return Probe(np.asarray(scale, dtype=np.float64), float(radius), directions, ray_points, grid, dims, seed)


def parse_dims(text: str, names: Sequence[str], aliases: dict[str, int] | None = None) -> tuple[int, int]:
    """'A,B' -> two chart coordinate indices; each of A, B is an index, a chart name or an alias."""
    lookup = {name: i for i, name in enumerate(names)} | (aliases or {})
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2:
        raise InputError(f"--dims must be two coordinates 'A,B', got {text!r}")
    dims = []
    for part in parts:
        if part.isdigit() and int(part) < len(names):
            dims.append(int(part))
        elif part in lookup:
            dims.append(lookup[part])
        else:
            raise InputError(
                f"--dims: unknown chart coordinate {part!r} (use 0-{len(names) - 1} or {', '.join(lookup)})"
            )
    if dims[0] == dims[1]:
        raise InputError(f"--dims must name two different coordinates, got {text!r}")
    return dims[0], dims[1]


def ray_offsets(probe: Probe) -> np.ndarray:
    """Chart-unit offsets of the ray samples beyond r = 0, shape (M, P − 1, n)."""
    return probe.radii[1:, None] * probe.directions[:, None, :] * probe.scale


def grid_offsets(probe: Probe) -> np.ndarray:
    """Chart-unit offsets of the grid points, shape (G, G, n)."""
    a, b = probe.dims
    g = probe.grid
    out = np.zeros((g, g, len(probe.scale)))
    out[:, :, a] = probe.offsets[:, None] * probe.scale[a]
    out[:, :, b] = probe.offsets[None, :] * probe.scale[b]
    return out


def probe_offsets(probe: Probe) -> np.ndarray:
    """Every chart offset a scan evaluates, in order: the truth, the M × (P − 1) ray samples, the G × G grid."""
    n = len(probe.scale)
    return np.concatenate([np.zeros((1, n)), ray_offsets(probe).reshape(-1, n), grid_offsets(probe).reshape(-1, n)])


@torch.no_grad()
def evaluate(landscape: Landscape, truth: Tensor, offsets: np.ndarray, chunk: int) -> np.ndarray:
    """L(truth + offset) for each row of `offsets` (K, n), in calls of at most `chunk` points of shape (S, 1, ...)."""
    delta = torch.as_tensor(offsets, dtype=truth.dtype, device=truth.device).reshape(-1, *truth.shape)
    points = truth.unsqueeze(0) + delta
    losses = [landscape(part.unsqueeze(1)).reshape(-1) for part in points.split(chunk)]
    return torch.cat(losses).double().cpu().numpy()


def scan(landscape: Landscape, truth: Tensor, probe: Probe, mu: float, chunk: int = 4096) -> Scan:
    """Evaluate the landscape at the truth, on the rays and on the grid, and score its star-convexity."""
    m, p, g, n = len(probe.directions), probe.ray_points, probe.grid, len(probe.scale)
    if truth.numel() != n:
        raise InputError(f"the truth has {truth.numel()} chart coordinates, the probe {n}")
    if chunk < 1:
        raise InputError(f"--chunk must be >= 1, got {chunk}")
    offsets = probe_offsets(probe)
    losses = evaluate(landscape, truth, offsets, chunk)
    if not np.isfinite(losses).all():
        raise InputError(f"the landscape is not finite at {int((~np.isfinite(losses)).sum())} of {len(losses)} points")
    l0 = float(losses[0])
    ray_losses = np.concatenate([np.full((m, 1), l0), losses[1 : 1 + m * (p - 1)].reshape(m, p - 1)], 1)
    grid_losses = losses[1 + m * (p - 1) :].reshape(g, g)
    tol = max(REL_TOL * float(np.abs(losses).max()), ABS_TOL)
    monotone = (np.diff(ray_losses, axis=1) >= -tol).all(1)
    dist2 = (offsets[1 : 1 + m * (p - 1)] ** 2).sum(-1).reshape(m, p - 1)  # chart units
    envelope = (ray_losses[:, 1:] >= l0 + 0.5 * mu * dist2 - tol).all(1)
    return Scan(
        loss_at_truth=l0,
        ray_losses=ray_losses,
        grid_losses=grid_losses,
        monotone=monotone,
        strong=monotone & envelope,
        minima=grid_minima(grid_losses, tol),
        argmin=tuple(int(i) for i in np.unravel_index(np.argmin(grid_losses), grid_losses.shape)),
        tolerance=tol,
    )


def grid_minima(values: np.ndarray, tol: float) -> list[tuple[int, int]]:
    """The 8-neighbour local minima of a 2-D grid, one (lowest) cell per minimal plateau, sorted by value."""
    g0, g1 = values.shape
    padded = np.pad(values, 1, constant_values=np.inf)
    shifted = [padded[1 + di : 1 + di + g0, 1 + dj : 1 + dj + g1] for di, dj in NEIGHBOURS]
    candidate = np.all([nb >= values - tol for nb in shifted], axis=0)  # no neighbour is lower
    padded_candidate = np.pad(candidate, 1, constant_values=True)
    drains = np.zeros_like(candidate)  # an equal neighbour that is not a candidate: the plateau leads lower
    for (di, dj), nb in zip(NEIGHBOURS, shifted, strict=True):
        nb_candidate = padded_candidate[1 + di : 1 + di + g0, 1 + dj : 1 + dj + g1]
        drains |= (np.abs(nb - values) <= tol) & ~nb_candidate
    labels, count = ndimage.label(candidate, structure=np.ones((3, 3)))
    minima = []
    for k in range(1, count + 1):
        cells = labels == k
        if not drains[cells].any():
            masked = np.where(cells, values, np.inf)
            minima.append(tuple(int(i) for i in np.unravel_index(np.argmin(masked), values.shape)))
    return sorted(minima, key=lambda ij: values[ij])


def cell_offset(probe: Probe, cell: tuple[int, int]) -> list[float]:
    """Chart-unit offset from the truth of a grid cell, along the two grid coordinates."""
    a, b = probe.dims
    return [float(probe.offsets[cell[0]] * probe.scale[a]), float(probe.offsets[cell[1]] * probe.scale[b])]


def scores(result: Scan, probe: Probe) -> dict:
    """The JSON-ready star-convexity scores of one scan (shares are fractions 0-1; offsets in chart units)."""
    argmin = cell_offset(probe, result.argmin)
    return {
        "loss_at_truth": result.loss_at_truth,
        "monotone_rays": float(result.monotone.mean()),
        "strong_rays": float(result.strong.mean()),
        "grid_minima": len(result.minima),
        "grid_minima_at": [cell_offset(probe, cell) for cell in result.minima],
        "argmin_dist": float(np.hypot(*argmin)),
        "argmin_offset": argmin,
        "grid_loss_min": float(result.grid_losses.min()),
        "tolerance": result.tolerance,
    }


def summarise(per_sample: Sequence[dict]) -> dict:
    """Mean and median over samples of each score."""
    return {
        key: {
            "mean": statistics.fmean(s[key] for s in per_sample),
            "median": float(statistics.median(s[key] for s in per_sample)),
        }
        for key in SCORES
    }
