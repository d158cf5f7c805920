"""MNIST readers with numpy (no torchvision, DECISIONS.md D6): IDX files (gzipped or not) and the CSV layout of
../shared/data/mnist_5k (label first, then 784 pixels), plus a stratified train/validation split.

`--data` may name a CSV file, an images IDX file (its labels file is found beside it by name), or a directory;
in a directory, the training split reads ``mnist_train_5k.csv`` (else ``train-images-idx3-ubyte[.gz]``) and the
test split reads the ``t10k`` pair. A truncated or malformed file is an InputError naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

SIDE = 28
PIXELS = SIDE * SIDE
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
TRAIN_CSV = "mnist_train_5k.csv"
SPLIT_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz; a damaged gzip stream is an InputError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"{path}: damaged gzip data ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """An IDX array (uint8): (N, 28, 28) for images (magic 0x803), (N,) for labels (0x801), size-checked."""
    path = Path(path)
    raw = _read_bytes(path)
    dims = 3 if magic == IMAGES_MAGIC else 1
    header = 4 + 4 * dims
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise InputError(f"{path}: IDX magic 0x{found:08x}, expected 0x{magic:08x} ({'images' if dims == 3 else 'labels'})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if dims == 3 and shape[1:] != (SIDE, SIDE):
        raise InputError(f"{path}: images are {shape[1]}x{shape[2]}, expected {SIDE}x{SIDE}")
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise InputError(f"{path}: {len(raw)} bytes, expected {expected} for {shape} (truncated or padded file)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable, as torch wants


def read_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of a CSV with one digit per row: label, then 784 pixels."""
    path = Path(path)
    text = _read_bytes(path).decode("ascii", errors="replace")
    rows = [line for line in text.splitlines() if line.strip()]
    if not rows:
        raise InputError(f"{path}: empty CSV")
    try:
        table = [np.array(line.split(","), dtype=np.int64) for line in rows]
    except ValueError:
        raise InputError(f"{path}: not a CSV of integers") from None
    bad = next((i for i, r in enumerate(table) if len(r) != PIXELS + 1), None)
    if bad is not None:
        raise InputError(f"{path}: row {bad + 1} has {len(table[bad])} values, expected {PIXELS + 1} (label + 784 pixels)")
    data = np.stack(table)
    labels, pixels = data[:, 0], data[:, 1:]
    if labels.min() < 0 or labels.max() > 9 or pixels.min() < 0 or pixels.max() > 255:
        raise InputError(f"{path}: labels must be 0-9 and pixels 0-255")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE), labels.astype(np.int64)


def _existing(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def labels_beside(images: Path) -> Path:
    """The labels file that belongs to an images IDX file (…-images-idx3-ubyte[.gz] -> …-labels-idx1-ubyte[.gz])."""
    stem = images.name.removesuffix(".gz").replace("images-idx3", "labels-idx1")
    found = _existing(images.parent, stem)
    if found is None:
        raise InputError(f"{images}: no labels file {stem}[.gz] beside it")
    return found


def read_idx_pair(images: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of an images IDX file and the labels file beside it, counts checked."""
    x = read_idx(images, IMAGES_MAGIC)
    labels_path = labels_beside(images)
    y = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if len(x) != len(y):
        raise InputError(f"{images}: {len(x)} images but {labels_path.name} has {len(y)} labels")
    if len(y) and y.max() > 9:
        raise InputError(f"{labels_path}: labels must be 0-9")
    return x, y


def load_mnist(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of `path` (file or folder, module docstring); split is
    'train' or 'test' and only matters for a folder."""
    path = Path(path)
    if path.is_dir():
        candidates = ([path / TRAIN_CSV] if split == "train" else []) + [_existing(path, SPLIT_FILES[split])]
        found = next((c for c in candidates if c is not None and c.is_file()), None)
        if found is None:
            want = f"{TRAIN_CSV} or " if split == "train" else ""
            raise InputError(f"{path}: no MNIST {split} data ({want}{SPLIT_FILES[split]}[.gz])")
        path = found
    elif not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    if path.name.removesuffix(".gz").endswith(".csv"):
        return read_csv(path)
    if "images-idx3" in path.name:
        return read_idx_pair(path)
    raise InputError(f"{path}: not an MNIST CSV or images IDX file (…-images-idx3-ubyte[.gz])")


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): the same fraction of every class held out, chosen with `seed`."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        val.append(rng.choice(idx, size=max(1, round(val_fraction * len(idx))), replace=False))
    val_idx = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx
