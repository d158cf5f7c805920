"""A scan cache: what LiDAR training consumes, without the scans, in one ``.npz`` file (``dlc cache scans``).

ScanPairDataset needs, per scan, only its network candidates (cropped, ground removed, voxel-downsampled:
dlc_core.scan_preprocess.network_candidates) and, per sequence, the Velodyne-frame poses. The simulated training
scans are 1.8 GB and a rented GPU host may carry far less and may lack open3d; their candidates are about 20 MB.
So a cache holds, per sequence: the candidates of every scan in order (float32 metres: at most 2.4e-6 m from the
float64 values within the 40 m crop, the precision float32 network inputs have anyway), the poses (float64, the
reader's exactly), the frame numbers, the sequence's role (``train`` or ``val``) and its source folder; and once:
the preprocessing settings that made the candidates and the flags that chose the sequences, so a training run
that asks for other settings or sequences is refused instead of silently training on the wrong data.

Pairs from a cache equal the source's: same pair indices, exact labels (the same float64 poses), the same
candidate counts and order (so the same random samples for the same seed), points within float32 rounding.

Layout (``np.savez_compressed``, no pickles): ``meta`` (UTF-8 JSON as uint8), and per sequence k
``k/frames`` (n,) int64, ``k/poses`` (n, 4, 4) float64, ``k/offsets`` (n+1,) int64 and ``k/points`` (m, 3)
float32, the candidates of scan i being ``points[offsets[i]:offsets[i+1]]``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..scan_preprocess import ScanPreprocess, network_candidates
from .kitti import KittiSequence, finite_points, relative_transform

FORMAT_VERSION = 1
ROLES = ("train", "val")
# The settings that decide the candidates; num_points and scale act later, per pair, so one cache serves any of them.
CANDIDATE_FIELDS = ("min_range", "max_range", "ground_z", "voxel_size")
REBUILD = "rebuild it with dlc cache scans"


@dataclass(frozen=True)
class CachedSequence:
    """One cached sequence: what ScanPairDataset reads of a KittiSequence (length, poses) plus ready candidates."""

    name: str  # the source sequence folder, for messages and provenance
    role: str  # "train" or "val"
    frames: np.ndarray  # (n,) int64 frame numbers
    poses: np.ndarray  # (n, 4, 4) float64 Velodyne-frame poses
    offsets: np.ndarray  # (n+1,) int64: scan i's candidates are points[offsets[i]:offsets[i+1]]
    points: np.ndarray  # (m, 3) float32 metres

    def __len__(self) -> int:
        """Number of scans."""
        return len(self.frames)

    def candidates(self, k: int) -> np.ndarray:
        """The network candidates of the k-th scan (float64 metres, as network_candidates returns them)."""
        return self.points[self.offsets[k] : self.offsets[k + 1]].astype(np.float64)

    def relative(self, k_target: int, k_source: int) -> np.ndarray:
        """The 4x4 ground truth mapping points of scan k_source into the frame of scan k_target."""
        return relative_transform(self.poses, k_target, k_source)


@dataclass(frozen=True)
class ScanCache:
    """A read cache: its metadata (preprocess, selection, source) and its sequences."""

    path: Path
    meta: dict
    sequences: list[CachedSequence]

    def role(self, role: str) -> list[CachedSequence]:
        """The sequences of one role, in the order they were written."""
        return [s for s in self.sequences if s.role == role]

    def check(self, preprocess: ScanPreprocess, selection: dict) -> None:
        """Refuse, in one line, a run whose candidate preprocessing or sequence selection differs from the cache's."""
        built = self.meta["preprocess"]
        wanted = {f: getattr(preprocess, f) for f in CANDIDATE_FIELDS}
        differ = [f for f in CANDIDATE_FIELDS if built.get(f) != wanted[f]]
        if differ:
            have = ", ".join(f"{f} {built.get(f)}" for f in differ)
            asked = ", ".join(f"{f} {wanted[f]}" for f in differ)
            raise InputError(f"{self.path}: the cache was made with {have}; this run asks for {asked} ({REBUILD} "
                             "and those flags)")
        stored = self.meta["selection"]
        differ = [k for k in selection if stored.get(k) != selection[k]]
        if differ:
            have = ", ".join(f"{k} {stored.get(k)}" for k in differ)
            asked = ", ".join(f"{k} {selection[k]}" for k in differ)
            raise InputError(f"{self.path}: the cache holds {have}; this run asks for {asked} (pass the cache's, "
                             f"or {REBUILD})")


Progress = Callable[[Iterable[int], int], Iterable[int]]  # (items, total) -> the same items, e.g. with a bar


