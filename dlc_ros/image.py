"""sensor_msgs/Image <-> numpy without cv_bridge: mono8, mono16, rgb8, bgr8 (and their alpha variants), rows
padded to `step` bytes, big- or little-endian 16-bit data. Anything unsafe or unknown is an ImageError naming
the problem, so a node can warn and go on instead of crashing on a malformed message."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from dlc_core.images import BT601

# encoding -> (channels, bytes per channel)
ENCODINGS = {"mono8": (1, 1), "8UC1": (1, 1), "mono16": (1, 2), "16UC1": (1, 2), "rgb8": (3, 1), "bgr8": (3, 1),
             "rgba8": (4, 1), "bgra8": (4, 1)}  # fmt: skip
MAX_SIDE = 16384


class ImageError(ValueError):
    """An Image message that cannot be decoded safely; the message says why."""


def image_to_array(msg: Image) -> np.ndarray:
    """(H, W) or (H, W, C) array of the message's pixels (uint8 or uint16), row padding removed, a copy."""
    if msg.encoding not in ENCODINGS:
        raise ImageError(f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels, depth = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ImageError(f"image size {width}x{height} is empty or larger than {MAX_SIDE} pixels a side")
    row = width * channels * depth
    if step < row:
        raise ImageError(f"step {step} is smaller than a row of {width} {msg.encoding} pixels ({row} bytes)")
    data = bytes(msg.data)
    if len(data) < step * (height - 1) + row:
        raise ImageError(f"data has {len(data)} bytes, expected {step * height} for {height} rows of step {step}")
    rows = np.frombuffer(data[: step * height].ljust(step * height, b"\0"), np.uint8).reshape(height, step)[:, :row]
    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2") if depth == 2 else np.dtype(np.uint8)
    pixels = rows.copy().view(dtype).astype(dtype.newbyteorder("=")).reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


def to_gray(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """A float32 (H, W) grey image on the 0-255 scale of 8-bit data (16-bit scaled down, colour averaged with
    ITU-R BT.601 weights, alpha dropped)."""
    if pixels.ndim == 3:
        rgb = pixels[:, :, :3][:, :, ::-1] if encoding.startswith("bgr") else pixels[:, :, :3]
        gray = rgb.astype(np.float32) @ BT601
    else:
        gray = pixels.astype(np.float32)
    return gray / 257.0 if pixels.dtype == np.uint16 else gray


def array_to_image(pixels: np.ndarray, encoding: str = "mono8") -> Image:
    """A sensor_msgs/Image of a uint8 (H, W) or (H, W, C) array, rows unpadded."""
    channels, depth = ENCODINGS[encoding]
    pixels = np.ascontiguousarray(pixels, dtype=np.uint16 if depth == 2 else np.uint8)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = pixels.shape[1] * channels * depth
    msg.data = pixels.tobytes()
    return msg
