"""PNG plots of odometry runs (matplotlib, no display needed), written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path


def new_figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (7.0, 5.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=size, squeeze=False)


def save_png(plt, fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_trajectory(path: str | Path, poses: np.ndarray, gt: np.ndarray | None, title: str) -> None:
    """Top view (x, y) of the estimated trajectory, and of the ground truth when there is one."""
    plt, fig, axes = new_figure()
    ax = axes[0, 0]
    if gt is not None:
        ax.plot(gt[:, 0, 3], gt[:, 1, 3], "k--", lw=1.5, label="ground truth")
    ax.plot(poses[:, 0, 3], poses[:, 1, 3], "C0-", lw=1.5, label="estimate")
    ax.plot(poses[0, 0, 3], poses[0, 1, 3], "go", label="start")
    ax.set(xlabel="x (m)", ylabel="y (m)", title=title)
    ax.axis("equal")
    ax.legend()
    save_png(plt, fig, path)


def plot_series(path: str | Path, series: dict[str, np.ndarray], ylabels: dict[str, str], title: str) -> None:
    """One panel per named per-frame series (e.g. translation error, rotation error, time), sharing the frame axis."""
    plt, fig, axes = new_figure(len(series), 1, (7.0, 2.2 * len(series) + 0.6))
    for ax, (name, values) in zip(axes[:, 0], series.items()):
        ax.plot(np.arange(1, len(values) + 1), values, ".-", lw=1)
        ax.set(ylabel=ylabels[name], title=name if ax is axes[0, 0] and not title else None)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("frame")
    save_png(plt, fig, path)
