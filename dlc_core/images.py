"""Grey images as float arrays: the one BT.601 grey conversion and the one square resize that the homography data,
the camera-to-map aligner and the digit node share."""

from __future__ import annotations

import numpy as np
import torch

BT601 = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> grey weights (ITU-R BT.601)


def resize(grey: np.ndarray, side: int) -> np.ndarray:
    """A float grey image resized to side x side (bilinear, antialiased); returned as is when already that size."""
    if grey.shape == (side, side):
        return grey
    t = torch.as_tensor(np.ascontiguousarray(grey), dtype=torch.float32)[None, None]
    return torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear", antialias=True)[0, 0].numpy()
