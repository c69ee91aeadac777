"""The measures of `psi0 ablate rtc` on hand-made input: the junction and jerk metrics on
trajectories made here, and the sim's collision counter on contacts scripted in the real MuJoCo
world (no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from psi0_ros.constants import ACTION_ARMS, ACTION_DIM
from psi0_ros.jobs.ablation_metrics import HELD, CommandLog, command_log, jerk_rms, junction_metrics, motion_metrics

RATE = 30.0
CHUNK = 10  # ticks each hand-made chunk commands


def _log(arms: np.ndarray, chunk: int = CHUNK) -> CommandLog:
    ticks = np.arange(len(arms))
    return CommandLog(ticks, arms, ticks // chunk)


def _ramp(n: int = 60, slope: float = 0.01) -> np.ndarray:
    """Every arm joint moving at `slope` rad per tick, each from its own offset."""
    return np.arange(n)[:, None] * slope + np.linspace(-0.5, 0.5, 14)[None, :]


def test_a_smooth_ramp_scores_no_jump_and_no_jerk():
    metrics = motion_metrics(_log(_ramp()), RATE)
    assert metrics["boundaries"] == 5
    assert metrics["junction_jump_rad"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["junction_ratio"] == pytest.approx(1.0)
    assert metrics["jerk_rad_s3"] == pytest.approx(0.0, abs=1e-6)


def test_a_step_at_one_boundary_scores_its_size():
    arms = _ramp()
    step = np.zeros(14)
    step[3], step[10] = 0.03, -0.04  # ‖step‖ = 0.05 rad, from the third chunk on
    arms[2 * CHUNK :] += step
    metrics = junction_metrics(_log(arms))
    assert metrics["junction_jump_max_rad"] == pytest.approx(0.05)
    assert metrics["junction_jump_rad"] == pytest.approx(0.05 / metrics["boundaries"])
    # the same step inside a chunk is no junction (but it is jerk)
    inside = _ramp()
    inside[2 * CHUNK + 4 :] += step
    assert junction_metrics(_log(inside))["junction_jump_max_rad"] == pytest.approx(0.0, abs=1e-12)
    assert jerk_rms(_log(inside), RATE) > 1.0


def test_jerk_is_the_rms_third_difference_in_rad_per_s3():
    t = np.arange(40) / RATE
    arms = np.zeros((40, 14))
    arms[:, 0] = 0.5 * t**3  # third derivative 3 rad/s³, which a cubic's third difference gives exactly
    assert jerk_rms(_log(arms), RATE) == pytest.approx(3.0, rel=1e-6)


def test_a_gap_in_the_stream_starts_a_new_jerk_run_and_holds_are_not_chunks():
    arms = _ramp(12)
    ticks = np.array([0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17])
    source = np.array([0, 0, 0, 0, HELD, HELD, 1, 1, 1, 1, 1, 1])
    log = CommandLog(ticks, arms, source)
    metrics = motion_metrics(log, RATE)
    assert metrics["held_ticks"] == 2 and metrics["boundaries"] == 1  # hold -> chunk 1
    assert metrics["jerk_rad_s3"] == pytest.approx(0.0, abs=1e-6)  # two ramps, the gap not differenced


def test_command_log_labels_ticks_by_the_newest_landing():
    executed = []
    for tick in range(20):
        action = np.zeros(ACTION_DIM)
        action[ACTION_ARMS] = tick
        executed.append((100 + tick, action, tick in (8, 9)))
    landings = [(0, 100), (1, 105), (2, 110), (3, 115)]
    log = command_log(executed, landings)
    assert log.source.tolist() == [0] * 5 + [1] * 3 + [HELD] * 2 + [2] * 5 + [3] * 5
    assert np.array_equal(log.arms[:, 0], np.arange(20))
    with pytest.raises(ValueError, match="strictly increasing"):
        CommandLog(np.array([3, 2]), np.zeros((2, 14)), np.zeros(2, dtype=np.int64))


def test_collision_counter_on_scripted_contacts_in_the_sim():
    pytest.importorskip("mujoco")
    import mujoco

    from psi0_ros.sim.collisions import SETTLE_S
    from psi0_ros.sim.scene import TABLE_CENTER_X, TABLE_HALF
    from psi0_ros.sim.simulator import G1Sim, SimConfig

    sim = G1Sim(SimConfig(scene="tabletop", seed=3))
    steps = int(round(0.5 / sim.model.opt.timestep))
    sim.step(steps)  # left alone (fingertips resting on the table top): nothing counts
    assert sim.time > SETTLE_S
    assert sim.collisions.summary()["total"] == 0

    # the hands pressed into the table twice (the kinematic base lowered 6 cm, raised, lowered)
    pelvis, _ = sim.base_pose()
    for dz in (0.06, 0.0, 0.06, 0.0):
        sim.set_base(pelvis[0], pelvis[1], pelvis[2] - dz, 0.0)
        sim.step(steps // 4)
    summary = sim.collisions.summary()
    assert summary["table_contacts"] == 2, summary
    assert summary["peak_table_force_n"] > 20.0

    # the can laid on its side on the table; the cube pushed off the table's far edge
    can = sim.model.joint("can_joint").qposadr[0]
    sim.data.qpos[can + 3 : can + 7] = (np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0)
    cube = sim.model.joint("cube_joint").qposadr[0]
    sim.data.qpos[cube : cube + 3] = (TABLE_CENTER_X + TABLE_HALF[0] + 0.1, 0.0, 0.9)
    mujoco.mj_forward(sim.model, sim.data)
    sim.step(steps)
    summary = sim.collisions.summary()
    assert summary["knocked_over"] == ["can"]
    assert summary["off_table"] == ["cube"]
    assert summary["total"] == 4

    sim.reset()
    assert sim.collisions.summary()["total"] == 0
