"""Planning a conversion: find the bags, cut each bag's EpisodeEvents into episode jobs.

Failures at this stage (a bag that cannot be opened, a STOP without START) become results of
their own; the rest of the bags still plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.data.bag_schema import expected_types
from psi0_ros.data.bags import BagError, BagReader, find_bags, unique_bag_names
from psi0_ros.data.clocks import CLOCK_AHEAD_NS, NS_PER_S, choose_times
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.episode_schema import EPISODE_SUFFIX
from psi0_ros.data.episodes import OUTCOME_UNKNOWN, EpisodeSpan, Event, EventType, cut_episodes

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_DISCARDED = "discarded"
STATUS_SKIPPED = "skipped"
STATUSES = (STATUS_OK, STATUS_ERROR, STATUS_DISCARDED, STATUS_SKIPPED)

# EpisodeEvents are published transient-local: a recorder started later receives the last events
# of earlier sessions again, right at its start. An event stamped more than CLOCK_AHEAD_NS before
# the recording's first message, on the wall clock (no more than REPLAY_MAX_AGE_NS before it;
# older stamps are another clock, e.g. sim time), is such a replay and cuts no episode.
REPLAY_MAX_AGE_NS = 30 * 24 * 3600 * NS_PER_S  # 30 days


@dataclass
class EpisodeResult:
    """What happened to one episode (one entry of the JSON summary)."""

    bag: str
    episode_index: int | None
    status: str
    output: str | None = None
    frames: int = 0
    task: str = ""
    outcome: str = ""
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class EpisodeJob:
    """One unit of parallel work: an episode of a bag and where it goes."""

    bag: Path
    bag_name: str
    span: EpisodeSpan
    output: Path


@dataclass
class BagEvents:
    events: list[Event]  # on the alignment clock, replays dropped
    instructions: list[tuple[int, str]]  # (t, text)
    replayed: int  # events dropped as replays of earlier sessions (see REPLAY_MAX_AGE_NS)
    read: int  # EpisodeEvent messages the reader returned


def read_events(reader: BagReader, config: ConvertConfig) -> BagEvents:
    """The bag's EpisodeEvents and instructions."""
    present = reader.topics()
    topics = [t for t in (config.events_topic, config.instruction_topic) if t in present]
    for topic in topics:
        reader.check_type(topic, expected_types(config)[topic])
    raw_events: list[tuple[int, int, Any]] = []
    instructions: list[tuple[int, str]] = []
    seen: set[tuple[int, int, int, str]] = set()
    replayed = read = 0
    recording_start = reader.start_ns
    for topic, m in reader.read(topics):
        if topic == config.events_topic:
            read += 1
            msg = m.msg
            key = (m.header_ns, int(msg.type), int(msg.episode_index), str(msg.task))
            age = recording_start - m.header_ns
            if m.header_ns and (key in seen or CLOCK_AHEAD_NS < age <= REPLAY_MAX_AGE_NS):
                replayed += 1  # delivered again (transient-local) or from before this recording
                continue
            seen.add(key)
            raw_events.append((m.receive_ns, m.header_ns, msg))
        else:
            instructions.append((m.receive_ns, str(m.msg.data)))
    times = event_times(
        np.array([r for r, _, _ in raw_events], dtype=np.int64),
        np.array([h for _, h, _ in raw_events], dtype=np.int64),
        config,
    )
    events = []
    for t, (_, _, msg) in zip(times.tolist(), raw_events, strict=True):
        try:
            kind = EventType(int(msg.type))
        except ValueError:
            raise BagError(f"{reader.path}: EpisodeEvent with unknown type {msg.type}") from None
        events.append(Event(kind, int(t), int(msg.episode_index), str(msg.task)))
    return BagEvents(events, instructions, replayed, read)


def event_times(receive_ns: np.ndarray, header_ns: np.ndarray, config: ConvertConfig) -> np.ndarray:
    """When each EpisodeEvent takes effect: its own header stamp, set by the recorder node when
    the operator pressed the button. An event may reach the bag much later than that (delivered
    again, transient-local, when a subscription matches anew), so lateness never moves it to its
    receive time; only stamps on another clock do (zero, ahead of the receive time by more than
    CLOCK_AHEAD_NS, or older than REPLAY_MAX_AGE_NS, such as sim time), as for other streams."""
    if config.time_source == "receive" or receive_ns.size == 0 or np.any(header_ns == 0):
        return receive_ns
    offset = float(np.median(header_ns - receive_ns))
    if offset > CLOCK_AHEAD_NS or offset < -REPLAY_MAX_AGE_NS:
        return choose_times(receive_ns, header_ns, config)[0]
    return header_ns


