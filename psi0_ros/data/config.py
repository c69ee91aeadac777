"""Recording and conversion settings: frozen dataclasses loaded from config/record.yaml.

The `record:` section is what launch/record.launch.py hands to `ros2 bag record` and what
`psi0 record` subscribes to; the `convert:` section holds the alignment rules of `psi0 convert`
(docs/data.md explains each rule). Unknown keys and bad values raise with the offending value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from psi0_ros.constants import (
    CONTROL_RATE_HZ,
    TOPIC_CAMERA_INFO,
    TOPIC_EPISODE_EVENTS,
    TOPIC_IMAGE,
    TOPIC_IMU,
    TOPIC_INSTRUCTION,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_UPPER_BODY_COMMAND,
)

STORAGES = ("mcap", "sqlite3")
STATE_RULES = ("interpolate", "hold")
IMAGE_FORMATS = ("jpeg", "raw")
TIME_SOURCES = ("header", "receive")
DEFAULT_CONFIG_NAME = "record.yaml"


def _check_keys(section: str, values: Mapping[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the {section!r} section; known: {sorted(known)}")


@dataclass(frozen=True)
class RecordConfig:
    """What a teleop recording contains and how the bag is stored."""

    topics: tuple[str, ...]
    storage: str = "mcap"  # rosbag2 storage plugin: "mcap" or "sqlite3"
    # Messages wait in memory for the writer thread; past this many bytes new ones are dropped
    # (counted and reported, never silently) so a stalled disk cannot exhaust memory.
    max_queue_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"record.storage must be one of {STORAGES}, got {self.storage!r}")
        if not self.topics:
            raise ValueError("record.topics is empty: nothing to record")
        bad = [t for t in self.topics if not isinstance(t, str) or not t.startswith("/")]
        if bad:
            raise ValueError(f"record.topics must be absolute topic names, got {bad}")
        if len(set(self.topics)) != len(self.topics):
            raise ValueError(f"record.topics lists a topic twice: {list(self.topics)}")
        if self.max_queue_bytes <= 0:
            raise ValueError(f"record.max_queue_bytes must be positive, got {self.max_queue_bytes}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RecordConfig:
        _check_keys("record", values, cls)
        values = dict(values)
        values["topics"] = tuple(values.get("topics") or ())
        return cls(**values)


@dataclass(frozen=True)
class ConvertConfig:
    """How `psi0 convert` aligns a bag's streams on the control grid (docs/data.md)."""

    fps: float = CONTROL_RATE_HZ  # control grid [Hz]
    # camera name -> Image topic; the name becomes /observations/images/<name>
    cameras: tuple[tuple[str, str], ...] = (("ego", TOPIC_IMAGE),)
    camera_info_topic: str = TOPIC_CAMERA_INFO
    joint_states_topic: str = TOPIC_JOINT_STATES
    upper_body_command_topic: str = TOPIC_UPPER_BODY_COMMAND
    lower_body_command_topic: str = TOPIC_LOWER_BODY_COMMAND
    imu_topic: str = TOPIC_IMU
    events_topic: str = TOPIC_EPISODE_EVENTS
    instruction_topic: str = TOPIC_INSTRUCTION
    # /joint_states -> state: "interpolate" (linear between the samples around a tick) or "hold"
    # (the newest sample at or before the tick).
    state_rule: str = "interpolate"
    # Two joint_states samples further apart than this around a tick flag the episode [s].
    state_max_gap_s: float = 0.1
    # A command older than this at a tick is still the command in force, but flags a gap [s].
    command_timeout_s: float = 0.5
    # Nearest image frame further than this from a tick flags the episode [s].
    image_tolerance_s: float = 0.05
    image_format: str = "jpeg"
    jpeg_quality: int = 90
    # Stamps to align on: message header stamps (falling back to the bag's receive time for a
    # stream whose stamps are zero) or the bag's receive time.
    time_source: str = "header"
    # How far before an episode's START the reader looks for the command already in force [s].
    lookback_s: float = 2.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and 0.0 < self.fps <= 1000.0):
            raise ValueError(f"convert.fps must be in (0, 1000] Hz, got {self.fps!r}")
        if not self.cameras:
            raise ValueError("convert.cameras is empty: at least one camera is needed")
        for name, topic in self.cameras:
            if not name.isidentifier():
                raise ValueError(f"camera name must be an identifier, got {name!r}")
            if not topic.startswith("/"):
                raise ValueError(f"camera {name!r} topic must be absolute, got {topic!r}")
        if self.state_rule not in STATE_RULES:
            raise ValueError(f"convert.state_rule must be one of {STATE_RULES}, got {self.state_rule!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"convert.image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        if self.time_source not in TIME_SOURCES:
            raise ValueError(f"convert.time_source must be one of {TIME_SOURCES}, got {self.time_source!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"convert.jpeg_quality must be in 1..100, got {self.jpeg_quality!r}")
        for name in ("state_max_gap_s", "command_timeout_s", "image_tolerance_s", "lookback_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"convert.{name} must be a positive number of seconds, got {value!r}")

    @property
    def period_ns(self) -> float:
        return 1e9 / self.fps

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ConvertConfig:
        _check_keys("convert", values, cls)
        values = dict(values)
        cameras = values.get("cameras")
        if isinstance(cameras, Mapping):
            values["cameras"] = tuple((str(k), str(v)) for k, v in cameras.items())
        elif cameras is not None:
            raise ValueError(f"convert.cameras must be a mapping name -> topic, got {cameras!r}")
        for name in ("fps", "state_max_gap_s", "command_timeout_s", "image_tolerance_s", "lookback_s"):
            if name in values:
                values[name] = float(values[name])
        return cls(**values)

    def replace(self, **changes: Any) -> ConvertConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class DataConfig:
    record: RecordConfig
    convert: ConvertConfig = field(default_factory=ConvertConfig)


def load_config(path: Path | None = None) -> DataConfig:
    """Read config/record.yaml (or the given file)."""
    if path is None:
        from psi0_ros.paths import config_path

        path = config_path(DEFAULT_CONFIG_NAME)
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read data config {path}: {err}") from err
    if not isinstance(document, Mapping) or "record" not in document:
        raise ValueError(f"{path} has no 'record:' section")
    unknown = sorted(set(document) - {"record", "convert"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected 'record' and 'convert'")
    try:
        record = RecordConfig.from_mapping(document["record"] or {})
        convert = ConvertConfig.from_mapping(document.get("convert") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err
    return DataConfig(record=record, convert=convert)
