"""The one process runtime (psi0_ros.nodes.runtime.spin_nodes) and the ROS conventions of the nodes,
on real node processes watched over real DDS topics:

- every node ends with status 0 and no traceback on one SIGINT, two SIGINTs (what `ros2 launch`
  sends during cleanup) and SIGTERM;
- a failing constructor is one clear error (status 1, no chained AttributeError);
- a node that raises NodeFailure ends its process (status 1) with the reason;
- camera_mode sync renders and publishes (the GL context stays on the camera thread);
- two sims run side by side in two namespaces: each namespace's topics flow on their own, a
  command in one moves only that robot, and config/sim.yaml (its `/**` section) applies
  under both namespaces.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.tiers import require

rclpy = require("rclpy")
require("mujoco")
require("psi0_ros.msg", "the generated messages (make setup)")

from helpers.ros_nodes import ROOT, NodeProcess, ProbeNode  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from psi0_ros import g1, ros_messages  # noqa: E402
from psi0_ros.constants import TOPIC_CLOCK, TOPIC_IMAGE, TOPIC_JOINT_STATES, TOPIC_UPPER_BODY_COMMAND  # noqa: E402
from psi0_ros.nodes.qos import CLOCK, CONTROL, LARGE_LATEST  # noqa: E402

TIMEOUT = 90.0  # s, for any one condition on a loaded 2-core machine
SIM_YAML = ROOT / "config" / "sim.yaml"


def bridge(*ros_args: str) -> NodeProcess:
    """robot_bridge_node with config/sim.yaml, no camera unless the arguments say so."""
    return NodeProcess(
        "psi0_ros.nodes.robot_bridge_node", "--params-file", str(SIM_YAML), "-p", "sim.camera_mode:='off'", *ros_args
    )


def assert_clean(node: NodeProcess, code: int) -> None:
    out = node.output
    assert code == 0, out[-3000:]
    for bad in ("Traceback", "KeyboardInterrupt", "Segmentation", "AttributeError"):
        assert bad not in out, out[-3000:]


class Probe(ProbeNode):
    """The test's side of the graph, in its own rclpy context."""

    timeout = TIMEOUT

    def __init__(self) -> None:
        super().__init__("psi0_runtime_probe")
        self.start()

    def parameter(self, node_name: str, name: str):
        client = self.node.create_client(GetParameters, f"{node_name}/get_parameters")
        assert client.wait_for_service(timeout_sec=TIMEOUT), node_name
        future = client.call_async(GetParameters.Request(names=[name]))
        self.wait(future.done, f"{node_name} parameter {name}")
        value = future.result().values[0]
        return {1: value.bool_value, 2: value.integer_value, 3: value.double_value, 4: value.string_value}.get(
            value.type
        )


@pytest.fixture
def probe():
    p = Probe()
    yield p
    p.close()


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM,)],
    ids=["sigint", "two-sigints", "sigterm"],
)
def test_the_bridge_ends_cleanly_on_signals(probe, signals):
    namespace = f"/rt_{signals[0].name.lower()}_{len(signals)}"
    probe.watch(JointState, f"{namespace}{TOPIC_JOINT_STATES}")
    node = bridge("-r", f"__ns:={namespace}", "-p", "sim.camera_mode:=thread")  # the camera thread too
    try:
        probe.wait(lambda: probe.count(f"{namespace}{TOPIC_JOINT_STATES}") > 5, "joint states")
        assert_clean(node, node.signal(*signals))
    finally:
        node.close()


@pytest.mark.parametrize("module", ["psi0_ros.nodes.teleop_recorder_node", "psi0_ros.nodes.sim_demo_node"])
def test_other_nodes_end_cleanly_on_two_sigints(module):
    node = NodeProcess(module, "-r", "__ns:=/rt_other")
    try:
        node.wait_for_output(
            "ready: next episode" if module.endswith("teleop_recorder_node") else "publishing the demo"
        )
        assert_clean(node, node.signal(signal.SIGINT, signal.SIGINT))
    finally:
        node.close()


def test_a_failing_constructor_is_one_clear_error():
    node = bridge("-p", "sim.scene:=bogus")
    try:
        code = node.wait()
    finally:
        node.close()
    out = node.output
    assert code == 1, out
    assert "could not start" in out and "bogus" in out, out
    assert out.count("error:") == 1, out
    assert "Traceback" not in out and "AttributeError" not in out, out


def run_script(path: Path, source: str) -> subprocess.CompletedProcess:
    """Write `source` (dedented) to `path` and run it with this interpreter from the repo root."""
    path.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)


def test_node_failure_ends_the_process_with_the_reason(tmp_path):
    result = run_script(
        tmp_path / "failing_node.py",
        """
            import sys
            from rclpy.node import Node
            from psi0_ros.nodes.runtime import NodeFailure, spin_nodes

            class Failing(Node):
                def __init__(self):
                    super().__init__("failing_node")
                    self.ticks = 0
                    self.create_timer(0.05, self.tick)

                def tick(self):
                    self.ticks += 1
                    if self.ticks == 3:
                        raise NodeFailure("failing_node: the work loop died (test)")

            sys.exit(spin_nodes(lambda: [Failing()], prog="failing_node"))
            """,
    )
    assert result.returncode == 1, result.stderr
    assert "failing_node: error: failing_node: the work loop died (test)" in result.stderr
    assert "Traceback" not in result.stderr


