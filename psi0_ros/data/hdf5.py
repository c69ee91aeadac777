"""The episode file's writer and reader (layout: episode_schema.py).

A file is written as a hidden temporary next to its destination and renamed only after it is
complete and closed, so a reader never sees a partial episode.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import psi0_ros
from psi0_ros.constants import ACTION_NAMES
from psi0_ros.data.episode_schema import (
    ACTION,
    ARRAYS,
    CHECKSUM_ATTR,
    ENCODING_ATTR,
    IMAGE_OFFSETS,
    IMAGES,
    IMU,
    JOINT_EFFORTS,
    JOINT_POSITIONS,
    JOINT_VELOCITIES,
    JSON_ATTRS,
    ROBOT,
    SCHEMA_VERSION,
    STATE,
    STATE_FULL_NAMES,
    TEMP_MARKER,
    TIMESTAMPS,
    EpisodeData,
)
from psi0_ros.g1 import ALL_JOINTS


def temp_path_for(path: Path) -> Path:
    """The hidden temporary a file is written to before the rename (unique per process)."""
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARKER in path.name


def write_episode(episode: EpisodeData, path: Path, overwrite: bool = False) -> Path:
    """Write the episode to path atomically (temporary + rename); no file is left on failure."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    _check_shapes(episode)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    f: h5py.File | None = None
    try:
        with _close_errors() as close_errors:
            f = h5py.File(temp, "w")
            _write(f, episode)
            f.close()
        if close_errors:  # a dataset's last write failed as it was freed: the file is incomplete
            raise close_errors[0]
        os.replace(temp, path)
    except (OSError, RuntimeError, ValueError) as err:
        if f is not None:
            with _close_errors(), contextlib.suppress(Exception):
                f.close()  # fails again where a write failed: HDF5 then keeps the file open
            global _UNCLOSED_FILES
            _UNCLOSED_FILES += 1
        temp.unlink(missing_ok=True)
        raise _write_error(path, err) from err
    except BaseException:  # Ctrl-C, SIGTERM's SystemExit: no partial file either
        if f is not None:
            with contextlib.suppress(Exception):
                f.close()
        temp.unlink(missing_ok=True)
        raise
    return path


# Files whose writes failed (disk full, file-size limit) in this process. HDF5 cannot close such
# a file: it retries the failed flush whenever one of its objects is freed, and at exit, where its
# shutdown crashed the process (SIGSEGV). A command that saw one ends with os._exit (see
# psi0_ros/commands/convert.py).
_UNCLOSED_FILES = 0


def unclosed_files() -> int:
    """How many episode files this process failed to write and HDF5 still holds open."""
    return _UNCLOSED_FILES


@contextlib.contextmanager
def _close_errors() -> Iterator[list[BaseException]]:
    """Errors HDF5 raises while h5py frees an object (a dataset is flushed as it closes). Python
    would only print them ("Exception ignored in ... __dealloc__") and the write would look fine;
    here they are collected for the writer to fail with."""
    caught: list[BaseException] = []
    previous, previous_print = sys.unraisablehook, sys.excepthook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, RuntimeError) and "h5py" in str(unraisable.object):
            caught.append(unraisable.exc_value)
        else:
            previous(unraisable)

    def print_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        # Cython prints the traceback of an error in __dealloc__ before reporting it as unraisable
        if not (isinstance(value, RuntimeError) and tb is not None and "h5py" in tb.tb_frame.f_code.co_filename):
            previous_print(kind, value, tb)

    sys.unraisablehook, sys.excepthook = hook, print_hook
    try:
        yield caught
    finally:
        sys.unraisablehook, sys.excepthook = previous, previous_print


# HDF5 reports a failed write(2) inside its own message: "... errno = 27, error message = 'File too large' ..."
_HDF5_ERRNO = re.compile(r"errno = (\d+), error message = '([^']*)'")


