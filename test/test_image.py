"""sensor_msgs/Image <-> numpy, with real sensor_msgs messages."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tiers import require

from psi0_ros.image import image_to_rgb, rgb_to_image_fields

Image = require("sensor_msgs.msg").Image


def _rgb(height=4, width=5):
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)


def test_rgb8_round_trip():
    rgb = _rgb()
    msg = Image(**rgb_to_image_fields(rgb))
    assert msg.step == 15
    assert np.array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize(
    ("encoding", "convert"),
    [
        ("bgr8", lambda rgb: rgb[:, :, ::-1]),
        ("rgba8", lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)),
        ("bgra8", lambda rgb: np.concatenate([rgb[:, :, ::-1], np.zeros(rgb.shape[:2] + (1,), np.uint8)], axis=2)),
    ],
)
def test_other_encodings_decode_to_rgb(encoding, convert):
    rgb = _rgb()
    raw = np.ascontiguousarray(convert(rgb))
    msg = Image(height=4, width=5, encoding=encoding, step=5 * raw.shape[2], data=raw.tobytes())
    assert np.array_equal(image_to_rgb(msg), rgb)


def test_row_padding_is_dropped():
    rgb = _rgb()
    padded = np.zeros((4, 20), np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    msg = Image(height=4, width=5, encoding="rgb8", step=20, data=padded.tobytes())
    assert np.array_equal(image_to_rgb(msg), rgb)


def test_mono8_becomes_grey_rgb():
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    msg = Image(height=4, width=5, encoding="mono8", step=5, data=grey.tobytes())
    out = image_to_rgb(msg)
    assert out.shape == (4, 5, 3) and np.array_equal(out[:, :, 1], grey)


def test_bad_images_are_named():
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        image_to_rgb(Image(height=1, width=1, encoding="16UC1", step=2, data=b"\0\0"))
    with pytest.raises(ValueError, match="expected step\\*height = 30"):
        image_to_rgb(Image(height=2, width=5, encoding="rgb8", step=15, data=bytes(29)))
    with pytest.raises(ValueError, match="empty image"):
        image_to_rgb(Image(height=0, width=5, encoding="rgb8", step=15, data=b""))
    with pytest.raises(ValueError, match="expected a \\(H, W, 3\\) uint8"):
        rgb_to_image_fields(np.zeros((2, 2), np.uint8))
