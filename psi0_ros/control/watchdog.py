"""Command watchdog: a stream that stops must not leave the robot following its last target.

No fresh command for hold_after_s -> HOLD (freeze the last safe pose); for damp_after_s -> DAMP.
Before the first command ever arrives the stream is WAITING (nothing to time out).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WatchdogState(enum.Enum):
    WAITING = "waiting"  # no command received yet
    FRESH = "fresh"
    HOLD = "hold"
    DAMP = "damp"


@dataclass
class Watchdog:
    hold_after_s: float
    damp_after_s: float
    last_fresh: float | None = None  # monotonic seconds of the newest valid command

    def __post_init__(self) -> None:
        if not 0.0 < self.hold_after_s < self.damp_after_s:
            raise ValueError(
                f"watchdog needs 0 < hold_after_s < damp_after_s, got {self.hold_after_s} and {self.damp_after_s}"
            )

    def feed(self, now: float) -> None:
        if self.last_fresh is None or now > self.last_fresh:
            self.last_fresh = now

    def age(self, now: float) -> float | None:
        """Seconds since the newest command, or None before the first one."""
        return None if self.last_fresh is None else max(0.0, now - self.last_fresh)

    def state(self, now: float) -> WatchdogState:
        age = self.age(now)
        if age is None:
            return WatchdogState.WAITING
        if age >= self.damp_after_s:
            return WatchdogState.DAMP
        if age >= self.hold_after_s:
            return WatchdogState.HOLD
        return WatchdogState.FRESH

    def forget(self) -> None:
        """Back to WAITING (after an estop release or a damp reset: old commands do not count)."""
        self.last_fresh = None
