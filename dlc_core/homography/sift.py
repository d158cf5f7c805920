"""The classical baseline: SIFT keypoints, Lowe's ratio test and RANSAC (OpenCV), template -> input. When too few
matches survive, or RANSAC finds no model, the nominal square (the identity guess) is returned, as a method
without ground truth would have to."""

from __future__ import annotations

import numpy as np
import torch

from .geometry import NOMINAL_CORNERS, homography_from_corners

RATIO, RANSAC_PX, MIN_MATCHES = 0.75, 3.0, 4


def nominal() -> np.ndarray:
    return homography_from_corners(torch.as_tensor(NOMINAL_CORNERS[None]))[0].numpy()


def sift_homography(template: np.ndarray, image: np.ndarray) -> np.ndarray:
    """H (template px -> input px) of grey float images in [0, 1]."""
    import cv2

    sift = cv2.SIFT_create()
    kt, dt = sift.detectAndCompute((template * 255).clip(0, 255).astype(np.uint8), None)
    ki, di = sift.detectAndCompute((image * 255).clip(0, 255).astype(np.uint8), None)
    if dt is None or di is None or len(kt) < 2 or len(ki) < 2:
        return nominal()
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dt, di, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < RATIO * n.distance]
    if len(good) < MIN_MATCHES:
        return nominal()
    src = np.float32([kt[m.queryIdx].pt for m in good])
    dst = np.float32([ki[m.trainIdx].pt for m in good])
    h, _ = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PX)
    if h is None or not np.isfinite(h).all() or abs(h[2, 2]) < 1e-12:
        return nominal()
    return h / h[2, 2]
