"""bag_recorder_node: `ros2 bag record` for machines without rosbag2 (what `psi0 record` runs).

Subscribes to the configured topics as serialized messages as soon as a publisher appears
(types discovered from the graph, QoS adapted to what the publishers offer, as rosbag2 does)
and hands the bytes to psi0_ros.data.recorder.BagRecorder, which writes the rosbag2 bag on its
own thread. The process around it is `psi0 record` (psi0_ros.commands.record, on the one runtime
of psi0_ros.nodes.runtime); the `bag_recorder_node` executable runs `psi0 record --bag-only`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from psi0_ros.data.recorder import BagRecorder, OfferedQos, RecorderError

NODE_NAME = "psi0_bag_recorder"
DISCOVERY_PERIOD_S = 0.25
SUBSCRIPTION_DEPTH = 100  # messages DDS may hold for us while the executor is busy


def message_class(msgtype: str) -> type:
    """ "pkg/msg/Name" -> the generated Python class (ImportError / AttributeError if missing)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class BagRecorderNode(Node):
    def __init__(
        self, recorder: BagRecorder, topics: Sequence[str], parameter_overrides: Sequence[Parameter] = ()
    ) -> None:
        super().__init__(NODE_NAME, parameter_overrides=list(parameter_overrides))
        self._recorder = recorder
        self._wanted = list(topics)
        self._recording: dict[str, object] = {}
        self._unrecordable: set[str] = set()
        self._discover()
        self.create_timer(DISCOVERY_PERIOD_S, self._discover)

    @property
    def recorded_topics(self) -> list[str]:
        return sorted(self._recording)

    @property
    def missing_topics(self) -> list[str]:
        return [t for t in self._wanted if t not in self._recording]

    def _discover(self) -> None:
        if self._recorder.error is not None:
            return  # `psi0 record` stops on it (spin_nodes' until)
        types = dict(self.get_topic_names_and_types())
        for topic in self._wanted:
            if topic in self._recording or topic in self._unrecordable or topic not in types:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # only subscribers so far: wait for someone who publishes
            msgtype = types[topic][0]
            if len(types[topic]) > 1:
                self.get_logger().warning(f"{topic} has several types {types[topic]}; recording {msgtype}")
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
            latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
            try:
                cls = message_class(msgtype)
                self._recorder.add_topic(topic, msgtype, OfferedQos(reliable, latched, publishers[0].qos_profile.depth))
            except (ImportError, AttributeError, ValueError, RecorderError) as err:
                self._unrecordable.add(topic)
                self.get_logger().error(f"cannot record {topic} ({msgtype}): {err}")
                continue
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=SUBSCRIPTION_DEPTH,
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            self._recording[topic] = self.create_subscription(
                cls, topic, lambda data, topic=topic: self._on_message(topic, data), qos, raw=True
            )
            self.get_logger().info(f"recording {topic} [{msgtype}]")

    def _on_message(self, topic: str, data: bytes) -> None:
        self._recorder.write(topic, data, self.get_clock().now().nanoseconds)
