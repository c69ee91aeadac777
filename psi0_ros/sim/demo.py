"""A scripted motion for `psi0 sim --demo`: wave, open and close the hands, walk, turn, squat and bow.

DemoScript.sample(t) gives the upper-body targets (28, UPPER_BODY_JOINTS order) and the 8-D
lower-body command (LOWER_BODY_COMMAND_NAMES order) at time t [s]; sim_demo_node publishes them
on the real command topics, so the demo goes through the same safety layer as a policy would.
Everything is smooth in t (cosine blends between key poses), and the walk returns to where it
started, so the script loops every PERIOD_S seconds.
"""

from __future__ import annotations

import math

import numpy as np

from psi0_ros import g1
from psi0_ros.control.lower_body import LOWER_BODY_INDEX

PERIOD_S = 24.0
STAND_HEIGHT = 0.76  # m, pelvis height of the demo's standing pose
WALK_SPEED = 0.25  # m/s
_UPPER = {name: i for i, name in enumerate(g1.UPPER_BODY_JOINTS)}


def smooth_window(t: float, start: float, end: float, ramp: float) -> float:
    """0 before start, 1 between start+ramp and end-ramp, 0 after end; cosine ramps in between."""
    if t <= start or t >= end:
        return 0.0
    rise = min(1.0, (t - start) / ramp)
    fall = min(1.0, (end - t) / ramp)
    return 0.5 - 0.5 * math.cos(math.pi * min(rise, fall))


def hand_closure(side: str, closure: float) -> dict[str, float]:
    """Dex3 joint targets closing one hand by `closure` in [0, 1] (0 = open, the default pose)."""
    targets = {}
    for name in g1.LEFT_HAND_JOINTS if side == "left" else g1.RIGHT_HAND_JOINTS:
        spec = g1.JOINT_SPECS[name]
        if "thumb_0" in name:
            continue  # the thumb's base rotation stays put
        far = spec.lower if abs(spec.lower) > abs(spec.upper) else spec.upper
        targets[name] = 0.7 * closure * far
    return targets


class DemoScript:
    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self.default_upper = g1.table("default", g1.UPPER_BODY_JOINTS)

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(upper-body targets (28,) [rad], lower-body command (8,)) at time t [s]."""
        t = t % self.period_s
        upper = self.default_upper.copy()

        def set_(name: str, value: float) -> None:
            upper[_UPPER[name]] = value

        def add(name: str, value: float) -> None:
            upper[_UPPER[name]] += value

        # 0.5-7.5 s: raise the right arm to the side and wave; the left hand closes and opens.
        wave = smooth_window(t, 0.5, 7.5, 1.5)
        add("right_shoulder_pitch_joint", -0.6 * wave)
        add("right_shoulder_roll_joint", -1.2 * wave)
        add("right_shoulder_yaw_joint", 0.9 * wave)
        add("right_elbow_joint", (0.5 + 0.35 * math.sin(2.0 * math.pi * 0.8 * t)) * wave)
        grip = smooth_window(t, 1.0, 7.0, 1.5) * (0.5 - 0.5 * math.cos(2.0 * math.pi * 0.5 * (t - 1.0)))
        for name, value in hand_closure("left", grip).items():
            set_(name, value)
        # 8-12.5 s: both forearms lift (elbows first, so the hands clear the objects), hands close and open.
        reach = smooth_window(t, 8.0, 12.5, 1.5)
        lift = smooth_window(t, 7.6, 12.9, 1.0)
        for side in ("left", "right"):
            add(f"{side}_shoulder_pitch_joint", -0.7 * reach)
            add(f"{side}_elbow_joint", -1.0 * lift)
            for name, value in hand_closure(side, smooth_window(t, 9.5, 12.0, 0.8)).items():
                set_(name, value)

        lower = np.zeros(8)
        lower[LOWER_BODY_INDEX["torso_height"]] = STAND_HEIGHT
        # 13-22 s: walk back from the table; turn left, squat and bow there; turn back; walk to the start.
        back = smooth_window(t, 13.0, 16.0, 0.8)
        forward = smooth_window(t, 19.0, 22.0, 0.8)
        lower[LOWER_BODY_INDEX["vx"]] = WALK_SPEED * (forward - back)
        turn = smooth_window(t, 16.0, 19.0, 1.2)
        turn_amplitude = 0.6  # rad
        lower[LOWER_BODY_INDEX["target_yaw"]] = turn_amplitude * turn
        dt = 1e-3
        lower[LOWER_BODY_INDEX["vyaw"]] = turn_amplitude * (smooth_window(t + dt, 16.0, 19.0, 1.2) - turn) / dt
        lower[LOWER_BODY_INDEX["torso_height"]] -= 0.07 * turn
        lower[LOWER_BODY_INDEX["torso_pitch"]] = 0.3 * turn
        return upper, lower
