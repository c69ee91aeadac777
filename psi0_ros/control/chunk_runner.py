"""What chunk_node does besides ROS wiring: build its observation from the newest inputs, check
them, and wrap inference (timing, injected test delays). The policy itself comes from
Policy.from_checkpoint (the one factory) and the state from psi0_ros.layout.deploy_state.

ROS-free: the node hands in plain arrays and gets arrays back.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psi0_ros.data.streams import joint_columns
from psi0_ros.layout import NUM_JOINTS

LATENCY_POLL_S = 0.002  # s of wall time between looks at the clock while an injected latency passes
LATENCY_WAIT_LIMIT_S = 30.0  # s of wall time, at least, before a stopped clock ends the wait


def joint_positions(names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
    """A JointState's positions as (43,) in ALL_JOINTS order; joints it lacks are NaN."""
    result = np.full(NUM_JOINTS, np.nan, dtype=np.float64)
    src, dst = joint_columns(names)
    values = np.asarray(positions, dtype=np.float64)
    if values.shape[0] != len(names):
        raise ValueError(f"joint state has {len(names)} names but {values.shape[0]} positions")
    result[dst] = values[src]
    return result


def check_state(state: np.ndarray) -> str | None:
    """Why a state must not be inferred on (None: fine)."""
    if not np.isfinite(state).all():
        return "joint state has NaN/inf or lacks a joint the policy needs"
    return None


class DelaySchedule:
    """Delays added to inference i: delays_s[min(i, len - 1)] seconds of wall time (a test/bench
    hook), then latency_s seconds on `clock` (an injected inference latency for the ablations of
    the scheduler modes). `clock` is the node's ROS clock: under use_sim_time the latency passes in
    sim time, as the scheduler counts its ticks, however fast the sim runs; None: wall time. A
    clock that stops (a paused sim) is waited on for at most LATENCY_WAIT_LIMIT_S of wall time."""

    def __init__(self, delays_s: Sequence[float], latency_s: float = 0.0, clock: Callable[[], float] | None = None):
        if not latency_s >= 0.0:
            raise ValueError(f"injected inference latency must be >= 0 s, got {latency_s!r}")
        self.delays_s = [float(v) for v in delays_s]
        self.latency_s = float(latency_s)
        self.clock = clock
        self.calls = 0

    def _wait_latency(self) -> None:
        if self.clock is None:
            time.sleep(self.latency_s)
            return
        end = self.clock() + self.latency_s
        give_up = time.monotonic() + max(LATENCY_WAIT_LIMIT_S, 10.0 * self.latency_s)
        while self.clock() < end and time.monotonic() < give_up:
            time.sleep(LATENCY_POLL_S)

    def wrap(self, infer: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def delayed(*args: object, **kwargs: object) -> np.ndarray:
            if self.delays_s:
                delay = self.delays_s[min(self.calls, len(self.delays_s) - 1)]
                self.calls += 1
                if delay > 0:
                    time.sleep(delay)
            if self.latency_s > 0:
                self._wait_latency()
            return infer(*args, **kwargs)

        return delayed


@dataclass
class RateCounter:
    """Events per second over a sliding window of wall time."""

    window_s: float = 5.0

    def __post_init__(self) -> None:
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s


def percentiles_ms(samples_s: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) in ms; NaN when there are no samples."""
    if not samples_s:
        return math.nan, math.nan
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
