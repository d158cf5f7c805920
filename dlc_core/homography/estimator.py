"""Camera-to-map alignment at any image size: the camera image becomes the 128x128 template, the map the 192x192
input, the model (or SIFT + RANSAC) estimates H between them, and H is returned in the original pixels:
camera pixel (u, v, 1) -> map pixel, H = A_map⁻¹ · H_model · A_camera with A the resize scalings."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..images import resize
from .geometry import INPUT_SIDE, TEMPLATE_SIDE
from .model import HomographyModel
from .sift import sift_homography


def scaling(shape: tuple[int, int], side: int) -> np.ndarray:
    """Pixel coordinates of an (H, W) image -> those of its side x side resize (pixel centres kept aligned)."""
    h, w = shape
    sx, sy = side / w, side / h
    return np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]])


@dataclass
class Alignment:
    """H (camera px -> map px), LK iterations, whether LK diverged (the regression H was kept), and the time."""

    h: np.ndarray
    iterations: int
    diverged: bool
    ms: float


class Aligner:
    """The model (or SIFT + RANSAC when model is None) applied to a camera image and a map of any size."""

    def __init__(self, model: HomographyModel | None) -> None:
        self.model = model

    def align(self, camera: np.ndarray, map_image: np.ndarray) -> Alignment:
        """Grey float images in [0, 1] -> Alignment."""
        started = time.perf_counter()
        template, image = resize(camera, TEMPLATE_SIDE), resize(map_image, INPUT_SIDE)
        if self.model is None:
            h, iterations, diverged = sift_homography(template, image), 0, False
        else:
            as_input = lambda a: torch.as_tensor(a, dtype=torch.float32)[None, None]  # noqa: E731  (any float dtype in)
            out = self.model(as_input(image), as_input(template))
            h, iterations, diverged = out["h"][0].numpy(), int(out["iterations"][0]), bool(out["diverged"][0])
        full = np.linalg.inv(scaling(map_image.shape, INPUT_SIDE)) @ h @ scaling(camera.shape, TEMPLATE_SIDE)
        return Alignment(full / full[2, 2], iterations, diverged, (time.perf_counter() - started) * 1000.0)
