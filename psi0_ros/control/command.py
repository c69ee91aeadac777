"""Per-joint PD commands: what a motor driver executes.

Each motor computes tau = tau_ff + kp * (q - q_measured) + kd * (dq - dq_measured), clipped to its
effort limit (Unitree's MotorCmd_ semantics; the simulator does the same at every physics step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class JointCommand:
    """PD targets for N joints, all float64 (N,): q [rad], dq [rad/s], kp [N·m/rad], kd [N·m·s/rad],
    tau [N·m] feed-forward. enabled=False means the motors are switched off (no torque at all)."""

    q: np.ndarray
    dq: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    tau: np.ndarray
    enabled: bool = True

    @classmethod
    def position(cls, q: np.ndarray, kp: np.ndarray, kd: np.ndarray, dq: np.ndarray | None = None) -> JointCommand:
        """Track positions q [rad] moving at dq [rad/s] (default: hold, zero velocity) with the given
        gains and zero feed-forward torque."""
        q = np.asarray(q, dtype=np.float64)
        zeros = np.zeros_like(q)
        velocity = zeros.copy() if dq is None else np.asarray(dq, dtype=np.float64).copy()
        kp, kd = np.asarray(kp, np.float64).copy(), np.asarray(kd, np.float64).copy()
        return cls(q.copy(), velocity, kp, kd, zeros.copy())

    @classmethod
    def damping(cls, kd: np.ndarray) -> JointCommand:
        """Pure damping: tau = -kd * dq_measured (kp = 0). The robot sinks slowly instead of falling."""
        kd = np.asarray(kd, dtype=np.float64)
        zeros = np.zeros_like(kd)
        return cls(zeros.copy(), zeros.copy(), zeros.copy(), kd.copy(), zeros.copy())

    def is_finite(self) -> bool:
        return bool(
            np.isfinite(self.q).all()
            and np.isfinite(self.dq).all()
            and np.isfinite(self.kp).all()
            and np.isfinite(self.kd).all()
            and np.isfinite(self.tau).all()
        )

    def __len__(self) -> int:
        return int(self.q.shape[0])
