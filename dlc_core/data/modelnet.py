"""ModelNet40 in the HDF5 layout of DCP/PRNet (``modelnet40_ply_hdf5_2048``): ply_data_{train,test}*.h5 files,
each with ``data`` (N, 2048, 3) float32 and ``label`` (N, 1) integer datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

UNSEEN_FIRST_LABEL = 20  # DCP's unseen protocol: train on labels < 20, test on labels >= 20


def read_h5_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, P, 3) float32, labels (N,) int64) of one HDF5 file, or InputError naming the file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "data" not in f or "label" not in f:
                raise InputError(f"{path}: expected datasets 'data' and 'label', found {sorted(f.keys())}")
            data = np.asarray(f["data"][:], dtype=np.float32)
            label = np.asarray(f["label"][:]).reshape(-1).astype(np.int64)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read HDF5 ({str(exc).splitlines()[0]})") from None
    if data.ndim != 3 or data.shape[2] != 3:
        raise InputError(f"{path}: 'data' must have shape (N, P, 3), got {data.shape}")
    if len(label) != len(data):
        raise InputError(f"{path}: {len(data)} clouds but {len(label)} labels")
    if data.shape[1] < 3:
        raise InputError(f"{path}: clouds have {data.shape[1]} points; registration needs at least 3")
    bad = ~np.isfinite(data).all(axis=(1, 2))
    if bad.any():
        raise InputError(f"{path}: cloud {int(bad.argmax())} (of {int(bad.sum())} such) has NaN/Inf coordinates")
    flat = np.ptp(data, axis=1).max(axis=1) == 0
    if flat.any():
        raise InputError(f"{path}: cloud {int(flat.argmax())} is degenerate (all its points are identical)")
    return data, label


def read_modelnet(folder: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All clouds and labels of one split ("train" or "test") from a modelnet40_ply_hdf5_2048 folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such ModelNet40 folder")
    files = sorted(folder.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise InputError(f"{folder}: no ply_data_{split}*.h5 files (expected the modelnet40_ply_hdf5_2048 layout)")
    parts = [read_h5_file(p) for p in files]
    widths = {p[0].shape[1] for p in parts}
    if len(widths) > 1:
        raise InputError(f"{folder}: files disagree on points per cloud ({sorted(widths)})")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