def instruction_for(span: EpisodeSpan, instructions: Sequence[tuple[int, str]]) -> str:
    """The instruction in force at the episode's START, else the first one during it, else ""."""
    before = [text for t, text in instructions if t <= span.start_ns]
    during = [text for t, text in instructions if span.start_ns < t <= span.stop_ns]
    return (before[-1:] or during[:1] or [""])[0]


@dataclass
class BagPlan:
    """What planning found in one bag: its episodes and what the bag itself lost."""

    episodes: list[EpisodeSpan]
    errors: list[tuple[int | None, str]]  # (episode index or None for the bag, message)
    instructions: list[tuple[int, str]]
    replayed_events: int = 0
    truncated_files: list[str] = field(default_factory=list)


def plan_episodes(reader: BagReader, config: ConvertConfig) -> BagPlan:
    """Cut an open bag into episodes; report storage files its recorder did not finish, the
    episode such a file cut short, and topics the files hold fewer messages of than declared."""
    found = read_events(reader, config)
    events = found.events
    cut = cut_episodes(events, reader.start_ns, reader.end_ns)
    errors: list[tuple[int | None, str]] = list(cut.errors)
    declared = reader.declared_counts().get(config.events_topic, 0)
    if found.read < declared:
        errors.append(
            (
                None,
                f"{reader.path}: the bag declares {declared} {config.events_topic} messages, its files hold "
                f"{found.read}: episodes may be missing",
            )
        )
    truncated = [str(p) for p in reader.truncated_files]
    episodes = cut.episodes
    if truncated and events:
        last = episodes[-1] if episodes else None
        if last is not None and "no_stop" in last.flags and last.stop_ns == reader.end_ns and not last.discarded:
            episodes = episodes[:-1]
            errors.append(
                (
                    last.index,
                    f"episode {last.index} was cut short: the recording ends before its STOP "
                    f"({', '.join(truncated)} not finished by its recorder); not converted",
                )
            )
    _flag_lost_outcome(episodes, events, truncated, reader.end_ns)
    return BagPlan(episodes, errors, found.instructions, found.replayed, truncated)


def _flag_lost_outcome(episodes: list[EpisodeSpan], events: list[Event], truncated: list[str], end_ns: int) -> None:
    """A recording cut off after an episode's STOP may have lost its SUCCESS / FAILURE (the
    operator marks it after stopping, until the next START). When the file does not hold it,
    the episode still converts, and its flags say the outcome may have been lost."""
    if not truncated or not episodes:
        return
    last = episodes[-1]
    later_start = any(e.type == EventType.START and e.stamp_ns > last.start_ns for e in events)
    if last.discarded or last.outcome != OUTCOME_UNKNOWN or "no_stop" in last.flags or later_start:
        return
    last.flags.append(
        f"outcome_lost: the recording ends {(end_ns - last.stop_ns) / NS_PER_S:.3f} s after its STOP, cut off "
        f"({', '.join(truncated)} not finished by its recorder); a SUCCESS/FAILURE marked later may have been lost"
    )


def plan_bag(
    bag: Path, name: str, out_dir: Path, config: ConvertConfig, default_task: str
) -> tuple[list[EpisodeJob], list[EpisodeResult]]:
    """Cut one bag into episode jobs; discarded episodes and stray events become results."""
    try:
        with BagReader(bag) as reader:
            found = plan_episodes(reader, config)
    except BagError as err:
        return [], [EpisodeResult(str(bag), None, STATUS_ERROR, error=str(err))]
    for span in found.episodes:
        span.task = span.task or instruction_for(span, found.instructions) or default_task
    jobs: list[EpisodeJob] = []
    results = [EpisodeResult(str(bag), index, STATUS_ERROR, error=message) for index, message in found.errors]
    for span in found.episodes:
        if span.discarded:
            results.append(EpisodeResult(str(bag), span.index, STATUS_DISCARDED, task=span.task))
            continue
        output = out_dir / f"{name}_episode_{span.index:06d}{EPISODE_SUFFIX}"
        jobs.append(EpisodeJob(bag, name, span, output))
    return jobs, results


def plan(
    paths: Iterable[Path | str], out_dir: Path, config: ConvertConfig, default_task: str = ""
) -> tuple[list[Path], list[EpisodeJob], list[EpisodeResult]]:
    """Find the bags under paths and cut each into episode jobs (errors become results)."""
    results: list[EpisodeResult] = []
    bags: list[Path] = []
    for path in paths:
        try:
            bags.extend(find_bags([path]))
        except BagError as err:
            results.append(EpisodeResult(str(path), None, STATUS_ERROR, error=str(err)))
    jobs: list[EpisodeJob] = []
    for bag, name in zip(bags, unique_bag_names(bags), strict=True):
        bag_jobs, bag_results = plan_bag(bag, name, out_dir, config, default_task)
        jobs.extend(bag_jobs)
        results.extend(bag_results)
    return bags, jobs, results
