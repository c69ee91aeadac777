"""sim_demo_node: publishes psi0_ros.sim.demo's scripted motion on the real command topics.

/psi0/upper_body_command (arms + hands) and, unless lower_body is false, /psi0/lower_body_command
at rate_hz (default 30, the policy's control rate), so the motion passes robot_bridge_node's
safety layer exactly as a policy's commands would.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import JointState

from psi0_ros import g1, ros_messages
from psi0_ros.constants import CONTROL_RATE_HZ, TOPIC_LOWER_BODY_COMMAND, TOPIC_UPPER_BODY_COMMAND, relative_topic
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CONTROL
from psi0_ros.sim.demo import DemoScript


class SimDemoNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("sim_demo_node", **node_kwargs)
        rate = self.declare_parameter(
            "rate_hz", CONTROL_RATE_HZ, ParameterDescriptor(description="command publish rate (Hz)")
        ).value
        self.lower_body = self.declare_parameter(
            "lower_body", True, ParameterDescriptor(description="also publish /psi0/lower_body_command (walk, squat)")
        ).value
        self.script = DemoScript()
        self.published: Counter[str] = Counter()
        self._upper_pub = self.create_publisher(JointState, relative_topic(TOPIC_UPPER_BODY_COMMAND), CONTROL)
        self._lower_pub = self.create_publisher(LowerBodyCommand, relative_topic(TOPIC_LOWER_BODY_COMMAND), CONTROL)
        self._start = time.monotonic()
        self.create_timer(1.0 / float(rate), self._tick)
        self.get_logger().info(f"publishing the demo motion at {float(rate):g} Hz")

    def _tick(self) -> None:
        upper, lower = self.script.sample(time.monotonic() - self._start)
        stamp = self.get_clock().now().to_msg()
        joints = ros_messages.joint_state_message(g1.UPPER_BODY_JOINTS, upper, cls=JointState)
        joints.header.stamp = stamp
        self._upper_pub.publish(joints)
        self.published[TOPIC_UPPER_BODY_COMMAND] += 1
        if self.lower_body:
            msg = ros_messages.lower_body_command_message(lower, cls=LowerBodyCommand)
            msg.header.stamp = stamp
            self._lower_pub.publish(msg)
            self.published[TOPIC_LOWER_BODY_COMMAND] += 1


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [SimDemoNode()], args)


if __name__ == "__main__":
    sys.exit(main())
