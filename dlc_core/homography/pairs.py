"""Image pairs with exact homography labels (the DeepLK protocol, METHOD.md §3.3) from any folder of photos, and
the DeepLK/PRISE on-disk format.

A pair: the photo resized to 240x320, a random 192x192 crop as the *input*, four corners drawn from 64x64 boxes
around (32,32), (159,32), (159,159), (32,159), H = the homography sending the template corners there, and the
*template* = the input sampled at H·(u, v, 1) over the 128x128 grid (bilinear), so the label is exact. With
``multimodal`` the template is sampled from a map-like rendering of the crop (flattened grey levels, dark edges,
inverted contrast), imitating camera-versus-map pairs. Images are grey, float32 in [0, 1]. With ``augment``
(training only) the photo is first cut to a random window (each side 50-100% of the photo's) and mirrored half the
time, so a dozen photos give far more distinct pairs; evaluation pairs never use it.

Photos are split by source image, never by pair; photos whose names share a group prefix (the drone frames and
the orthophoto of one survey, DECISIONS.md D7) stay on the same side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from torch import Tensor

from ..errors import InputError
from ..images import BT601
from .geometry import INPUT_SIDE, NOMINAL_CORNERS, TEMPLATE_SIDE, homography_from_corners
from .lk import warp

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
RESIZED = (240, 320)  # rows, columns (MSCOCO protocol)
MAX_SHIFT = 32  # corner offsets: integers in [-32, 31] around the nominal square
GROUPS = ("aerial_brighton",)  # name prefixes that form one group (one survey: drone frames + orthophoto)
TEST_PHOTOS = ("chelsea", "flower", "grace_hopper", "rocket")  # held out of training (README)


def read_grey(path: Path) -> np.ndarray:
    """A photo as float32 grey in [0, 1]; an unreadable file is an InputError naming it."""
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as an image ({exc})") from None
    return rgb @ BT601


def group_of(path: Path) -> str:
    """The split group of a photo: its group prefix, else its own name."""
    return next((g for g in GROUPS if path.stem.startswith(g)), path.stem)


def split_photos(folder: str | Path, test: tuple[str, ...] = TEST_PHOTOS) -> tuple[list[Path], list[Path]]:
    """(train, test) photo paths of a folder; a photo is a test photo when its group is named in `test`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such image folder")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise InputError(f"{folder}: no images ({', '.join(PHOTO_SUFFIXES)})")
    held = [p for p in photos if group_of(p) in test]
    return [p for p in photos if p not in held], held


def map_like(grey: np.ndarray) -> np.ndarray:
    """A map-style rendering of a grey image: smoothed, flattened to 4 levels, dark edges, contrast inverted."""
    smooth = ndimage.gaussian_filter(grey, 1.5)
    levels = np.floor(smooth * 4).clip(0, 3) / 3.0
    edges = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
    rendered = 1.0 - levels
    rendered[edges > np.percentile(edges, 85)] = 0.0
    return rendered.astype(np.float32)


def resized(grey: np.ndarray) -> np.ndarray:
    """The photo resized to 240x320 (antialiased)."""
    im = Image.fromarray(grey.astype(np.float32), mode="F").resize(RESIZED[::-1], Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.float32)


