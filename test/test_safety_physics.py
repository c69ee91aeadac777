"""Position limits and velocity caps as MEASURED on the simulated G1 in physics mode (MuJoCo).

The safety layer bounds what it commands; what matters on a robot is what the joints do. This
sweeps joints limit to limit through the bridge (physics base on the harness, default safety
settings) and reads the sim's own joint states every tick: no joint may pass a URDF limit, and no
joint may move faster than 1.1x its velocity cap. Same code as `psi0 bench sim`'s
limit_overshoot_rad / speed_over_cap (which sweeps all 28 arm and hand joints).
"""

from __future__ import annotations

import numpy as np
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
    # Light links on a 5 N·m motor: they ran away at up to 1.8x their cap while the sim clipped the
    # PD force and its velocity feed-forward each to the effort limit (summing to zero).
    ("left_wrist_pitch_joint", "right_wrist_pitch_joint"),
    ("left_wrist_yaw_joint", "right_wrist_yaw_joint"),
]


def test_limit_to_limit_sweep_stays_inside_the_limits_and_under_the_speed_cap():
    result = limit_sweep(GROUPS)
    per_joint = result["per_joint"]
    assert result["sweep_coverage_min"] > 0.85, per_joint  # it really went (nearly) limit to limit
    assert result["limit_overshoot_rad"] == 0.0, per_joint
    assert result["speed_over_cap"] <= 1.1, per_joint
    assert result["interventions"]["targets_clamped"] > 0  # the targets beyond the limits were clamped


def test_hold_stops_where_the_ramp_is_instead_of_driving_on_to_the_target():
    """One limit-to-limit command, then silence: once HOLD comes, the joints stop near the last
    ramped setpoint, not after braking another ~0.8 rad toward a target nobody re-commanded."""
    from psi0_ros import g1
    from psi0_ros.control import SafetyConfig, SafetyMode
    from psi0_ros.robot.bridge import Bridge, BridgeConfig
    from psi0_ros.robot.sim_backend import SimBackend, SimBackendConfig
    from psi0_ros.sim.simulator import SimConfig

    rate = 250.0
    joints = ("left_elbow_joint", "right_shoulder_yaw_joint", "left_wrist_pitch_joint")
    index = [g1.JOINT_INDEX[n] for n in joints]
    slots = [g1.UPPER_BODY_JOINTS.index(n) for n in joints]
    lower, upper = g1.table("lower", joints), g1.table("upper", joints)
    backend = SimBackend(
        SimBackendConfig(sim=SimConfig(base_mode="physics", scene="empty", harness=True), camera_mode="off")
    )
    config = SafetyConfig(control_rate_hz=rate, gains="amo_sim", hold_after_s=0.5, damp_after_s=3.0, estop_wait_s=0.0)
    bridge = Bridge(backend, BridgeConfig(config))
    clock = [0.0]
    bridge.clock = lambda: clock[0]
    targets = g1.table("default", g1.UPPER_BODY_JOINTS).copy()

    def run(seconds: float, stream: bool) -> list[tuple[SafetyMode, np.ndarray, np.ndarray]]:
        seen = []
        for tick in range(int(round(seconds * rate))):
            if stream and tick % 8 == 0:
                bridge.submit_upper(g1.UPPER_BODY_JOINTS, targets)
            bridge.tick()
            clock[0] += 1.0 / rate
            seen.append((bridge.safety.mode, backend.sim.joint_state()[0][index], bridge.snapshot().command.q[index]))
        return seen

    try:
        targets[slots] = lower + 0.05
        run(3.0, stream=True)  # at the lower limits
        targets[slots] = upper + 0.5  # one command to beyond the upper limits ...
        bridge.submit_upper(g1.UPPER_BODY_JOINTS, targets)
        seen = run(2.0, stream=False)  # ... then silence
    finally:
        backend.close()
    hold = next(i for i, (mode, _, _) in enumerate(seen) if mode is SafetyMode.HOLD)
    assert all(mode is SafetyMode.HOLD for mode, _, _ in seen[hold:])
    q_at_hold, setpoint_at_hold = seen[hold - 1][1], seen[hold - 1][2]
    q_end = seen[-1][1]
    assert (q_at_hold - lower > 0.5).all(), q_at_hold  # it was well on its way when HOLD came
    travel = q_end - q_at_hold
    assert np.abs(q_end - setpoint_at_hold).max() < 0.1, (q_end, setpoint_at_hold)
    assert np.abs(travel).max() < 0.15, travel
    assert (q_end < upper).all()
