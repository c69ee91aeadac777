"""The safety layer (psi0_ros.control), driven by hand with an explicit clock: no ROS, no timing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from psi0_ros import g1
from psi0_ros.constants import LOWER_BODY_COMMAND_NAMES
from psi0_ros.control import JointLimits, LowerBodyCommandLimits, SafetyConfig, SafetyLayer, SafetyMode, Watchdog
from psi0_ros.control.limits import limit_step
from psi0_ros.control.safety import SOURCE_LOWER, SOURCE_UPPER

RATE = 100.0  # Hz: dt = 0.01 s
ELBOW = "left_elbow_joint"
I_ELBOW = g1.JOINT_INDEX[ELBOW]


def make(**overrides) -> SafetyLayer:
    """A layer whose estop wait is over at the first tick (no estop publisher) and, unless a test
    sets max_acceleration, without an acceleration bound: the step/velocity limiter on its own."""
    values = dict(control_rate_hz=RATE, hold_after_s=0.2, damp_after_s=1.0, max_step=0.02, max_velocity=3.0)
    values.update(estop_wait_s=0.0, max_acceleration=math.inf)
    values.update(overrides)
    return SafetyLayer(SafetyConfig(**values))


def default_q() -> np.ndarray:
    return g1.table("default")


def run(layer: SafetyLayer, t0: float, ticks: int, q=None):
    command = None
    for i in range(ticks):
        command = layer.update(t0 + i / RATE, default_q() if q is None else q)
    return command


def test_joint_table_matches_unitree_descriptions():
    # Spot checks against g1_29dof_with_hand_rev_1_0 (unitreerobotics/unitree_ros).
    spec = g1.JOINT_SPECS
    assert (spec["left_hip_roll_joint"].lower, spec["left_hip_roll_joint"].upper) == (-0.5236, 2.9671)
    assert (spec["right_hip_roll_joint"].lower, spec["right_hip_roll_joint"].upper) == (-2.9671, 0.5236)
    assert spec["left_knee_joint"].effort == 139.0 and spec["left_ankle_pitch_joint"].effort == 35.0
    assert spec["waist_pitch_joint"].velocity == 30.0 and spec["left_wrist_yaw_joint"].effort == 5.0
    assert (spec["right_hand_thumb_1_joint"].lower, spec["right_hand_thumb_1_joint"].upper) == (-1.0472, 0.610865)
    assert spec["right_hand_index_0_joint"].lower == 0.0 and spec["left_hand_index_0_joint"].upper == 0.0
    assert [spec[n].axis for n in g1.LEFT_ARM_JOINTS] == ["y", "x", "z", "y", "x", "y", "z"]
    assert len(g1.UPPER_BODY_JOINTS) == 28 and set(g1.UPPER_BODY_JOINTS).isdisjoint(g1.LOWER_BODY_JOINTS)
    lower, upper, default = g1.table("lower"), g1.table("upper"), g1.table("default")
    assert (lower < upper).all() and ((lower <= default) & (default <= upper)).all()


def test_limits_clamp_and_step():
    limits = JointLimits.from_table(margin=0.05)
    q = g1.table("upper") + 1.0
    clipped, mask = limits.clamp(q)
    assert mask.all() and np.allclose(clipped, g1.table("upper") - 0.05)
    target = np.array([1.0, -1.0, 0.005])
    limited, cut = limit_step(target, np.zeros(3), np.full(3, 0.01))
    assert np.allclose(limited, [0.01, -0.01, 0.005]) and cut.tolist() == [True, True, False]
    with pytest.raises(ValueError, match="margin"):
        JointLimits.from_table(margin=0.5)  # wider than ankle roll's ±0.26 rad range


def test_waits_holding_the_measured_pose_until_a_command_arrives():
    layer = make()
    measured = default_q() + 0.05
    command = run(layer, 0.0, 300, measured)  # 3 s: no timeout before the first command
    assert layer.mode is SafetyMode.WAITING
    assert np.allclose(command.q, np.clip(measured, layer.limits.lower, layer.limits.upper))
    assert np.allclose(command.kp, g1.table("kp")) and command.enabled


def test_targets_converge_through_the_step_limit():
    layer = make()
    target = 1.01  # from the default 0.3 rad: 0.71 rad = 35 full 0.02 rad steps and one of 0.01
    now = 0.0
    qs = []
    for i in range(50):
        now = i / RATE
        assert layer.submit(SOURCE_UPPER, [ELBOW], [target], now)
        qs.append(layer.update(now, default_q()).q[I_ELBOW])
    steps = np.diff([0.3, *qs])
    assert np.max(np.abs(steps)) <= 0.02 + 1e-12
    assert qs[-1] == pytest.approx(target)
    assert layer.mode is SafetyMode.ACTIVE
    # 0.35 s of continuous limiting: one intervention (it passed the 0.1 s grace once).
    assert layer.counters.rate_limited == 1
    # Joints nobody commanded hold their start pose (clamped: the open hands rest 0.02 rad inside).
    others = np.delete(layer.update(now, default_q()).q, I_ELBOW)
    held = np.clip(default_q(), layer.limits.lower, layer.limits.upper)
    assert np.allclose(others, np.delete(held, I_ELBOW))


def test_bunched_messages_are_smoothed_without_counting():
    layer = make()
    now = 0.0
    cut_ticks = 0
    for k in range(40):  # 1.5 rad/s in 0.03 rad jumps every other tick: each jump needs two 0.02 rad ticks
        now = k / RATE
        if k % 2 == 0:
            layer.submit(SOURCE_UPPER, [ELBOW], [0.3 + 0.015 * (k + 2)], now)
        before = layer._last_q[I_ELBOW] if layer._last_q is not None else 0.3
        q = layer.update(now, default_q()).q[I_ELBOW]
        cut_ticks += int(abs(q - before) == pytest.approx(0.02))
    assert cut_ticks >= 15  # the limiter did smooth the jumps ...
    assert layer.counters.total() == 0  # ... without ever holding a joint back for 0.1 s


def test_a_stream_within_the_limits_is_not_counted():
    layer = make()
    for i in range(100):  # 1 rad/s sine at 100 Hz: 0.01 rad per tick, inside the 0.02 rad cap
        now = i / RATE
        layer.submit(SOURCE_UPPER, [ELBOW], [0.3 + 0.2 * math.sin(5.0 * now)], now)
        layer.update(now, default_q())
    assert layer.counters.total() == 0


def test_velocity_limit_binds_when_it_is_tighter_than_the_step_cap():
    layer = make(max_velocity=0.5, max_step=0.1)  # 0.5 rad/s * 0.01 s = 0.005 rad per tick
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0)
    q1 = layer.update(0.0, default_q()).q[I_ELBOW]
    assert q1 == pytest.approx(0.3 + 0.005)
    run(layer, 0.01, 9)  # limited for 0.09 s: inside the grace period
    assert layer.counters.rate_limited == 0
    run(layer, 0.1, 5)
    assert layer.counters.rate_limited == 1


def test_target_beyond_a_limit_is_clamped_and_counted():
    layer = make(position_margin=0.02)
    upper = g1.JOINT_SPECS[ELBOW].upper
    assert layer.submit(SOURCE_UPPER, [ELBOW, "left_shoulder_pitch_joint"], [upper + 2.0, 0.1], 0.0)
    assert layer.counters.targets_clamped == 1
    # Inside the URDF range but within the margin: pulled in silently (open Dex3 fingers rest at 0 = a stop).
    assert layer.submit(SOURCE_UPPER, ["left_hand_index_0_joint"], [0.0], 0.0)
    assert layer.counters.targets_clamped == 1
    command = None
    for i in range(200):
        layer.submit(SOURCE_UPPER, [ELBOW], [upper + 2.0], i / RATE)
        command = layer.update(i / RATE, default_q())
    assert command.q[I_ELBOW] == pytest.approx(upper - 0.02)
    assert layer.counters.targets_clamped == 201


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_targets_are_rejected_and_the_last_good_target_kept(bad):
    layer = make()
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.0)
    run(layer, 0.0, 20)
    assert not layer.submit(SOURCE_UPPER, [ELBOW, "left_wrist_roll_joint"], [bad, 0.1], 0.2)
    command = run(layer, 0.2, 5)
    assert layer.counters.rejected_nonfinite == 1
    assert "left_elbow_joint" in layer.status(0.25).last_rejection
    assert command.is_finite() and command.q[I_ELBOW] == pytest.approx(0.5)
    assert command.q[g1.JOINT_INDEX["left_wrist_roll_joint"]] == 0.0  # the bad message changed nothing


def test_bad_names_are_rejected():
    layer = make()
    assert not layer.submit(SOURCE_UPPER, ["left_knee_joint"], [0.5], 0.0)  # a leg on the upper-body stream
    assert not layer.submit(SOURCE_UPPER, ["no_such_joint"], [0.5], 0.0)
    assert not layer.submit(SOURCE_UPPER, [ELBOW, ELBOW], [0.5, 0.6], 0.0)
    assert layer.counters.rejected_bad_names == 3
    assert not layer.submit(SOURCE_LOWER, ["left_knee_joint"], [0.5, 0.6], 0.0)  # 1 name, 2 positions
    assert layer.counters.rejected_bad_names == 3 and layer.counters.rejected_bad_length == 1
    assert layer.submit(SOURCE_LOWER, ["left_knee_joint"], [0.5], 0.0)
    with pytest.raises(ValueError, match="unknown command source"):
        layer.submit("legs", ["left_knee_joint"], [0.5], 0.0)


def test_watchdog_holds_then_damps_at_the_configured_times():
    layer = make(hold_after_s=0.2, damp_after_s=1.0)
    layer.submit(SOURCE_UPPER, [ELBOW], [0.8], 0.0)
    modes = {}
    held_q = None
    for i in range(150):  # 1.5 s with no further command
        now = i / RATE
        command = layer.update(now, default_q())
        modes.setdefault(layer.mode, now)
        if layer.mode is SafetyMode.HOLD:
            held_q = held_q if held_q is not None else command.q.copy()
            assert np.array_equal(command.q, held_q)  # frozen, not still walking toward 0.8
    assert modes[SafetyMode.ACTIVE] == 0.0
    assert modes[SafetyMode.HOLD] == pytest.approx(0.2)
    assert modes[SafetyMode.DAMP] == pytest.approx(1.0)
    assert 0.3 < held_q[I_ELBOW] < 0.8  # held where the ramp had got to
    command = layer.update(1.5, default_q())
    assert (command.kp == 0.0).all() and np.allclose(command.kd, g1.table("kd"))
    assert layer.counters.watchdog_holds == 1 and layer.counters.watchdog_damps == 1
    assert layer.status(1.5).watchdog_trip_age_s == pytest.approx({"hold": 0.2, "damp": 1.0})


def test_a_returning_stream_leaves_hold_but_damp_is_latched():
    layer = make()
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.0)
    run(layer, 0.0, 30)
    assert layer.mode is SafetyMode.HOLD
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.3)
    layer.update(0.3, default_q())
    assert layer.mode is SafetyMode.ACTIVE
    run(layer, 0.31, 150)
    assert layer.mode is SafetyMode.DAMP
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 2.0)  # fresh again, but DAMP stays latched on a robot
    layer.update(2.0, default_q())
    assert layer.mode is SafetyMode.DAMP
    layer.reset()  # operator reset: hold the measured pose, wait for new commands
    sagged = default_q() - 0.2
    command = layer.update(2.01, sagged)
    assert layer.mode is SafetyMode.WAITING
    assert np.allclose(command.q, np.clip(sagged, layer.limits.lower, layer.limits.upper))


def test_auto_resume_restarts_from_the_measured_pose_without_a_jump():
    layer = make(auto_resume=True)
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0)
    run(layer, 0.0, 150)
    assert layer.mode is SafetyMode.DAMP
    sagged = default_q().copy()
    sagged[I_ELBOW] = -0.5  # the arm fell while damped
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 2.0)
    command = layer.update(2.0, sagged)
    assert layer.mode is SafetyMode.ACTIVE
    assert command.q[I_ELBOW] == pytest.approx(-0.5 + 0.02)  # from where it is, one step at a time


def test_estop_damps_ignores_commands_and_releases_to_waiting():
    layer = make()
    layer.submit(SOURCE_UPPER, [ELBOW], [0.9], 0.0)
    run(layer, 0.0, 10)
    layer.set_estop(True)
    layer.set_estop(True)  # repeated messages count once
    for i in range(50):
        layer.submit(SOURCE_UPPER, [ELBOW], [1.5], 0.1 + i / RATE)
        command = layer.update(0.1 + i / RATE, default_q())
        assert layer.mode is SafetyMode.ESTOP and (command.kp == 0.0).all() and (command.kd > 0).all()
    assert layer.counters.estops == 1
    layer.set_estop(False)
    command = layer.update(0.7, default_q())
    assert layer.mode is SafetyMode.WAITING  # commands sent during the estop are not followed
    assert command.q[I_ELBOW] == pytest.approx(0.3)


def test_nonfinite_state_never_reaches_the_output():
    layer = make()
    measured = default_q().copy()
    measured[5] = math.nan
    command = layer.update(0.0, measured)  # no pose to hold yet: damp
    assert command.is_finite() and (command.kp == 0.0).all()
    assert layer.counters.state_nonfinite == 1
    command = layer.update(0.01, default_q())
    assert command.is_finite() and (command.kp > 0).all()
    command = layer.update(0.02, measured)  # later garbage: keep holding the commanded pose
    held = np.clip(default_q(), layer.limits.lower, layer.limits.upper)  # hands rest 0.02 rad inside
    assert command.is_finite() and np.allclose(command.q, held)


def test_lower_body_command_is_bounded_and_zeroed_when_not_active():
    layer = make()
    names = list(LOWER_BODY_COMMAND_NAMES)
    command = np.zeros(8)
    command[names.index("vx")] = 5.0
    command[names.index("torso_height")] = 0.2
    command[names.index("target_yaw")] = 3 * math.pi
    clipped = layer.submit_lower_body_command(command, 0.0)
    limits = LowerBodyCommandLimits()
    assert clipped[names.index("vx")] == limits.max_vx
    assert clipped[names.index("torso_height")] == limits.min_height
    assert clipped[names.index("target_yaw")] == pytest.approx(-math.pi)
    assert layer.counters.lower_command_clamped == 1
    assert layer.submit_lower_body_command([math.nan] * 8, 0.0) is None
    assert layer.submit_lower_body_command([0.0] * 7, 0.0) is None
    assert layer.counters.rejected_nonfinite == 1 and layer.counters.rejected_bad_length == 1
    assert layer.counters.rejected_bad_names == 0
    assert layer.lower_body_command() is None  # WAITING: the base may not move (issue 10: nothing at all)
    layer.submit(SOURCE_LOWER, ["waist_yaw_joint"], [0.0], 0.0)
    layer.update(0.0, default_q())
    assert layer.lower_body_command()[names.index("vx")] == limits.max_vx


def test_config_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="hold_after_s"):
        SafetyConfig(hold_after_s=2.0, damp_after_s=1.0)
    with pytest.raises(ValueError, match="kp_scale"):
        SafetyConfig(kp_scale=5.0)
    with pytest.raises(ValueError, match="velocity_scale"):
        SafetyConfig(velocity_scale=0.0)
    with pytest.raises(ValueError, match="unknown safety parameter 'max_stp'"):
        SafetyConfig.from_mapping({"max_stp": 0.1})
    config = SafetyConfig.from_mapping({"max_step": 0.01, "auto_resume": True, "lower_body.max_vx": 0.3})
    assert config.max_step == 0.01 and config.auto_resume and config.lower_body.max_vx == 0.3
    with pytest.raises(ValueError):
        Watchdog(hold_after_s=0.0, damp_after_s=1.0)


# --- issue 10 -------------------------------------------------------------------------------------


def test_nothing_is_followed_before_the_estop_state_is_known():
    layer = make(estop_wait_s=0.5)
    for i in range(40):  # 0.4 s: commands stream, no estop message yet
        now = i / RATE
        layer.submit(SOURCE_UPPER, [ELBOW], [1.0], now)
        command = layer.update(now, default_q())
        assert layer.mode is SafetyMode.STARTING and command.q[I_ELBOW] == pytest.approx(0.3)
    layer.set_estop(True)  # the latched estop arrives late: straight to ESTOP, nothing followed before
    command = layer.update(0.4, default_q())
    assert layer.mode is SafetyMode.ESTOP and (command.kp == 0.0).all()
    assert layer.status(0.4).activity["ticks_active"] == 0


def test_without_an_estop_message_the_wait_expires_then_only_fresh_commands_count():
    layer = make(estop_wait_s=0.5)
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0)  # sent while the estop state was unknown
    run(layer, 0.0, 50)
    assert layer.mode is SafetyMode.STARTING
    layer.update(0.5, default_q())
    assert layer.mode is SafetyMode.WAITING  # wait over, and the early command is not in force
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.51)
    assert layer.update(0.51, default_q()).q[I_ELBOW] > 0.3
    assert layer.mode is SafetyMode.ACTIVE


def test_an_estop_release_during_the_wait_starts_following():
    layer = make(estop_wait_s=float("inf"))
    run(layer, 0.0, 10)
    layer.set_estop(False)
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.1)
    layer.update(0.1, default_q())
    assert layer.mode is SafetyMode.ACTIVE and layer.counters.estops == 0


def test_empty_messages_are_rejected_and_do_not_feed_the_watchdog():
    layer = make()
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.0)
    for i in range(150):
        now = i / RATE
        assert not layer.submit(SOURCE_UPPER, [], [], now)
        layer.update(now, default_q())
    assert layer.mode is SafetyMode.DAMP and layer.counters.rejected_empty == 150


@pytest.mark.parametrize("field", ["velocities", "efforts"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_velocity_or_effort_drops_the_whole_message(field, bad):
    layer = make()
    assert not layer.submit(SOURCE_UPPER, [ELBOW, "left_wrist_roll_joint"], [1.0, 0.1], 0.0, **{field: [0.0, bad]})
    assert layer.counters.rejected_nonfinite == 1 and field in layer.status(0.0).last_rejection
    assert not layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0, **{field: [0.0, 0.0]})  # wrong length
    assert layer.counters.rejected_bad_length == 1 and layer.counters.rejected_bad_names == 0
    assert f"1 names but 2 {field}" in layer.status(0.0).last_rejection
    layer.update(0.0, default_q())
    assert layer.mode is SafetyMode.WAITING  # neither message counted as a command
    assert layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0, **{field: [0.5]})  # finite: fine


def test_lower_body_command_is_withheld_in_every_mode_but_active():
    layer = make()
    command = np.zeros(8)
    command[list(LOWER_BODY_COMMAND_NAMES).index("vx")] = 0.3
    layer.submit_lower_body_command(command, 0.0)
    layer.update(0.0, default_q())
    assert layer.mode is SafetyMode.ACTIVE and layer.lower_body_command() is not None
    run(layer, 0.01, 25)  # silent: HOLD
    assert layer.mode is SafetyMode.HOLD and layer.lower_body_command() is None
    run(layer, 0.3, 100)
    assert layer.mode is SafetyMode.DAMP and layer.lower_body_command() is None
    layer.set_estop(True)
    layer.update(1.5, default_q())
    assert layer.mode is SafetyMode.ESTOP and layer.lower_body_command() is None


def test_estop_release_after_a_watchdog_damp_waits_for_fresh_commands():
    layer = make()
    layer.submit_lower_body_command(np.array([0, 0, 0, 0.74, 0, 0, 0, 0.0]), 0.0)
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 0.0)
    run(layer, 0.0, 150)
    assert layer.mode is SafetyMode.DAMP
    layer.set_estop(True)
    layer.update(1.5, default_q())
    layer.set_estop(False)
    layer.set_follower_targets(g1.table("default", g1.LOWER_BODY_JOINTS))  # a follower still running
    run(layer, 1.6, 100)
    assert layer.mode is SafetyMode.WAITING
    layer.submit(SOURCE_UPPER, [ELBOW], [0.5], 2.6)
    layer.update(2.6, default_q())
    assert layer.mode is SafetyMode.ACTIVE


def test_nonfinite_state_while_active_holds_the_commanded_pose():
    layer = make(max_acceleration=20.0)
    for i in range(30):  # moving toward 1.2 rad
        layer.submit(SOURCE_UPPER, [ELBOW], [1.2], i / RATE)
        layer.update(i / RATE, default_q())
    assert layer.mode is SafetyMode.ACTIVE
    bad = default_q().copy()
    bad[3] = math.nan
    moving_at = layer.update(0.295, default_q()).q[I_ELBOW]
    qs = []
    for i in range(30, 90):  # the state goes bad while commands keep coming
        layer.submit(SOURCE_UPPER, [ELBOW], [1.2], i / RATE)
        command = layer.update(i / RATE, bad)
        assert layer.mode is SafetyMode.HOLD and command.is_finite() and (command.kp > 0).all()
        assert command.dq[I_ELBOW] == 0.0
        qs.append(command.q[I_ELBOW])
    assert qs == [moving_at] * 60 and moving_at < 1.2 - 0.05  # stopped where the ramp was, short of the target
    assert layer.counters.state_nonfinite == 60
    layer.submit(SOURCE_UPPER, [ELBOW], [1.2], 0.9)
    layer.update(0.9, default_q())
    assert layer.mode is SafetyMode.ACTIVE  # a good state again: following resumes from the held pose


def test_acceleration_bounded_ramp_brakes_in_time_at_a_limit():
    layer = make(max_acceleration=20.0, max_step=0.1, max_velocity=3.0)
    upper = layer.limits.upper[I_ELBOW]
    qs, vs = [], []
    for i in range(300):
        layer.submit(SOURCE_UPPER, [ELBOW], [upper + 1.0], i / RATE)  # beyond the limit: clamped
        command = layer.update(i / RATE, default_q())
        qs.append(command.q[I_ELBOW])
        vs.append(command.dq[I_ELBOW])
    qs, vs = np.array(qs), np.array(vs)
    assert qs.max() <= upper + 1e-12 and qs[-1] == pytest.approx(upper)  # never past, and gets there
    assert np.abs(vs).max() <= 3.0 + 1e-9 and np.abs(vs).max() > 2.9
    dv = np.abs(np.diff(vs))
    landing = np.flatnonzero(vs)[-1]  # the tick that lands exactly on the target
    assert dv[: landing - 1].max() <= 20.0 / RATE + 1e-9  # acceleration and deceleration bounded ...
    assert dv.max() <= 1.1 * 20.0 / RATE  # ... the tick that lands exactly on the target within 10 %
    assert np.allclose(np.diff(qs), vs[1:] / RATE)  # the velocity sent matches the motion


def test_a_target_jump_back_brakes_instead_of_reversing_at_once():
    layer = make(max_acceleration=20.0, max_step=0.1)
    for i in range(20):
        layer.submit(SOURCE_UPPER, [ELBOW], [2.0], i / RATE)
        layer.update(i / RATE, default_q())
    v = layer.update(0.2, default_q()).dq[I_ELBOW]
    layer.submit(SOURCE_UPPER, [ELBOW], [0.3], 0.21)
    v_next = layer.update(0.21, default_q()).dq[I_ELBOW]
    assert v > 3.0 - 1e-6 - 20.0 / RATE and v - v_next == pytest.approx(20.0 / RATE)


def test_sequence_gaps_count_lost_commands():
    from psi0_ros.control.sequence import SequenceGaps

    gaps = SequenceGaps()
    assert [gaps.observe("a", s) for s in (1, 2, 5, 6)] == [0, 0, 2, 0]
    assert gaps.observe("b", 10) == 0 and gaps.observe("a", 3) == 0  # first from b; a reordered one
    assert gaps.lost == 2 and gaps.reordered == 1
    layer = make()
    layer.count_dropped(3)
    assert layer.counters.commands_dropped == 3


def test_hold_stops_at_the_last_ramped_setpoint():
    """A stream that goes quiet mid-ramp: HOLD freezes the setpoint where it is (velocity 0), it
    does not brake on toward the far target (at 6 rad/s^2 from 3 rad/s that was 0.75 rad more)."""
    layer = make(max_acceleration=6.0, max_step=0.1)
    layer.submit(SOURCE_UPPER, [ELBOW], [2.0], 0.0)  # one far command, then silence
    active = [layer.update(i / RATE, default_q()) for i in range(20)]  # hold_after_s 0.2
    assert layer.mode is SafetyMode.ACTIVE and active[-1].dq[I_ELBOW] > 1.0
    held = [layer.update(i / RATE, default_q()) for i in range(20, 60)]
    assert layer.mode is SafetyMode.HOLD
    assert {c.q[I_ELBOW] for c in held} == {active[-1].q[I_ELBOW]} and all(c.dq[I_ELBOW] == 0.0 for c in held)
    layer.submit(SOURCE_UPPER, [ELBOW], [2.0], 0.6)  # the stream comes back: the ramp restarts from rest
    resumed = layer.update(0.6, default_q())
    assert layer.mode is SafetyMode.ACTIVE and resumed.dq[I_ELBOW] == pytest.approx(6.0 / RATE)


def test_a_matched_estop_publisher_is_waited_for_past_the_bound():
    """Publisher matching is visible before its latched sample arrives (discovery on a loaded
    machine): while a matched publisher has not been heard, nothing is followed, however long."""
    layer = make(estop_wait_s=0.5)
    layer.set_estop_publishers(1)
    for i in range(300):  # 3 s of commands, six times the bound
        layer.submit(SOURCE_UPPER, [ELBOW], [1.0], i / RATE)
        command = layer.update(i / RATE, default_q())
        assert layer.mode is SafetyMode.STARTING and command.q[I_ELBOW] == pytest.approx(0.3)
    assert layer.status(3.0).activity["estop_publishers_unheard"] == 1
    layer.set_estop(True, publishers=1)  # the latched true arrives at last
    layer.update(3.0, default_q())
    assert layer.mode is SafetyMode.ESTOP and layer.status(3.0).activity["ticks_active"] == 0


def test_a_matched_publishers_release_ends_the_wait_at_once():
    layer = make(estop_wait_s=float("inf"))
    layer.set_estop_publishers(1)
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0)
    layer.update(0.0, default_q())
    assert layer.mode is SafetyMode.STARTING
    layer.set_estop(False, publishers=1)
    layer.update(0.01, default_q())
    assert layer.mode is SafetyMode.WAITING  # the command sent while a publisher was unheard is not kept
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.02)
    layer.update(0.02, default_q())
    assert layer.mode is SafetyMode.ACTIVE


def test_without_an_estop_publisher_the_wait_counts_from_the_first_command():
    layer = make(estop_wait_s=0.5)
    run(layer, 0.0, 500)  # 5 s of ticks, no command and no estop publisher: still not known
    assert layer.mode is SafetyMode.STARTING
    for i in range(500, 560):
        layer.submit(SOURCE_UPPER, [ELBOW], [1.0], i / RATE)
        layer.update(i / RATE, default_q())
        assert layer.mode is (SafetyMode.STARTING if i < 550 else SafetyMode.WAITING if i == 550 else SafetyMode.ACTIVE)


def test_an_estop_publisher_that_appears_later_stops_following_until_heard():
    layer = make(max_acceleration=20.0)
    for i in range(20):
        layer.submit(SOURCE_UPPER, [ELBOW], [1.5], i / RATE)
        layer.update(i / RATE, default_q())
    assert layer.mode is SafetyMode.ACTIVE
    layer.set_estop_publishers(1)  # an estop node starts; its latched value is not here yet
    held = [
        layer.update(i / RATE, default_q())
        for i in range(20, 30)
        if layer.submit(SOURCE_UPPER, [ELBOW], [1.5], i / RATE)
    ]
    assert layer.mode is SafetyMode.HOLD and len({c.q[I_ELBOW] for c in held}) == 1
    assert layer.lower_body_command() is None
    layer.set_estop(False, publishers=1)
    layer.submit(SOURCE_UPPER, [ELBOW], [1.5], 0.3)
    assert layer.update(0.3, default_q()).q[I_ELBOW] > held[-1].q[I_ELBOW]  # following again
    layer.set_estop_publishers(0)  # it leaves; a new one comes and says true
    layer.set_estop_publishers(1)
    layer.update(0.31, default_q())
    assert layer.mode is SafetyMode.HOLD
    layer.set_estop(True, publishers=1)
    layer.update(0.32, default_q())
    assert layer.mode is SafetyMode.ESTOP


def test_a_sample_seen_before_its_match_is_counted_as_heard():
    """The executor may run the estop callback before the poll that sees the new match."""
    layer = make()
    layer.set_estop(False, publishers=1)  # read in the callback: its publisher is matched
    layer.set_estop_publishers(1)
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0)
    layer.update(0.0, default_q())
    assert layer.mode is SafetyMode.ACTIVE and layer.status(0.0).activity["estop_publishers_unheard"] == 0


def test_a_command_is_not_stored_while_a_second_estop_publisher_is_unheard():
    """One publisher's release arrived, a second publisher matched before the next tick: a command
    sent then is not stored, so nothing it asked for runs once the second one is heard."""
    layer = make(estop_wait_s=float("inf"))
    layer.set_estop_publishers(1)
    layer.set_estop(False, publishers=1)
    layer.set_estop_publishers(2)
    layer.submit(SOURCE_UPPER, [ELBOW], [1.0], 0.0)
    layer.update(0.0, default_q())
    assert layer.mode is SafetyMode.STARTING
    layer.set_estop(False, publishers=2)
    command = layer.update(0.01, default_q())
    assert layer.mode is SafetyMode.WAITING and command.q[I_ELBOW] == pytest.approx(0.3)
