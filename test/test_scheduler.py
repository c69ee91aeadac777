"""RTC scheduler (psi0_ros.control.scheduler) in virtual time: no threads, no wall clock.

The "policy" here is a function of the request that marks every row with its chunk id and row
(so the test can tell which chunk ran each tick) and keeps the frozen prefix, as Policy.infer
does; one test runs the real tiny Policy instead.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from psi0_ros.bench.rtc import run_mode, simulate
from psi0_ros.control.scheduler import (
    VELOCITY_DIMS,
    ActionQueue,
    DelayEstimator,
    InferenceRequest,
    InferenceWorker,
    RTCScheduler,
    SchedulerConfig,
    tick_at,
)

H = 30


def marked_chunk(request: InferenceRequest, tick: int = 0) -> np.ndarray:
    """Row i = (chunk id, row i, tick of the row, ...); the first d rows are the prefix's."""
    actions = np.zeros((H, 36))
    actions[:, 0] = request.request_id
    actions[:, 1] = np.arange(H)
    actions[:, 2] = request.start_tick + np.arange(H)
    actions[:, 32] = 0.3  # vx: walking
    if request.prefix is not None and request.delay:
        actions[: request.delay] = request.prefix[: request.delay]
    return actions


def run(mode: str, latency: int | list[int], ticks: int = 300, **config: object):
    scheduler = RTCScheduler(SchedulerConfig(mode=mode, **config), horizon=H)
    ran: dict[int, np.ndarray | None] = {}

    def latency_of(request_id: int) -> int:
        return latency if isinstance(latency, int) else latency[min(request_id, len(latency) - 1)]

    delivered = simulate(
        scheduler, marked_chunk, latency_of, ticks, on_tick=lambda o: ran.__setitem__(o.tick, o.action)
    )
    return scheduler, ran, delivered


def test_tick_time_base_is_absolute():
    assert tick_at(10.0, 30.0) == 300
    assert tick_at(10.0 + 1 / 30.0, 30.0) == 301
    assert tick_at(10.0 + 0.99 / 30.0, 30.0) == 300


def test_delay_estimator_is_max_of_last_six_starting_at_six():
    estimator = DelayEstimator(window=6, initial=6)
    assert estimator.estimate == 6
    for d in (2, 3, 2, 2, 2):
        estimator.add(d)
    assert estimator.estimate == 6  # the initial 6 is still among the last six
    estimator.add(1)
    assert estimator.estimate == 3
    estimator.add(9)
    assert estimator.estimate == 9


@pytest.mark.parametrize("latency", [0, 3, 6, 10, 15])
def test_rtc_no_missed_ticks_up_to_the_execution_horizon_and_prefix_is_what_ran(latency):
    scheduler, ran, delivered = run("rtc", latency)
    first = min(t for t, a in ran.items() if a is not None)
    assert all(ran[t] is not None for t in range(first, 300)), "a tick without a command"
    assert scheduler.stats.counters["held"] == 0
    checked = 0
    for item in delivered:
        record = item["record"]
        for i in range(record.prefix_length):
            np.testing.assert_array_equal(record.actions[i], ran[record.start_tick + i])
            checked += 1
        # After landing, the ticks run the new chunk's rows (within the frozen prefix they are equal).
        if record.insert.accepted and item["land"] < 300:
            row = item["land"] - record.start_tick
            np.testing.assert_array_equal(ran[item["land"]], record.actions[row])
    assert len(delivered) >= 300 // 30
    if latency > 0:
        assert checked > 0
    # Inference starts only after 15 actions of the running chunk ran.
    starts = [item["request"].start_tick for item in delivered]
    assert all(b - a >= 15 for a, b in zip(starts[1:], starts[2:], strict=False))


def test_rtc_delay_follows_measured_latency():
    scheduler, _, delivered = run("rtc", 3)
    delays = [item["request"].delay for item in delivered]
    assert delays[1] == 6  # initial estimate
    assert delays[-1] == 3  # max of the last six measured delays, all 3
    assert scheduler.estimator.recent[-1] == 3


