"""Position limits and velocity caps as MEASURED on the simulated G1 in physics mode (MuJoCo).

The safety layer bounds what it commands; what matters on a robot is what the joints do. This
sweeps joints limit to limit through the bridge (physics base on the harness, default safety
settings) and reads the sim's own joint states every tick: no joint may pass a URDF limit, and no
joint may move faster than 1.1x its velocity cap. Same code as `psi0 bench sim`'s
limit_overshoot_rad / speed_over_cap (which sweeps all 28 arm and hand joints).
"""

from __future__ import annotations

import pytest

pytest.importorskip("mujoco")

from psi0_ros.bench.sim import limit_sweep

# The joints that overshot (elbows, shoulder yaw) and the heaviest, fastest-falling ones (shoulder
# pitch) before the acceleration bound; a finger for the Dex3 gains.
GROUPS = [
    ("left_elbow_joint", "right_elbow_joint"),
    ("left_shoulder_yaw_joint", "right_shoulder_yaw_joint"),
    ("left_shoulder_pitch_joint", "right_shoulder_pitch_joint"),
    ("left_hand_index_1_joint", "right_hand_thumb_1_joint"),
]


def test_limit_to_limit_sweep_stays_inside_the_limits_and_under_the_speed_cap():
    result = limit_sweep(GROUPS)
    per_joint = result["per_joint"]
    assert result["sweep_coverage_min"] > 0.85, per_joint  # it really went (nearly) limit to limit
    assert result["limit_overshoot_rad"] == 0.0, per_joint
    assert result["speed_over_cap"] <= 1.1, per_joint
    assert result["interventions"]["targets_clamped"] > 0  # the targets beyond the limits were clamped
