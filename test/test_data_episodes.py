"""Episode events: the recorder's state machine and cutting a bag's events into episodes."""

from __future__ import annotations

import pytest

from psi0_ros.data.episodes import (
    EpisodeRecorder,
    EpisodeStateError,
    Event,
    EventType,
    cut_episodes,
)
from psi0_ros.data.typestore import make_typestore

S = 1_000_000_000  # ns


def test_event_types_match_the_message_constants():
    from psi0_ros.msg import EpisodeEvent

    store_type = make_typestore().types["psi0_ros/msg/EpisodeEvent"]
    for kind in EventType:
        assert getattr(EpisodeEvent, kind.name) == kind.value
        assert getattr(store_type, kind.name) == kind.value


def test_recorder_start_stop_discard_outcome():
    rec = EpisodeRecorder(first_index=3, task="fold")
    start = rec.start(10)
    assert (start.type, start.episode_index, start.task) == (EventType.START, 3, "fold")
    with pytest.raises(EpisodeStateError, match="still recording"):
        rec.start(11)
    rec.set_task("stack")  # applies to the next episode only
    stop = rec.stop(12)
    assert (stop.type, stop.episode_index, stop.task) == (EventType.STOP, 3, "fold")
    assert rec.mark_outcome(13, success=True).type == EventType.SUCCESS
    with pytest.raises(EpisodeStateError, match="no episode is recording"):
        rec.stop(14)
    assert rec.discard(15).episode_index == 3  # the last stopped one
    with pytest.raises(EpisodeStateError, match="no episode to discard"):
        rec.discard(16)
    second = rec.start(17)
    assert (second.episode_index, second.task) == (4, "stack")
    assert rec.discard(18).episode_index == 4 and not rec.recording
    with pytest.raises(EpisodeStateError):
        rec.mark_outcome(19, success=False)  # nothing open, last closed was discarded


def test_no_events_gives_one_episode_spanning_the_bag():
    cut = cut_episodes([], 5 * S, 9 * S, default_task="wipe")
    assert len(cut.episodes) == 1 and not cut.errors
    span = cut.episodes[0]
    assert (span.start_ns, span.stop_ns, span.task, span.index) == (5 * S, 9 * S, "wipe", 0)


def test_cutting_rules():
    events = [
        Event(EventType.START, 1 * S, 0, "a"),
        Event(EventType.STOP, 2 * S, 0),
        Event(EventType.SUCCESS, 2 * S + 1, 0),
        Event(EventType.START, 3 * S, 1, "b"),
        Event(EventType.DISCARD, 4 * S, 1),  # discards the open episode and ends it
        Event(EventType.STOP, 5 * S, 7),  # stray STOP
        Event(EventType.START, 6 * S, 2, "c"),
        Event(EventType.START, 7 * S, 3, "d"),  # closes 2 without a STOP
        Event(EventType.FAILURE, 8 * S, 3),
        Event(EventType.START, 6 * S, 2, "c"),  # a re-delivered duplicate
    ]
    cut = cut_episodes(events, 0, 10 * S)
    spans = {s.index: s for s in cut.episodes}
    assert sorted(spans) == [0, 1, 2, 3]
    assert (spans[0].start_ns, spans[0].stop_ns, spans[0].outcome, spans[0].discarded) == (S, 2 * S, "success", False)
    assert spans[1].discarded and spans[1].stop_ns == 4 * S
    assert spans[2].stop_ns == 7 * S and "no_stop" in spans[2].flags
    assert spans[3].stop_ns == 10 * S and spans[3].outcome == "failure" and "no_stop" in spans[3].flags
    assert cut.errors == [(7, "STOP of episode 7 at t=5.000 s without a START")]


def test_discard_of_a_closed_episode_and_unknown_outcome():
    events = [
        Event(EventType.START, 1 * S, 0),
        Event(EventType.STOP, 2 * S, 0),
        Event(EventType.DISCARD, 3 * S, 0),
        Event(EventType.SUCCESS, 4 * S, 9),
    ]
    cut = cut_episodes(events, 0, 5 * S)
    assert cut.episodes[0].discarded
    assert len(cut.errors) == 1 and "SUCCESS of episode 9" in cut.errors[0][1]


def test_a_double_discard_never_reaches_the_previous_episode():
    rec = EpisodeRecorder()
    rec.start(1)
    rec.stop(2)  # episode 0 is good
    rec.start(3)
    assert rec.discard(4).episode_index == 1
    with pytest.raises(EpisodeStateError, match="no episode to discard"):
        rec.discard(5)  # the operator pressed twice: episode 0 stays
    with pytest.raises(EpisodeStateError, match="no episode to mark"):
        rec.mark_outcome(6, success=True)
