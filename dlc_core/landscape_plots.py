"""PNG pictures of landscape scans (matplotlib, no display): per sample, the grid as a contour map and the loss
along every ray, one column per model so that a ``--compare`` pair sits side by side; written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .landscape import Probe, Scan
from .plots import new_figure, save_png

CONTOUR_LEVELS = 24
RAY_COLOURS = {"strong": "tab:green", "monotone only": "tab:blue", "not monotone": "tab:red"}


@dataclass(frozen=True)
class Axis:
    """How a chart coordinate is shown: its label and the factor from chart units to display units."""

    label: str
    factor: float = 1.0


def plot_sample(
    path: str | Path,
    scans: Sequence[Scan],
    titles: Sequence[str],
    probe: Probe,
    truth: np.ndarray,
    axes: tuple[Axis, Axis],
    scale_name: str = "scaled units",
) -> None:
    """One figure for one sample: top row the grid contours, bottom row the rays, one column per model."""
    plt, fig, panels = new_figure(2, len(scans), (5.6 * len(scans), 9.0))
    for column, (result, title) in enumerate(zip(scans, titles, strict=True)):
        _grid_panel(fig, panels[0, column], result, probe, truth, axes, title)
        _ray_panel(panels[1, column], result, probe, scale_name)
    save_png(plt, fig, path)


def _grid_panel(fig, ax, result: Scan, probe: Probe, truth: np.ndarray, axes: tuple[Axis, Axis], title: str) -> None:
    """Filled contours of the grid (absolute coordinates, display units), the truth, the minima and the argmin."""
    a, b = probe.dims
    xs = (truth[a] + probe.offsets * probe.scale[a]) * axes[0].factor
    ys = (truth[b] + probe.offsets * probe.scale[b]) * axes[1].factor
    filled = ax.contourf(xs, ys, result.grid_losses.T, levels=CONTOUR_LEVELS, cmap="viridis")
    ax.contour(xs, ys, result.grid_losses.T, levels=CONTOUR_LEVELS, colors="k", linewidths=0.3, alpha=0.5)
    fig.colorbar(filled, ax=ax, label="L")
    on_top = dict(clip_on=False, zorder=5)  # minima on the border stay visible
    argmin = (xs[result.argmin[0]], ys[result.argmin[1]])
    ax.plot(*argmin, "o", mfc="none", mec="orange", ms=14, mew=2, label="grid argmin", **on_top)
    if result.minima:
        mx, my = zip(*((xs[i], ys[j]) for i, j in result.minima), strict=True)
        ax.plot(mx, my, "rx", ms=10, mew=2.5, label=f"local minima ({len(result.minima)})", **on_top)
    truth_xy = (truth[a] * axes[0].factor, truth[b] * axes[1].factor)
    ax.plot(*truth_xy, "w*", ms=13, mec="k", label="ground truth", **on_top)
    ax.set(xlabel=axes[0].label, ylabel=axes[1].label, title=title)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)


def _ray_panel(ax, result: Scan, probe: Probe, scale_name: str) -> None:
    """The loss along every ray against the scaled radius, coloured by the ray's verdict."""
    verdicts = np.where(result.strong, "strong", np.where(result.monotone, "monotone only", "not monotone"))
    for verdict, colour in RAY_COLOURS.items():
        rows = result.ray_losses[verdicts == verdict]
        for k, row in enumerate(rows):
            ax.plot(
                probe.radii, row, color=colour, lw=0.8, alpha=0.6, label=f"{verdict} ({len(rows)})" if k == 0 else None
            )
    ax.set(
        xlabel=f"distance from the truth along the ray ({scale_name})",
        ylabel="L",
        title=f"{len(result.monotone)} rays: {result.monotone.mean():.0%} monotone, {result.strong.mean():.0%} strong",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
