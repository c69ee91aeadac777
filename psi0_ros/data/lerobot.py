"""LeRobot v2.1 export: what the reference Psi0 trainer and the LeRobot tools read.

    meta/info.json              codebase_version "v2.1", fps, features, path templates
    meta/episodes.jsonl         {"episode_index", "tasks", "length"} per episode
    meta/tasks.jsonl            {"task_index", "task"}
    meta/episodes_stats.jsonl   per-episode min/max/mean/std/count of every feature
    meta/stats.json             the same, aggregated over the dataset
    data/chunk-000/episode_000000.parquet   one row per control tick
    videos/chunk-000/observation.images.<camera>/episode_000000.mp4

Parquet columns: observation.state (36 float32, the padded state), action (36 float32),
observation.joint_positions (43 float32), timestamp (float32 s, frame_index / fps),
frame_index, episode_index, index (global), task_index (int64).
Episodes are encoded in parallel into a staging directory (video + arrays); finalize() then
numbers the converted ones 0..N-1, writes the parquet files and the meta files, and removes the
staging directory.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.constants import ACTION_NAMES
from psi0_ros.data.episode_schema import ROBOT, STATE_FULL_NAMES, EpisodeData
from psi0_ros.g1 import ALL_JOINTS

CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
STAGING = ".staging"
VIDEO_CODECS = {"h264": "libx264", "av1": "libsvtav1"}
# g=2: a key frame every other frame, so a data loader can seek to any timestamp cheaply
# (LeRobot encodes with the same GOP); crf: visually lossless-ish for h264 / av1.
VIDEO_OPTIONS = {"h264": {"g": "2", "crf": "23", "preset": "veryfast"}, "av1": {"g": "2", "crf": "30", "preset": "8"}}
IMAGE_STATS_STRIDE = 5  # image statistics from every 5th frame, 4x downsampled (like LeRobot's sampling)


def video_key(camera: str) -> str:
    return f"observation.images.{camera}"


def _decode_frames(episode: EpisodeData, camera: str) -> Any:
    """Yield (H, W, 3) uint8 RGB frames of a camera."""
    frames = episode.images[camera]
    if isinstance(frames, np.ndarray):
        yield from frames
        return
    from PIL import Image

    for jpeg in frames:
        with Image.open(io.BytesIO(jpeg)) as image:
            yield np.asarray(image.convert("RGB"))


def encode_video(episode: EpisodeData, camera: str, path: Path, fps: float, codec: str) -> dict[str, Any]:
    """Encode a camera's frames as mp4 (yuv420p); returns the per-channel stats in [0, 1]."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = []
    shape = None
    container = av.open(str(path), mode="w")
    try:
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(VIDEO_CODECS[codec], rate=rate, options=VIDEO_OPTIONS[codec])
        stream.pix_fmt = "yuv420p"
        for i, rgb in enumerate(_decode_frames(episode, camera)):
            if shape is None:
                shape = rgb.shape
                stream.height, stream.width = rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2
            if i % IMAGE_STATS_STRIDE == 0:
                samples.append(rgb[::4, ::4].reshape(-1, 3).astype(np.float32) / 255.0)
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(rgb[: stream.height, : stream.width]), format="rgb24"
            )
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    pixels = np.concatenate(samples) if samples else np.zeros((1, 3), dtype=np.float32)
    stats = {
        "min": pixels.min(axis=0),
        "max": pixels.max(axis=0),
        "mean": pixels.mean(axis=0),
        "std": pixels.std(axis=0),
        "count": np.array([len(samples)]),
    }
    return {
        "stats": {k: (v.reshape(3, 1, 1).tolist() if k != "count" else v.tolist()) for k, v in stats.items()},
        "shape": [int(stream.height), int(stream.width), 3] if shape is not None else [0, 0, 3],
        "codec": codec,
    }


def _numeric_stats(array: np.ndarray) -> dict[str, list]:
    a = np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)
    return {
        "min": a.min(axis=0).tolist(),
        "max": a.max(axis=0).tolist(),
        "mean": a.mean(axis=0).tolist(),
        "std": a.std(axis=0).tolist(),
        "count": [int(a.shape[0])],
    }


@dataclass(frozen=True)
class LeRobotSink:
    """Per-episode work of the export (runs in the worker processes): video + arrays to staging."""

    root: Path
    fps: float
    codec: str = "h264"

    def __call__(self, episode: EpisodeData, job: Any) -> Path:
        staging = self.root / STAGING / f"{job.bag_name}_episode_{job.span.index:06d}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            videos = {
                camera: encode_video(episode, camera, staging / f"{camera}.mp4", self.fps, self.codec)
                for camera in episode.images
            }
            np.savez(
                staging / "arrays.npz",
                state=episode.state.astype(np.float32),
                action=episode.action.astype(np.float32),
                joint_positions=episode.joint_positions.astype(np.float32),
            )
            meta = {"task": episode.attrs.get("task", ""), "frames": episode.num_frames, "videos": videos}
            meta["source"] = {k: episode.attrs.get(k) for k in ("source_bags", "episode_index", "outcome", "flags")}
            (staging / "meta.json").write_text(json.dumps(meta))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging


