"""What `psi0 inspect` checks: episode files, LeRobot datasets and bags.

Each check returns a Report: a summary plus errors (the data is unusable or not what the schema
says: wrong shapes, NaN/inf, non-monotonic or gapped time, undecodable images, missing files)
and warnings (usable but worth a look: flags set at conversion, leftover temporaries).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.constants import ACTION_NAMES, STATE_DIM, STATE_PADDED_DIM
from psi0_ros.data.bags import bags_under, is_bag
from psi0_ros.data.episode_schema import (
    ARRAYS,
    CHECKSUM_ATTR,
    ENCODING_ATTR,
    EPISODE_SUFFIXES,
    IMAGE_OFFSETS,
    IMAGES,
    IMU_ARRAYS,
    SCHEMA_VERSION,
    STATE,
    TIMESTAMPS,
    plausible_ranges,
)
from psi0_ros.data.hdf5 import dataset_crc32, is_temp_file, read_attrs
from psi0_ros.g1 import ALL_JOINTS

GAP_FACTOR = 1.5  # a time step longer than 1.5 control periods is a gap
RATE_TOLERANCE = 0.01  # median step within 1 % of 1/fps


@dataclass
class Report:
    path: str
    kind: str  # "episode" | "lerobot" | "bag" | "leftover"
    summary: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "valid": self.valid,
            "summary": self.summary,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def check_time(timestamps: np.ndarray, fps: float, report: Report, what: str = "timestamps") -> None:
    """Monotonic, no gaps, rate as declared."""
    if timestamps.size < 2:
        return
    steps = np.diff(timestamps)
    if np.any(steps <= 0):
        report.errors.append(f"{what} not strictly increasing at {int(np.argmax(steps <= 0))}")
        return
    period = 1.0 / fps
    gaps = np.flatnonzero(steps > GAP_FACTOR * period)
    if gaps.size:
        report.errors.append(f"{what}: {gaps.size} gap(s), largest {steps.max():.3f} s (period {period:.4f} s)")
    median = float(np.median(steps))
    report.summary["rate_hz"] = round(1.0 / median, 3)
    if abs(median - period) > RATE_TOLERANCE * period:
        report.errors.append(f"{what}: rate {1.0 / median:.3f} Hz, declared {fps} Hz")


def _finite(name: str, array: np.ndarray, report: Report) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))
        report.errors.append(f"{name}: {int(bad.sum())} NaN/inf value(s), first at row {int(rows[0])}")


def _check_ranges(f: Any, frames: int, report: Report) -> None:
    """Joint angles within the URDF limits, the rest within physical bounds (episode_schema)."""
    for key, (low, high, names) in plausible_ranges().items():
        if key not in f or f[key].shape != (frames, len(names)):
            continue  # missing or misshapen: reported by the shape checks
        values = f[key][()].astype(np.float64)
        bad = np.isfinite(values) & ((values < low) | (values > high))
        if bad.any():
            rows, columns = np.nonzero(bad)
            column = int(columns[0])
            report.errors.append(
                f"/{key}: {int(bad.sum())} value(s) outside the plausible range, first {names[column]} = "
                f"{values[rows[0], column]:.6g} at row {int(rows[0])} (range [{low[column]:.4g}, {high[column]:.4g}])"
            )


def _check_checksums(f: Any, report: Report) -> None:
    """Every dataset's bytes against the CRC-32 stored when it was written (no image decoding)."""
    unchecked: list[str] = []
    mismatched: list[str] = []

    def visit(name: str, item: Any) -> None:
        if not hasattr(item, "dtype"):
            return  # a group
        stored = item.attrs.get(CHECKSUM_ATTR)
        if stored is None:
            unchecked.append(name)
        elif int(stored) != dataset_crc32(item):
            mismatched.append(name)

    f.visititems(visit)
    for name in mismatched:
        report.errors.append(f"/{name}: bytes differ from the checksum written with the file (corrupted)")
    if unchecked:
        report.warnings.append(
            f"{len(unchecked)} dataset(s) without a checksum (written before checksums), e.g. /{unchecked[0]}"
        )


