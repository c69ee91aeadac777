"""The robot's control ticks seen from another machine (chunk_node on the GPU box). ROS-free.

chunk_executor_node reports its state every control tick, stamped on the robot's clock. Each
report that arrives gives one sample of offset = local receipt time - robot stamp, which is the
clock offset between the machines plus the report's one-way delay. The smallest offset of the
last `window_s` seconds is the tightest such bound, so

    robot time ~= local time - min(offset)

is the robot's clock as of the freshest report, late by about the fastest one-way delay. Only
differences of the local clock enter (a monotonic clock), so the two machines' clocks never need
to agree: an offset of seconds, or an NTP step on the policy machine, changes nothing. The delay
that this estimate and the chunk's trip leave out is measured where the chunk runs (the
executor's chunk_landed_tick) and covered by the RTC delay estimate.
"""

from __future__ import annotations

import math
from collections import deque


class RobotClock:
    def __init__(self, rate_hz: float, window_s: float = 2.0, timeout_s: float = 0.5) -> None:
        if rate_hz <= 0 or window_s <= 0 or timeout_s <= 0:
            raise ValueError(
                f"RobotClock: rate_hz, window_s, timeout_s must be > 0, got {rate_hz}, {window_s}, {timeout_s}"
            )
        self.rate_hz = rate_hz
        self.window_s = window_s
        self.timeout_s = timeout_s
        self._samples: deque[tuple[float, float]] = deque()  # (local receipt s, offset s)
        self._last_local: float | None = None

    def add(self, robot_stamp_s: float, local_s: float) -> None:
        """One report stamped robot_stamp_s (robot clock) received at local_s (local monotonic clock)."""
        offset = local_s - robot_stamp_s
        while self._samples and self._samples[0][0] < local_s - self.window_s:
            self._samples.popleft()
        while self._samples and self._samples[-1][1] >= offset:  # a later, smaller offset supersedes
            self._samples.pop()
        self._samples.append((local_s, offset))
        self._last_local = local_s

    def reset(self) -> None:
        self._samples.clear()
        self._last_local = None

    def fresh(self, local_s: float) -> bool:
        """A report arrived within timeout_s."""
        return self._last_local is not None and local_s - self._last_local <= self.timeout_s

    def robot_time(self, local_s: float) -> float | None:
        """The robot's ROS time [s] at local_s (None before the first report)."""
        if not self._samples:
            return None
        return local_s - self._samples[0][1]

    def tick(self, local_s: float) -> int | None:
        """The robot's control tick in force at local_s (None before the first report)."""
        robot = self.robot_time(local_s)
        return None if robot is None else int(math.floor(robot * self.rate_hz + 1e-9))
