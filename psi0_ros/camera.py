"""Camera frames for camera_node, ROS-free: a V4L2 device or a video file (PyAV/FFmpeg), resized
and centre-cropped to the configured size.

A source yields (rgb (H, W, 3) uint8, capture time [s, time.time()]) from its own thread; the
node publishes each frame once. A device that cannot be opened is a CameraError naming it at
start; a source that stops delivering is visible as a growing frame age, never as an old frame
repeated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


class CameraError(RuntimeError):
    """A camera source that cannot be opened or read (names the source)."""


def fit_frame(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover width x height (aspect kept, bilinear), then centre crop to exactly that size."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a (H, W, 3) uint8 frame, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    image = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), resample=Image.Resampling.BILINEAR))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(image[top : top + height, left : left + width])


def device_path(source: str) -> str | None:
    """'/dev/videoN' for a device source ('N' or a /dev path); None for a file."""
    if source.isdigit():
        return f"/dev/video{source}"
    if source.startswith("/dev/"):
        return source
    return None


@dataclass
class Frame:
    rgb: np.ndarray
    capture_time_s: float  # wall clock (time.time()) when the frame was read
    seq: int


class FrameGrabber:
    """Reads a device or a video file on its own thread; latest() is the newest frame (or None)."""

    def __init__(self, source: str, width: int, height: int, rate_hz: float = 30.0, loop: bool = False):
        import av

        self.source, self.width, self.height, self.loop = source, width, height, loop
        self.device = device_path(source)
        try:
            if self.device is not None:
                if not Path(self.device).exists():
                    raise CameraError(f"camera device {self.device} does not exist")
                self._container = av.open(self.device, format="v4l2", options={"framerate": f"{rate_hz:g}"})
            else:
                if not Path(source).is_file():
                    raise CameraError(f"camera source {source!r} is neither a device nor an existing video file")
                self._container = av.open(source)
        except CameraError:
            raise
        except Exception as err:  # av raises several error types (OSError subclasses, ValueError)
            raise CameraError(f"cannot open camera source {source!r}: {err}") from None
        stream = self._container.streams.video[0] if self._container.streams.video else None
        if stream is None:
            raise CameraError(f"camera source {source!r} has no video stream")
        rate = float(stream.average_rate) if stream.average_rate else rate_hz
        self.period_s = 1.0 / (rate if self.device is None else rate_hz)
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.ended = False
        self._thread = threading.Thread(target=self._run, name="psi0-camera", daemon=True)
        self._thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            for frame in self._container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
            if self.device is not None or not self.loop:
                return
            self._container.seek(0)

    def _run(self) -> None:
        seq = 0
        next_time = time.monotonic()
        try:
            for rgb in self._frames():
                if self._stop.is_set():
                    return
                if self.device is None:  # a file plays at its own rate
                    delay = next_time - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                    next_time = max(next_time + self.period_s, time.monotonic() - self.period_s)
                seq += 1
                frame = Frame(fit_frame(rgb, self.width, self.height), time.time(), seq)
                with self._lock:
                    self._frame = frame
        except Exception as err:  # reported by the node; no frame is repeated
            self.error = err
        finally:
            self.ended = True

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._container.close()
