"""Bounds on the 8-D lower-body command (DESIGN §3 LowerBodyCommand, §4 indices 28-35).

The command never reaches a motor directly (a lower-body controller or the simulator's kinematic
mode turns it into leg/waist targets, which then pass the joint-level safety layer), but a base
velocity or pelvis height out of range is still an intervention: it is clipped and counted.
Vectors here use psi0_ros.constants.LOWER_BODY_COMMAND_NAMES order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from psi0_ros.constants import LOWER_BODY_COMMAND_NAMES

LOWER_BODY_INDEX: dict[str, int] = {name: i for i, name in enumerate(LOWER_BODY_COMMAND_NAMES)}


@dataclass(frozen=True)
class LowerBodyCommandLimits:
    max_vx: float = 0.6  # m/s, forward and backward
    max_vy: float = 0.4  # m/s
    max_vyaw: float = 1.0  # rad/s
    max_torso_roll: float = 0.5  # rad (waist roll range is ±0.52)
    max_torso_pitch: float = 0.5  # rad (waist pitch range is ±0.52)
    max_torso_yaw: float = 1.5  # rad
    min_height: float = 0.55  # m, pelvis height above the floor
    max_height: float = 0.80  # m

    def __post_init__(self) -> None:
        for name in ("max_vx", "max_vy", "max_vyaw", "max_torso_roll", "max_torso_pitch", "max_torso_yaw"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"lower-body limit {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.min_height < self.max_height:
            raise ValueError(f"need 0 < min_height < max_height, got {self.min_height} and {self.max_height}")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) float64 (8,) in LOWER_BODY_COMMAND_NAMES order; target_yaw is unbounded (wrapped)."""
        high = {
            "torso_roll": self.max_torso_roll,
            "torso_pitch": self.max_torso_pitch,
            "torso_yaw": self.max_torso_yaw,
            "torso_height": self.max_height,
            "vx": self.max_vx,
            "vy": self.max_vy,
            "vyaw": self.max_vyaw,
            "target_yaw": math.inf,
        }
        hi = np.array([high[n] for n in LOWER_BODY_COMMAND_NAMES], dtype=np.float64)
        lo = -hi
        lo[LOWER_BODY_INDEX["torso_height"]] = self.min_height
        return lo, hi

    def apply(self, command: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip a finite (8,) command into bounds and wrap target_yaw to [-pi, pi).

        Returns (clipped, mask of entries that were out of bounds). Non-finite input is the
        caller's to reject before this (SafetyLayer.submit_lower_body_command does).
        """
        lo, hi = self.bounds()
        clipped = np.clip(command, lo, hi)
        yaw = LOWER_BODY_INDEX["target_yaw"]
        clipped[yaw] = (clipped[yaw] + math.pi) % (2.0 * math.pi) - math.pi
        mask = np.clip(command, lo, hi) != command
        return clipped, mask
