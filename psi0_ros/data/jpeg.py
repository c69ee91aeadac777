"""Camera frames -> JPEG bytes for the episode files (libjpeg-turbo through Pillow)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from psi0_ros.image import image_to_rgb


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (4:2:0)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_jpeg_message(msg: Any, quality: int) -> bytes:
    """An Image message -> JPEG bytes; a packed rgb8 image is encoded straight from its buffer."""
    from PIL import Image

    width, height = int(msg.width), int(msg.height)
    data = msg.data
    if str(msg.encoding).lower() != "rgb8" or int(msg.step) != width * 3 or len(data) != width * height * 3:
        return encode_jpeg(image_to_rgb(msg), quality)  # validates and converts other layouts
    if width <= 0 or height <= 0:
        raise ValueError(f"empty image: {width}x{height}")
    buffer = io.BytesIO()
    Image.frombuffer("RGB", (width, height), data, "raw", "RGB", 0, 1).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
