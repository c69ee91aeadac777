"""Stand-ins for the two-machine link measurement (`psi0 bench link`, test_two_machines); no executable.

    python -m psi0_ros.nodes.link_peers robot --out metrics.json [--feature-dim 64 --tokens 8]
        [--keep-record] [--no-joint-states]
    python -m psi0_ros.nodes.link_peers clock --offset 2.0 [--topic /policy_clock]

robot: the robot's side of the link besides chunk_executor_node. A kinematic robot (its
/joint_states follow the executor's upper-body commands, 50 Hz) and the VLM features the policy
machine would compute from the robot's camera, stamped on the robot's clock at capture (5 Hz).
It watches what the executor ran (the per-tick commands, /psi0/executor_state) and the chunks as
they arrived, and on SIGINT writes psi0_ros.bench.link.link_metrics() of them as JSON (with
--keep-record, the raw record too, under "record": psi0_ros.bench.link.load_record reads it).
--no-joint-states: robot_bridge_node publishes the joint states (the fault runs); its safety
mode on /diagnostics is recorded over time.

clock: a policy machine whose ROS clock is off by --offset seconds: rosgraph_msgs/Clock at 200 Hz
with this machine's time plus the offset, for nodes started with use_sim_time and /clock remapped
to --topic.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _robot(args: argparse.Namespace) -> int:
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import JointState

    from psi0_ros import g1
    from psi0_ros.bench.link import link_metrics
    from psi0_ros.constants import (
        TOPIC_ACTION_CHUNK,
        TOPIC_DIAGNOSTICS,
        TOPIC_EXECUTOR_STATE,
        TOPIC_JOINT_STATES,
        TOPIC_LOWER_BODY_COMMAND,
        TOPIC_UPPER_BODY_COMMAND,
        TOPIC_VLM_FEATURES,
    )
    from psi0_ros.msg import ActionChunk, ExecutorState, LowerBodyCommand, VLMFeatures
    from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST, PERIODIC_LATEST
    from psi0_ros.nodes.runtime import spin_nodes
    from psi0_ros.ros_messages import (
        LOWER_BODY_FIELDS,
        action_chunk_array,
        joint_state_message,
        stamp_tick,
        vlm_features_message,
    )

    # The executor's reports are best effort, newest only; this peer records every one it gets (a
    # landing report followed at once by the next tick's must not overwrite it in the reader).
    reports_qos = QoSProfile(
        history=PERIODIC_LATEST.history,
        depth=200,
        reliability=PERIODIC_LATEST.reliability,
        durability=PERIODIC_LATEST.durability,
    )

    rate = 30.0
    record: dict[str, Any] = {
        "upper": {},  # tick -> the 28 upper-body targets the executor commanded
        "lower": {},  # tick -> the 8 lower-body command values
        "states": {},  # tick -> ExecutorState.state
        "reports": {},  # tick -> (state, executor start [ns], chunk id)
        "chunks": {},  # chunk id -> (start tick, prefix length, rows)
        "chunk_stamps": {},  # chunk id -> header stamp [ns] (the observation it was conditioned on)
        "landed": {},  # chunk id -> the executor's landing tick
        "executor": {},  # the executor's newest diagnostics
        "bridge": [],  # (robot time [s], safety mode, watchdog hold age, damp age) per bridge diagnostic
    }
    lock = threading.Lock()

    class RobotPeer(Node):
        def __init__(self) -> None:
            super().__init__("link_robot_peer")
            self.positions = g1.table("default", g1.ALL_JOINTS).astype(float).copy()
            rng = np.random.default_rng(0)
            self.features = rng.standard_normal((args.tokens, args.feature_dim)).astype(np.float32)
            self.seq = 0
            self.joints = self.create_publisher(JointState, TOPIC_JOINT_STATES, CONTROL)
            self.vlm = self.create_publisher(VLMFeatures, TOPIC_VLM_FEATURES, LARGE_LATEST)
            self.create_subscription(JointState, TOPIC_UPPER_BODY_COMMAND, self._on_upper, CONTROL)
            self.create_subscription(LowerBodyCommand, TOPIC_LOWER_BODY_COMMAND, self._on_lower, CONTROL)
            self.create_subscription(ExecutorState, TOPIC_EXECUTOR_STATE, self._on_state, reports_qos)
            self.create_subscription(ActionChunk, TOPIC_ACTION_CHUNK, self._on_chunk, CONTROL)
            self.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diagnostics, CONTROL)
            if not args.no_joint_states:
                self.create_timer(1 / 50.0, self._publish_joints)
            self.create_timer(1 / 5.0, self._publish_features)

        def _stamp(self) -> Time:
            return self.get_clock().now().to_msg()

        def _publish_joints(self) -> None:
            msg = joint_state_message(g1.ALL_JOINTS, self.positions)
            msg.header.stamp = self._stamp()
            self.joints.publish(msg)

        def _publish_features(self) -> None:
            mask = np.ones(args.tokens, bool)
            self.vlm.publish(vlm_features_message(self.features, mask, "", self.seq, self._stamp()))
            self.seq += 1

        def _on_upper(self, msg: JointState) -> None:
            tick = stamp_tick(msg.header.stamp.sec, msg.header.stamp.nanosec, rate)
            for name, value in zip(msg.name, msg.position, strict=False):
                self.positions[g1.JOINT_INDEX[name]] = value
            with lock:
                record["upper"][tick] = list(msg.position)

        def _on_lower(self, msg: LowerBodyCommand) -> None:
            tick = stamp_tick(msg.header.stamp.sec, msg.header.stamp.nanosec, rate)
            with lock:
                record["lower"][tick] = [float(getattr(msg, f)) for f in LOWER_BODY_FIELDS]

        def _on_state(self, msg: ExecutorState) -> None:
            with lock:
                record["states"][int(msg.tick)] = int(msg.state)
                started = msg.started.sec * 1_000_000_000 + msg.started.nanosec
                record["reports"][int(msg.tick)] = (int(msg.state), started, int(msg.chunk_id))
                if msg.chunk_id >= 0:
                    if not record["landed"]:
                        print(f"first chunk landed: {msg.chunk_id}", flush=True)  # run_cell waits for it
                    record["landed"][int(msg.chunk_id)] = int(msg.chunk_landed_tick)

        def _on_chunk(self, msg: ActionChunk) -> None:
            with lock:
                record["chunks"][int(msg.chunk_id)] = (
                    int(msg.start_tick),
                    int(msg.prefix_length),
                    action_chunk_array(msg).tolist(),
                )
                record["chunk_stamps"][int(msg.chunk_id)] = (
                    msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                )

        def _on_diagnostics(self, msg: DiagnosticArray) -> None:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name.startswith("chunk_executor_node"):
                    with lock:
                        record["executor"] = values
                elif status.name.startswith("robot_bridge_node"):
                    row = (time.time(), values.get("mode"))
                    row += (values.get("watchdog_hold_at_age_s"), values.get("watchdog_damp_at_age_s"))
                    with lock:
                        record["bridge"].append(row)

    def write(_reason: str) -> None:
        with lock:
            metrics = link_metrics(record, rate)
            if args.keep_record:
                metrics["record"] = record
        Path(args.out).write_text(json.dumps(metrics, indent=1))

    return spin_nodes(lambda: [RobotPeer()], [], after_spin=write)


def _clock(args: argparse.Namespace) -> int:
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock

    from psi0_ros.nodes.qos import CLOCK
    from psi0_ros.nodes.runtime import spin_nodes

    offset_ns = int(round(args.offset * 1e9))

    class ClockPeer(Node):
        def __init__(self) -> None:
            super().__init__("link_clock_peer")
            self.pub = self.create_publisher(Clock, args.topic, CLOCK)
            self.create_timer(1 / 200.0, self._publish)

        def _publish(self) -> None:
            ns = time.time_ns() + offset_ns
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            self.pub.publish(msg)

    return spin_nodes(lambda: [ClockPeer()], [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m psi0_ros.nodes.link_peers", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="peer", required=True)
    robot = sub.add_parser("robot")
    robot.add_argument("--out", required=True)
    robot.add_argument("--feature-dim", type=int, default=64)
    robot.add_argument("--tokens", type=int, default=8)
    robot.add_argument("--keep-record", action="store_true", help="also write every command, report and chunk")
    robot.add_argument("--no-joint-states", action="store_true", help="robot_bridge_node publishes them")
    clock = sub.add_parser("clock")
    clock.add_argument("--offset", type=float, default=0.0, help="seconds added to this machine's time")
    clock.add_argument("--topic", default="/policy_clock")
    args = parser.parse_args(argv)
    return _robot(args) if args.peer == "robot" else _clock(args)


if __name__ == "__main__":
    sys.exit(main())
