"""Random access to mp4 frames with PyAV: seek to the key frame before t, decode forward to t."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message names the file and the problem."""


class VideoReader:
    """frame(index) -> (H, W, 3) uint8 RGB of one video file, opened lazily (not pickled)."""

    def __init__(self, path: Path, fps: float | None = None):
        self.path = Path(path)
        self.fps = fps
        self._container: Any = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "fps": self.fps, "_container": None}

    def _open(self) -> Any:
        import av

        if self._container is None:
            if not self.path.is_file():
                raise DatasetError(f"{self.path}: video missing")
            try:
                self._container = av.open(str(self.path))
            except av.error.FFmpegError as err:
                raise DatasetError(f"{self.path}: not a readable video ({err})") from None
            if not self._container.streams.video:
                raise DatasetError(f"{self.path}: no video stream")
            if self.fps is None:
                rate = self._container.streams.video[0].average_rate
                self.fps = float(rate) if rate else 30.0
        return self._container

    def frame(self, index: int) -> np.ndarray:
        import av

        container = self._open()
        stream = container.streams.video[0]
        target = index / self.fps
        tolerance = 0.5 / self.fps
        try:
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
            for decoded in container.decode(stream):
                if decoded.time is not None and decoded.time >= target - tolerance:
                    return decoded.to_ndarray(format="rgb24")
        except av.error.FFmpegError as err:
            raise DatasetError(f"{self.path}: cannot decode frame {index} ({err})") from None
        raise DatasetError(f"{self.path}: video ends before frame {index} (t = {target:.3f} s)")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
