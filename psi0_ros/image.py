"""sensor_msgs/Image <-> numpy without cv_bridge (the PyPI cv-bridge is ROS 1 code).

Works on any object with the Image fields (an rclpy message, a rosbags-deserialised message),
so the nodes and the bag converter share one implementation. Only rgb8/bgr8/rgba8/bgra8/mono8
are accepted; anything else is a clear ValueError naming the encoding. CompressedImage (JPEG, or
anything Pillow reads) decodes with compressed_to_rgb; JPEG bytes come from psi0_ros.data.jpeg.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_to_rgb(msg: Any) -> np.ndarray:
    """Decode an Image message to a (H, W, 3) uint8 RGB array (a copy)."""
    encoding = str(msg.encoding).lower()
    if encoding not in _CHANNELS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(_CHANNELS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    channels = _CHANNELS[encoding]
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image: {width}x{height}")
    if step < width * channels:
        raise ValueError(f"image step {step} is smaller than width*channels = {width * channels}")
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ValueError(f"image data has {data.size} bytes, expected step*height = {step * height}")
    pixels = data.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding == "rgb8":
        return pixels.copy()
    if encoding == "bgr8":
        return pixels[:, :, ::-1].copy()
    if encoding == "rgba8":
        return pixels[:, :, :3].copy()
    if encoding == "bgra8":
        return pixels[:, :, 2::-1].copy()
    return np.repeat(pixels, 3, axis=2)


def rgb_to_image_fields(rgb: np.ndarray) -> dict[str, Any]:
    """Fields of an rgb8 Image for a (H, W, 3) uint8 array: height, width, encoding, step, data."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    height, width, _ = rgb.shape
    return {
        "height": height,
        "width": width,
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": width * 3,
        "data": np.ascontiguousarray(rgb).tobytes(),
    }


def compressed_topic(image_topic: str) -> str:
    """The CompressedImage topic that goes with an Image topic (image_transport's convention):
    /camera/ego/image_raw -> /camera/ego/image_raw/compressed."""
    return image_topic.rstrip("/") + "/compressed"


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a CompressedImage message (any object with `format` and `data`) to (H, W, 3) uint8 RGB.

    JPEG data decodes with libjpeg-turbo through simplejpeg (the library the episode JPEGs are
    written with; its output equals Pillow's, which the training readers use, pixel for pixel);
    other formats (PNG) through Pillow. Data that does not decode is a ValueError naming the format."""
    data = bytes(msg.data)
    try:
        if data[:2] == b"\xff\xd8":  # JPEG start-of-image marker
            import simplejpeg

            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as err:  # the decoders raise several types (ValueError, OSError, SyntaxError) for bad data
        raise ValueError(f"undecodable {str(msg.format)!r} image ({len(data)} bytes): {err}") from None
