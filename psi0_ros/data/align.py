"""Alignment rules: put a stream sampled at its own times onto the control grid.

All times are int64 nanoseconds; the grid is t_k = start + round(k * 1e9 / fps). Each rule
returns per tick the value plus what is needed to judge it (validity, age, gap), so the
converter can trim and flag without re-deriving anything (docs/data.md, "Alignment"):
- hold: the newest sample at or before the tick (sample-and-hold; the command in force);
- interpolate: linear between the samples at or before and after the tick (exact at a sample);
- nearest: the sample closest in time (ties go to the earlier one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def control_grid(start_ns: int, stop_ns: int, fps: float) -> np.ndarray:
    """Ticks from start to stop inclusive at fps, int64 ns (empty when stop < start)."""
    if stop_ns < start_ns:
        return np.empty(0, dtype=np.int64)
    count = int(np.floor((stop_ns - start_ns) * fps / 1e9 + 1e-9)) + 1
    return start_ns + np.round(np.arange(count, dtype=np.float64) * (1e9 / fps)).astype(np.int64)


def sort_by_time(times_ns: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort of samples by time (out-of-order stamps keep their bag order on ties)."""
    order = np.argsort(times_ns, kind="stable")
    return times_ns[order], values[order]


@dataclass(frozen=True)
class Held:
    values: np.ndarray  # (T, D); rows where valid is False are zeros
    valid: np.ndarray  # (T,) bool: a sample exists at or before the tick
    age_ns: np.ndarray  # (T,) int64: tick - sample time (0 where not valid)
    index: np.ndarray  # (T,) int: sample used, -1 where not valid


def hold(times_ns: np.ndarray, values: np.ndarray, ticks_ns: np.ndarray) -> Held:
    """Sample-and-hold: the newest sample at or before each tick. times_ns sorted, values (N, D)."""
    index = np.searchsorted(times_ns, ticks_ns, side="right") - 1
    valid = index >= 0
    safe = np.where(valid, index, 0)
    out = np.zeros((ticks_ns.shape[0],) + values.shape[1:], dtype=values.dtype)
    if values.shape[0]:
        out[valid] = values[safe[valid]]
    age = np.where(valid, ticks_ns - (times_ns[safe] if times_ns.size else 0), 0).astype(np.int64)
    return Held(out, valid, age, np.where(valid, index, -1))


@dataclass(frozen=True)
class Interpolated:
    values: np.ndarray  # (T, D) float64
    valid: np.ndarray  # (T,) bool: a sample at the tick, or samples on both sides
    span_ns: np.ndarray  # (T,) int64: distance between the two samples used (0 at an exact sample)


def interpolate(times_ns: np.ndarray, values: np.ndarray, ticks_ns: np.ndarray) -> Interpolated:
    """Linear interpolation between the samples around each tick; exact where a sample sits on it."""
    n = times_ns.shape[0]
    out = np.zeros((ticks_ns.shape[0],) + values.shape[1:], dtype=np.float64)
    if n == 0:
        zeros = np.zeros(ticks_ns.shape[0], dtype=np.int64)
        return Interpolated(out, zeros.astype(bool), zeros)
    before = np.searchsorted(times_ns, ticks_ns, side="right") - 1
    after = before + 1
    exact = (before >= 0) & (times_ns[np.clip(before, 0, n - 1)] == ticks_ns)
    between = (before >= 0) & (after < n) & ~exact
    valid = exact | between
    b = np.clip(before, 0, n - 1)
    a = np.clip(after, 0, n - 1)
    v = values.astype(np.float64, copy=False)
    out[exact] = v[b[exact]]
    if between.any():
        t0, t1 = times_ns[b[between]], times_ns[a[between]]
        weight = ((ticks_ns[between] - t0) / (t1 - t0)).astype(np.float64)
        weight = weight.reshape((-1,) + (1,) * (values.ndim - 1))
        out[between] = v[b[between]] + weight * (v[a[between]] - v[b[between]])
    span = np.where(between, times_ns[a] - times_ns[b], 0).astype(np.int64)
    return Interpolated(out, valid, span)


@dataclass(frozen=True)
class Nearest:
    index: np.ndarray  # (T,) int: nearest sample (-1 only when there are no samples)
    offset_ns: np.ndarray  # (T,) int64: sample time - tick time


def nearest(times_ns: np.ndarray, ticks_ns: np.ndarray) -> Nearest:
    """The sample nearest in time to each tick; on a tie the earlier one."""
    n = times_ns.shape[0]
    if n == 0:
        return Nearest(np.full(ticks_ns.shape[0], -1), np.zeros(ticks_ns.shape[0], dtype=np.int64))
    after = np.clip(np.searchsorted(times_ns, ticks_ns, side="left"), 0, n - 1)
    before = np.clip(after - 1, 0, n - 1)
    d_after = np.abs(times_ns[after] - ticks_ns)
    d_before = np.abs(times_ns[before] - ticks_ns)
    index = np.where(d_before <= d_after, before, after)
    return Nearest(index, (times_ns[index] - ticks_ns).astype(np.int64))
