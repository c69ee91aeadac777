"""The bridge control loop: newest targets -> safety layer -> backend, at a fixed rate.

Inputs (submit_*, set_estop) may come from any thread (ROS callbacks); the loop runs on its own
thread and takes the same lock for each tick, so a tick sees a consistent set of targets. Each
tick: read the robot state; SafetyLayer.update() decides the mode and the command; in "command"
lower-body mode the backend's follower then moves the base under the command the layer releases
(none unless ACTIVE: the base freezes with the joints) and its leg/waist targets go back to the
layer for the next tick; write the command; advance the backend (a simulation steps). Ticks are
paced against time.monotonic(), rate_hz * pace a wall second (pace 1 but for a simulation on its
own clock); how late each tick starts is recorded (jitter), and a loop that falls more than
max_lag_s behind drops its schedule instead of bursting to catch up (counted as overruns).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psi0_ros.control.command import JointCommand
from psi0_ros.control.safety import SOURCE_LOWER, SOURCE_UPPER, SafetyConfig, SafetyLayer, SafetyStatus
from psi0_ros.control.sequence import SequenceGaps
from psi0_ros.robot.backend import RobotBackend, RobotState

LOWER_BODY_INPUTS = ("targets", "command")
GIL_SWITCH_INTERVAL_S = 0.001


@dataclass(frozen=True)
class BridgeConfig:
    safety: SafetyConfig
    lower_body_input: str = "targets"  # "targets": /psi0/lower_body_targets; "command": the backend follows
    max_lag_s: float = 0.1  # s behind schedule before the loop drops its schedule
    # ticks per wall second = rate_hz * pace. 1 for a robot; a simulation that publishes its own
    # clock (every node on /clock) may run faster than real time (robot_bridge_node's sim.speed).
    pace: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pace) and self.pace > 0.0):
            raise ValueError(f"bridge pace must be a finite number > 0, got {self.pace}")
        if self.lower_body_input not in LOWER_BODY_INPUTS:
            raise ValueError(f"unknown lower_body_input {self.lower_body_input!r}; expected one of {LOWER_BODY_INPUTS}")

    @property
    def rate_hz(self) -> float:
        return self.safety.control_rate_hz


@dataclass(frozen=True)
class LoopTiming:
    ticks: int
    overruns: int
    wall_s: float  # since the loop started
    rate_hz: float  # achieved ticks per second
    jitter_p50_ms: float  # how late ticks started, over the last window
    jitter_p99_ms: float
    jitter_max_ms: float


@dataclass(frozen=True)
class BridgeSnapshot:
    state: RobotState | None
    command: JointCommand | None
    safety: SafetyStatus
    timing: LoopTiming
    backend: dict[str, float]


class Bridge:
    def __init__(self, backend: RobotBackend, config: BridgeConfig, clock: Callable[[], float] = time.monotonic):
        self.backend = backend
        self.config = config
        self.clock = clock
        self.safety = SafetyLayer(config.safety)
        self._lock = threading.Lock()
        self._follower = backend.lower_body_follower() if config.lower_body_input == "command" else None
        if config.lower_body_input == "command" and self._follower is None:
            raise ValueError(
                f"lower_body_input='command' needs a backend that follows lower-body commands; "
                f"the {backend.name!r} backend does not (run lower_body_node and use 'targets')"
            )
        self._sequence_gaps = SequenceGaps()
        self._state: RobotState | None = None
        self._command: JointCommand | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lateness: deque[float] = deque(maxlen=5000)
        self._ticks = 0
        self._overruns = 0
        self._started_at: float | None = None
        self.error: BaseException | None = None
        # Called on the loop thread after every tick with the tick count (robot_bridge_node
        # publishes /clock from it); it must be quick and must not take the bridge's lock.
        self.on_tick: Callable[[int], None] | None = None

    # --- inputs (any thread) --------------------------------------------------------------------
    def submit_upper(
        self,
        names: Sequence[str],
        positions: Sequence[float],
        velocities: Sequence[float] = (),
        efforts: Sequence[float] = (),
    ) -> bool:
        """A JointState's fields for arm/hand joints; the whole message is dropped if any is bad."""
        with self._lock:
            return self.safety.submit(SOURCE_UPPER, names, positions, self.clock(), velocities, efforts)

    def submit_lower_targets(
        self,
        names: Sequence[str],
        positions: Sequence[float],
        velocities: Sequence[float] = (),
        efforts: Sequence[float] = (),
    ) -> bool:
        with self._lock:
            return self.safety.submit(SOURCE_LOWER, names, positions, self.clock(), velocities, efforts)

    def submit_lower_command(self, command: Sequence[float]) -> bool:
        """An 8-D lower-body command (LOWER_BODY_COMMAND_NAMES order); used in "command" mode."""
        with self._lock:
            return self.safety.submit_lower_body_command(command, self.clock()) is not None

    def note_sequence(self, topic: str, publisher: object, sequence: int | None) -> None:
        """Record a command's publisher sequence number (DDS, per publisher); gaps are counted as
        commands dropped on the way (commands_dropped on /diagnostics). None: not available."""
        if sequence is None or sequence <= 0:
            return
        with self._lock:
            self.safety.count_dropped(self._sequence_gaps.observe((topic, publisher), int(sequence)))

    def set_estop(self, engaged: bool, publishers: int | None = None) -> None:
        """An estop sample; `publishers`: the matched estop publisher count read when it arrived."""
        with self._lock:
            self.safety.set_estop(engaged, publishers)

    def set_estop_publishers(self, matched: int) -> None:
        """The number of estop publishers matched now (SafetyLayer.set_estop_publishers)."""
        with self._lock:
            self.safety.set_estop_publishers(matched)

    def reset(self) -> None:
        with self._lock:
            self.safety.reset()

    # --- the loop -------------------------------------------------------------------------------
    def tick(self) -> None:
        dt = 1.0 / self.config.rate_hz
        state = self.backend.read_state()
        with self._lock:
            now = self.clock()
            if state is None:  # a real robot that has not reported yet: send nothing
                self._state = None
                return
            command = self.safety.update(now, state.q, state.dq)
            if self._follower is not None:  # after update(): the base moves only in the mode just decided
                self.safety.set_follower_targets(self._follower.step(self.safety.lower_body_command(), dt))
            self._state, self._command = state, command
        self.backend.write_command(command)
        self.backend.advance(dt)

    def run(self, duration_s: float | None = None) -> None:
        """Tick at the configured rate until stop() (or for duration_s of wall time)."""
        period = 1.0 / (self.config.rate_hz * self.config.pace)
        start = time.monotonic()
        self._started_at = start
        deadline = None if duration_s is None else start + duration_s
        next_tick = start
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self._lateness.append(time.monotonic() - next_tick)
            self.tick()
            self._ticks += 1
            if self.on_tick is not None:
                self.on_tick(self._ticks)
            next_tick += period
            now = time.monotonic()
            if now - next_tick > self.config.max_lag_s:
                self._overruns += 1
                next_tick = now
            while not self._stop.is_set() and (delay := next_tick - time.monotonic()) > 0:
                self._stop.wait(delay)  # may wake early; never start a tick ahead of schedule

    def start(self) -> None:
        """Start the backend and the loop thread.

        Also lowers the interpreter's GIL switch interval to GIL_SWITCH_INTERVAL_S (process-wide):
        with the default 5 ms, the loop thread could wait that long for the GIL behind a ROS
        callback or the camera thread; `psi0 bench sim` measured p99 jitter of 45-57 ms with the
        default against 8-15 ms with 1 ms on a loaded 2-core machine.
        """
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.backend.start()
        self._stop.clear()

        def loop() -> None:
            try:
                self.run()
            except BaseException as err:  # surfaced through .error / snapshot(); the robot stops being commanded
                self.error = err
                raise

        self._thread = threading.Thread(target=loop, name="psi0-bridge-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        self.backend.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- reporting ------------------------------------------------------------------------------
    def timing(self) -> LoopTiming:
        ticks, overruns = self._ticks, self._overruns  # read together with the wall time
        wall = 0.0 if self._started_at is None else time.monotonic() - self._started_at
        lateness = np.array(self._lateness, dtype=np.float64) * 1000.0
        if lateness.size == 0:
            p50 = p99 = worst = 0.0
        else:
            p50, p99 = (float(v) for v in np.percentile(lateness, [50, 99]))
            worst = float(lateness.max())
        return LoopTiming(ticks, overruns, wall, ticks / wall if wall > 0 else 0.0, p50, p99, worst)

    def latest_state(self) -> RobotState | None:
        """The state the last tick read (None before the first): what /joint_states publishes at
        100 Hz, without snapshot()'s safety status and loop-timing percentiles."""
        with self._lock:
            return self._state

    def snapshot(self) -> BridgeSnapshot:
        with self._lock:
            status = self.safety.status(self.clock())
            state, command = self._state, self._command
        return BridgeSnapshot(state, command, status, self.timing(), self.backend.stats())
