"""Point-cloud checks and helpers shared by ICP, the data readers and the registration pipeline."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def check_cloud(points: np.ndarray, name: str, min_points: int = 3) -> np.ndarray:
    """The cloud as a float64 (N, 3) array, or InputError naming the cloud and the problem.

    Refused: non-numeric data, a wrong shape, fewer than `min_points` points, NaN/Inf coordinates, and clouds whose
    points are all identical (no rotation can be estimated from them).
    """
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} cloud is not a numeric array ({exc})") from None
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{name} cloud must have shape (N, 3), got {array.shape}")
    if len(array) < min_points:
        raise InputError(f"{name} cloud has {len(array)} points; at least {min_points} are needed")
    # flat reductions first: numpy reduces the short axis of an (N, 3) array several times slower
    if not np.isfinite(array).all():
        bad = ~np.isfinite(array).all(axis=1)
        raise InputError(f"{name} cloud has {bad.sum()} points with NaN/Inf coordinates (first at row {bad.argmax()})")
    if not (array != array[0]).any():
        raise InputError(f"{name} cloud is degenerate: all {len(array)} points are identical")
    return array


def transform_cloud(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (N, 3) moved by a 4x4 rigid transform."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def voxel_downsample(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Centroids of the occupied cells of a voxel grid anchored at the origin, in the order of their cell keys (the
    points themselves when voxel_size is 0). Points are (N, 3), or (N, 3 + D) whose extra columns (e.g. normals) are
    averaged over each cell as well.

    Cells are keyed by one int64 per point and grouped by a stable sort: scans arrive nearly sorted along the sweep,
    which numpy's stable sort exploits (half the time of np.unique on a KITTI scan).
    """
    if voxel_size == 0 or len(points) == 0:
        return points
    cells = np.ascontiguousarray(np.floor(points[:, :3].T / voxel_size)).astype(np.int64)  # (3, N): fast row reductions
    low = cells.min(axis=1)
    span = cells.max(axis=1) - low + 1
    keys = ((cells[0] - low[0]) * span[1] + (cells[1] - low[1])) * span[2] + (cells[2] - low[2])
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.empty(len(keys), dtype=bool)
    starts[0], starts[1:] = True, ordered[1:] != ordered[:-1]
    cell = np.empty(len(keys), dtype=np.int64)
    cell[order] = np.cumsum(starts) - 1
    counts = np.bincount(cell)
    sums = np.stack([np.bincount(cell, weights=points[:, axis], minlength=len(counts)) for axis in range(points.shape[1])],
                    axis=1)  # fmt: skip
    return sums / counts[:, None]
