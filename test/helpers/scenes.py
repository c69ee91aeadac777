"""A camera-like test frame: smooth gradients (flat areas for JPEG) and two coloured objects (edges)."""

from __future__ import annotations

import numpy as np


def two_object_scene(shift: int = 0, height: int = 240, width: int = 320) -> np.ndarray:
    """(height, width, 3) uint8 RGB; `shift` moves the red object right by that many pixels."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], -1).astype(np.uint8)
    rgb[60:140, 60 + shift : 140 + shift] = (200, 70, 60)
    rgb[100:200, 200:260] = (60, 170, 90)
    return rgb
