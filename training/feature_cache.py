"""A memory-mapped cache of VLM features, one entry per observation frame.

With the VLM frozen and no image augmentation, the VLM maps each frame (image + instruction) to
the same features at every epoch; computing them once and reading them from disk means stages 2
and 3 run only the action expert per step (`psi0 bench train` measures the saving).

Layout of a cache directory:
  features.bin   (total_tokens, D) raw float16/float32, all frames' tokens one after another
  offsets.npy    (N + 1,) int64: frame i owns rows offsets[i]:offsets[i+1] (its real tokens only)
  meta.json      fingerprint (VLM directory + weights, dataset files, image settings), N, D, dtype
A cache whose fingerprint differs from the run's is rebuilt, never silently reused; it is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

FEATURES_FILE = "features.bin"
OFFSETS_FILE = "offsets.npy"
META_FILE = "meta.json"


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable digest of what the features depend on (paths, sizes, mtimes, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_signature(paths: list[Path]) -> list[tuple[str, int, int]]:
    out = []
    for path in paths:
        stat = Path(path).stat()
        out.append((str(Path(path).resolve()), stat.st_size, int(stat.st_mtime_ns)))
    return out


class FeatureCache:
    """Read side: cache[i] -> (S_i, D) float32 features of frame i (all real tokens)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        meta_path = self.directory / META_FILE
        self.meta = json.loads(meta_path.read_text())
        self.offsets = np.load(self.directory / OFFSETS_FILE)
        self.dim = int(self.meta["dim"])
        self.dtype = np.dtype(self.meta["dtype"])
        self._data: np.memmap | None = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getstate__(self) -> dict:  # workers map the file themselves
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def _map(self) -> np.memmap:
        if self._data is None:
            rows = int(self.offsets[-1])
            self._data = np.memmap(self.directory / FEATURES_FILE, dtype=self.dtype, mode="r", shape=(rows, self.dim))
        return self._data

    def __getitem__(self, index: int) -> np.ndarray:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return np.array(self._map()[start:stop], dtype=np.float32)  # a copy: the map is read-only

    @classmethod
    def open(cls, directory: Path, expected_fingerprint: str, frames: int) -> FeatureCache | None:
        """The cache in directory if it is complete and was built for this fingerprint, else None."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if meta.get("fingerprint") != expected_fingerprint or int(meta.get("frames", -1)) != frames:
            return None
        return cls(directory)

    @classmethod
    def build(
        cls,
        directory: Path,
        batches: Any,  # iterable of (frame indices (B,), VLM input batch)
        encode: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],  # batch -> (B, S, D) features, (B, S) mask
        frames: int,
        dtype: str,
        fingerprint_value: str,
    ) -> FeatureCache:
        """Run the VLM over every frame once and write the cache (frames in any batch order)."""
        directory = Path(directory)
        staging = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        lengths = np.full(frames, -1, dtype=np.int64)
        order: list[int] = []
        dim = None
        np_dtype = np.dtype(dtype)
        try:
            with (staging / FEATURES_FILE).open("wb") as sink:
                # Written in arrival order first; a frame's rows are found through `order` below.
                for indices, batch in batches:
                    with torch.no_grad():
                        hidden, mask = encode(batch)
                    hidden = hidden.float().cpu().numpy()
                    mask = mask.cpu().numpy().astype(bool)
                    dim = hidden.shape[-1]
                    for row, index in enumerate(np.asarray(indices).tolist()):
                        tokens = hidden[row][mask[row]]
                        sink.write(np.ascontiguousarray(tokens, dtype=np_dtype).tobytes())
                        lengths[index] = tokens.shape[0]
                        order.append(index)
            if (lengths < 0).any() or len(order) != frames:
                missing = np.nonzero(lengths < 0)[0][:8].tolist()
                raise RuntimeError(f"feature cache build missed frames {missing}")
            # Reorder to frame order so that offsets are monotonic.
            arrival = np.zeros(frames + 1, dtype=np.int64)
            arrival[1:] = np.cumsum(lengths[order])
            raw = np.memmap(staging / FEATURES_FILE, dtype=np_dtype, mode="r", shape=(int(arrival[-1]), dim))
            offsets = np.zeros(frames + 1, dtype=np.int64)
            offsets[1:] = np.cumsum(lengths)
            position = {index: i for i, index in enumerate(order)}
            ordered = np.memmap(staging / "ordered.bin", dtype=np_dtype, mode="w+", shape=(int(offsets[-1]), dim))
            for index in range(frames):
                i = position[index]
                ordered[offsets[index] : offsets[index + 1]] = raw[arrival[i] : arrival[i + 1]]
            ordered.flush()
            del raw, ordered
            os.replace(staging / "ordered.bin", staging / FEATURES_FILE)
            np.save(staging / OFFSETS_FILE, offsets)
            meta = {"fingerprint": fingerprint_value, "frames": frames, "dim": int(dim), "dtype": np_dtype.name}
            (staging / META_FILE).write_text(json.dumps(meta, indent=1))
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls(directory)

    def size_bytes(self) -> int:
        return (self.directory / FEATURES_FILE).stat().st_size