def test_until_runs_on_its_poll_period_however_busy_the_callbacks(tmp_path):
    """A 500 Hz timer wakes the spin loop 500 times a second; `until` (a task check, a duration)
    still runs once per poll_period_s, and ends the spin when it returns a reason."""
    result = run_script(
        tmp_path / "busy_node.py",
        """
            import json, sys, time
            from rclpy.node import Node
            from psi0_ros.nodes.runtime import spin_nodes

            class Busy(Node):
                def __init__(self):
                    super().__init__("busy_node")
                    self.ticks = 0
                    self.create_timer(0.002, self.tick)

                def tick(self):
                    self.ticks += 1

            made, polls, start = [], [], time.monotonic()

            def until():
                polls.append(time.monotonic())
                return "done" if polls[-1] - start > 1.0 else None

            def after(reason):
                print(json.dumps({"reason": reason, "polls": len(polls), "ticks": made[0].ticks}))

            sys.exit(spin_nodes(lambda: made.append(Busy()) or made, until=until, after_spin=after,
                                poll_period_s=0.1, prog="busy_node"))
            """,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["reason"] == "done"
    assert report["ticks"] > 3 * report["polls"], report  # the callbacks ran far more often than `until`
    assert report["polls"] <= 13, report  # ~10 in 1 s at 0.1 s (one per callback before: hundreds)


def test_sync_camera_mode_publishes_images_from_the_camera_thread(probe):
    topic = f"/rt_sync{TOPIC_IMAGE}"
    probe.watch(Image, topic, LARGE_LATEST)
    node = bridge("-r", "__ns:=/rt_sync", "-p", "sim.camera_mode:=sync")
    try:
        probe.wait(lambda: probe.count(topic) >= 3, "sync-mode images")
        image = probe.get(topic)
        assert (image.width, image.height, image.encoding) == (320, 240, "rgb8")  # config/sim.yaml size
        assert node.proc.poll() is None, node.output[-3000:]  # the command loop is alive
        assert_clean(node, node.signal(signal.SIGINT))
    finally:
        node.close()


def test_two_sims_side_by_side_in_two_namespaces(probe):
    a, b = "/sim_a", "/sim_b"
    for ns in (a, b):
        probe.watch(JointState, f"{ns}{TOPIC_JOINT_STATES}")
    probe.watch(JointState, TOPIC_JOINT_STATES)  # the root namespace stays silent
    command = probe.node.create_publisher(JointState, f"{a}{TOPIC_UPPER_BODY_COMMAND}", CONTROL)
    nodes = [bridge("-r", f"__ns:={ns}", "-p", "sim.scene:=empty") for ns in (a, b)]
    elbow = "left_shoulder_yaw_joint"  # test_bridge.py's converging target: 0.4 rad
    try:
        for ns in (a, b):
            probe.wait(lambda ns=ns: probe.count(f"{ns}{TOPIC_JOINT_STATES}") > 5, f"{ns} joint states")
            # config/sim.yaml's `/**` section applied in the namespace (the default is 500)
            assert probe.parameter(f"{ns}/robot_bridge_node", "control_rate_hz") == 250.0
        start_b = ros_messages.joint_state_to_vector(probe.get(f"{b}{TOPIC_JOINT_STATES}"), [elbow])[0]
        targets = g1.table("default", g1.UPPER_BODY_JOINTS).copy()
        targets[list(g1.UPPER_BODY_JOINTS).index(elbow)] = 0.4

        def moved() -> bool:
            command.publish(ros_messages.joint_state_message(g1.UPPER_BODY_JOINTS, targets, cls=JointState))
            q = ros_messages.joint_state_to_vector(probe.get(f"{a}{TOPIC_JOINT_STATES}"), [elbow])[0]
            return abs(q - 0.4) < 0.05

        probe.wait(moved, f"{a}'s elbow to follow the command sent in {a}")
        q_b = ros_messages.joint_state_to_vector(probe.get(f"{b}{TOPIC_JOINT_STATES}"), [elbow])[0]
        assert abs(q_b - start_b) < 0.05, (q_b, start_b)  # sim_b never heard it
        assert probe.count(TOPIC_JOINT_STATES) == 0
        for node in nodes:
            assert_clean(node, node.signal(signal.SIGINT))
    finally:
        for node in nodes:
            node.close()


def test_the_sim_publishes_its_time_on_clock_and_stamps_with_it(probe):
    """publish_clock: /clock carries the simulated time (seconds from 0, not the wall epoch) at
    clock_rate_hz of sim time, and a bridge on use_sim_time stamps its joint states with it."""
    states = f"/rt_clock{TOPIC_JOINT_STATES}"
    probe.watch(Clock, TOPIC_CLOCK, CLOCK)
    probe.watch(JointState, states)
    node = bridge("-r", "__ns:=/rt_clock", "-p", "publish_clock:=true", "-p", "use_sim_time:=true")

    def seconds(stamp) -> float:
        return stamp.sec + stamp.nanosec * 1e-9

    try:
        probe.wait(lambda: probe.count(TOPIC_CLOCK) > 20 and probe.count(states) > 5, "/clock and joint states")
        first_count, first = probe.count(TOPIC_CLOCK), seconds(probe.get(TOPIC_CLOCK).clock)
        probe.wait(lambda: probe.count(TOPIC_CLOCK) > first_count + 100, "100 more /clock messages")
        count, now = probe.count(TOPIC_CLOCK), seconds(probe.get(TOPIC_CLOCK).clock)
        assert 0.0 < first < now < 1e5, (first, now)  # simulated seconds since the sim started
        per_message = (now - first) / (count - first_count)
        assert 0.0075 <= per_message <= 0.016, per_message  # 125 Hz of sim time (best effort may drop a few)
        stamp = seconds(probe.get(states).header.stamp)
        assert 0.0 < stamp < 1e5 and abs(stamp - now) < 2.0, (stamp, now)  # the sim's time, not the wall clock
        assert_clean(node, node.signal(signal.SIGINT))
    finally:
        node.close()
