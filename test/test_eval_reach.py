"""The evaluation's reach record: where the base stood, against the scripted expert's grasp stance,
when the task's object first moved."""

from __future__ import annotations

import mujoco
import numpy as np

from psi0_ros.jobs.evaluation import REACH_MOVE_M, _reach_summary, _watch_reach, reach_stance_errors
from psi0_ros.sim.expert import ScriptedExpert, grasp_stance
from psi0_ros.sim.simulator import G1Sim, SimConfig


def _move_can(sim: G1Sim, dx: float) -> None:
    adr = sim.model.joint("can_joint").qposadr[0]
    sim.data.qpos[adr] += dx
    mujoco.mj_forward(sim.model, sim.data)


def test_the_expert_steps_to_the_stance_the_evaluation_measures_against():
    sim = G1Sim(SimConfig(seed=4, layout="lab"))
    can, basket = sim.body_pose("can")[0], sim.body_pose("basket")[0]
    expert = ScriptedExpert(sim, "can_to_basket")
    expert.command(0.0)  # plans
    step = next(s for s in expert.segments if s.name == "step_to_object")
    side, stance = grasp_stance("can_to_basket", can, basket)
    assert side == expert.side == "right"  # lab layouts: the can right of the basket
    np.testing.assert_allclose(step.stance, stance)


def test_the_base_is_recorded_when_the_object_first_moves_beyond_the_threshold():
    sim = G1Sim(SimConfig(seed=7, layout="lab"))
    state = {"sim0": 0.0}
    _watch_reach(sim, ("can", "basket"), state)  # the start poses
    _, stance = grasp_stance("can_to_basket", sim.body_pose("can")[0], sim.body_pose("basket")[0])
    z = float(sim.base_pose()[0][2])
    sim.set_base(stance[0] + 0.013, stance[1] - 0.021, z, 0.0)
    _move_can(sim, 0.5 * REACH_MOVE_M)
    _watch_reach(sim, ("can", "basket"), state)
    assert "reach" not in state and _reach_summary("can_to_basket", state) is None
    _move_can(sim, REACH_MOVE_M)
    _watch_reach(sim, ("can", "basket"), state)
    reach = _reach_summary("can_to_basket", state)
    np.testing.assert_allclose(reach["base_minus_expert_stance_m"], [0.013, -0.021], atol=2e-4)
    sim.set_base(stance[0], stance[1], z, 0.0)  # later moves do not overwrite the first
    _move_can(sim, 0.1)
    _watch_reach(sim, ("can", "basket"), state)
    np.testing.assert_allclose(
        _reach_summary("can_to_basket", state)["base_minus_expert_stance_m"], [0.013, -0.021], atol=2e-4
    )


def test_the_summary_separates_successes_failures_and_untouched_objects():
    def episode(success, error):
        reach = None if error is None else {"base_minus_expert_stance_m": error}
        return {"success": success, "reach": reach}

    results = [episode(True, [0.003, 0.004]), episode(True, [0.006, 0.008]), episode(False, [0.03, 0.04])]
    results.append(episode(False, None))
    summary = reach_stance_errors(results)
    assert summary["success_median"] == 0.0075 and summary["success_episodes"] == 2
    assert summary["failure_median"] == 0.05 and summary["failure_episodes"] == 1
    assert summary["failure_never_reached"] == 1
