"""Real-time chunking (RTC) scheduler: when to run inference, what prefix to give it, and which
action runs on each control tick. ROS-free and clock-free, so tests drive it tick by tick.

Time base: control ticks, absolute integers (tick = floor(time_s * control_rate_hz) on the ROS
clock of the machine that runs the commands; with two machines the robot's, which chunk_node
follows through psi0_ros.control.robot_clock). A chunk's start_tick is the tick of its first
action, so a chunk that arrives late simply has its past rows dropped.

Per control tick the caller calls on_tick(tick) and gets the action to command (or a safe hold,
or nothing). When should_request(tick) says so, it takes an observation and calls
make_request(tick); the policy runs elsewhere (InferenceWorker: its own thread) and the result
goes back through deliver(). Facts taken from Psi0's RTC server
(src/psi/deploy/psi_serve_rtc-trainingtimertc.py, RealTimeChunkController):
- a new inference starts once min_execution_horizon (15) actions of the current chunk ran;
- the new chunk's first action lines up with the next tick to execute; the queued actions from
  there on are the prefix, and its first d are frozen (training-time RTC holds them);
- d = max of the last delay_window (6) measured delays in ticks, starting at initial_delay (6);
  a measured delay is the number of ticks that ran between the request and the chunk's landing.
Where the reference crashes (an assert once d reaches the trained max_delay) or repeats the
last action when a chunk runs out, this scheduler clamps d to max_delay - 1 and counts it, and
when the queue runs dry it holds the last pose with the velocity commands zeroed for hold_ticks,
then stops the command stream (the bridge's watchdog holds the robot) until a chunk lands. A
chunk requested with nothing queued (the first one, or after a dry queue: the robot stands still
until it lands) starts at its landing from row 0, so resuming does not skip rows of motion that
never happened (a jump).

Modes (the comparison of `psi0 bench rtc`). Each names how chunks are scheduled and the policy's
RTC mode it serves with: the sampler name (psi0_ros.policy.config.RTC_MODES), the one RTC vocabulary
from chunk_node's parameter through Policy.from_checkpoint(rtc_mode=...) to the sampler registry.
  rtc                RTC mode "training": prefix with d frozen actions (Psi0's served mode)
  rtc_guidance       RTC mode "guidance": the policy inpaints towards the prefix (rtc.py)
  sync               block and wait: after the execution horizon nothing runs until the next
                     chunk lands; it then starts from its first action
  naive_async        inference beside execution, no prefix; the new chunk replaces the queue on arrival
  temporal_ensemble  no prefix; overlapping predictions for a tick are averaged (ACT's exp weights)
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from psi0_ros.layout import ACTION_DIM, VELOCITY_DIMS

# Scheduler mode -> the RTC mode (sampler name, psi0_ros.policy.config.RTC_MODES) the policy serves
# it with. "training" clamps the prefix delay to the trained max_delay - 1; any mode but "none"
# passes the queued actions as a prefix; "none" never does.
SCHEDULER_MODES: dict[str, str] = {
    "rtc": "training",
    "rtc_guidance": "guidance",
    "sync": "none",
    "naive_async": "none",
    "temporal_ensemble": "none",
}


def tick_at(time_s: float, rate_hz: float) -> int:
    """The control tick in force at time_s (the shared time base)."""
    return int(math.floor(time_s * rate_hz + 1e-9))


# A control timer that wakes late (the OS did not run the process) runs the ticks it missed, at
# most this many (0.5 s: the bridge holds after that anyway), in one burst; the bridge keeps only
# the newest target, so the burst changes nothing on the robot, and every tick's command is on
# the wire for whoever checks the stream. Older ones count as skipped; callers count late ticks.
MAX_CATCH_UP_TICKS = 15


def catch_up_ticks(next_tick: int | None, now_tick: int, limit: int = MAX_CATCH_UP_TICKS) -> list[int]:
    """Ticks to run now: next_tick..now_tick, at most the last `limit` of them ([] if none is due)."""
    if next_tick is None:
        return [now_tick]
    if now_tick < next_tick:
        return []
    return list(range(max(next_tick, now_tick - limit + 1), now_tick + 1))


def tick_time(tick: int, rate_hz: float) -> float:
    """Start time of a tick [s]."""
    return tick / rate_hz


@dataclass(frozen=True)
class SchedulerConfig:
    mode: str = "rtc"
    min_execution_horizon: int = 15  # Psi0 MIN_EXEC_HORIZON: actions of a chunk that run before the next inference
    max_delay: int = 8  # the model was trained with delays 0..max_delay-1 (flow.max_delay of the checkpoint)
    delay_window: int = 6  # Psi0 DELAY_BUFFER_SIZE: d = max of this many recent measured delays [ticks]
    initial_delay: int = 6  # Psi0 D_INIT [ticks]
    hold_ticks: int = 15  # ticks of safe hold after the queue runs dry, then the stream stops
    # False: the delays are measured where the chunks run (chunk_executor_node on the robot reports
    # each chunk's landing tick, add_measured_delay), not from this queue's own ticks.
    measure_on_delivery: bool = True
    ensemble_decay: float = 0.01  # temporal_ensemble: weight exp(-decay * i), i = 0 the oldest prediction (ACT)

    def __post_init__(self) -> None:
        if self.mode not in SCHEDULER_MODES:
            raise ValueError(f"SchedulerConfig.mode must be one of {tuple(SCHEDULER_MODES)}, got {self.mode!r}")
        for name in ("min_execution_horizon", "delay_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"SchedulerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("max_delay", "initial_delay", "hold_ticks"):
            if getattr(self, name) < 0:
                raise ValueError(f"SchedulerConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.rtc_mode == "training" and self.max_delay < 1:
            raise ValueError(f"SchedulerConfig: mode {self.mode!r} needs a model trained with max_delay >= 1, got 0")

    @property
    def rtc_mode(self) -> str:
        """The policy's RTC mode (sampler name) this scheduler mode serves with."""
        return SCHEDULER_MODES[self.mode]


