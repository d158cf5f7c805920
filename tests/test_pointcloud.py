"""Tests of dlc_core.pointcloud: the voxel grid against a per-point dictionary, on real KITTI points."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from dlc_core.data.kitti import KittiSequence
from dlc_core.pointcloud import voxel_downsample


def reference_centroids(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """The mean row of every occupied cell floor(xyz / voxel_size), point by point in Python, sorted by cell."""
    cells: dict[tuple[int, ...], list[np.ndarray]] = defaultdict(list)
    for p in points:
        cells[tuple(np.floor(p[:3] / voxel_size).astype(int))].append(p)
    return np.array([np.mean(cells[c], axis=0) for c in sorted(cells)])


@pytest.mark.parametrize("voxel_size", [0.4, 1.5])
def test_voxel_centroids_match_a_dictionary_of_cells(shared_data: Path, voxel_size: float) -> None:
    """Every cell is found once, with the mean of exactly its points (negative coordinates included)."""
    scan = KittiSequence.open(shared_data / "kitti_mini", "02", "poses.txt").scan(0)[::10, :3].astype(np.float64)
    assert (scan < 0).any() and len(scan) > 10_000
    got = voxel_downsample(scan, voxel_size)
    want = reference_centroids(scan, voxel_size)
    assert got.shape == want.shape
    order = np.lexsort(np.floor(got / voxel_size).T[::-1])  # both sorted by (x, y, z) cell
    np.testing.assert_allclose(got[order], want, rtol=0, atol=1e-9)


def test_extra_columns_are_averaged_over_the_same_cells(shared_data: Path) -> None:
    """(N, 3 + D): the cells come from xyz alone (the same centroids as without the extra columns), and each extra
    column is the mean over the cell's points, as a per-point dictionary computes it."""
    scan = KittiSequence.open(shared_data / "kitti_mini", "02", "poses.txt").scan(0)[::10].astype(np.float64)
    got = voxel_downsample(scan, 0.4)  # x, y, z, intensity
    np.testing.assert_allclose(got[:, :3], voxel_downsample(scan[:, :3], 0.4), rtol=0, atol=1e-12)
    order = np.lexsort(np.floor(got[:, :3] / 0.4).T[::-1])
    np.testing.assert_allclose(got[order], reference_centroids(scan, 0.4), rtol=0, atol=1e-9)


def test_voxel_size_zero_keeps_the_points() -> None:
    points = np.random.default_rng(0).normal(size=(50, 3))
    assert voxel_downsample(points, 0.0) is points
    single = voxel_downsample(np.array([[0.1, -0.2, 0.3]]), 1.0)
    np.testing.assert_allclose(single, [[0.1, -0.2, 0.3]])
