"""Per-tick command publishing shared by chunk_node and chunk_executor_node (not a node itself).

One 36-D action -> /psi0/upper_body_command (JointState, the 28 hand + arm targets by name) and
/psi0/lower_body_command (LowerBodyCommand, dims 28-35), both stamped with the tick's time in
the shared time base, so a subscriber can tell which tick each command belongs to.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState

from psi0_ros.constants import TOPIC_LOWER_BODY_COMMAND, TOPIC_UPPER_BODY_COMMAND, relative_topic
from psi0_ros.layout import ACTION_LOWER_BODY, ACTION_NAMES, ACTION_UPPER_BODY
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CONTROL
from psi0_ros.ros_messages import LOWER_BODY_FIELDS, tick_stamp

UPPER_BODY_NAMES = list(ACTION_NAMES[ACTION_UPPER_BODY])


class CommandOutput:
    def __init__(self, node: Any) -> None:
        self._upper = node.create_publisher(JointState, relative_topic(TOPIC_UPPER_BODY_COMMAND), CONTROL)
        self._lower = node.create_publisher(LowerBodyCommand, relative_topic(TOPIC_LOWER_BODY_COMMAND), CONTROL)
        self.published: Counter[str] = Counter()

    def publish(self, tick: int, action: np.ndarray, rate_hz: float) -> None:
        sec, nanosec = tick_stamp(tick, rate_hz)
        upper = JointState()
        upper.header.stamp = Time(sec=sec, nanosec=nanosec)
        upper.name = UPPER_BODY_NAMES
        upper.position = [float(v) for v in action[ACTION_UPPER_BODY]]
        lower = LowerBodyCommand()
        lower.header.stamp = upper.header.stamp
        for name, value in zip(LOWER_BODY_FIELDS, action[ACTION_LOWER_BODY], strict=False):
            setattr(lower, name, float(value))
        self._upper.publish(upper)
        self._lower.publish(lower)
        self.published[TOPIC_UPPER_BODY_COMMAND] += 1
        self.published[TOPIC_LOWER_BODY_COMMAND] += 1