def test_rtc_beyond_trained_max_delay_clamps_holds_reports_and_recovers():
    # 12-tick latency (beyond max_delay 8), then 25 ticks (queue runs dry), then back to 2.
    latencies = [2, 12, 12, 12, 25, 25] + [2] * 40
    scheduler, ran, delivered = run("rtc", latencies, ticks=600, hold_ticks=5)
    counters = scheduler.stats.counters
    assert counters["delay_clamped"] > 0
    assert all(item["request"].delay <= 7 for item in delivered)
    assert counters["held"] > 0 and counters["stopped"] > 0
    # A hold keeps the last pose with the velocities zeroed, then the stream stops.
    held = [a for tick, a, holding in scheduler.executed if holding]
    assert all((a[list(VELOCITY_DIMS)] == 0).all() for a in held)
    assert any(a is None for a in ran.values())
    # Recovery: the last 200 ticks all run planned actions, and d is back to the measured 2.
    assert all(ran[t] is not None and ran[t][32] == 0.3 for t in range(400, 600))
    assert delivered[-1]["request"].delay == 2
    clamped_before = counters["delay_clamped"]
    assert scheduler.estimator.estimate == 2 and clamped_before == counters["delay_clamped"]


def test_sync_misses_ticks_and_naive_async_does_not():
    sync, sync_ran, _ = run("sync", 6)
    naive, naive_ran, _ = run("naive_async", 6)
    assert sync.stats.counters["missed"] > 6 * 5
    first = min(t for t, a in naive_ran.items() if a is not None)
    assert all(naive_ran[t] is not None for t in range(first, 300))
    # naive_async never passes a prefix; the new chunk replaces the queue on arrival.
    assert naive.stats.counters["delay_clamped"] == 0


def test_queue_late_duplicate_older_and_lost_chunks():
    queue = ActionQueue()
    chunk = np.tile(np.arange(10.0)[:, None], (1, 36))
    assert queue.insert(1, 100, chunk, now_tick=100).accepted
    late = queue.insert(2, 100, chunk + 100, now_tick=104)  # lands 4 ticks late
    assert late.accepted and late.dropped_past == 4
    assert queue.pop(103) is None  # the past rows never run
    np.testing.assert_array_equal(queue.pop(104), chunk[4] + 100)
    assert queue.insert(2, 105, chunk, 105).reason == "duplicate"
    assert queue.insert(1, 105, chunk, 105).reason == "older"
    assert queue.insert(3, 50, chunk, 105).reason == "late"
    # A lost chunk: the queue runs on to its end, then there is nothing.
    assert [queue.pop(t) is not None for t in range(105, 112)] == [True] * 5 + [False] * 2


def test_scheduler_accepts_remote_chunks_and_stops_when_they_are_lost():
    scheduler = RTCScheduler(SchedulerConfig(hold_ticks=3, min_execution_horizon=5), horizon=10)
    chunk = np.zeros((10, 36))
    chunk[:, 32] = 0.2
    scheduler.on_tick(99)
    assert scheduler.accept_chunk(0, 100, chunk).accepted
    assert not scheduler.accept_chunk(0, 100, chunk).accepted
    outputs = [scheduler.on_tick(t) for t in range(100, 116)]
    assert [o.action is not None for o in outputs] == [True] * 13 + [False] * 3
    assert [o.holding for o in outputs[10:13]] == [True] * 3
    assert scheduler.stats.counters["chunk_duplicate"] == 1


def test_temporal_ensemble_averages_overlapping_predictions():
    queue = ActionQueue(ensemble_decay=0.0)
    queue.insert(0, 0, np.zeros((4, 36)), 0)
    queue.insert(1, 2, np.ones((4, 36)), 2)
    np.testing.assert_allclose(queue.pop(2), 0.5)
    np.testing.assert_allclose(queue.pop(4), 1.0)


def test_bench_rows_rtc_versus_naive_with_the_tiny_policy():
    rtc = run_mode("rtc_guidance", 200, ticks=60)
    sync = run_mode("sync", 200, ticks=60)
    assert rtc["missed_ticks"] == 0
    assert sync["missed_ticks"] > 0
    for row in (rtc, sync):
        assert set(row) >= {"mode", "latency_ms", "missed_ticks", "max_junction_jump", "median_step"}


def test_worker_runs_inference_off_the_tick_thread():
    scheduler = RTCScheduler(SchedulerConfig(), horizon=H)
    threads, landed = [], threading.Event()

    base = os.getpriority(os.PRIO_PROCESS, 0)
    priorities = []

    def infer(request):
        threads.append(threading.current_thread().name)
        priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return marked_chunk(request)

    worker = InferenceWorker(scheduler, infer, on_chunk=lambda record: landed.set(), niceness=5)
    try:
        scheduler.on_tick(0)
        worker.submit(scheduler.make_request(1))
        assert landed.wait(10.0)
        assert threads == ["psi0-inference"]
        assert priorities == [min(19, base + 5)]  # the inference thread yields to the control tick
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # ... and only that thread
        assert scheduler.on_tick(1).action is not None
    finally:
        worker.stop()
