"""chunk_executor_node: runs /psi0/action_chunk on the robot's machine when chunk_node runs on
another one (chunk_node publish_commands: false), one command per control tick (DESIGN §2).

Control ticks are the robot's: tick = floor(this machine's ROS time x control rate). Every tick
(and whenever a chunk lands) it publishes /psi0/executor_state (ExecutorState): the tick, the last
chunk it accepted and the tick it landed at. chunk_node on the other machine takes its ticks, its
RTC prefix and its delay estimate from that, so the machines' clocks need not agree.

Rows that land in the past are dropped, a duplicate or older chunk_id is ignored, a chunk
conditioned on an observation older than this executor's start is not followed (the robot
restarted: only a chunk conditioned on its own state runs), nor is a first chunk with a frozen
prefix (planned on the queue of the run before), and when chunks stop coming the
queue runs on until it is empty, holds (velocities zeroed) for hold_ticks, then the command
stream stops and the bridge's watchdog holds the robot. Same queue code as chunk_node
(psi0_ros.control.scheduler).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool

from psi0_ros.constants import (
    CONTROL_RATE_HZ,
    TOPIC_ACTION_CHUNK,
    TOPIC_DIAGNOSTICS,
    TOPIC_ESTOP,
    TOPIC_EXECUTOR_STATE,
    relative_topic,
)
from psi0_ros.control.scheduler import RTCScheduler, SchedulerConfig, TickOutput, catch_up_ticks, tick_at
from psi0_ros.msg import ActionChunk, ExecutorState
from psi0_ros.nodes.command_output import CommandOutput
from psi0_ros.nodes.qos import CONTROL, LATCHED, PERIODIC_LATEST
from psi0_ros.ros_messages import action_chunk_array, tick_stamp

NODE_NAME = "chunk_executor_node"
# Chunks across the link: best effort on this side (chunk_node's reliable publisher serves it).
# A reliable reader delivers in order, so one chunk lost on the link (a cut, a lost IP fragment)
# held back every newer chunk until Fast DDS repaired it on its next heartbeat (seconds): after a
# 2 s cut the fresh chunks landed late or entirely in the past. A lost chunk is worth nothing
# once a newer one exists; chunk_node resyncs to what this executor reports (unconfirmed_timeout_s).
CHUNKS_NEWEST = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=4,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)


class ChunkExecutorNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)

        def param(name: str, default: Any, text: str) -> Any:
            return self.declare_parameter(name, default, ParameterDescriptor(description=text)).value

        self.rate_hz = float(param("control_rate_hz", CONTROL_RATE_HZ, "control ticks per second"))
        hold = int(param("hold_ticks", 15, "ticks of safe hold after the queue runs dry; then silence"))
        topic = str(param("chunk_topic", relative_topic(TOPIC_ACTION_CHUNK), "ActionChunk topic to execute"))
        self.scheduler = RTCScheduler(SchedulerConfig(hold_ticks=hold, min_execution_horizon=1), horizon=1 << 16)
        self.counters: Counter[str] = Counter()
        self._estop = False
        self._started = self.get_clock().now()
        self._landed: tuple[int, int, int] = (-1, 0, 0)  # chunk id, start tick, landing tick
        self._first: tuple[int, int] = (-1, -1)  # this run's first accepted chunk: id, prefix length
        self._last: TickOutput | None = None
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(ActionChunk, topic, self._on_chunk, CHUNKS_NEWEST, callback_group=group)
        self.create_subscription(Bool, relative_topic(TOPIC_ESTOP), self._on_estop, LATCHED, callback_group=group)
        self.output = CommandOutput(self)
        self._state_pub = self.create_publisher(ExecutorState, relative_topic(TOPIC_EXECUTOR_STATE), PERIODIC_LATEST)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        self.create_timer(1.0 / self.rate_hz, self._on_tick, callback_group=group)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)

    def _now_tick(self) -> int:
        return tick_at(self.get_clock().now().nanoseconds * 1e-9, self.rate_hz)

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            actions = action_chunk_array(msg)
            if abs(msg.control_rate_hz - self.rate_hz) > 1e-6:
                raise ValueError(f"chunk rate {msg.control_rate_hz} Hz != this executor's {self.rate_hz} Hz")
        except ValueError as err:
            self.counters["chunks_rejected"] += 1
            self.get_logger().warning(f"dropped chunk: {err}", throttle_duration_sec=2.0)
            return
        observed_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if observed_ns < self._started.nanoseconds:
            # Conditioned on what the robot saw before this executor started (the robot side
            # restarted while the policy kept publishing): not followed.
            self.counters["chunks_before_start"] += 1
            self.get_logger().info(
                f"ignored chunk {msg.chunk_id}: conditioned on an observation before this executor started",
                throttle_duration_sec=2.0,
            )
            return
        if self._landed[0] < 0 and msg.prefix_length > 0:
            # The first chunk of a run is planned from rest (prefix 0). One with a frozen prefix was
            # planned on another run's queue: chunk_node asked before it saw this executor start.
            self.counters["chunks_prefix_of_another_run"] += 1
            self.get_logger().info(
                f"ignored chunk {msg.chunk_id}: its {msg.prefix_length} frozen rows are not this executor's",
                throttle_duration_sec=2.0,
            )
            return
        land = self.scheduler.next_tick
        result = self.scheduler.accept_chunk(int(msg.chunk_id), int(msg.start_tick), actions)
        if not result.accepted:
            self.get_logger().info(f"ignored chunk {msg.chunk_id}: {result.reason}", throttle_duration_sec=2.0)
            return
        start = int(msg.start_tick)
        self._landed = (int(msg.chunk_id), start, start if land is None else land)
        if self._first[0] < 0:
            self._first = (int(msg.chunk_id), int(msg.prefix_length))
        if self._last is not None:
            self._publish_state(self._last)  # the landing goes out now, not with the next tick

    def _on_estop(self, msg: Bool) -> None:
        self._estop = bool(msg.data)

    def _on_tick(self) -> None:
        ticks = catch_up_ticks(self.scheduler.next_tick, self._now_tick())
        if ticks and self._estop:
            self.scheduler.queue.clear_from(ticks[0])
        for tick in ticks:
            output = self.scheduler.on_tick(tick)
            if output.action is not None and not self._estop:
                if not output.holding and (self._last is None or self._last.action is None):
                    self._count_resume(tick)
                self.output.publish(output.tick, output.action, self.rate_hz)
            self._last = output
        if ticks:
            self._publish_state(self._last)

    def _count_resume(self, tick: int) -> None:
        """The first planned action after a stop (or this run's first) comes from a chunk that was
        planned from rest: the rows of it skipped before it (landed late, or before the first tick)
        are motion the robot never made, a jump at resumption. Its row is reported."""
        row = tick - self._landed[1]
        self.counters["resumes"] += 1
        self.counters["resume_row_last"] = row
        self.counters["resume_row_max"] = max(self.counters["resume_row_max"], row)

    def _publish_state(self, output: TickOutput) -> None:
        msg = ExecutorState()
        msg.header.stamp.sec, msg.header.stamp.nanosec = tick_stamp(output.tick, self.rate_hz)
        msg.started = self._started.to_msg()
        msg.tick = int(output.tick)
        msg.control_rate_hz = self.rate_hz
        msg.chunk_id, msg.chunk_start_tick, msg.chunk_landed_tick = self._landed
        msg.queue_depth = self.scheduler.depth()
        if output.action is None or self._estop:
            msg.state = ExecutorState.STOPPED
        else:
            msg.state = ExecutorState.HOLDING if output.holding else ExecutorState.RUNNING
        self._state_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        counters = self.scheduler.stats.counters
        status = DiagnosticStatus(name=f"{NODE_NAME}: queue", level=DiagnosticStatus.OK, message="running")
        if counters["stopped"]:
            status.level, status.message = DiagnosticStatus.WARN, "no chunk to run: command stream stopped"
        values = {"queue_depth": self.scheduler.depth(), **counters, **self.counters}
        # which chunk this run started from: the landing reports are best effort, this is not
        values["first_chunk_id"], values["first_chunk_prefix"] = self._first
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [ChunkExecutorNode()], args)


if __name__ == "__main__":
    sys.exit(main())
