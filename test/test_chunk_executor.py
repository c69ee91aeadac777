"""chunk_executor_node in a real process, fed by this test acting as the relay between chunk_node
and the robot: a chunk runs at its start_tick, a duplicate and an older chunk_id are ignored, a
chunk that lands late has its past rows dropped and the rest run at their ticks, and when chunks
stop coming the queue runs out, holds, then the command stream stops. A chunk conditioned on an
observation from before the executor started (the robot restarted) is not followed, nor a first
chunk that carries frozen prefix rows (planned on the queue of the run before). The executor's
diagnostics report the row each resumption after a stop began at (rows of motion skipped)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

RATE = 30.0
HORIZON = 30
HOLD = 6


def _chunk(chunk_id: int, start_tick: int, base: float, stamp, prefix: int = 0):
    from psi0_ros.constants import ACTION_NAMES
    from psi0_ros.ros_messages import action_chunk_message

    actions = np.zeros((HORIZON, 36), np.float32)
    actions[:, 0] = base + np.arange(HORIZON)
    actions[:, 32] = 0.2  # vx
    return action_chunk_message(chunk_id, start_tick, actions, prefix, RATE, 1.0, ACTION_NAMES, stamp)


def test_executor_runs_late_duplicate_older_and_lost_chunks():
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from psi0_ros.msg import ActionChunk, LowerBodyCommand
    from sensor_msgs.msg import JointState

    from psi0_ros.constants import (
        TOPIC_ACTION_CHUNK,
        TOPIC_DIAGNOSTICS,
        TOPIC_LOWER_BODY_COMMAND,
        TOPIC_UPPER_BODY_COMMAND,
    )
    from psi0_ros.control.scheduler import tick_at
    from psi0_ros.nodes.qos import CONTROL
    from psi0_ros.ros_messages import stamp_tick

    proc = subprocess.Popen(
        [sys.executable, "-m", "psi0_ros.nodes.chunk_executor_node", "--ros-args", "-p", f"hold_ticks:={HOLD}"]
    )
    rclpy.init()
    node = rclpy.create_node("chunk_relay")
    upper: dict[int, float] = {}
    lower: dict[int, float] = {}

    def on_upper(msg):
        upper[stamp_tick(msg.header.stamp.sec, msg.header.stamp.nanosec, RATE)] = msg.position[0]

    def on_lower(msg):
        lower[stamp_tick(msg.header.stamp.sec, msg.header.stamp.nanosec, RATE)] = msg.vx

    node.create_subscription(JointState, TOPIC_UPPER_BODY_COMMAND, on_upper, CONTROL)
    node.create_subscription(LowerBodyCommand, TOPIC_LOWER_BODY_COMMAND, on_lower, CONTROL)
    diagnostics: dict[str, str] = {}

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name.startswith("chunk_executor_node"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, on_diagnostics, CONTROL)
    pub = node.create_publisher(ActionChunk, TOPIC_ACTION_CHUNK, CONTROL)

    def now():  # the observation a chunk is conditioned on: after the executor started
        return node.get_clock().now().to_msg()

    def now_tick() -> int:
        return tick_at(node.get_clock().now().nanoseconds * 1e-9, RATE)

    def spin_until(condition, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            rclpy.spin_once(node, timeout_sec=0.02)
        assert condition(), "timed out"

    try:
        spin_until(lambda: pub.get_subscription_count() > 0)
        time.sleep(0.5)  # let the executor's subscription match fully
        # A first chunk with frozen rows (planned on the queue of a run before this executor's), alone:
        # the reader keeps the newest 4 chunks, so in the burst below it could be dropped unread.
        pub.publish(_chunk(4, now_tick() + 5, 400.0, now(), prefix=2))
        settle = time.monotonic() + 0.8
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.02)
        t0 = now_tick()
        pub.publish(_chunk(5, t0 + 15, 500.0, now()))
        pub.publish(_chunk(5, t0 + 15, 900.0, now()))  # duplicate id: ignored
        pub.publish(_chunk(3, t0 + 15, 300.0, now()))  # older id: ignored
        before = Time(sec=1, nanosec=0)  # conditioned on what the robot saw before the executor started
        pub.publish(_chunk(9, t0 + 15, 700.0, before))
        spin_until(lambda: max(upper, default=0) >= t0 + 25)
        late_start = t0 + 20
        pub.publish(_chunk(6, late_start, 600.0, now()))  # lands after its start_tick
        end = late_start + HORIZON - 1
        spin_until(lambda: max(upper, default=0) >= end + HOLD)
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.02)
        assert max(upper) == end + HOLD, "commands continued after the hold"
        stopped = dict(upper)
        # From the stop, a chunk that starts 10 ticks before now: its first rows are past.
        resume_start = now_tick() - 10
        pub.publish(_chunk(7, resume_start, 800.0, now()))
        spin_until(lambda: len(upper) > len(stopped))
        spin_until(lambda: diagnostics.get("resumes") == "2")
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert min(upper) == t0 + 15, "the prefixed first chunk was followed"
    ticks = sorted(t for t in stopped if t >= t0 + 15)
    assert ticks == list(range(t0 + 15, end + HOLD + 1)), "a tick without a command"
    landed = min(t for t in ticks if upper[t] >= 600)
    assert landed > late_start  # it was late: rows late_start..landed-1 never ran
    for t in ticks:
        if t < landed:
            assert upper[t] == 500 + (t - t0 - 15)
        elif t <= end:
            assert upper[t] == 600 + (t - late_start)
        else:  # hold: the last pose, velocities zeroed
            assert upper[t] == 600 + HORIZON - 1 and lower[t] == 0.0
    assert all(lower[t] == pytest.approx(0.2) for t in ticks if t <= end)
    resumed = min(t for t in upper if t not in stopped)
    assert upper[resumed] == 800 + (resumed - resume_start) and resumed - resume_start >= 10
    assert diagnostics["resume_row_last"] == str(resumed - resume_start), diagnostics
    assert diagnostics["resume_row_max"] == diagnostics["resume_row_last"]  # the first chunk ran from row 0
