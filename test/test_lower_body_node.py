"""lower_body_node in a real process with test-made AMO TorchScript files, over real topics:
targets from /joint_states + /imu/data + /psi0/lower_body_command equal the library's AMO step;
NaN or stale inputs stop the targets (the bridge's watchdog then holds) and /diagnostics says why;
targets resume; a missing checkpoint file stops the node at start with its name."""

from __future__ import annotations

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers.amo_files import write_amo_files  # noqa: E402
from helpers.ros_nodes import NodeProcess, ProbeNode, ros_parameters  # noqa: E402
from psi0_ros.msg import LowerBodyCommand  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402

from psi0_ros import g1  # noqa: E402
from psi0_ros.constants import (  # noqa: E402
    TOPIC_DIAGNOSTICS,
    TOPIC_IMU,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_LOWER_BODY_TARGETS,
)
from psi0_ros.control.amo import AMO_JOINTS, AmoCommand, AmoController, AmoState  # noqa: E402
from psi0_ros.nodes.qos import CONTROL  # noqa: E402

TIMEOUT = 90.0  # s for any one condition on a loaded 2-core machine
NODE = "lower_body_node: AMO"
Q = g1.table("default") + 0.01 * np.arange(len(g1.ALL_JOINTS))
DQ = 0.02 * np.sin(np.arange(len(g1.ALL_JOINTS)))
YAW = 0.3
QUAT = np.array([math.cos(YAW / 2), 0.0, 0.0, math.sin(YAW / 2)])  # w, x, y, z
GYRO = np.array([0.1, -0.2, 0.05])
COMMAND = AmoCommand(
    vx=0.2, vy=0.0, vyaw=0.0, target_yaw=0.1, torso_roll=0.0, torso_pitch=0.1, torso_yaw=0.0, height=0.74
)


class Probe(ProbeNode):
    """Publishes the inputs at their real rates; keeps every target and the newest diagnostics."""

    timeout = TIMEOUT

    def __init__(self) -> None:
        super().__init__("psi0_lower_body_probe")
        self.targets: list[JointState] = []
        self.diag: dict[str, str] = {}
        self.diag_message = ""
        self.joint_nan = False
        self.joints_pub = self.node.create_publisher(JointState, TOPIC_JOINT_STATES, CONTROL)
        self.imu_pub = self.node.create_publisher(Imu, TOPIC_IMU, CONTROL)
        self.command_pub = self.node.create_publisher(LowerBodyCommand, TOPIC_LOWER_BODY_COMMAND, CONTROL)
        self.node.create_subscription(JointState, TOPIC_LOWER_BODY_TARGETS, self._on_targets, CONTROL)
        self.node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diag, CONTROL)
        self.node.create_timer(0.01, self._publish_state)  # 100 Hz, as the bridge
        self.command_timer = self.node.create_timer(1.0 / 30.0, self._publish_command)  # 30 Hz, as chunk_node
        self.start()

    def _on_targets(self, msg: JointState) -> None:
        with self.lock:
            self.targets.append(msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == NODE:
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in status.values}
                    self.diag_message = status.message

    def _publish_state(self) -> None:
        joints = JointState()
        joints.header.stamp = self.node.get_clock().now().to_msg()
        joints.name = list(g1.ALL_JOINTS)
        q = Q.copy()
        if self.joint_nan:
            q[3] = float("nan")
        joints.position, joints.velocity = q.tolist(), DQ.tolist()
        self.joints_pub.publish(joints)
        imu = Imu()
        imu.header.stamp = joints.header.stamp
        imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = (float(v) for v in QUAT)
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in GYRO)
        self.imu_pub.publish(imu)

    def _publish_command(self) -> None:
        msg = LowerBodyCommand()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for field in ("vx", "vy", "vyaw", "target_yaw", "torso_roll", "torso_pitch", "torso_yaw", "height"):
            setattr(msg, field, float(getattr(COMMAND, field)))
        self.command_pub.publish(msg)

    def count(self) -> int:  # the targets received so far
        with self.lock:
            return len(self.targets)

    def counter(self, name: str) -> int:
        with self.lock:
            return int(self.diag.get(name, "0"))

    def details(self) -> dict[str, str]:
        return self.diag


def _start(checkpoint_dir, log_path) -> NodeProcess:
    overrides = {"checkpoint_dir": str(checkpoint_dir), "command_timeout_s": "0.3"}
    return NodeProcess("psi0_ros.nodes.lower_body_node", *ros_parameters(overrides), log=log_path)


def test_node_publishes_amo_targets_and_holds_on_bad_input(tmp_path):
    write_amo_files(tmp_path)
    probe = Probe()
    node = _start(tmp_path, tmp_path / "node.log")
    try:
        probe.wait(lambda: probe.count() >= 20, "20 lower-body targets")
        assert node.proc.poll() is None, (tmp_path / "node.log").read_text()[-3000:]

        # The first target is AMO's first step on exactly these inputs.
        index = [g1.JOINT_INDEX[name] for name in AMO_JOINTS]
        expected = AmoController.load(tmp_path).step(AmoState(Q[index], DQ[index], QUAT, GYRO), COMMAND)
        first = probe.targets[0]
        assert list(first.name) == list(g1.LOWER_BODY_JOINTS)
        np.testing.assert_allclose(first.position, expected, atol=1e-4)
        assert all(np.isfinite(msg.position).all() for msg in probe.targets)
        probe.wait(lambda: probe.counter("steps") >= 20 and float(probe.diag.get("rate_hz", 0)) > 0, "diagnostics")

        # NaN joint states: no targets while they last, counted on /diagnostics.
        probe.joint_nan = True
        probe.wait(lambda: probe.counter("nonfinite_joint_states") >= 5, "NaN joint states to be counted")
        during = probe.count()
        probe.wait(lambda: probe.counter("nonfinite_joint_states") >= 30, "more NaN joint states")
        assert probe.count() == during, "targets were published from NaN joint states"
        probe.wait(lambda: "NaN" in probe.diag_message, "the reason on /diagnostics")

        # Good input again: targets resume.
        probe.joint_nan = False
        probe.wait(lambda: probe.count() >= during + 10, "targets to resume")

        # The command stream stops (chunk_node's queue ran out): no new targets, stale counted.
        probe.command_timer.cancel()
        probe.wait(lambda: probe.counter("stale_command") >= 5, "the stale command to be counted")
        stale = probe.count()
        probe.wait(lambda: probe.counter("stale_command") >= 30, "more stale ticks")
        assert probe.count() == stale
        assert "old" in probe.diag.get("last_skip_reason", "")
        probe.command_timer.reset()
        probe.wait(lambda: probe.count() >= stale + 10, "targets to resume after the command returns")
        probe.wait(lambda: probe.counter("resets") >= 1, "the histories to restart after the pause")
    finally:
        probe.close()
        node.stop()


def test_missing_checkpoint_files_stop_the_node_naming_each(tmp_path):
    write_amo_files(tmp_path)
    (tmp_path / "adapter_jit.pt").unlink()
    (tmp_path / "amo_jit.pt").unlink()
    log = tmp_path / "node.log"
    node = _start(tmp_path, log)
    process = node.proc
    try:
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            node.stop()
    text = log.read_text()
    assert process.returncode != 0
    assert "amo_jit.pt" in text and "adapter_jit.pt" in text, text[-2000:]
