"""The safety layer between the policy and the motors (ROS-free).

Everything a target passes through before it reaches a motor: validation of incoming targets
(names, NaN/inf), joint position limits, per-tick step and velocity limits, the kp/kd tables, the
command watchdog (hold the last safe pose, then damp), the emergency stop, and a final check that
nothing non-finite leaves. Every intervention is counted (InterventionCounters) so the robot
bridge can report it on /diagnostics. See docs/safety.md.
"""

from psi0_ros.control.command import JointCommand
from psi0_ros.control.limits import JointLimits
from psi0_ros.control.lower_body import LowerBodyCommandLimits
from psi0_ros.control.safety import InterventionCounters, SafetyConfig, SafetyLayer, SafetyMode, SafetyStatus
from psi0_ros.control.watchdog import Watchdog, WatchdogState

__all__ = [
    "InterventionCounters",
    "JointCommand",
    "JointLimits",
    "LowerBodyCommandLimits",
    "SafetyConfig",
    "SafetyLayer",
    "SafetyMode",
    "SafetyStatus",
    "Watchdog",
    "WatchdogState",
]
