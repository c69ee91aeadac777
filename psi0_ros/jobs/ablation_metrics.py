"""How smoothly the commanded arm targets move: the motion metrics of `psi0 ablate rtc`.

The input is what chunk_node commanded, tick by tick (RTCScheduler.executed: tick, 36-D action,
held), and which chunk each commanded tick came from (chunk_node.landings: chunk id and the first
tick it commanded). Definitions (docs/ablations.md repeats them):

- step at tick i: Δ_i = a_i - a_(i-1), the change of the 14 arm targets [rad] from the previous
  commanded tick (held ticks are commanded: a hold repeats the last pose);
- chunk boundary: a commanded tick whose chunk differs from the previous commanded tick's (a new
  chunk takes over from the old one, or from a hold after the queue ran dry);
- junction jump [rad]: at each boundary, ‖Δ_b - m_b‖₂, where m_b is the per-joint median of the
  steps inside chunks (both ticks from the same chunk, consecutive ticks) nearest the boundary,
  JUNCTION_CONTEXT on each side: how far the boundary step departs from the motion around it.
  A smooth motion across a boundary scores 0; a step of size s added at a boundary scores s;
  the episode's figure is the mean over its boundaries (and the max);
- junction ratio: median over boundaries of ‖Δ_b‖₂ over the median ‖Δ_i‖₂ inside chunks (1: a
  boundary moves like any other tick; undefined when the arms stand still inside chunks);
- jerk [rad/s³]: RMS over ticks of ‖Δ³a_i‖₂ · rate³, the third difference of the arm targets over
  runs of consecutive ticks (a gap in the command stream starts a new run).

ROS-free and numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psi0_ros.constants import ACTION_ARMS, CONTROL_RATE_HZ

JUNCTION_CONTEXT = 5  # steps inside chunks on each side of a boundary that set its reference motion
HELD = -1  # source of a held tick (no chunk)


@dataclass(frozen=True)
class CommandLog:
    """The commanded arm targets of one episode, one row per commanded tick (ascending ticks)."""

    ticks: np.ndarray  # (N,) int control ticks
    arms: np.ndarray  # (N, 14) arm targets [rad], ACTION_ARMS of the action
    source: np.ndarray  # (N,) int: chunk id of each tick, HELD for a safe hold

    def __post_init__(self) -> None:
        n = self.ticks.shape[0]
        if self.arms.shape != (n, ACTION_ARMS.stop - ACTION_ARMS.start) or self.source.shape != (n,):
            raise ValueError(
                f"CommandLog: ticks {self.ticks.shape}, arms {self.arms.shape} and source {self.source.shape} disagree"
            )
        if n > 1 and not np.all(np.diff(self.ticks) > 0):
            raise ValueError("CommandLog: ticks must be strictly increasing")

    def save(self, path: Any) -> None:
        np.savez_compressed(path, ticks=self.ticks, arms=self.arms, source=self.source)

    @classmethod
    def load(cls, path: Any) -> CommandLog:
        data = np.load(path)
        return cls(data["ticks"], data["arms"], data["source"])


def command_log(executed: Sequence[tuple[int, np.ndarray, bool]], landings: Sequence[tuple[int, int]]) -> CommandLog:
    """A CommandLog from RTCScheduler.executed ((tick, (36,) action, held) per commanded tick) and
    chunk_node.landings ((chunk id, first tick it commands) per accepted chunk, in landing order).
    A planned tick's chunk is the newest landing whose first tick is at or before it."""
    if not executed:
        return CommandLog(np.zeros(0, dtype=np.int64), np.zeros((0, 14)), np.zeros(0, dtype=np.int64))
    ticks = np.array([int(t) for t, _, _ in executed], dtype=np.int64)
    arms = np.stack([np.asarray(a, dtype=np.float64)[ACTION_ARMS] for _, a, _ in executed])
    held = np.array([bool(h) for _, _, h in executed])
    source = np.full(len(ticks), HELD, dtype=np.int64)
    if landings:
        # newest landing wins for the ticks from its first tick on (a later chunk replaces the queue)
        order = sorted(range(len(landings)), key=lambda k: (landings[k][1], k))
        firsts = np.array([landings[k][1] for k in order], dtype=np.int64)
        ids = np.array([landings[k][0] for k in order], dtype=np.int64)
        where = np.searchsorted(firsts, ticks, side="right") - 1
        planned = ~held & (where >= 0)
        source[planned] = ids[where[planned]]
    return CommandLog(ticks, arms, source)


def junction_metrics(log: CommandLog) -> dict[str, Any]:
    """boundaries, junction_jump_rad (mean), junction_jump_max_rad, junction_ratio (module docstring)."""
    steps = np.diff(log.arms, axis=0)  # step k is tick k+1 minus tick k
    same = log.source[1:] == log.source[:-1]
    consecutive = np.diff(log.ticks) == 1
    inside = np.flatnonzero(same & consecutive & (log.source[1:] != HELD))
    boundaries = np.flatnonzero(~same & (log.source[1:] != HELD))
    result: dict[str, Any] = {
        "boundaries": int(len(boundaries)),
        "junction_jump_rad": None,
        "junction_jump_max_rad": None,
        "junction_ratio": None,
    }
    if len(boundaries) == 0 or len(inside) == 0:
        return result
    jumps = []
    for b in boundaries:
        at = np.searchsorted(inside, b)
        near = inside[max(0, at - JUNCTION_CONTEXT) : at + JUNCTION_CONTEXT]
        reference = np.median(steps[near], axis=0)
        jumps.append(float(np.linalg.norm(steps[b] - reference)))
    result["junction_jump_rad"] = float(np.mean(jumps))
    result["junction_jump_max_rad"] = float(np.max(jumps))
    typical = float(np.median(np.linalg.norm(steps[inside], axis=1)))
    if typical > 0:
        result["junction_ratio"] = float(np.median(np.linalg.norm(steps[boundaries], axis=1)) / typical)
    return result


def jerk_rms(log: CommandLog, rate_hz: float = CONTROL_RATE_HZ) -> float | None:
    """RMS of ‖Δ³a‖₂ · rate³ [rad/s³] over runs of consecutive ticks; None with no run of 4 ticks."""
    breaks = np.flatnonzero(np.diff(log.ticks) != 1) + 1
    squares = []
    for run in np.split(log.arms, breaks):
        if len(run) >= 4:
            third = np.diff(run, n=3, axis=0) * rate_hz**3
            squares.append(np.sum(third**2, axis=1))
    if not squares:
        return None
    return float(np.sqrt(np.mean(np.concatenate(squares))))


def motion_metrics(log: CommandLog, rate_hz: float = CONTROL_RATE_HZ) -> dict[str, Any]:
    """Per episode: commanded_ticks, held_ticks, boundaries, the junction figures and jerk_rad_s3."""
    return {
        "commanded_ticks": int(len(log.ticks)),
        "held_ticks": int(np.sum(log.source == HELD)),
        **junction_metrics(log),
        "jerk_rad_s3": jerk_rms(log, rate_hz),
    }
