"""The latched estop across bridge restarts and late estop nodes, in real processes under CPU load.

A robot_bridge_node (sim backend, kinematic base, config/sim.yaml with its 1 s estop wait) is
SIGKILLed and started again while a latched /psi0/estop = true publisher (its own participant)
and a 30 Hz upper-body command stream run, with one busy process per core: discovery is slow,
and the latched sample may arrive long after the wait. Each restart must reach ESTOP without a
single ACTIVE tick. Then, with no estop publisher at all, a fresh bridge must still start and
follow; an estop node that appears later stops the following until its latched value is known,
and its true engages the estop. Every wait polls with a generous timeout (a shared machine).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers.ros_nodes import ROOT, NodeProcess, ProbeNode, ros_parameters, upper_body_targets  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from psi0_ros import g1  # noqa: E402
from psi0_ros.constants import TOPIC_DIAGNOSTICS, TOPIC_ESTOP, TOPIC_JOINT_STATES, TOPIC_UPPER_BODY_COMMAND  # noqa: E402
from psi0_ros.nodes.qos import CONTROL, LATCHED  # noqa: E402

SIM_YAML = ROOT / "config" / "sim.yaml"
RESTARTS = 3
TIMEOUT = 120.0  # s, for any one condition on a loaded 2-core machine with the burners running
# Joints that gravity hardly moves when damped, so motion toward these is the bridge following.
TARGETS = {"left_shoulder_yaw_joint": 0.9, "right_shoulder_yaw_joint": -0.9}


class Probe(ProbeNode):
    """Streams upper-body targets at 30 Hz; keeps /joint_states and /diagnostics with receipt times."""

    timeout = TIMEOUT
    not_yet = (KeyError, IndexError, ValueError)

    def __init__(self) -> None:
        super().__init__("psi0_estop_discovery_probe")
        self.joints: list[tuple[float, np.ndarray]] = []
        self.diags: list[tuple[float, dict[str, str]]] = []
        self.targets = upper_body_targets(**TARGETS)
        self.upper = self.node.create_publisher(JointState, TOPIC_UPPER_BODY_COMMAND, CONTROL)
        self.node.create_subscription(JointState, TOPIC_JOINT_STATES, self._on_joints, CONTROL)
        self.node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diag, CONTROL)
        self.start()
        self._streamer = threading.Thread(target=self._stream, daemon=True)
        self._streamer.start()

    def _on_joints(self, msg: JointState) -> None:
        with self.lock:
            self.joints.append((time.monotonic(), np.array(msg.position)))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diags.append((time.monotonic(), {kv.key: kv.value for kv in msg.status[0].values}))

    def _stream(self) -> None:
        while not self.closing.wait(1.0 / 30.0):
            msg = JointState()
            with self.lock:
                msg.name, msg.position = list(g1.UPPER_BODY_JOINTS), self.targets.tolist()
            self.upper.publish(msg)

    def diags_since(self, t: float) -> list[dict[str, str]]:
        with self.lock:
            return [values for stamp, values in self.diags if stamp >= t]

    def newest(self, t: float) -> dict[str, str]:
        return self.diags_since(t)[-1]

    def q_since(self, t: float) -> np.ndarray:
        with self.lock:
            return np.array([q for stamp, q in self.joints if stamp >= t])

    def close(self) -> None:
        self.closing.set()
        self._streamer.join()
        super().close()


class EstopNode:
    """An estop from its own participant, as an operator's estop node or `ros2 topic pub` is."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("psi0_estop_operator", context=self.context)
        self.publisher = self.node.create_publisher(Bool, TOPIC_ESTOP, LATCHED)

    def publish(self, engaged: bool) -> None:
        self.publisher.publish(Bool(data=engaged))

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope="module")
def probe():
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)
    ]  # one busy process per core of the CI machine
    probe = Probe()
    try:
        yield probe
    finally:
        probe.close()
        for burner in burners:
            burner.kill()
            burner.wait()


def start_bridge(log) -> NodeProcess:
    overrides = {
        "sim.scene": "empty",
        "sim.camera_mode": "'off'",  # quoted: a bare off is YAML for false
        "safety.auto_resume": "false",
        "diagnostics_rate_hz": "20.0",
    }
    return NodeProcess("psi0_ros.nodes.robot_bridge_node", *ros_parameters(overrides, SIM_YAML), log=log)


def kill(process: NodeProcess) -> None:
    process.proc.kill()  # SIGKILL: no clean-up, as a crash or `kill -9`
    process.proc.wait()


def progress_toward_targets(qs: np.ndarray) -> float:
    """How far (rad) any target joint moved toward its target since the first state in qs."""
    worst = 0.0
    for joint, target in TARGETS.items():
        i = g1.JOINT_INDEX[joint]
        worst = max(worst, float(((qs[:, i] - qs[0, i]) * np.sign(target - qs[0, i])).max()))
    return worst


def test_a_restarted_bridge_follows_nothing_before_the_latched_estop(probe, tmp_path):
    estop = EstopNode()
    estop.publish(True)  # latched, before any bridge exists; commands stream all along
    try:
        for round_ in range(RESTARTS):
            since = time.monotonic()
            bridge = start_bridge(tmp_path / f"robot_bridge_node_{round_}.log")
            try:
                probe.wait(lambda since=since: probe.newest(since)["mode"] == "estop", f"ESTOP after restart {round_}")
                time.sleep(1.0)  # commands keep streaming
                diags = probe.diags_since(since)
                modes = [d["mode"] for d in diags]
                assert "active" not in modes and all(d["ticks_active"] == "0" for d in diags), (round_, modes)
                qs = probe.q_since(since)
                assert qs.shape[0] > 10 and progress_toward_targets(qs) < 0.01, round_
            finally:
                kill(bridge)
    finally:
        estop.close()


def test_without_an_estop_node_a_bridge_starts_and_a_late_estop_node_stops_it(probe, tmp_path):
    since = time.monotonic()
    bridge = start_bridge(tmp_path / "robot_bridge_node_late.log")
    estop = None
    try:
        probe.wait(lambda: probe.newest(since)["mode"] == "active", "ACTIVE with no estop publisher at all")
        assert probe.newest(since)["estop_publishers"] == "0"
        joint = "left_shoulder_yaw_joint"
        i = g1.JOINT_INDEX[joint]
        probe.wait(lambda: abs(probe.q_since(since)[-1, i] - TARGETS[joint]) < 0.05, "the target reached")
        estop = EstopNode()  # an estop node starts; its publisher is matched before it says anything
        probe.wait(lambda: probe.newest(since)["estop_publishers_unheard"] == "1", "the estop publisher matched")
        probe.wait(lambda: probe.newest(since)["mode"] == "hold", "HOLD while its value is not known")
        with probe.lock:
            probe.targets = upper_body_targets(**{joint: -0.9})  # the stream asks for a big move now
        held_since = time.monotonic()
        time.sleep(1.5)
        qs = probe.q_since(held_since)
        assert np.ptp(qs[:, i]) < 0.02, qs[:, i]  # not followed
        assert {d["mode"] for d in probe.diags_since(held_since)} == {"hold"}
        estop.publish(True)
        probe.wait(lambda: probe.newest(since)["mode"] == "estop", "ESTOP from the late estop node")
        assert probe.newest(since)["estop_publishers_unheard"] == "0"
    finally:
        if estop is not None:
            estop.close()
        bridge.stop()