def validate_episode(path: Path, decode_all: bool = False) -> Report:
    """Check one HDF5 episode file against the schema (episode_schema.py)."""
    import h5py
    from PIL import Image

    report = Report(str(path), "episode")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        report.errors.append(f"cannot open as HDF5: {err}")
        return report
    with f:
        attrs = read_attrs(f)
        fps = float(attrs.get("fps", 0) or 0)
        report.summary.update(
            {k: attrs.get(k) for k in ("task", "episode_index", "outcome", "fps", "source_bags") if k in attrs}
        )
        if attrs.get("schema_version") != SCHEMA_VERSION:
            report.errors.append(f"schema_version {attrs.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        if fps <= 0:
            report.errors.append(f"fps attribute {attrs.get('fps')!r} is not a positive rate")
        if list(attrs.get("joint_names", [])) != list(ALL_JOINTS):
            report.errors.append("joint_names attribute is not psi0_ros.g1.ALL_JOINTS")
        if list(attrs.get("action_names", [])) != list(ACTION_NAMES):
            report.errors.append("action_names attribute is not psi0_ros.constants.ACTION_NAMES")
        for flag in attrs.get("flags", []) or []:
            report.warnings.append(f"flag: {flag}")
        if TIMESTAMPS not in f:
            report.errors.append(f"no /{TIMESTAMPS}")
            return report
        timestamps = f[TIMESTAMPS][()]
        t = int(timestamps.shape[0])
        report.summary["frames"] = t
        report.summary["duration_s"] = round(float(timestamps[-1] - timestamps[0]), 3) if t else 0.0
        if t == 0:
            report.errors.append("episode has no frames")
        _finite(TIMESTAMPS, timestamps, report)
        if fps > 0:
            check_time(timestamps, fps, report)
        for spec in ARRAYS + IMU_ARRAYS:
            if spec.key == TIMESTAMPS:
                continue
            if spec.key not in f:
                if spec.required:
                    report.errors.append(f"no /{spec.key}")
                continue
            array = f[spec.key][()]
            if spec in IMU_ARRAYS and array.shape[:1] != (t,):
                report.errors.append(f"/{spec.key} has {array.shape[0]} rows for {t} frames")
            elif spec not in IMU_ARRAYS and array.shape != spec.shape(t):
                report.errors.append(f"/{spec.key} has shape {array.shape}, expected {spec.shape(t)}")
                continue
            _finite(f"/{spec.key}", array, report)
        _check_ranges(f, t, report)
        _check_checksums(f, report)
        if STATE in f and f[STATE].shape[1:] == (STATE_PADDED_DIM,):
            padding = f[STATE][:, STATE_DIM:]
            if np.any(padding != 0):
                report.errors.append("state padding (dims 32-35) is not zero")
        cameras = f.get(IMAGES)
        if cameras is None or not len(cameras):
            report.errors.append(f"no /{IMAGES}/<camera>")
            return report
        report.summary["cameras"] = {}
        for camera, ds in cameras.items():
            info: dict[str, Any] = {"encoding": ds.attrs.get(ENCODING_ATTR, "?")}
            if ds.shape[0] != t:
                report.errors.append(f"camera {camera}: {ds.shape[0]} frames for {t} ticks")
                continue
            if info["encoding"] == "raw":
                info["shape"] = list(ds.shape[1:])
                if ds.ndim != 4 or ds.shape[3] != 3 or ds.dtype != np.uint8:
                    report.errors.append(
                        f"camera {camera}: raw frames {ds.shape} {ds.dtype}, expected (T, H, W, 3) uint8"
                    )
            else:
                frames = ds[()]
                # Every frame must at least look like a whole JPEG (start and end markers); a
                # sample (or with --decode-all every frame) is fully decoded.
                broken = [
                    i for i, x in enumerate(frames) if bytes(x[:2]) != b"\xff\xd8" or bytes(x[-2:]) != b"\xff\xd9"
                ]
                if broken:
                    report.errors.append(f"camera {camera}: frame {broken[0]} is not a whole JPEG ({len(broken)} such)")
                indices = range(t) if decode_all else sorted({0, t // 2, t - 1} - {-1})
                sizes = set()
                for i in indices:
                    try:
                        with Image.open(io.BytesIO(bytes(frames[i]))) as image:
                            image.load()
                            sizes.add(image.size)
                    except Exception as err:
                        report.errors.append(f"camera {camera}: frame {i} is not a decodable JPEG ({err})")
                        break
                if len(sizes) > 1:
                    report.errors.append(f"camera {camera}: frames of different sizes {sorted(sizes)}")
                if sizes:
                    w, h = next(iter(sizes))
                    info["shape"] = [h, w, 3]
                info["mean_jpeg_bytes"] = int(np.mean([len(x) for x in frames])) if t else 0
            offsets = f.get(f"{IMAGE_OFFSETS}/{camera}")
            if offsets is None or offsets.shape != (t,):
                report.errors.append(f"no /{IMAGE_OFFSETS}/{camera} of shape ({t},)")
            elif t:
                info["max_offset_s"] = round(float(np.abs(offsets[()]).max()), 4)
            report.summary["cameras"][camera] = info
    return report


def validate_lerobot(root: Path) -> Report:
    """Check a LeRobot v2.1 dataset: meta files, one parquet per episode, row counts, videos."""
    import pyarrow.parquet as pq

    report = Report(str(root), "lerobot")
    try:
        info = json.loads((root / "meta" / "info.json").read_text())
        episodes = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines() if line]
        tasks = [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines() if line]
    except (OSError, json.JSONDecodeError) as err:
        report.errors.append(f"unreadable meta files: {err}")
        return report
    report.summary.update(
        {k: info.get(k) for k in ("codebase_version", "robot_type", "fps", "total_episodes", "total_frames")}
    )
    if info.get("codebase_version") != "v2.1":
        report.errors.append(f"codebase_version {info.get('codebase_version')!r}, expected 'v2.1'")
    if info.get("total_episodes") != len(episodes):
        report.errors.append(f"info says {info.get('total_episodes')} episodes, episodes.jsonl has {len(episodes)}")
    if info.get("total_tasks") != len(tasks):
        report.errors.append(f"info says {info.get('total_tasks')} tasks, tasks.jsonl has {len(tasks)}")
    video_keys = [k for k, v in info.get("features", {}).items() if v.get("dtype") == "video"]
    total = 0
    for episode in episodes:
        index = int(episode["episode_index"])
        chunk = index // int(info.get("chunks_size", 1000))
        data = root / info["data_path"].format(episode_chunk=chunk, episode_index=index)
        if not data.is_file():
            report.errors.append(f"episode {index}: missing {data.relative_to(root)}")
            continue
        table = pq.read_table(data)
        total += table.num_rows
        if table.num_rows != int(episode["length"]):
            report.errors.append(f"episode {index}: {table.num_rows} rows, episodes.jsonl says {episode['length']}")
        for column in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index"):
            if column not in table.column_names:
                report.errors.append(f"episode {index}: no column {column!r}")
        if "timestamp" in table.column_names and info.get("fps"):
            sub = Report(report.path, "lerobot")
            check_time(table.column("timestamp").to_numpy().astype(np.float64), float(info["fps"]), sub)
            report.errors.extend(f"episode {index}: {e}" for e in sub.errors)
        for key in video_keys:
            video = root / info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=index)
            if not video.is_file():
                report.errors.append(f"episode {index}: missing {video.relative_to(root)}")
    if info.get("total_frames") != total:
        report.errors.append(f"info says {info.get('total_frames')} frames, the parquet files hold {total}")
    return report


def validate_bag(path: Path) -> Report:
    """Summarise a bag (topics, counts, rates, episodes) and check the converter's inputs exist."""
    from psi0_ros.data.bag_schema import expected_types, required_topics
    from psi0_ros.data.bags import BagError, BagReader
    from psi0_ros.data.config import ConvertConfig
    from psi0_ros.data.planning import plan_episodes

    report = Report(str(path), "bag")
    config = ConvertConfig()
    try:
        with BagReader(path) as reader:
            duration = max(1e-9, (reader.end_ns - reader.start_ns) / 1e9)
            counts = reader.message_counts()
            types = reader.topics()
            report.summary["duration_s"] = round(duration, 3)
            report.summary["topics"] = {
                topic: {"type": types[topic], "count": counts[topic], "rate_hz": round(counts[topic] / duration, 2)}
                for topic in sorted(types)
            }
            for topic in required_topics(config, types):
                if topic not in types:
                    report.errors.append(f"missing topic {topic} (needed by psi0 convert)")
                elif counts.get(topic, 0) == 0:
                    report.errors.append(f"topic {topic} has no messages")
            for topic, expected in expected_types(config, types).items():
                if topic in types and types[topic] not in expected:
                    report.errors.append(f"topic {topic} has type {types[topic]}, expected {' or '.join(expected)}")
            found = plan_episodes(reader, config)
            report.summary["episodes"] = [
                {
                    "index": s.index,
                    "duration_s": round((s.stop_ns - s.start_ns) / 1e9, 3),
                    "task": s.task,
                    "outcome": s.outcome,
                    "discarded": s.discarded,
                    "flags": s.flags,
                }
                for s in found.episodes
            ]
            report.errors.extend(message for _, message in found.errors)
            report.errors.extend(reader.missing_messages([t for t in types if t != config.events_topic]))
            for file in found.truncated_files:
                report.warnings.append(f"{file}: not finished by its recorder; read up to its last complete message")
            if found.replayed_events:
                report.warnings.append(
                    f"{found.replayed_events} replayed EpisodeEvent(s) from before the recording ignored"
                )
    except BagError as err:
        report.errors.append(str(err))
    return report


def inspect_paths(paths: Iterable[Path], decode_all: bool = False) -> list[Report]:
    """A report per episode file, LeRobot dataset or bag found at the given paths."""
    reports: list[Report] = []
    for path in map(Path, paths):
        if not path.exists():
            reports.append(Report(str(path), "missing", errors=[f"{path}: no such file or directory"]))
        elif path.is_file() and path.suffix in EPISODE_SUFFIXES:
            reports.append(validate_episode(path, decode_all))
        elif is_bag(path):
            reports.append(validate_bag(path))
        elif path.is_dir() and (path / "meta" / "info.json").is_file():
            reports.append(validate_lerobot(path))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in EPISODE_SUFFIXES or is_temp_file(p))
            for file in found:
                if is_temp_file(file):
                    reports.append(Report(str(file), "leftover", warnings=["temporary from an interrupted conversion"]))
                else:
                    reports.append(validate_episode(file, decode_all))
            bags = bags_under(path)  # the bags `psi0 convert` would find below it
            reports.extend(validate_bag(bag) for bag in bags)
            if not found and not bags:
                reports.append(Report(str(path), "missing", errors=[f"{path}: no episode files, bag or dataset"]))
        else:
            reports.append(Report(str(path), "unknown", errors=[f"{path}: not an episode file, bag or dataset"]))
    return reports
