"""Preparing LiDAR scans for the registration network and for ICP (DESIGN.md §4, first stage).

The network sees a small, fixed-size, normalised sample: points between ``min_range`` and ``max_range`` (the
vehicle itself and the far, sparse returns removed), without the flat ground below ``ground_z`` (it carries no
horizontal information and would take most of the sample), voxel-downsampled so near and far structure weigh
alike, ``num_points`` of them drawn at random, divided by ``scale`` so that they lie in the unit ball as the
object models expect. ICP works on the full cropped scan, ground included (it fixes height, roll and pitch),
voxel-downsampled to ``icp_voxel``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError
from .pointcloud import voxel_downsample

MIN_NETWORK_POINTS = 32


@dataclass(frozen=True)
class ScanPreprocess:
    """Scan preprocessing settings; stored in the model card's ``preprocess`` block (with ``kind: "scan"``)."""

    min_range: float = 3.0
    max_range: float = 40.0
    ground_z: float = -1.3  # metres in the sensor frame: KITTI's Velodyne is 1.73 m above the road
    voxel_size: float = 0.8
    num_points: int = 512
    scale: float = 40.0
    icp_max_range: float = 60.0
    icp_voxel: float = 0.4

    def card(self) -> dict:
        """JSON-ready settings, tagged as scan preprocessing."""
        return {"kind": "scan", **asdict(self)}

    @classmethod
    def from_card(cls, block: dict) -> "ScanPreprocess":
        """Settings from a model card's preprocess block."""
        if block.get("kind") != "scan":
            raise InputError("the model card's preprocess block is not a LiDAR scan preprocessing (kind != 'scan')")
        return cls(**{k: v for k, v in block.items() if k != "kind"})


def crop(points: np.ndarray, min_range: float, max_range: float) -> np.ndarray:
    """Points whose horizontal range lies in [min_range, max_range]."""
    squared = points[:, 0] ** 2 + points[:, 1] ** 2  # no square root per point
    return points[(squared >= min_range**2) & (squared <= max_range**2)]


def icp_cloud(points: np.ndarray, cfg: ScanPreprocess) -> np.ndarray:
    """The cloud ICP refines on: cropped to icp_max_range and voxel-downsampled to icp_voxel."""
    return voxel_downsample(crop(points, cfg.min_range, cfg.icp_max_range), cfg.icp_voxel)


def network_candidates(points: np.ndarray, cfg: ScanPreprocess) -> np.ndarray:
    """All points the network may sample from: cropped, ground removed, voxel-downsampled (metres, float64)."""
    kept = crop(points, cfg.min_range, cfg.max_range)
    kept = kept[kept[:, 2] > cfg.ground_z]
    return voxel_downsample(kept, cfg.voxel_size)


def network_sample(candidates: np.ndarray, cfg: ScanPreprocess, rng: np.random.Generator) -> np.ndarray:
    """num_points of the candidates (with repeats only if there are fewer), divided by scale, float32."""
    if len(candidates) < MIN_NETWORK_POINTS:
        raise InputError(
            f"only {len(candidates)} points remain after cropping to {cfg.min_range}-{cfg.max_range} m and removing the "
            f"ground; at least {MIN_NETWORK_POINTS} are needed"
        )
    chosen = rng.choice(len(candidates), size=cfg.num_points, replace=len(candidates) < cfg.num_points)
    return (candidates[chosen] / cfg.scale).astype(np.float32)
