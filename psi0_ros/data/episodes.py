"""Episodes: the teleop recorder's state machine and cutting a bag's EpisodeEvents into episodes.

The recorder node publishes an EpisodeEvent (msg/EpisodeEvent.msg) for every start / stop /
discard / outcome; `ros2 bag record` stores them with everything else, and the converter cuts
the bag at them with cut_episodes(). Both sides share the rules written here (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum


class EventType(IntEnum):
    """EpisodeEvent.type constants (msg/EpisodeEvent.msg; test_data_episodes checks they agree)."""

    START = 0
    STOP = 1
    DISCARD = 2
    SUCCESS = 3
    FAILURE = 4


OUTCOME_UNKNOWN = "unknown"
OUTCOMES = {EventType.SUCCESS: "success", EventType.FAILURE: "failure"}


@dataclass(frozen=True)
class Event:
    type: EventType
    stamp_ns: int  # when the event takes effect [ns since the epoch]
    episode_index: int
    task: str = ""


class EpisodeStateError(RuntimeError):
    """A request that does not fit the recorder's state (e.g. stop while nothing is recording)."""


class EpisodeRecorder:
    """What the teleop recorder node tracks: the open episode, the last closed one, the task.

    Every successful call returns the Event to publish; a call that does not fit the state raises
    EpisodeStateError with a message for the operator and changes nothing.
    """

    def __init__(self, first_index: int = 0, task: str = "") -> None:
        if first_index < 0:
            raise ValueError(f"first episode index must be >= 0, got {first_index}")
        self.next_index = first_index
        self.task = task
        self.current: int | None = None  # index of the episode being recorded
        self.current_task = ""
        self.last_closed: int | None = None  # stopped, not discarded: outcome/discard still apply
        self.discarded: set[int] = set()

    @property
    def recording(self) -> bool:
        return self.current is not None

    def set_task(self, task: str) -> None:
        """The instruction for the next episode (the open one keeps the task it started with)."""
        self.task = task

    def start(self, now_ns: int, task: str | None = None) -> Event:
        if self.current is not None:
            raise EpisodeStateError(f"episode {self.current} is still recording; stop or discard it first")
        if task is not None:
            self.task = task
        self.current, self.current_task = self.next_index, self.task
        self.next_index += 1
        self.last_closed = None  # a double-pressed discard must never reach the previous episode
        return Event(EventType.START, now_ns, self.current, self.current_task)

    def stop(self, now_ns: int) -> Event:
        if self.current is None:
            raise EpisodeStateError("no episode is recording")
        event = Event(EventType.STOP, now_ns, self.current, self.current_task)
        self.last_closed, self.current = self.current, None
        return event

    def discard(self, now_ns: int) -> Event:
        """Discard the open episode (which also ends it) or else the one stopped last, as long as
        no new episode was started since and it was not discarded already."""
        if self.current is not None:
            event = Event(EventType.DISCARD, now_ns, self.current, self.current_task)
            self.discarded.add(self.current)
            self.current = None
            return event
        if self.last_closed is None:
            raise EpisodeStateError("no episode to discard")
        event = Event(EventType.DISCARD, now_ns, self.last_closed, "")
        self.discarded.add(self.last_closed)
        self.last_closed = None
        return event

    def mark_outcome(self, now_ns: int, success: bool) -> Event:
        """SUCCESS / FAILURE of the open episode, or else of the last stopped one."""
        index = self.current if self.current is not None else self.last_closed
        if index is None:
            raise EpisodeStateError("no episode to mark")
        kind = EventType.SUCCESS if success else EventType.FAILURE
        return Event(kind, now_ns, index, self.current_task if index == self.current else "")


@dataclass
class EpisodeSpan:
    """One episode cut from a bag: [start_ns, stop_ns] on the bag's clock."""

    index: int
    start_ns: int
    stop_ns: int
    task: str
    outcome: str = OUTCOME_UNKNOWN
    discarded: bool = False
    flags: list[str] = field(default_factory=list)


@dataclass
class CutResult:
    episodes: list[EpisodeSpan]
    # (episode index, message) for events that fit no episode (e.g. a STOP without a START)
    errors: list[tuple[int, str]]


def _fmt(stamp_ns: int, origin_ns: int) -> str:
    return f"t={(stamp_ns - origin_ns) / 1e9:.3f} s"


def cut_episodes(events: Iterable[Event], bag_start_ns: int, bag_end_ns: int, default_task: str = "") -> CutResult:
    """Cut a bag into episodes at its EpisodeEvents.

    Rules: START opens an episode, STOP closes it. No events at all: one episode spanning the
    bag. A START while another episode is open closes that one there (flag "no_stop"); an
    episode still open at the end of the bag ends there (flag "no_stop"). DISCARD drops the open
    or a closed episode of that index; SUCCESS/FAILURE set its outcome. A STOP, DISCARD or
    outcome that matches no episode is an error of its own; the other episodes are unaffected.
    Duplicate events (a transient-local re-delivery) count once.
    """
    unique = sorted(dict.fromkeys(events), key=lambda e: e.stamp_ns)  # stable: ties keep bag order
    if not unique:
        return CutResult([EpisodeSpan(0, bag_start_ns, bag_end_ns, default_task, flags=["no_events"])], [])
    episodes: dict[int, EpisodeSpan] = {}
    order: list[int] = []
    errors: list[tuple[int, str]] = []
    open_index: int | None = None
    for event in unique:
        when = _fmt(event.stamp_ns, bag_start_ns)
        if event.type == EventType.START:
            if open_index is not None:
                episodes[open_index].stop_ns = event.stamp_ns
                episodes[open_index].flags.append("no_stop")
            if event.episode_index in episodes:
                errors.append(
                    (event.episode_index, f"second START of episode {event.episode_index} at {when}; ignored")
                )
                open_index = None
                continue
            episodes[event.episode_index] = EpisodeSpan(
                event.episode_index, event.stamp_ns, bag_end_ns, event.task or default_task
            )
            order.append(event.episode_index)
            open_index = event.episode_index
        elif event.type == EventType.STOP:
            if open_index is None or open_index != event.episode_index:
                errors.append((event.episode_index, f"STOP of episode {event.episode_index} at {when} without a START"))
                continue
            episodes[open_index].stop_ns = event.stamp_ns
            open_index = None
        else:
            span = episodes.get(event.episode_index)
            if span is None:
                name = event.type.name
                errors.append(
                    (event.episode_index, f"{name} of episode {event.episode_index} at {when} without a START")
                )
                continue
            if event.type == EventType.DISCARD:
                span.discarded = True
                if open_index == event.episode_index:
                    span.stop_ns = event.stamp_ns
                    open_index = None
            else:
                span.outcome = OUTCOMES[event.type]
    if open_index is not None:
        episodes[open_index].flags.append("no_stop")
    return CutResult([episodes[i] for i in order], errors)
