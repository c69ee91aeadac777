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