class DelayEstimator:
    """d = max of the last `window` measured delays [ticks] (Psi0's estimator), starting at `initial`."""

    def __init__(self, window: int = 6, initial: int = 6):
        self._delays: deque[int] = deque([initial], maxlen=window)

    def add(self, delay_ticks: int) -> None:
        self._delays.append(max(0, int(delay_ticks)))

    @property
    def estimate(self) -> int:
        return max(self._delays)

    @property
    def recent(self) -> list[int]:
        return list(self._delays)


@dataclass(frozen=True)
class InsertResult:
    accepted: bool
    reason: str  # "ok", "duplicate", "older", "late" (every row already in the past)
    dropped_past: int = 0  # rows for ticks that had already run


class ActionQueue:
    """Actions keyed by absolute control tick. A newer chunk replaces the queue from its first
    still-future tick on; duplicate or older chunk ids are ignored; past rows are dropped."""

    def __init__(self, action_dim: int = ACTION_DIM, ensemble_decay: float | None = None):
        self.action_dim = action_dim
        self.ensemble_decay = ensemble_decay  # None: replace; a number: temporal ensemble
        self._actions: dict[int, np.ndarray] = {}
        self._weights: dict[int, tuple[float, int]] = {}  # ensemble: (weight sum, predictions) per tick
        self.last_chunk_id: int | None = None

    def insert(self, chunk_id: int, start_tick: int, actions: np.ndarray, now_tick: int) -> InsertResult:
        """Queue a chunk whose row i applies at start_tick + i; now_tick is the next tick to run."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != self.action_dim or not np.isfinite(actions).all():
            raise ValueError(f"chunk {chunk_id}: actions must be finite (H, {self.action_dim}), got {actions.shape}")
        if self.last_chunk_id is not None and chunk_id <= self.last_chunk_id:
            return InsertResult(False, "duplicate" if chunk_id == self.last_chunk_id else "older")
        first = max(start_tick, now_tick)
        dropped = first - start_tick
        if dropped >= actions.shape[0]:
            self.last_chunk_id = chunk_id
            return InsertResult(False, "late", actions.shape[0])
        self.last_chunk_id = chunk_id
        for tick in [t for t in self._actions if t < now_tick]:
            self._forget(tick)
        if self.ensemble_decay is None:
            for tick in [t for t in self._actions if t >= first]:
                self._forget(tick)
        for i in range(dropped, actions.shape[0]):
            tick = start_tick + i
            if self.ensemble_decay is not None and tick in self._actions:
                total, count = self._weights[tick]
                weight = math.exp(-self.ensemble_decay * count)
                self._actions[tick] = (self._actions[tick] * total + actions[i] * weight) / (total + weight)
                self._weights[tick] = (total + weight, count + 1)
            else:
                self._actions[tick] = actions[i].copy()
                self._weights[tick] = (1.0, 1)
        return InsertResult(True, "ok", dropped)

    def _forget(self, tick: int) -> None:
        self._actions.pop(tick, None)
        self._weights.pop(tick, None)

    def pop(self, tick: int) -> np.ndarray | None:
        """The action for `tick` (None if there is none); every row up to it leaves the queue."""
        action = self._actions.get(tick)
        for t in [t for t in self._actions if t <= tick]:
            self._forget(t)
        return action

    def consecutive(self, from_tick: int, limit: int) -> np.ndarray:
        """Queued actions for from_tick, from_tick + 1, ... up to the first gap, at most limit rows."""
        rows = []
        tick = from_tick
        while tick in self._actions and len(rows) < limit:
            rows.append(self._actions[tick])
            tick += 1
        return np.array(rows, dtype=np.float64).reshape(len(rows), self.action_dim)

    def depth(self, from_tick: int) -> int:
        return sum(1 for t in self._actions if t >= from_tick)

    def clear_from(self, tick: int) -> None:
        for t in [t for t in self._actions if t >= tick]:
            self._forget(t)


@dataclass(frozen=True)
class InferenceRequest:
    request_id: int
    start_tick: int  # tick of the new chunk's first action (the next tick to run when requested)
    prefix: np.ndarray | None  # (L, 36): queued actions for ticks start_tick.. (None: no prefix)
    delay: int  # d: leading prefix rows that certainly run before the chunk lands (frozen)
    delay_clamped: bool  # the estimate reached the trained max_delay and d was clamped
    # Nothing was queued from start_tick: the robot holds still (or the stream is stopped) until
    # this chunk lands, so the observation is still its state then and the chunk starts at its
    # landing, from row 0, instead of dropping the rows of motion that never happened.
    at_rest: bool = False


@dataclass(frozen=True)
class ChunkRecord:
    """A delivered chunk, as published on /psi0/action_chunk."""

    chunk_id: int
    start_tick: int
    actions: np.ndarray  # (H, 36) physical units
    prefix_length: int
    inference_s: float
    measured_delay: int  # ticks that ran between request and landing
    insert: InsertResult
    request_tick: int = 0  # the request's start_tick (start_tick - request_tick: shift of an at-rest chunk)


@dataclass(frozen=True)
class TickOutput:
    tick: int
    action: np.ndarray | None  # None: no command this tick (the stream stops)
    holding: bool = False  # a safe hold (last pose, velocities zeroed), not a planned action


@dataclass
class SchedulerStats:
    counters: Counter = field(default_factory=Counter)  # executed, held, missed, skipped, delay_clamped, ...
    last_inference_s: float = 0.0
    last_measured_delay: int = 0


class RTCScheduler:
    """Single source of truth for the queue; every method takes the same lock (thread-safe)."""

    def __init__(self, config: SchedulerConfig, horizon: int, action_dim: int = ACTION_DIM):
        if config.min_execution_horizon > horizon:
            raise ValueError(
                f"min_execution_horizon {config.min_execution_horizon} exceeds the chunk horizon {horizon}"
            )
        self.config = config
        self.horizon = horizon
        self.queue = ActionQueue(action_dim, config.ensemble_decay if config.mode == "temporal_ensemble" else None)
        self.estimator = DelayEstimator(config.delay_window, config.initial_delay)
        self.stats = SchedulerStats()
        self._lock = threading.RLock()
        self._next_tick: int | None = None  # the next tick to execute
        self._chunk_start: int | None = None  # start_tick of the chunk now running
        self._last_action: np.ndarray | None = None
        self._held = 0
        self._in_flight: InferenceRequest | None = None
        self._next_id = 0
        self.executed: deque[tuple[int, np.ndarray, bool]] = deque(maxlen=4096)  # (tick, action, holding)

    # --- control tick ------------------------------------------------------------------------------
    def on_tick(self, tick: int) -> TickOutput:
        """The command for `tick`. Ticks the caller skipped (a late timer) count as skipped."""
        with self._lock:
            if self._next_tick is not None and tick < self._next_tick:
                raise ValueError(f"tick {tick} already ran (next is {self._next_tick})")
            if self._next_tick is not None and tick > self._next_tick:
                self.stats.counters["skipped"] += tick - self._next_tick
            self._next_tick = tick + 1
            action = self.queue.pop(tick)
            if action is not None:
                self._held = 0
                self._last_action = action
                self.stats.counters["executed"] += 1
                self.executed.append((tick, action, False))
                return TickOutput(tick, action)
            self.stats.counters["missed"] += 1
            if self._last_action is not None and self._held < self.config.hold_ticks:
                self._held += 1
                held = self._last_action.copy()
                held[list(VELOCITY_DIMS)] = 0.0
                self._last_action = held
                self.stats.counters["held"] += 1
                self.executed.append((tick, held, True))
                return TickOutput(tick, held, holding=True)
            self.stats.counters["stopped"] += 1
            return TickOutput(tick, None)

    @property
    def next_tick(self) -> int | None:
        return self._next_tick

    @property
    def last_action(self) -> np.ndarray | None:
        """The last commanded action (planned or held): the source of the state's torso values."""
        return None if self._last_action is None else self._last_action.copy()

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    def depth(self) -> int:
        with self._lock:
            return 0 if self._next_tick is None else self.queue.depth(self._next_tick)

    # --- inference -----------------------------------------------------------------------------
    def should_request(self, tick: int) -> bool:
        """Whether an inference should start now (tick = the next tick to run)."""
        with self._lock:
            if self._in_flight is not None:
                return False
            if self._chunk_start is None or self.queue.depth(tick) == 0:
                return True  # nothing (left) to run: the first chunk, or recovery after a dry queue
            return tick - self._chunk_start >= self.config.min_execution_horizon

    def make_request(self, tick: int) -> InferenceRequest:
        """Start an inference whose chunk begins at `tick` (the next tick to run)."""
        with self._lock:
            if self._in_flight is not None:
                raise RuntimeError("an inference is already in flight")
            prefix, delay, clamped = None, 0, False
            mode = self.config.mode
            at_rest = self._chunk_start is None or self.queue.depth(tick) == 0
            if mode == "sync" and self._chunk_start is not None:
                self.queue.clear_from(tick)  # block and wait: nothing runs until the chunk lands
            if self.config.rtc_mode != "none":
                queued = self.queue.consecutive(tick, self.horizon)
                if len(queued):
                    estimate = self.estimator.estimate
                    limit = len(queued)
                    if self.config.rtc_mode == "training":
                        limit = min(limit, self.config.max_delay - 1)
                        clamped = estimate > self.config.max_delay - 1
                    delay = min(estimate, limit)
                    prefix = queued
                    if clamped:
                        self.stats.counters["delay_clamped"] += 1
            request = InferenceRequest(self._next_id, tick, prefix, delay, clamped, at_rest and mode != "sync")
            self._next_id += 1
            self._in_flight = request
            return request

    def cancel(self, request: InferenceRequest, reason: str) -> None:
        """The inference failed or was refused: nothing lands; the next request may start."""
        with self._lock:
            if self._in_flight is request:
                self._in_flight = None
            self.stats.counters[f"inference_failed_{reason}"] += 1

    def deliver(self, request: InferenceRequest, actions: np.ndarray, inference_s: float) -> ChunkRecord:
        """The chunk for `request` lands now (before the next tick runs)."""
        with self._lock:
            if self._in_flight is not request:
                raise RuntimeError(f"request {request.request_id} is not the one in flight")
            self._in_flight = None
            land = self._next_tick if self._next_tick is not None else request.start_tick
            measured = land - request.start_tick
            if self.config.measure_on_delivery:
                self.estimator.add(measured)
            self.stats.last_inference_s = inference_s
            self.stats.last_measured_delay = measured
            start = land if self.config.mode == "sync" else request.start_tick
            if request.at_rest:
                # Started at its landing: here (one machine) the landing tick is known; with two
                # machines the chunk lands on the executor later, predicted by the delay estimate
                # (landings measured there), at most half a chunk ahead.
                ahead = min(self.estimator.estimate, self.horizon // 2)
                start = max(land, request.start_tick + ahead) if not self.config.measure_on_delivery else land
            if request.prefix is not None and measured > request.delay:
                # Rows delay..measured-1 of the new chunk were meant to run but the old queue ran instead.
                self.stats.counters["delay_overrun"] += 1
            result = self.queue.insert(request.request_id, start, actions, land)
            if result.accepted:
                self._chunk_start = start
                self.stats.counters["chunks"] += 1
            else:
                self.stats.counters[f"chunk_{result.reason}"] += 1
            self.stats.counters["dropped_past_rows"] += result.dropped_past
            return ChunkRecord(
                request.request_id,
                start,
                np.asarray(actions),
                request.delay,
                inference_s,
                measured,
                result,
                request.start_tick,
            )

    def add_measured_delay(self, delay_ticks: int) -> None:
        """A delay measured where the chunk ran: its landing tick there minus its start_tick."""
        with self._lock:
            self.estimator.add(delay_ticks)
            self.stats.last_measured_delay = int(delay_ticks)

    def reserve_ids(self, first: int) -> None:
        """Number the next requests from `first` on (at least): a chunk id a restarted chunk_node
        gives must be newer than the last one the executor accepted, or it would be ignored."""
        with self._lock:
            self._next_id = max(self._next_id, int(first))

    def replace_queue(self, chunk_id: int | None, start_tick: int, actions: np.ndarray | None, from_tick: int) -> None:
        """Make the queue what the executor holds: rows of chunk `chunk_id` (starting at start_tick)
        for from_tick on, nothing else (None: an empty queue, the next request has no prefix)."""
        with self._lock:
            self.queue.clear_from(-(1 << 62))
            self.queue.last_chunk_id = None
            self._chunk_start = None
            if chunk_id is None or actions is None:
                return
            self.queue.insert(chunk_id, start_tick, actions, from_tick)
            self._chunk_start = start_tick

    def accept_chunk(self, chunk_id: int, start_tick: int, actions: np.ndarray) -> InsertResult:
        """A chunk computed elsewhere (chunk_node on another machine): queue it, nothing in flight."""
        with self._lock:
            land = self._next_tick if self._next_tick is not None else start_tick
            result = self.queue.insert(chunk_id, start_tick, actions, land)
            if result.accepted:
                self._chunk_start = start_tick
                self.stats.counters["chunks"] += 1
            else:
                self.stats.counters[f"chunk_{result.reason}"] += 1
            self.stats.counters["dropped_past_rows"] += result.dropped_past
            return result


class InferenceWorker:
    """Runs inference on its own thread (never on the control tick's thread).

    infer(request) -> (H, 36) actions may raise; the error is counted and reported, the
    scheduler's queue runs on. on_chunk(record) is called after each delivery (publishing).
    """

    def __init__(
        self,
        scheduler: RTCScheduler,
        infer: Callable[[InferenceRequest], np.ndarray],
        on_chunk: Callable[[ChunkRecord], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] | None = None,
        niceness: int = 0,
    ):
        import time

        self.scheduler = scheduler
        self._infer = infer
        self._on_chunk = on_chunk
        self._on_error = on_error
        self._clock = clock or time.perf_counter
        self._pending: InferenceRequest | None = None
        self._wake = threading.Condition()
        self._stop = False
        self.latencies_s: deque[float] = deque(maxlen=200)
        self.last_error: BaseException | None = None
        self.niceness = niceness  # > 0: this thread yields the CPU to the control tick (Linux, per thread)
        self._thread = threading.Thread(target=self._loop, name="psi0-inference", daemon=True)
        self._thread.start()

    def submit(self, request: InferenceRequest) -> None:
        with self._wake:
            self._pending = request
            self._wake.notify()

    def _loop(self) -> None:
        if self.niceness > 0:
            import os

            try:  # lowering one's own priority needs no privilege; Linux applies it to this thread only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)
            except (AttributeError, OSError):
                pass
        while True:
            with self._wake:
                while self._pending is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                request, self._pending = self._pending, None
            start = self._clock()
            try:
                actions = self._infer(request)
            except Exception as err:  # reported; the queue runs on and the next request may retry
                self.last_error = err
                self.scheduler.cancel(request, type(err).__name__)
                if self._on_error is not None:
                    self._on_error(err)
                continue
            elapsed = self._clock() - start
            self.latencies_s.append(elapsed)
            record = self.scheduler.deliver(request, actions, elapsed)
            if self._on_chunk is not None:
                self._on_chunk(record)

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=5.0)
