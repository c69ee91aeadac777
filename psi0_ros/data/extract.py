"""One episode out of an open bag: read its time window once, feed each stream's aligner, and
assemble the aligned streams into an EpisodeData (the longest run of ticks where every required
stream has a value; flags for gaps)."""

from __future__ import annotations

from typing import Any

import numpy as np

from psi0_ros.data.align import control_grid
from psi0_ros.data.aligners import (
    CameraAligner,
    EpisodeError,
    ImuAligner,
    JointStateAligner,
    LowerBodyCommandAligner,
    UpperBodyCommandAligner,
)
from psi0_ros.data.bag_schema import IMAGE, camera_topics, event_topics, expected_types, required_topics
from psi0_ros.data.bags import BagReader
from psi0_ros.data.cdr import decode_image, decode_imu, decode_joint_state, peek_joint_state
from psi0_ros.data.clocks import NS_PER_S, READ_MARGIN_BEFORE_NS, READ_MARGIN_NS, TAIL_NS, seconds_to_ns
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.episode_schema import EpisodeData
from psi0_ros.data.episodes import EpisodeSpan
from psi0_ros.data.streams import assemble_action
from psi0_ros.layout import build_state
from psi0_ros.ros_messages import camera_info_to_attrs


def _longest_run(mask: np.ndarray) -> slice:
    best, start = slice(0, 0), None
    for i, ok in enumerate(np.append(mask, False)):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best.stop - best.start:
                best = slice(start, i)
            start = None
    return best