def sample_template(image: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The 128x128 template: `image` sampled bilinearly at H·(u, v, 1) for every template pixel."""
    v, u = np.mgrid[0:TEMPLATE_SIDE, 0:TEMPLATE_SIDE].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    mapped = h @ pts
    cols, rows = mapped[0] / mapped[2], mapped[1] / mapped[2]
    out = ndimage.map_coordinates(image, [rows, cols], order=1, mode="nearest")
    return out.reshape(TEMPLATE_SIDE, TEMPLATE_SIDE).astype(np.float32)


def random_window(grey: np.ndarray, rng: np.random.Generator, min_side: float = 0.5) -> np.ndarray:
    """A random window of the photo, each side a random 50-100% of the photo's, mirrored left-right half the time."""
    rows, cols = (max(2, int(round(n * rng.uniform(min_side, 1.0)))) for n in grey.shape)
    r0, c0 = rng.integers(0, grey.shape[0] - rows + 1), rng.integers(0, grey.shape[1] - cols + 1)
    window = grey[r0 : r0 + rows, c0 : c0 + cols]
    return window[:, ::-1] if rng.random() < 0.5 else window


def make_pair(grey_photo: np.ndarray, rng: np.random.Generator, multimodal: bool = False, augment: bool = False,
              photometric: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """One labelled pair (module docstring): input (192, 192), template (128, 128), corners (4, 2) TL TR BR BL, H.
    `photometric`: then the template's gain and offset change and both images get sensor noise (photometric_change);
    the geometry, drawn first, is the same pair's."""
    big = resized(random_window(grey_photo, rng) if augment else grey_photo)
    r0, c0 = rng.integers(0, RESIZED[0] - INPUT_SIDE + 1), rng.integers(0, RESIZED[1] - INPUT_SIDE + 1)
    crop = big[r0 : r0 + INPUT_SIDE, c0 : c0 + INPUT_SIDE]
    corners = NOMINAL_CORNERS + rng.integers(-MAX_SHIFT, MAX_SHIFT, size=(4, 2))
    h = homography_from_corners(torch.as_tensor(corners[None]))[0].numpy()
    template = sample_template(map_like(crop) if multimodal else crop, h)
    image = np.ascontiguousarray(crop)
    if photometric:
        image, template = photometric_change(image, template, rng)
    return {"input": image, "template": template, "corners": corners.astype(np.float32), "H": h}


def photometric_change(image: np.ndarray, template: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The two views as two exposures: template gain 0.8-1.2 and offset ±0.1, Gaussian noise σ 0.02 on both, clipped to
    [0, 1] — what a real second image adds and the DeepLK protocol leaves out."""
    gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
    noisy = lambda x: x + rng.normal(0.0, 0.02, x.shape)  # noqa: E731
    return (np.clip(noisy(image), 0, 1).astype(np.float32), np.clip(noisy(gain * template + offset), 0, 1).astype(np.float32))


def stacked(pairs: list[dict[str, np.ndarray]], device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A list of pairs as one batch: input (B, 1, 192, 192), template (B, 1, 128, 128), corners (B, 4, 2) float64."""
    stack = lambda key: torch.as_tensor(np.stack([p[key] for p in pairs]), device=device)  # noqa: E731
    return stack("input")[:, None], stack("template")[:, None], stack("corners").double()


class PairDataset(torch.utils.data.Dataset):
    """`count` pairs from grey photos (read_grey); pair i uses photo i mod n and a generator seeded by (seed, epoch,
    i), so a fixed set (validation, test) repeats exactly and a training set changes with set_epoch. `augment`:
    make_pair's."""

    def __init__(self, greys: list[np.ndarray], count: int, seed: int, multimodal: bool = False, augment: bool = False) -> None:
        if not greys:
            raise InputError("no photos to make pairs from")
        self.greys = greys
        self.count, self.seed, self.multimodal, self.augment, self.epoch = count, seed, multimodal, augment, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        pair = make_pair(self.greys[i % len(self.greys)], rng, self.multimodal, self.augment)
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in pair.items()}


class DevicePairs:
    """Training pairs made on the training device, a batch at a time, by the protocol of make_pair (random window
    and mirror, antialiased resize to 240x320, random 192x192 crop, corner offsets, the template sampled at H): for a
    GPU whose host has few cores, where make_pair's ~2 ms per pair on a CPU core starves the trainer. Single-modal
    only; the resize (torch's antialiased bilinear) differs slightly from PIL's, so evaluation keeps make_pair."""

    def __init__(self, greys: list[np.ndarray], seed: int, augment: bool, device: torch.device) -> None:
        if not greys:
            raise InputError("no photos to make pairs from")
        self.greys = [torch.as_tensor(g, device=device)[None, None] for g in greys]
        self.seed, self.augment, self.device = seed, augment, device
        self.generator = torch.Generator()

    def epoch(self, epoch: int, batches: int, size: int) -> Iterator[dict[str, Tensor]]:
        """`batches` batches of `size` pairs, the same for the same (seed, epoch), as PairDataset.set_epoch."""
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)
        return (self.batch(size) for _ in range(batches))

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def _int(self, low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def _crop(self) -> Tensor:
        grey = self.greys[self._int(0, len(self.greys) - 1)]
        if self.augment:
            rows, cols = (max(2, round(n * self._uniform(0.5, 1.0))) for n in grey.shape[-2:])
            r0, c0 = self._int(0, grey.shape[-2] - rows), self._int(0, grey.shape[-1] - cols)
            grey = grey[..., r0 : r0 + rows, c0 : c0 + cols]
            grey = grey.flip(-1) if self._uniform(0, 1) < 0.5 else grey
        big = F.interpolate(grey, size=RESIZED, mode="bilinear", antialias=True, align_corners=False)
        r0, c0 = self._int(0, RESIZED[0] - INPUT_SIDE), self._int(0, RESIZED[1] - INPUT_SIDE)
        return big[..., r0 : r0 + INPUT_SIDE, c0 : c0 + INPUT_SIDE]

    def batch(self, size: int) -> dict[str, Tensor]:
        """{'input' (B, 192, 192), 'template' (B, 128, 128), 'corners' (B, 4, 2), 'H' (B, 3, 3)}, float32."""
        crops = torch.cat([self._crop() for _ in range(size)])
        offsets = torch.randint(-MAX_SHIFT, MAX_SHIFT, (size, 4, 2), generator=self.generator).to(self.device)
        corners = torch.as_tensor(NOMINAL_CORNERS, device=self.device) + offsets
        h = homography_from_corners(corners)
        template = warp(crops, h, (TEMPLATE_SIDE, TEMPLATE_SIDE))
        as32 = lambda t: t.to(torch.float32)  # noqa: E731
        return {"input": as32(crops[:, 0]), "template": as32(template[:, 0]), "corners": as32(corners), "H": as32(h)}


# ---------------------------------------------------------------- DeepLK / PRISE on-disk format

LABEL_KEYS = (("top_left_u", "top_left_v"), ("top_right_u", "top_right_v"),
              ("bottom_right_u", "bottom_right_v"), ("bottom_left_u", "bottom_left_v"))  # fmt: skip


@dataclass
class DLKSample:
    name: str
    input: np.ndarray
    template: np.ndarray
    corners: np.ndarray  # (4, 2) TL, TR, BR, BL in input pixels


def read_label(path: Path) -> np.ndarray:
    """The corners of a ``<stem>_label.txt`` (file order TL, TR, BL, BR; returned TL, TR, BR, BL)."""
    try:
        location = json.loads(path.read_text())["location"]
        points = {k: v for item in location for k, v in item.items()}
        return np.array([[points[u], points[v]] for u, v in LABEL_KEYS], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a DeepLK label file ({type(exc).__name__}: {exc})") from None


def read_dlk(root: str | Path, split: str = "val2014") -> list[DLKSample]:
    """Every sample of ``<root>/<split>_{input,template,label}``, checked for sizes and matching names."""
    root = Path(root)
    inputs = sorted((root / f"{split}_input").glob("*"))
    if not inputs:
        raise InputError(f"{root}: no {split}_input/ images (DeepLK layout: {split}_input, {split}_template, {split}_label)")
    samples = []
    for path in inputs:
        template, label = root / f"{split}_template" / path.name, root / f"{split}_label" / f"{path.stem}_label.txt"
        if not template.is_file() or not label.is_file():
            raise InputError(f"{path}: missing {template if not template.is_file() else label}")
        x, t = read_grey(path), read_grey(template)
        if x.shape != (INPUT_SIDE, INPUT_SIDE) or t.shape != (TEMPLATE_SIDE, TEMPLATE_SIDE):
            raise InputError(f"{path}: input {x.shape} / template {t.shape}, expected 192x192 / 128x128")
        samples.append(DLKSample(path.stem, x, t, read_label(label)))
    return samples

