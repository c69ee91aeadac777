"""bag_recorder_node: `ros2 bag record` for machines without rosbag2 (what `psi0 record` runs).

Subscribes to the configured topics as serialized messages as soon as a publisher appears
(types discovered from the graph, QoS adapted to what the publishers offer, as rosbag2 does)
and hands the bytes to psi0_ros.data.recorder.BagRecorder, which writes the rosbag2 bag on its
own thread. A write failure shuts the node down; the caller reports it.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from psi0_ros.data.recorder import BagRecorder, OfferedQos, RecorderError
from psi0_ros.transport import apply_transport_defaults

NODE_NAME = "psi0_bag_recorder"
DISCOVERY_PERIOD_S = 0.25
SUBSCRIPTION_DEPTH = 100  # messages DDS may hold for us while the executor is busy


def message_class(msgtype: str) -> type:
    """ "pkg/msg/Name" -> the generated Python class (ImportError / AttributeError if missing)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class BagRecorderNode(Node):
    def __init__(
        self,
        recorder: BagRecorder,
        topics: Sequence[str],
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(NODE_NAME)
        self._recorder = recorder
        self._wanted = list(topics)
        self._recording: dict[str, object] = {}
        self._unrecordable: set[str] = set()
        self._on_fatal = on_fatal
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
            if self._on_fatal is not None:
                self._on_fatal(self._recorder.error)
            return
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


@dataclass
class RecordingOutcome:
    missing_topics: list[str]  # configured topics that never had a publisher
    error: str | None  # the recorder's write / close failure, if any


# After the bag is closed, tearing the DDS participant down gets this long; then the process exits
# with the status already decided (a stuck teardown was seen with Fast DDS's TCP transport, which
# FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA uses). The recording is complete on disk by then.
TEARDOWN_GRACE_S = 10.0


def run_recording(
    recorder: BagRecorder,
    topics: Sequence[str],
    report: Callable[[RecordingOutcome], int],
    make_extra_nodes: Callable[[], list] = list,
    duration_s: float | None = None,
    announce: Callable[[str], None] = print,
) -> int:
    """Record until Ctrl-C / SIGTERM, `duration_s` or a write failure; returns report()'s status.

    The recorder is closed (queue drained, metadata.yaml written) and report() called as soon as
    spinning stops, before any node or the DDS participant is torn down, so a slow or stuck
    middleware shutdown can never cost the bag or its summary. Humble-compatible rclpy use.
    """
    apply_transport_defaults()
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.utilities import get_default_context

    stopping = threading.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            stopping.set()
            announce(f"stopping: {reason}")
            get_default_context().try_shutdown()

    rclpy.init()
    nodes: list = []
    missing = list(topics)
    status = 1
    try:
        bag_node = BagRecorderNode(recorder, topics, on_fatal=stop)
        nodes = [bag_node, *make_extra_nodes()]
        executor = MultiThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        if duration_s is not None:
            timer = threading.Timer(duration_s, stop, args=(f"{duration_s} s recorded",))
            timer.daemon = True
            timer.start()
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        missing = bag_node.missing_topics
    finally:
        error = None
        try:
            recorder.close()
        except RecorderError as err:
            error = str(err)
        status = report(RecordingOutcome(missing, error))
        watchdog = threading.Timer(TEARDOWN_GRACE_S, os._exit, args=(status,))
        watchdog.daemon = True
        watchdog.start()
        for node in nodes:
            node.destroy_node()
        get_default_context().try_shutdown()
        watchdog.cancel()
    return status


def main(args: list[str] | None = None) -> int:
    """`ros2 run psi0_ros bag_recorder_node [psi0 record options]`: `psi0 record --bag-only`."""
    import sys

    from rclpy.utilities import remove_ros_args

    from psi0_ros.commands import record

    return record.main(["--bag-only", *remove_ros_args(list(sys.argv[1:] if args is None else args))])


if __name__ == "__main__":
    raise SystemExit(main())