def cache_sequence(
    seq: KittiSequence, role: str, cfg: ScanPreprocess, progress: Progress = lambda items, total: items
) -> CachedSequence:
    """Read every scan of a sequence once and keep its network candidates (float32), poses and frame numbers."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    poses = np.stack([seq.pose(k) for k in range(len(seq))])  # pose() raises the reader's one-line error if absent
    parts = []
    for k in progress(range(len(seq)), len(seq)):
        points, _ = finite_points(seq.scan(k))
        parts.append(network_candidates(points[:, :3].astype(np.float64), cfg).astype(np.float32))
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    frames = np.asarray(seq.frames, dtype=np.int64)
    return CachedSequence(str(seq.folder), role, frames, poses, offsets, np.concatenate(parts).reshape(-1, 3))


def write_scan_cache(
    path: str | Path, sequences: list[CachedSequence], cfg: ScanPreprocess, selection: dict, source: dict
) -> int:
    """Write the cache atomically (compressed .npz); returns its size in bytes."""
    meta = {
        "format_version": FORMAT_VERSION,
        "preprocess": {"kind": "scan", **{f: getattr(cfg, f) for f in CANDIDATE_FIELDS}},
        "selection": selection,
        "source": source,
        "sequences": [
            {"name": s.name, "role": s.role, "scans": len(s), "candidates": int(len(s.points))} for s in sequences
        ],
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    for k, s in enumerate(sequences):
        arrays.update({f"{k}/{name}": getattr(s, name) for name in ("frames", "poses", "offsets", "points")})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez_compressed(f, **arrays)
        size = tmp.stat().st_size
    return size


def read_scan_cache(path: str | Path) -> ScanCache:
    """Read and check a whole cache (tens of MB) into memory; a missing, truncated or foreign file is one InputError."""
    path = Path(path)
    meta, arrays = _load(path, everything=True)
    missing = [key for key in ("preprocess", "selection", "sequences") if key not in meta]
    if missing:
        raise InputError(f"{path}: scan cache metadata lacks {', '.join(missing)}; {REBUILD}")
    try:
        sequences = [_sequence(path, k, entry, arrays) for k, entry in enumerate(meta["sequences"])]
    except KeyError as exc:
        raise InputError(f"{path}: scan cache lacks the array {exc}; {REBUILD}") from None
    if not any(s.role == "train" for s in sequences) or not any(s.role == "val" for s in sequences):
        raise InputError(f"{path}: scan cache needs training and validation sequences; {REBUILD}")
    return ScanCache(path, meta, sequences)


def read_cache_source(path: str | Path) -> dict:
    """What a cache was made from (data SPEC, command, commit, date), reading only its metadata: for model cards."""
    return _load(Path(path), everything=False)[0].get("source", {})


def _load(path: Path, everything: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata, arrays) of a cache file, the arrays only if `everything`; one InputError for any unreadable file."""
    if not path.is_file():
        raise InputError(f"{path}: scan cache not found ({REBUILD})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files} if everything else {"meta": npz["meta"]}
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError) as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise InputError(f"{path}: not a readable scan cache, truncated or corrupt ({why}); {REBUILD}") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise InputError(f"{path}: scan cache format {version!r}, expected {FORMAT_VERSION}; {REBUILD}")
    return meta, arrays


def _sequence(path: Path, k: int, entry: dict, arrays: dict[str, np.ndarray]) -> CachedSequence:
    """Sequence k of a cache, its array shapes, types and offsets checked (one InputError naming what is wrong)."""
    frames, poses, offsets, points = (arrays[f"{k}/{name}"] for name in ("frames", "poses", "offsets", "points"))
    n = len(frames)
    problems = [
        (frames.dtype != np.int64 or frames.ndim != 1 or n == 0, "frames is not a non-empty int64 vector"),
        (poses.dtype != np.float64 or poses.shape != (n, 4, 4), f"poses is not ({n}, 4, 4) float64"),
        (offsets.dtype != np.int64 or offsets.shape != (n + 1,), f"offsets is not ({n + 1},) int64"),
        (points.dtype != np.float32 or points.ndim != 2 or points.shape[1:] != (3,), "points is not (m, 3) float32"),
        (entry.get("role") not in ROLES, f"role {entry.get('role')!r} is not train or val"),
    ]
    for bad, what in problems:
        if bad:
            raise InputError(f"{path}: sequence {k} ({entry.get('name')}): {what}; {REBUILD}")
    if offsets[0] != 0 or offsets[-1] != len(points) or (np.diff(offsets) < 0).any():
        raise InputError(
            f"{path}: sequence {k} ({entry.get('name')}): offsets do not index its {len(points)} points; {REBUILD}"
        )
    if not (np.isfinite(points).all() and np.isfinite(poses).all()):
        raise InputError(f"{path}: sequence {k} ({entry.get('name')}): NaN or Inf in points or poses; {REBUILD}")
    return CachedSequence(str(entry.get("name")), entry["role"], frames, poses, offsets, points)
