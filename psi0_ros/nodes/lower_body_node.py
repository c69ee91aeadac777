"""lower_body_node: System-0 (AMO) at 50 Hz, lower-body command in, leg + waist targets out.

Thin shell over psi0_ros.control.amo (DESIGN §2, shared/AMO.md). Subscribes
/psi0/lower_body_command, /joint_states and /imu/data; publishes /psi0/lower_body_targets
(sensor_msgs/JointState, the 15 g1.LOWER_BODY_JOINTS) and /diagnostics. A missing, stale or
non-finite input means no new targets: the robot bridge's watchdog then holds.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState

from psi0_ros import g1, ros_messages
from psi0_ros.constants import (
    TOPIC_DIAGNOSTICS,
    TOPIC_IMU,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_LOWER_BODY_TARGETS,
    relative_topic,
)
from psi0_ros.control.amo import AMO_JOINTS, AmoCommand, AmoController, AmoRunner, LowerBodyConfig
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CONTROL

NODE_NAME = "lower_body_node"
_DESCRIPTIONS = {
    "checkpoint_dir": "directory with AMO's amo_jit.pt, adapter_jit.pt, adapter_norm_stats.pt",
    "rate_hz": "AMO step rate (Hz); AMO is trained at 50 Hz",
    "state_timeout_s": "/joint_states or /imu/data older than this (s): no new targets",
    "command_timeout_s": "/psi0/lower_body_command older than this (s): no new targets",
    "reset_after_s": "a pause in stepping longer than this (s) restarts AMO's histories",
    "quantize_velocity": "apply Psi0's robot-client base-velocity quantisation (vx 0/0.35, vy 0/+-0.5)",
    "device": "torch device for AMO (cpu or cuda)",
}


# Message -> vector conversions, local until psi0_ros.ros_messages provides them.
def joint_state_view(msg: JointState, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """(q, dq) of the named joints from a JointState; None if a joint or its velocity is missing."""
    try:
        return (
            ros_messages.joint_state_to_vector(msg, names, "position"),
            ros_messages.joint_state_to_vector(msg, names, "velocity"),
        )
    except ValueError:
        return None


def imu_vectors(msg: Imu) -> tuple[np.ndarray, np.ndarray]:
    """(quaternion w, x, y, z as AMO takes it; angular velocity rad/s) of an Imu message."""
    xyzw, gyro, _ = ros_messages.imu_to_vectors(msg)
    return np.roll(xyzw, 1), gyro


def amo_command(msg: LowerBodyCommand) -> AmoCommand:
    return AmoCommand.from_vector(ros_messages.lower_body_command_to_vector(msg))


class LowerBodyNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        defaults = LowerBodyConfig.__dataclass_fields__
        values = {}
        for name, text in _DESCRIPTIONS.items():
            self.declare_parameter(name, defaults[name].default, ParameterDescriptor(description=text))
            values[name] = self.get_parameter(name).value
        config = LowerBodyConfig(**values)
        controller = AmoController.load(config.checkpoint_dir, device=config.device, quantize=config.quantize_velocity)
        self.runner = AmoRunner(controller, config)
        self._lock = threading.Lock()
        self._tick_times: list[float] = []  # monotonic s of recent published steps, for the rate
        self._published = 0
        self._missing_joint_warned = False

        inputs = MutuallyExclusiveCallbackGroup()
        loop = MutuallyExclusiveCallbackGroup()
        self.create_subscription(
            JointState, relative_topic(TOPIC_JOINT_STATES), self._on_joints, CONTROL, callback_group=inputs
        )
        self.create_subscription(Imu, relative_topic(TOPIC_IMU), self._on_imu, CONTROL, callback_group=inputs)
        self.create_subscription(
            LowerBodyCommand, relative_topic(TOPIC_LOWER_BODY_COMMAND), self._on_command, CONTROL, callback_group=inputs
        )
        self._targets_pub = self.create_publisher(JointState, relative_topic(TOPIC_LOWER_BODY_TARGETS), CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        self.create_timer(1.0 / config.rate_hz, self._tick, callback_group=loop)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=loop)
        self.get_logger().info(f"AMO from {config.checkpoint_dir} at {config.rate_hz:g} Hz")

    def _on_joints(self, msg: JointState) -> None:
        view = joint_state_view(msg, AMO_JOINTS)
        if view is None:
            if not self._missing_joint_warned:
                self.get_logger().warning("/joint_states lacks an AMO joint or its velocity: ignored")
                self._missing_joint_warned = True
            return
        with self._lock:
            self.runner.submit("joint_states", view, time.monotonic())

    def _on_imu(self, msg: Imu) -> None:
        with self._lock:
            self.runner.submit("imu", imu_vectors(msg), time.monotonic())

    def _on_command(self, msg: LowerBodyCommand) -> None:
        with self._lock:
            self.runner.submit("command", amo_command(msg), time.monotonic())

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            targets = self.runner.tick(now)
            reason = self.runner.last_skip_reason
        if targets is None:
            self.get_logger().warning(f"no lower-body targets: {reason}", throttle_duration_sec=2.0)
            return
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(g1.LOWER_BODY_JOINTS)
        msg.position = targets.tolist()
        self._targets_pub.publish(msg)
        self._published += 1
        self._tick_times.append(now)
        del self._tick_times[:-100]

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._lock:
            counters = dict(self.runner.counters)
            ages = self.runner.ages(now)
            reason = self.runner.last_skip_reason
        recent = [t for t in self._tick_times if now - t <= 2.0]
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        status = DiagnosticStatus()
        status.name = f"{NODE_NAME}: AMO"
        status.hardware_id = "amo"
        fresh = bool(recent) and now - recent[-1] < 0.2
        status.level = DiagnosticStatus.OK if fresh else DiagnosticStatus.WARN
        status.message = f"{rate:.1f} Hz" if fresh else f"no targets: {reason or 'not stepping'}"
        values: dict[str, object] = {"rate_hz": f"{rate:.1f}", "published": self._published}
        values.update(counters)
        for name, age in ages.items():
            values[f"{name}_age_s"] = "none" if age is None else f"{age:.3f}"
        values["last_skip_reason"] = reason
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [LowerBodyNode()], args)


if __name__ == "__main__":
    sys.exit(main())
