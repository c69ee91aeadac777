"""The deploy graph live: `psi0 deploy` (a process per node) with the sim backend and a tiny random
checkpoint made here, watched from this process on the real topics.

One run, in phases (each phase's start is found from the chunks themselves, not from wall time):
1. normal inference: every control tick between the first command and the first slow chunk has
   a command (zero gaps), and each chunk's frozen prefix equals the commands that ran;
2. injected delays below the execution horizon, then beyond the trained max delay (a sleep
   wrapper around the policy, chunk_node's debug.inference_delay_s): no crash, a diagnostic,
   a safe hold, and chunks resume when the latency drops;
3. vlm_node killed: chunk_node issues no new chunk after its features timeout, the bridge holds;
   a restarted vlm_node resumes the chunks;
4. one SIGINT to `psi0 deploy` ends every node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from psi0_ros.constants import (  # noqa: E402
    ACTION_UPPER_BODY,
    TOPIC_ACTION_CHUNK,
    TOPIC_DIAGNOSTICS,
    TOPIC_UPPER_BODY_COMMAND,
)
from psi0_ros.ros_messages import action_chunk_array, stamp_tick  # noqa: E402

RATE = 30.0
NORMAL_CHUNKS = 80  # >= 4 ticks apart (min_execution_horizon 4): a window of 10+ s
SLOW_CHUNKS = 4  # 0.15 s extra: below the execution horizon (12 ticks of queue at the request)
STALL_CHUNKS = 3  # 1.2 s extra: beyond the trained max delay and the queue
DELAYS = [0.0] * NORMAL_CHUNKS + [0.15] * SLOW_CHUNKS + [1.2] * STALL_CHUNKS + [0.0]
WAIT_S = 240.0  # generous bound for a loaded 2-core machine; the checks do not depend on it


class Watcher:
    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from psi0_ros.msg import ActionChunk
        from sensor_msgs.msg import JointState

        from psi0_ros.nodes.qos import CONTROL

        self.node = rclpy.create_node("deploy_graph_watcher")
        self.lock = threading.Lock()
        self.commands: dict[int, np.ndarray] = {}
        self.command_times: dict[int, float] = {}
        self.chunks: list = []
        self.chunk_times: list[float] = []
        self.diagnostics: list[tuple[float, str, int, str, dict]] = []
        self.node.create_subscription(JointState, TOPIC_UPPER_BODY_COMMAND, self._on_command, CONTROL)
        self.node.create_subscription(ActionChunk, TOPIC_ACTION_CHUNK, self._on_chunk, CONTROL)
        self.node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diag, CONTROL)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_command(self, msg) -> None:
        with self.lock:
            tick = stamp_tick(msg.header.stamp.sec, msg.header.stamp.nanosec, RATE)
            self.commands[tick] = np.asarray(msg.position)
            self.command_times[tick] = time.monotonic()

    def _on_chunk(self, msg) -> None:
        with self.lock:
            self.chunks.append(
                (int(msg.chunk_id), int(msg.start_tick), int(msg.prefix_length), action_chunk_array(msg))
            )
            self.chunk_times.append(time.monotonic())

    def _on_diag(self, msg) -> None:
        with self.lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics.append(
                    (
                        time.monotonic(),
                        status.name,
                        int.from_bytes(status.level, "little")
                        if isinstance(status.level, bytes)
                        else int(status.level),
                        status.message,
                        values,
                    )
                )

    def wait(self, condition, what: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _children(pid: int) -> dict[int, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                out[int(child)] = Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
            except FileNotFoundError:
                pass
    return out


@pytest.fixture
def checkpoint(tmp_path):
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path / "ckpt")


def test_deploy_graph_live(checkpoint, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    params = [
        "chunk_node:torch_threads=1",
        "vlm_node:torch_threads=1",
        "chunk_node:min_execution_horizon=4",  # tiny horizon 16: 12 queued actions at each request
        "chunk_node:features_timeout_s=2.0",
        "chunk_node:diagnostics_rate_hz=4.0",
        # The other processes on a shared test machine are not the robot's: do not let them starve
        # the inference thread (on the robot it yields to the control tick).
        "chunk_node:inference_niceness=0",
        f"chunk_node:debug.inference_delay_s={DELAYS}",
        "robot_bridge_node:sim.scene=empty",
        # Software rendering at 30 Hz starves the other nodes of a loaded 2-core machine; the VLM
        # runs on the newest frame anyway.
        "robot_bridge_node:sim.camera_rate_hz=5.0",
    ]
    command = [sys.executable, "-m", "psi0_ros.cli", "deploy", "--checkpoint", str(checkpoint)]
    command += ["--instruction", "pick up the can"] + [a for p in params for a in ("--param", p)]
    log = open(tmp_path / "deploy.log", "w")
    deploy = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    watcher = Watcher()
    restarted = None
    try:
        total = NORMAL_CHUNKS + SLOW_CHUNKS + STALL_CHUNKS
        watcher.wait(lambda: len(watcher.chunks) >= total + 6, f"{total + 6} chunks")
        assert deploy.poll() is None, "psi0 deploy died"
        with watcher.lock:
            chunks = sorted(watcher.chunks)
            commands = dict(watcher.commands)
            diagnostics = list(watcher.diagnostics)
        by_id = {c[0]: c for c in chunks}
        # Phase 1: zero gaps from the first command to the first slow chunk's request.
        first = min(commands)
        slow_start = by_id[NORMAL_CHUNKS][1]
        missing = [t for t in range(first, slow_start) if t not in commands]
        rtc_counters = [d[4] for d in diagnostics if d[1] == "chunk_node: rtc"]
        # Zero gaps, except ticks chunk_node itself reports as skipped: an OS stall of the whole
        # process longer than its late-replay window (seen only with other jobs loading the 2 test
        # cores). Those are counted on /diagnostics; an unreported gap, or more than 3, fails.
        reported = rtc_counters[-1] if rtc_counters else {}
        skipped = int(reported.get("skipped", 0))
        assert len(missing) <= min(skipped, 3), (
            f"{len(missing)} ticks without a command, {missing[:3]}..{missing[-1:]} (first {first}); "
            f"chunk_node says: {reported}"
        )
        assert slow_start - first >= 10 * RATE, "the gap-free window covers less than 10 s"
        # Frozen prefixes equal what ran.
        # A tick held because its chunk came too late (counted as "held" and "skipped" on
        # /diagnostics, only under an OS stall) ran the held pose instead: at most that many rows
        # may differ, and never more than 5% of them.
        checked, differing = 0, []
        for _chunk_id, start, prefix, actions in chunks:
            for i in range(prefix):
                if start + i in commands:
                    if not np.allclose(commands[start + i], actions[i, ACTION_UPPER_BODY], atol=1e-5):
                        differing.append(start + i)
                    checked += 1
        excused = int(reported.get("held", 0)) + skipped
        assert checked > 0
        assert len(differing) <= min(excused, checked // 20), (differing[:5], checked, reported)
        # Phase 2: delays below the horizon: no gaps through the slow chunks.
        stall_start = by_id[NORMAL_CHUNKS + SLOW_CHUNKS][1]
        assert all(t in commands for t in range(slow_start, stall_start))
        # Beyond the trained max delay: reported, a safe hold, and chunks resume (no crash).
        rtc = [d for d in diagnostics if d[1] == "chunk_node: rtc"]
        assert rtc and np.isfinite(float(rtc[-1][4]["inference_latency_p50_ms"]))
        assert any(int(d[4].get("delay_clamped", 0)) > 0 for d in rtc)
        assert any(d[2] == 1 for d in rtc), "no WARN diagnostic while chunks were late"
        assert any(int(d[4].get("held", 0)) > 0 for d in rtc)
        assert max(by_id) >= total + 5  # chunks kept coming after the stall

        # Phase 3: kill vlm_node; chunk_node stops issuing chunks, the bridge holds.
        vlm = [pid for pid, cmd in _children(deploy.pid).items() if "psi0_ros.nodes.vlm_node" in cmd]
        assert len(vlm) == 1
        os.kill(vlm[0], signal.SIGKILL)
        killed_at = time.monotonic()
        watcher.wait(
            lambda: any(
                d[0] > killed_at and d[1] == "robot_bridge_node: safety" and d[4].get("mode") in ("hold", "damp")
                for d in watcher.diagnostics
            ),
            "the bridge to hold after vlm_node died",
        )
        # The bridge may already hold from the stall phase: give the features time to go stale
        # (features_timeout_s) and an inference already running time to land, then count.
        time.sleep(max(0.0, killed_at + 2.0 + 1.5 - time.monotonic()))
        with watcher.lock:
            count = len(watcher.chunks)
        time.sleep(3.0)  # no new chunk in this window: the features have gone stale
        with watcher.lock:
            assert len(watcher.chunks) == count
        # A restarted vlm_node resumes the chunks and the commands.
        restarted = subprocess.Popen(
            [sys.executable, "-m", "psi0_ros.nodes.vlm_node", "--ros-args"]
            + ["-p", f"checkpoint:={checkpoint}", "-p", "instruction:=pick up the can", "-p", "torch_threads:=1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        watcher.wait(lambda: len(watcher.chunks) >= count + 3, "chunks after vlm_node restarted")
    finally:
        watcher.close()
        rclpy.shutdown()
        if restarted is not None:
            restarted.send_signal(signal.SIGINT)
        # Phase 4: one SIGINT ends the whole graph.
        nodes = list(_children(deploy.pid)) if deploy.poll() is None else []
        deploy.send_signal(signal.SIGINT)
        try:
            code = deploy.wait(timeout=60)
        finally:
            if deploy.poll() is None:
                deploy.kill()
            if restarted is not None:
                try:
                    restarted.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    restarted.kill()
            log.close()
    text = (tmp_path / "deploy.log").read_text()
    # 1: vlm_node was killed above (reported); every other node (bridge, chunk_node, ...) ended on the one SIGINT.
    assert code == 1 and "stopped; exit codes" in text, text[-3000:]
    assert len(nodes) >= 2 and not [pid for pid in nodes if Path(f"/proc/{pid}").exists()]