class _Extraction:
    """Reads one episode's window and aligns it; see extract_episode()."""

    def __init__(self, reader: BagReader, span: EpisodeSpan, config: ConvertConfig) -> None:
        self.reader, self.span, self.config = reader, span, config
        self.joints = JointStateAligner(config.joint_states_topic, config)
        self.upper = UpperBodyCommandAligner(config.upper_body_command_topic, config)
        self.lower = LowerBodyCommandAligner(config.lower_body_command_topic, config)
        self.imu = ImuAligner(config.imu_topic, config)
        self.cameras = {
            name: CameraAligner(name, topic, config, span.start_ns, span.stop_ns)
            for name, topic in camera_topics(config, reader.topics())
        }
        self.camera_info: dict[str, dict[str, Any]] = {}
        self.flags: list[str] = list(span.flags)

    def run(self) -> EpisodeData:
        self._read()
        return self._align()

    def _read(self) -> None:
        config, reader = self.config, self.reader
        present = reader.topics()
        missing = [t for t in required_topics(config, present) if t not in present]
        if missing:
            raise EpisodeError(f"bag has no {', '.join(missing)} topic (required)")
        types = expected_types(config, present)
        topics = [t for t in types if t in present and t not in event_topics(config)]
        for topic in topics:
            reader.check_type(topic, types[topic])
        sinks = {
            self.joints.topic: self.joints,
            self.upper.topic: self.upper,
            self.lower.topic: self.lower,
            self.imu.topic: self.imu,
            **{camera.topic: camera for camera in self.cameras.values()},
        }
        info_topic = config.camera_info_topic
        # The commands in force at START may be older than the episode: they are read back
        # lookback_s; everything else only from a margin before START. One read covers both, so
        # each storage chunk is read once per episode.
        before = self.span.start_ns - READ_MARGIN_BEFORE_NS
        after = self.span.stop_ns + READ_MARGIN_NS
        commands = {t for t in (config.upper_body_command_topic, config.lower_body_command_topic) if t in topics}
        fast = {
            config.joint_states_topic: peek_joint_state,  # values decoded by the aligner, in batches
            config.upper_body_command_topic: decode_joint_state,  # a JointState as well
            config.imu_topic: decode_imu,
        }
        fast.update({c.topic: decode_image for c in self.cameras.values() if present.get(c.topic) == IMAGE})
        lookback = before - seconds_to_ns(config.lookback_s)
        not_commands = {t: before for t in topics if t not in commands}
        window = reader.read(topics, start_ns=lookback, stop_ns=after, fast=fast, topic_start_ns=not_commands)
        # The read stops early once every stream has stamps past STOP + TAIL_NS: the receive-time
        # margin is only needed while some stream still lags behind.
        streaming = {t for t in topics if t != info_topic}
        done_after = self.span.stop_ns + TAIL_NS
        finished: set[str] = set()
        for topic, m in window:
            if (m.header_ns or m.receive_ns) > done_after and m.receive_ns > self.span.stop_ns:
                finished.add(topic)
                if finished >= streaming:
                    break
            if topic == info_topic:
                if not self.camera_info:
                    self.camera_info = {name: camera_info_to_attrs(m.msg) for name, _ in config.cameras[:1]}
            else:
                sinks[topic].add(m)

    def _align(self) -> EpisodeData:
        config, span = self.config, self.span
        ticks = control_grid(span.start_ns, span.stop_ns, config.fps)
        if ticks.size == 0:
            raise EpisodeError("episode has no frames: it stops before it starts")
        positions, velocities, efforts = self.joints.align(ticks)
        upper = self.upper.align(ticks)
        lower = self.lower.align(ticks)
        imu = self.imu.align(ticks)
        cameras = {name: camera.align(ticks) for name, camera in self.cameras.items()}

        streams = {
            "joint_states": positions.valid,
            "upper_body_command": upper.valid,
            "lower_body_command": lower.valid,
            **{f"camera {name}": valid for name, (_, _, valid) in cameras.items()},
        }
        if imu is not None:
            streams["imu"] = imu.valid
        valid = np.logical_and.reduce(list(streams.values()))
        if not valid.any():
            empty = [name for name, v in streams.items() if not v.any()]
            why = f"no data from {', '.join(empty)}" if empty else "the streams never overlap in time"
            raise EpisodeError(f"episode has no frames: {why} between START and STOP")
        keep = _longest_run(valid)
        if keep.stop - keep.start < int(valid.sum()):
            self.flags.append(f"split: kept the longest of several runs of complete ticks ({keep.stop - keep.start})")
        first, last = keep.start, keep.stop - 1

        def cut(a: np.ndarray) -> np.ndarray:
            return a[first : last + 1]

        self._flag("state_gap", cut(positions.late), f"joint_states further apart than {config.state_max_gap_s} s")
        self._flag("command_gap", cut(upper.late | lower.late), f"command older than {config.command_timeout_s} s")
        if imu is not None:
            self._flag("imu_gap", cut(imu.late), f"IMU sample older than {config.state_max_gap_s} s")
        images: dict[str, Any] = {}
        offsets: dict[str, np.ndarray] = {}
        for name, (frames, offset_ns, _) in cameras.items():
            offset_ns = cut(offset_ns)
            late = np.abs(offset_ns) > seconds_to_ns(config.image_tolerance_s)
            worst = float(np.abs(offset_ns).max()) / NS_PER_S if offset_ns.size else 0.0
            what = f"nearest frame > {config.image_tolerance_s} s away, worst {worst:.3f} s"
            self._flag(f"image_gap {name}", late, what)
            images[name] = self.cameras[name].frames(cut(frames))
            offsets[name] = (offset_ns / NS_PER_S).astype(np.float32)

        joint_positions = cut(positions.values)
        lower_values = cut(lower.values)
        kept = cut(ticks)
        task = span.task
        if not task:
            self.flags.append("no_task: no task in the START event, on /psi0/instruction or given")
        attrs = {
            "task": task,
            "episode_index": span.index,
            "outcome": span.outcome,
            "fps": float(config.fps),
            "start_time_ns": int(span.start_ns),
            "stop_time_ns": int(span.stop_ns),
            "first_tick_ns": int(kept[0]),
            "trimmed": {"leading_ticks": int(first), "trailing_ticks": int(ticks.size - 1 - last)},
            "flags": self.flags,
            "alignment": self._alignment_attrs(),
        }
        return EpisodeData(
            timestamps=(kept - span.start_ns) / NS_PER_S,
            action=assemble_action(cut(upper.values), lower_values),
            state=build_state(joint_positions, lower_values),
            joint_positions=joint_positions,
            joint_velocities=cut(velocities) if velocities is not None else None,
            joint_efforts=cut(efforts) if efforts is not None else None,
            imu={k: cut(v) for k, v in imu.values.items()} if imu is not None else None,
            images=images,
            image_offsets=offsets,
            camera_info=self.camera_info,
            attrs=attrs,
        )

    def _flag(self, name: str, mask: np.ndarray, what: str) -> None:
        count = int(np.count_nonzero(mask))
        if count:
            self.flags.append(f"{name}: {count} of {mask.size} ticks, {what}")

    def _image_format(self) -> str:
        if self.config.image_format == "raw":
            return "raw"
        kept = [c.topic for c in self.cameras.values() if c.kept_jpeg]
        encoded = f"jpeg q{self.config.jpeg_quality}"
        return encoded + (f"; JPEG bytes as recorded from {', '.join(kept)}" if kept else "")

    def _clocks(self) -> dict[str, str]:
        aligners = [self.joints, self.upper, self.lower, self.imu, *self.cameras.values()]
        return {a.topic: a.clock for a in aligners if a.clock is not None}

    def _alignment_attrs(self) -> dict[str, Any]:
        c = self.config
        return {
            "grid": f"{c.fps} Hz from the episode START",
            "state": f"{c.state_rule} of {c.joint_states_topic} (gap flag > {c.state_max_gap_s} s)",
            "action": f"command in force (sample-and-hold) of {c.upper_body_command_topic} and "
            f"{c.lower_body_command_topic} (gap flag > {c.command_timeout_s} s)",
            "images": f"nearest frame (flag > {c.image_tolerance_s} s)",
            "imu": f"sample-and-hold of {c.imu_topic}",
            "image_format": self._image_format(),
            "clocks": self._clocks(),
        }


def extract_episode(reader: BagReader, span: EpisodeSpan, config: ConvertConfig) -> EpisodeData:
    """Read an episode's window from an open bag and align it on the control grid."""
    episode = _Extraction(reader, span, config).run()
    episode.attrs["source_bags"] = [str(reader.path)]
    return episode
