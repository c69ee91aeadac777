"""A running chunk_node (its own process) serving two per-task adapters on one base: it switches on
~/set_task and on a new /psi0/instruction at the next chunk request with no missed control tick
and without loading the base again, shows it on /diagnostics, and refuses an unknown task and an
adapter of another base while its current task keeps running."""

from __future__ import annotations

import pytest
from helpers.tiers import require

require("rclpy", "chunk_node is a ROS 2 node")

MIN_EXECUTION_HORIZON = 8  # tiny_policy_config: chunks of 16, min_execution_horizon 0 -> 16 // 2


@pytest.fixture
def running(tmp_path):
    from psi0_ros.bench.adapters import TaskSwitchProbe, start_chunk_node, stop_process, write_random_adapter
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    base = write_tiny_checkpoint(tmp_path / "base", with_vlm=False)
    cup = write_random_adapter(tmp_path / "cup", base, "cup", ["pick up the red cup"], seed=1)
    drawer = write_random_adapter(tmp_path / "drawer", base, "drawer", ["open the drawer"], seed=2)
    other_base = write_tiny_checkpoint(tmp_path / "other_base", seed=7, with_vlm=False)
    stranger = write_random_adapter(tmp_path / "stranger", other_base, "wave", ["wave"], seed=3)
    log = tmp_path / "chunk_node.log"
    process = start_chunk_node(base, [cup, drawer], "cup", log)
    probe = TaskSwitchProbe(vlm_dim=64, instruction="pick up the red cup")
    try:
        yield probe, stranger
    finally:
        probe.close()
        stop_process(process)
        print(log.read_text()[-3000:])


def held_back(probe) -> int:
    return probe.number("task_switch_waited_ticks") + probe.number("task_switch_late_ticks")


def test_switches_on_the_service_and_the_instruction_without_a_missed_tick_or_a_reload(running):
    from psi0_ros.bench.adapters import switch_until_landed

    probe, stranger = running
    probe.wait(lambda: probe.number("executed") >= 45, "the cup task running", timeout=120.0)
    assert probe.value("active_task") == "cup" and probe.value("tasks") == "cup, drawer"
    missed = probe.number("missed")

    response, latency, effect = switch_until_landed(probe, "drawer", lambda: probe.set_task("drawer"))
    assert response.success and response.task == "drawer", response.message
    # The next chunk request: at most the minimum execution horizon away, plus what a loaded machine
    # adds and the node reports: ticks waiting for the inference in flight at the ask, ticks the
    # control timer ran late. `psi0 bench adapters` reports the ticks on a quiet machine.
    assert 0 <= latency <= MIN_EXECUTION_HORIZON + held_back(probe) and latency <= effect
    # The instruction of the other adapter switches back (vlm_node's features follow it).
    _, latency, _ = switch_until_landed(probe, "cup", lambda: probe.set_instruction("Pick up the red cup"))
    assert 0 <= latency <= MIN_EXECUTION_HORIZON + held_back(probe)

    unknown = probe.set_task("fly to the moon")
    assert not unknown.success and "no adapter for task 'fly to the moon'" in unknown.message
    assert unknown.task == "cup"
    wrong = probe.set_task(str(stranger))
    assert not wrong.success and "trained on base" in wrong.message and wrong.task == "cup"
    executed = probe.number("executed")
    probe.wait(lambda: probe.number("executed") >= executed + 30, "the cup task still running")
    assert probe.value("active_task") == "cup" and probe.value("pending_task") == ""
    assert probe.number("task_refused_set_task") == 2
    assert probe.number("task_switches") == 2 and probe.number("task_switches_landed") == 2
    assert probe.number("missed") == missed, probe.values  # every control tick ran a planned action
    assert probe.number("checkpoint_loads") == 1 and probe.number("adapter_loads") == 2