def _write_error(path: Path, err: BaseException) -> OSError:
    """The cause of a failed episode write in plain words (disk full, file-size limit, ...)."""
    found = _HDF5_ERRNO.search(str(err))
    if isinstance(err, OSError) and err.errno:
        code, text = err.errno, err.strerror or str(err)
    elif found:
        code, text = int(found.group(1)), found.group(2)
    else:
        return OSError(f"writing {path} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    hint = {errno.ENOSPC: " (disk full)", errno.EFBIG: " (over the file-size limit, ulimit -f)"}.get(code, "")
    return OSError(code, f"writing {path} failed: {text}{hint}")


def _check_shapes(e: EpisodeData) -> None:
    t = e.num_frames
    for spec in ARRAYS:
        array = e.arrays()[spec.key]
        if array is not None and array.shape != spec.shape(t):
            name = spec.key.rsplit("/", 1)[-1]
            raise ValueError(f"episode {name} has shape {array.shape}, expected {spec.shape(t)}")
    for camera, frames in e.images.items():
        if len(frames) != t:
            raise ValueError(f"camera {camera} has {len(frames)} frames for {t} ticks")


def array_crc32(array: np.ndarray) -> int:
    """CRC-32 of an array's bytes in C order (the CHECKSUM_ATTR of a numeric dataset)."""
    return zlib.crc32(np.ascontiguousarray(array).tobytes())


def frames_crc32(frames: Any) -> int:
    """CRC-32 of JPEG frames, one after the other (the CHECKSUM_ATTR of a vlen image dataset)."""
    crc = 0
    for frame in frames:
        crc = zlib.crc32(bytes(frame), crc)
    return crc


def dataset_crc32(ds: h5py.Dataset) -> int:
    """The checksum of a dataset as stored (reads its bytes, decodes no image)."""
    if ds.dtype.kind == "O":
        return frames_crc32(ds[()])
    return array_crc32(ds[()])


def _create(f: h5py.File, key: str, array: np.ndarray, **options: Any) -> h5py.Dataset:
    ds = f.create_dataset(key, data=array, **options)
    ds.attrs[CHECKSUM_ATTR] = array_crc32(array)
    return ds


def _write(f: h5py.File, e: EpisodeData) -> None:
    for spec in ARRAYS:
        array = e.arrays()[spec.key]
        if array is not None:
            _create(f, spec.key, array.astype(spec.dtype))
    if e.imu is not None:
        for name, array in e.imu.items():
            _create(f, f"{IMU}/{name}", array.astype(np.float64))
    images = f.create_group(IMAGES)
    f.create_group(IMAGE_OFFSETS)
    for camera, frames in e.images.items():
        if isinstance(frames, np.ndarray):
            ds = _create(f, f"{IMAGES}/{camera}", frames, chunks=(1,) + frames.shape[1:])
            ds.attrs[ENCODING_ATTR] = "raw"
        else:
            ds = images.create_dataset(camera, (len(frames),), dtype=h5py.vlen_dtype(np.uint8))
            column = np.empty(len(frames), dtype=object)
            for i, jpeg in enumerate(frames):
                column[i] = np.frombuffer(jpeg, dtype=np.uint8)
            if len(frames):
                ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, column)
            ds.attrs[ENCODING_ATTR] = "jpeg"
            ds.attrs[CHECKSUM_ATTR] = frames_crc32(frames)
        for key, value in e.camera_info.get(camera, {}).items():
            ds.attrs[key] = value
        _create(f, f"{IMAGE_OFFSETS}/{camera}", e.image_offsets[camera].astype(np.float32))
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "robot": ROBOT,
        "joint_names": list(ALL_JOINTS),
        "action_names": list(ACTION_NAMES),
        "state_names": list(STATE_FULL_NAMES),
        "converter": f"psi0_ros {psi0_ros.__version__}",
        **e.attrs,
    }
    for key, value in attrs.items():
        f.attrs[key] = _attr_value(value)


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value)
    ):
        return json.dumps(value)  # nested or empty structures travel as JSON text
    if isinstance(value, (list, tuple)):
        return np.array(value, dtype=h5py.string_dtype())
    return value


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attributes as Python values (JSON-encoded ones decoded, string arrays as lists)."""
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
            value = [v.decode() if isinstance(v, bytes) else str(v) for v in value]
        elif isinstance(value, np.generic):
            value = value.item()
        if key in JSON_ATTRS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def read_episode(path: Path, images: bool = True) -> EpisodeData:
    """Load an episode file (images as JPEG bytes lists or raw arrays; skipped if images=False)."""
    with h5py.File(path, "r") as f:
        frames: dict[str, Any] = {}
        infos: dict[str, dict[str, Any]] = {}
        for camera, ds in f[IMAGES].items():
            infos[camera] = {
                k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items() if k != CHECKSUM_ATTR
            }
            if not images:
                continue
            if ds.attrs.get(ENCODING_ATTR) == "raw":
                frames[camera] = ds[()]
            else:
                frames[camera] = [bytes(x) for x in ds[()]]
        arrays = {spec.key: f[spec.key][()] if spec.key in f else None for spec in ARRAYS}
        return EpisodeData(
            timestamps=arrays[TIMESTAMPS],
            action=arrays[ACTION],
            state=arrays[STATE],
            joint_positions=arrays[JOINT_POSITIONS],
            images=frames,
            image_offsets={c: d[()] for c, d in f[IMAGE_OFFSETS].items()},
            joint_velocities=arrays[JOINT_VELOCITIES],
            joint_efforts=arrays[JOINT_EFFORTS],
            imu={k: d[()] for k, d in f[IMU].items()} if IMU in f else None,
            camera_info=infos,
            attrs=read_attrs(f),
        )


def read_action_state(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(T, 36) actions and (T, S) states of an episode file, as float64 (for training statistics).

    Raises FileNotFoundError for a missing file and ValueError naming a missing dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"episode file not found: {path}")
    out = []
    with h5py.File(path, "r") as f:
        for key in (ACTION, STATE):
            if key not in f:
                raise ValueError(f"episode {path} has no /{key}")
            out.append(np.asarray(f[key], dtype=np.float64))
    return out[0], out[1]
