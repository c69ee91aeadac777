"""Joint position limits and per-tick step/velocity limits, from the G1 joint table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psi0_ros import g1


@dataclass(frozen=True)
class JointLimits:
    """Limits for an ordered set of joints, float64 (N,) arrays.

    lower/upper are the URDF limits pulled in by `margin` rad on each side; velocity is the URDF
    velocity limit times `velocity_scale`, capped at `max_velocity` rad/s.
    """

    names: tuple[str, ...]
    lower: np.ndarray  # rad
    upper: np.ndarray  # rad
    velocity: np.ndarray  # rad/s

    @classmethod
    def from_table(
        cls,
        joints: tuple[str, ...] = g1.ALL_JOINTS,
        margin: float = 0.0,
        velocity_scale: float = 1.0,
        max_velocity: float = float("inf"),
    ) -> JointLimits:
        if margin < 0.0:
            raise ValueError(f"position margin must be >= 0 rad, got {margin}")
        if not 0.0 < velocity_scale <= 1.0:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        if not max_velocity > 0.0:
            raise ValueError(f"max_velocity must be > 0 rad/s, got {max_velocity}")
        lower = g1.table("lower", joints) + margin
        upper = g1.table("upper", joints) - margin
        if (lower >= upper).any():
            bad = [n for n, lo, hi in zip(joints, lower, upper, strict=True) if lo >= hi]
            raise ValueError(f"position margin {margin} rad leaves no range for {bad}")
        velocity = np.minimum(g1.table("velocity", joints) * velocity_scale, max_velocity)
        return cls(tuple(joints), lower, upper, velocity)

    def clamp(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip q (N,) into [lower, upper]; return (clipped, mask of joints that were outside)."""
        clipped = np.clip(q, self.lower, self.upper)
        return clipped, clipped != q

    def max_delta(self, dt: float, max_step: float) -> np.ndarray:
        """Largest allowed change per tick (N,) [rad]: min(velocity * dt, max_step)."""
        return np.minimum(self.velocity * dt, max_step)


def limit_step(target: np.ndarray, previous: np.ndarray, max_delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move from previous (N,) toward target (N,) by at most max_delta (N,) per joint.

    Returns (limited, mask of joints whose step was cut).
    """
    delta = target - previous
    limited_delta = np.clip(delta, -max_delta, max_delta)
    return previous + limited_delta, limited_delta != delta


def stopping_speed(distance: np.ndarray, acceleration: np.ndarray, dt: float) -> np.ndarray:
    """Fastest speed [rad/s] (N,) from which a joint still stops within `distance` [rad] (N,, >= 0)
    when each tick first slows down by acceleration * dt, then moves speed * dt.

    Braking from v that way covers v^2 / (2 a) + v dt / 2, so v = a (sqrt(dt^2/4 + 2 d / a) - dt / 2).
    An infinite acceleration gives an infinite speed (no deceleration bound).
    """
    distance = np.maximum(distance, 0.0)
    finite = np.isfinite(acceleration)
    a = np.where(finite, acceleration, 1.0)
    speed = a * (np.sqrt(dt * dt / 4.0 + 2.0 * distance / a) - dt / 2.0)
    return np.where(finite, speed, np.inf)


@dataclass
class ProfileStep:
    q: np.ndarray  # (N,) rad, commanded position after this tick
    v: np.ndarray  # (N,) rad/s, commanded velocity over this tick
    limited: np.ndarray  # (N,) bool, joints that could not land on their target this tick


def profile_step(
    target: np.ndarray | None,
    q: np.ndarray,
    v: np.ndarray,
    max_velocity: np.ndarray,
    max_acceleration: np.ndarray,
    dt: float,
    lower: np.ndarray,
    upper: np.ndarray,
    measured: np.ndarray | None = None,
) -> ProfileStep:
    """One tick of a velocity- and acceleration-bounded motion from (q, v) toward target (all (N,)).

    The velocity changes by at most max_acceleration * dt per tick and stays within max_velocity;
    toward the target and toward each position limit it never exceeds stopping_speed() of the
    distance left, so the joint can always brake in time: the commanded position never passes
    [lower, upper] and (for a target that holds still) never passes the target. target None brakes
    to rest wherever that is (HOLD). With infinite acceleration this is the plain step limiter:
    min(max_velocity * dt, distance) per tick. `measured` (N,) [rad], where given: a joint that runs
    ahead of its command (gravity pulling it) brakes for the room left from where it really is.
    """
    ahead_up = q if measured is None else np.maximum(q, measured)
    ahead_down = q if measured is None else np.minimum(q, measured)
    room_up = stopping_speed(upper - ahead_up, max_acceleration, dt)
    room_down = stopping_speed(ahead_down - lower, max_acceleration, dt)
    if target is None:
        wanted = np.zeros_like(q)
    else:
        error = target - q
        distance = np.abs(error)
        reach = np.minimum(stopping_speed(distance, max_acceleration, dt), distance / dt)
        wanted = np.sign(error) * np.minimum(max_velocity, reach)
    dv = np.clip(wanted - v, -max_acceleration * dt, max_acceleration * dt)
    new_v = np.clip(v + dv, -np.minimum(room_down, max_velocity), np.minimum(room_up, max_velocity))
    new_q = np.clip(q + new_v * dt, lower, upper)
    new_v = (new_q - q) / dt
    limited = np.zeros(q.shape, dtype=bool) if target is None else np.abs(target - new_q) > 1e-12
    return ProfileStep(new_q, new_v, limited)