def _frame_columns(frames: int, fps: float, episode_index: int, first_index: int, task_index: int) -> dict:
    frame_index = np.arange(frames, dtype=np.int64)
    return {
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(frames, episode_index, dtype=np.int64),
        "index": first_index + frame_index,
        "task_index": np.full(frames, task_index, dtype=np.int64),
    }


def _fixed_list(array: np.ndarray) -> Any:
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(array, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, array.shape[1])


def _aggregate(stats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dataset stats from per-episode stats (pooled mean and variance)."""
    out: dict[str, Any] = {}
    for key in stats[0]:
        counts = np.array([s[key]["count"][0] for s in stats], dtype=np.float64)
        means = np.array([s[key]["mean"] for s in stats], dtype=np.float64)
        stds = np.array([s[key]["std"] for s in stats], dtype=np.float64)
        weights = (counts / counts.sum()).reshape((-1,) + (1,) * (means.ndim - 1))
        mean = (weights * means).sum(axis=0)
        var = (weights * (stds**2 + (means - mean) ** 2)).sum(axis=0)
        out[key] = {
            "min": np.min([s[key]["min"] for s in stats], axis=0).tolist(),
            "max": np.max([s[key]["max"] for s in stats], axis=0).tolist(),
            "mean": mean.tolist(),
            "std": np.sqrt(var).tolist(),
            "count": [int(counts.sum())],
        }
    return out


def check_output(root: Path) -> None:
    """The export writes a new dataset; refuse to mix into an existing one."""
    if (root / "meta" / "info.json").exists():
        raise FileExistsError(f"{root} already holds a LeRobot dataset; choose a new output directory")


def finalize(root: Path, staged: Sequence[Path], fps: float, robot_type: str = ROBOT) -> dict[str, Path]:
    """Number the staged episodes 0..N-1 and write the dataset; returns staging dir -> parquet path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks: dict[str, int] = {}
    episodes_meta, stats_lines, written = [], [], {}
    features: dict[str, Any] = {}
    total_frames = 0
    for episode_index, stage in enumerate(staged):
        meta = json.loads((stage / "meta.json").read_text())
        arrays = np.load(stage / "arrays.npz")
        frames = int(meta["frames"])
        task_index = tasks.setdefault(meta["task"], len(tasks))
        chunk = episode_index // CHUNKS_SIZE
        columns = {
            "observation.state": _fixed_list(arrays["state"]),
            "action": _fixed_list(arrays["action"]),
            "observation.joint_positions": _fixed_list(arrays["joint_positions"]),
            **{k: pa.array(v) for k, v in _frame_columns(frames, fps, episode_index, total_frames, task_index).items()},
        }
        data_path = root / DATA_PATH.format(episode_chunk=chunk, episode_index=episode_index)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), data_path)
        stats = {
            "observation.state": _numeric_stats(arrays["state"]),
            "action": _numeric_stats(arrays["action"]),
            "observation.joint_positions": _numeric_stats(arrays["joint_positions"]),
            **{
                k: _numeric_stats(np.asarray(v).reshape(-1, 1))
                for k, v in _frame_columns(frames, fps, episode_index, total_frames, task_index).items()
            },
        }
        for camera, video in meta["videos"].items():
            key = video_key(camera)
            target = root / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=episode_index)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(stage / f"{camera}.mp4"), target)
            stats[key] = video["stats"]
            features[key] = {
                "dtype": "video",
                "shape": video["shape"],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": video["shape"][0],
                    "video.width": video["shape"][1],
                    "video.codec": video["codec"],
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": fps,
                    "video.channels": 3,
                    "has_audio": False,
                },
            }
        episodes_meta.append({"episode_index": episode_index, "tasks": [meta["task"]], "length": frames})
        stats_lines.append({"episode_index": episode_index, "stats": stats})
        written[str(stage)] = data_path
        total_frames += frames
    features.update(
        {
            "observation.state": {
                "dtype": "float32",
                "shape": [len(STATE_FULL_NAMES)],
                "names": list(STATE_FULL_NAMES),
            },
            "action": {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": list(ACTION_NAMES)},
            "observation.joint_positions": {"dtype": "float32", "shape": [len(ALL_JOINTS)], "names": list(ALL_JOINTS)},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        }
    )
    n = len(staged)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": n,
        "total_frames": total_frames,
        "total_tasks": len(tasks),
        "total_videos": n * sum(1 for f in features.values() if f["dtype"] == "video"),
        "total_chunks": (n + CHUNKS_SIZE - 1) // CHUNKS_SIZE if n else 0,
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{n}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    meta_dir = root / "meta"
    meta_dir.mkdir(parents=True, exist_ok=True)
    _write_lines(meta_dir / "episodes.jsonl", episodes_meta)
    _write_lines(meta_dir / "tasks.jsonl", [{"task_index": i, "task": t} for t, i in tasks.items()])
    _write_lines(meta_dir / "episodes_stats.jsonl", stats_lines)
    (meta_dir / "stats.json").write_text(
        json.dumps(_aggregate([s["stats"] for s in stats_lines]) if n else {}, indent=2)
    )
    (meta_dir / "info.json").write_text(json.dumps(info, indent=2))  # last: its presence marks a complete dataset
    shutil.rmtree(root / STAGING, ignore_errors=True)
    return written


def _write_lines(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
