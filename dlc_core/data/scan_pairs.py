"""LiDAR registration pairs (i, i+g) from KITTI-layout sequences, real or simulated, prepared exactly as the
pipeline prepares scans for the network (dlc_core.scan_preprocess), so that training and inference agree.

Training pairs are augmented: the source is turned by a random yaw (±``yaw_deg``, DECISIONS D4 asks for at least
±30°) plus a small roll and pitch, and the pair direction is random (forward and backward motion). The target is
scan i, the source scan j; the label is the transform that maps the (augmented) source onto the target, with the
translation divided by the preprocessing scale, as the network sees it.

Sequences are KittiSequence (scans read and preprocessed here) or CachedSequence (candidates read from a scan
cache, dlc_core.data.scan_cache: no scan files needed); both give the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import Dataset

from ..errors import InputError
from ..geometry import matrix_to_euler_zyx
from ..scan_preprocess import ScanPreprocess, network_candidates, network_sample
from .kitti import KittiSequence, finite_points
from .scan_cache import CachedSequence

TILT_DEG = 2.0  # roll/pitch augmentation: the road tilts a little between scans, the vehicle does not flip


@dataclass(frozen=True)
class PairIndex:
    """One pair: sequence number in the dataset, target frame position and source frame position."""

    sequence: int
    target: int
    source: int


def pair_indices(sequences: list[KittiSequence] | list[CachedSequence], max_gap: int, min_gap: int = 1) -> list[PairIndex]:
    """Every pair (i, i+g), g = min_gap..max_gap, of every sequence (positions in file order)."""
    return [
        PairIndex(s, i, i + g)
        for s, seq in enumerate(sequences)
        for g in range(min_gap, max_gap + 1)
        for i in range(len(seq) - g)
    ]


class ScanPairDataset(Dataset):
    """Network-ready scan pairs with exact labels; candidates of each scan are computed once and cached."""

    def __init__(
        self,
        sequences: list[KittiSequence] | list[CachedSequence],
        preprocess: ScanPreprocess,
        max_gap: int,
        seed: int,
        fixed: bool,
        yaw_deg: float = 30.0,
    ) -> None:
        self.sequences, self.preprocess, self.seed, self.fixed = sequences, preprocess, seed, fixed
        self.yaw_deg = 0.0 if fixed else yaw_deg
        self.pairs = pair_indices(sequences, max_gap)
        self.epoch = 0
        self._candidates = lru_cache(maxsize=4096)(self._load_candidates)

    def set_epoch(self, epoch: int) -> None:
        """Redraw augmentations and samples for a new epoch (fixed evaluation sets ignore it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def _load_candidates(self, sequence: int, position: int) -> np.ndarray:
        seq = self.sequences[sequence]
        if isinstance(seq, CachedSequence):  # made with this preprocessing: ScanCache.check refuses any other
            return seq.candidates(position)
        points, _ = finite_points(seq.scan(position))
        return network_candidates(points[:, :3].astype(np.float64), self.preprocess)

    def _augmentation(self, rng: np.random.Generator) -> np.ndarray:
        """A random rotation about the sensor: yaw ±yaw_deg, roll and pitch ±TILT_DEG (identity for fixed sets)."""
        if self.yaw_deg == 0.0:
            return np.eye(3)
        angles = rng.uniform(-1, 1, size=3) * np.array([self.yaw_deg, TILT_DEG, TILT_DEG])
        return Rotation.from_euler("zyx", angles, degrees=True).as_matrix()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        key = [self.seed, index] if self.fixed else [self.seed, self.epoch, index]
        rng = np.random.default_rng(key)
        pair = self.pairs[index]
        target, source = pair.target, pair.source
        if not self.fixed and rng.random() < 0.5:
            target, source = source, target
        seq = self.sequences[pair.sequence]
        label = seq.relative(target, source)  # maps source points into the target frame
        turn = self._augmentation(rng)
        src = self._candidates(pair.sequence, source) @ turn.T
        tgt = self._candidates(pair.sequence, target)
        rotation = label[:3, :3] @ turn.T
        translation = label[:3, 3] / self.preprocess.scale
        cfg = self.preprocess
        r = torch.as_tensor(rotation, dtype=torch.float64)
        return {
            "src": torch.from_numpy(network_sample(src, cfg, rng)),
            "tgt": torch.from_numpy(network_sample(tgt, cfg, rng)),
            "rotation": r.float(),
            "translation": torch.as_tensor(translation, dtype=torch.float32),
            "euler": matrix_to_euler_zyx(r).float(),
        }



def open_sequences(spec_kind: str, path: Path, kitti_sequences: list[str], poses_name: str | None) -> list[KittiSequence]:
    """The sequences a scan SPEC names: ``kitti:ROOT`` with the chosen sequence ids, or ``sim:DIR`` (one sequence
    folder written by ``dlc sim``, or a folder of them)."""
    if spec_kind == "kitti":
        return [KittiSequence.open(path, s, poses_name) for s in kitti_sequences]
    if (path / "velodyne").is_dir():
        return [KittiSequence.open_folder(path)]
    folders = sorted(d for d in path.iterdir() if (d / "velodyne").is_dir()) if path.is_dir() else []
    if not folders:
        raise InputError(f"{path}: no simulated sequences (expected DIR/velodyne or DIR/*/velodyne, as written by dlc sim)")
    return [KittiSequence.open_folder(d) for d in folders]
