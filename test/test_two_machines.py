"""The two-machine deployment: chunk_node on the policy machine, chunk_executor_node on the robot.

- RobotClock (pure): the robot's ticks seen from the policy machine do not depend on the offset
  between the two clocks.
- Real processes (psi0_ros.bench.link.run_cell): chunk_node with its ROS clock off by +2 s
  (use_sim_time and a shifted /clock), the executor and a kinematic robot on this host's loopback;
  then the same across two network namespaces joined by veth pairs through a relay that delays
  every frame by 50 ms one way, the policy's clock off by -2 s. Each: no missed tick, no chunk
  dropped as late, and every frozen prefix row is exactly what the executor ran.
"""

from __future__ import annotations

import pytest

from psi0_ros.control.robot_clock import RobotClock

RATE = 30.0


@pytest.mark.parametrize("offset_s", [0.0, 2.0, -2.0, 1234.5])
def test_robot_clock_ignores_the_clock_offset(offset_s):
    clock = RobotClock(RATE, window_s=2.0, timeout_s=0.5)
    assert clock.tick(10.0) is None and not clock.fresh(10.0)
    robot_start = 1_700_000_000.0  # robot ROS time when the local monotonic clock reads 0 (+ offset)
    delays = [0.05, 0.08, 0.05, 0.2, 0.06]  # one-way delays of successive reports [s]
    for i, delay in enumerate(delays):
        robot_s = robot_start + i / RATE
        clock.add(robot_s, robot_s - robot_start + offset_s + delay)
    local = len(delays) / RATE + offset_s + 0.05
    # The robot's time as of the fastest report: true time minus the smallest one-way delay.
    assert clock.robot_time(local) == pytest.approx(robot_start + len(delays) / RATE, abs=1e-6)
    assert clock.fresh(local) and not clock.fresh(local + 1.0)


def test_robot_clock_window_forgets_an_old_fast_sample():
    clock = RobotClock(RATE, window_s=1.0)
    clock.add(100.0, 0.01)  # offset -99.99
    clock.add(101.5, 1.6)  # 1.5 s later, offset -99.9: the old sample left the window
    assert clock.robot_time(1.6) == pytest.approx(101.5)


def test_scheduler_takes_delays_from_where_chunks_run():
    import numpy as np

    from psi0_ros.control.scheduler import RTCScheduler, SchedulerConfig

    scheduler = RTCScheduler(SchedulerConfig(min_execution_horizon=2, measure_on_delivery=False), horizon=4)
    scheduler.on_tick(0)
    request = scheduler.make_request(1)
    scheduler.on_tick(1)
    scheduler.on_tick(2)
    scheduler.deliver(request, np.zeros((4, 36)), 0.01)
    assert scheduler.estimator.recent == [6]  # the landing here is not a measurement
    scheduler.add_measured_delay(3)
    assert scheduler.estimator.recent == [6, 3]
    rows = np.arange(4 * 36, dtype=float).reshape(4, 36)
    scheduler.replace_queue(7, 10, rows, 11)  # what the executor holds: chunk 7's rows from tick 11
    assert scheduler.queue.consecutive(11, 8).tolist() == rows[1:].tolist()
    scheduler.reserve_ids(8)
    assert scheduler.make_request(3).request_id == 8


def _check(cell):
    assert cell["chunks"] >= 8, cell
    assert cell["late_chunks"] == 0, cell
    assert cell["missed_ticks"] == 0, cell
    assert cell["prefix_rows_checked"] > 0, cell
    assert cell["prefix_mismatch_rad"] <= 1e-6, cell


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("rclpy")
    from psi0_ros.bench.link import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("link") / "ckpt")


def test_policy_clock_two_seconds_ahead_on_loopback(checkpoint, tmp_path):
    from psi0_ros.bench.link import run_cell

    _check(run_cell(checkpoint, tmp_path, offset_s=2.0, seconds=8.0, network="loopback"))


def test_across_namespaces_with_50ms_delay_and_the_policy_clock_two_seconds_behind(checkpoint, tmp_path):
    from psi0_ros.bench.link import netns_available, run_cell

    problem = netns_available()
    if problem:
        pytest.skip(f"no network namespaces here: {problem}")
    cell = run_cell(checkpoint, tmp_path, delay_ms=50.0, offset_s=-2.0, seconds=8.0, network="netns")
    assert cell["relay"]["forwarded"] > 100 and cell["delay_ticks_max"] >= 3, cell  # it did cross the relay
    _check(cell)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("robot", {"robot_bridge_node", "lower_body_node", "chunk_executor_node"}),
        ("policy", {"vlm_node", "chunk_node", "viz_node"}),
    ],
)
def test_deploy_roles_split_the_graph(role, expected, tmp_path):
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    from psi0_ros.deploy_graph import deploy_nodes
    from psi0_ros.nodes.graph import node_class
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    specs = deploy_nodes("unitree" if role == "robot" else "sim", "ckpt", role=role)
    names = {spec.name for spec in specs} - {"camera_node"}
    assert names == expected
    assert all(node_class(spec.name) for spec in specs)
    if role == "policy":
        assert next(s for s in specs if s.name == "chunk_node").params["publish_commands"] is False
    assert "chunk_executor_node" not in {spec.name for spec in deploy_nodes("sim", "ckpt")}  # one machine
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt", with_vlm=False)
    command = [sys.executable, "-m", "psi0_ros.cli", "deploy", "--role", role, "--dry-run"]
    command += ["--checkpoint", str(checkpoint)] if role == "policy" else ["--backend", "unitree"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(f"  {name}:" in out.stdout for name in expected), out.stdout
    missing = subprocess.run(command[:3] + ["deploy", "--role", "policy", "--dry-run"], capture_output=True, text=True)
    assert missing.returncode == 1 and "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr
