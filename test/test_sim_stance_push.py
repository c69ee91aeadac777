"""Stance pushes: the sim displaces the kinematic base by exactly the asked amount, the draw is
reproducible, and the expert steps back from the push and still succeeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from psi0_ros.sim.demos import run_expert_episode
from psi0_ros.sim.expert import PUSH_DISTANCE_M, StancePush
from psi0_ros.sim.simulator import G1Sim, SimConfig


def test_a_push_moves_the_kinematic_base_by_its_displacement_over_its_duration_only():
    sim = G1Sim(SimConfig(seed=2, layout="lab"))
    start = sim.base_pose()[0]
    steps = int(round(0.4 / sim.model.opt.timestep))
    sim.push_base((0.03, -0.02), 0.4)
    sim.step(steps // 2)
    half = sim.base_pose()[0]
    np.testing.assert_allclose(half[:2] - start[:2], [0.015, -0.01], atol=5e-4)
    sim.step(steps - steps // 2 + 200)  # and 0.4 s more: the push has ended
    np.testing.assert_allclose(sim.base_pose()[0][:2] - start[:2], [0.03, -0.02], atol=5e-4)


def test_a_push_is_refused_on_the_physics_base_and_with_no_duration():
    with pytest.raises(ValueError, match="duration"):
        G1Sim(SimConfig(seed=2, layout="lab")).push_base((0.01, 0.0), 0.0)
    with pytest.raises(ValueError, match="kinematic"):
        G1Sim(SimConfig(seed=2, layout="lab", base_mode="physics")).push_base((0.01, 0.0), 0.4)


def test_the_draw_is_the_same_for_a_seed_and_follows_its_probability():
    assert StancePush.draw(0.6, 11) == StancePush.draw(0.6, 11)
    assert all(StancePush.draw(0.0, s) is None for s in range(50))
    pushes = [StancePush.draw(1.0, s) for s in range(50)]
    assert all(PUSH_DISTANCE_M[0] <= p.distance_m <= PUSH_DISTANCE_M[1] for p in pushes)
    assert all(-math.pi <= p.direction_rad <= math.pi for p in pushes)
    assert len({round(p.direction_rad, 6) for p in pushes}) == 50
    drawn = sum(StancePush.draw(0.5, s) is not None for s in range(400))
    assert 160 < drawn < 240
    with pytest.raises(ValueError, match="probability"):
        StancePush.draw(1.5, 0)


def test_the_expert_steps_back_from_the_push_and_still_succeeds():
    plain = run_expert_episode(3, layout="lab")
    pushed = run_expert_episode(3, layout="lab", stance_push=1.0)
    assert not plain.pushed and pushed.pushed
    assert plain.success and pushed.success
    assert pushed.sim_time_s > plain.sim_time_s + 0.3  # the push and the way back take time
