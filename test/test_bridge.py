"""robot_bridge_node with the sim backend in a real process, watched over real DDS topics.

One bridge process serves the whole module (starting MuJoCo + rclpy costs seconds); the tests
run in file order and each begins by sending fresh commands. Every wait polls a condition with
a generous timeout: the machine is shared and slow.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from helpers.tiers import require

rclpy = require("rclpy")
require("mujoco")
require("psi0_ros.msg", "the generated messages (make setup)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers.ros_nodes import ROOT, NodeProcess, ProbeNode, ros_parameters, upper_body_targets  # noqa: E402
from psi0_ros.msg import LowerBodyCommand  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, Imu, JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from psi0_ros import g1, ros_messages  # noqa: E402
from psi0_ros.constants import (  # noqa: E402
    LOWER_BODY_COMMAND_NAMES,
    TOPIC_CAMERA_INFO,
    TOPIC_DIAGNOSTICS,
    TOPIC_ESTOP,
    TOPIC_IMAGE,
    TOPIC_IMU,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_UPPER_BODY_COMMAND,
)
from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST, LATCHED  # noqa: E402

SIM_YAML = ROOT / "config" / "sim.yaml"
HOLD_AFTER_S, DAMP_AFTER_S = 0.4, 1.5
MAX_VELOCITY = 1.0  # rad/s: the step-jump test relies on this cap
MARGIN = 0.02
TIMEOUT = 60.0  # s, for any one condition on a loaded 2-core machine
UPPER_DEFAULT = g1.table("default", g1.UPPER_BODY_JOINTS)


class Probe(ProbeNode):
    """The test's side of the graph: publishes commands, keeps the newest messages it receives."""

    timeout = TIMEOUT
    not_yet = (TypeError, ValueError, KeyError, AttributeError)  # a message not there yet

    def __init__(self) -> None:
        super().__init__("psi0_bridge_probe")
        self.history: list[tuple[float, np.ndarray, np.ndarray]] = []  # (t, q, dq) of every /joint_states
        self.upper = self.node.create_publisher(JointState, TOPIC_UPPER_BODY_COMMAND, CONTROL)
        self.lower = self.node.create_publisher(LowerBodyCommand, TOPIC_LOWER_BODY_COMMAND, CONTROL)
        self.estop = self.node.create_publisher(Bool, TOPIC_ESTOP, LATCHED)
        self.watch(JointState, TOPIC_JOINT_STATES, CONTROL, keep=self._keep_joints)
        self.watch(Imu, TOPIC_IMU, CONTROL)
        self.watch(DiagnosticArray, TOPIC_DIAGNOSTICS, CONTROL)
        self.watch(Image, TOPIC_IMAGE, LARGE_LATEST)
        self.watch(CameraInfo, TOPIC_CAMERA_INFO, CONTROL)
        self._stream: threading.Thread | None = None
        self._stream_stop = threading.Event()
        self.upper_targets = UPPER_DEFAULT.copy()
        self.start()

    def _keep_joints(self, msg: JointState) -> None:
        self.history.append((time.monotonic(), np.array(msg.position), np.array(msg.velocity)))

    def q(self, joint: str) -> float:
        msg = self.get(TOPIC_JOINT_STATES)
        return float(msg.position[list(msg.name).index(joint)])

    def diagnostics(self) -> dict[str, str]:
        msg = self.get(TOPIC_DIAGNOSTICS)
        return {} if msg is None else {kv.key: kv.value for kv in msg.status[0].values}

    details = diagnostics

    def counter(self, name: str) -> int:
        return int(self.diagnostics().get(name, "0"))

    def send_upper(self, names: list[str], positions: list[float]) -> None:
        msg = JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name, msg.position = names, [float(p) for p in positions]
        self.upper.publish(msg)

    def set_targets(self, **targets: float) -> None:
        """Change what the 30 Hz stream sends (all 28 upper-body joints)."""
        values = upper_body_targets(**targets)
        with self.lock:
            self.upper_targets = values

    def start_stream(self, rate_hz: float = 30.0) -> None:
        """Publish the upper-body targets at rate_hz, like chunk_node does, until stop_stream()."""
        if self._stream is not None:
            return
        self._stream_stop.clear()

        def loop() -> None:
            while not self._stream_stop.wait(1.0 / rate_hz):
                with self.lock:
                    values = self.upper_targets.copy()
                self.send_upper(list(g1.UPPER_BODY_JOINTS), values.tolist())

        self._stream = threading.Thread(target=loop, daemon=True)
        self._stream.start()

    def stop_stream(self) -> None:
        self._stream_stop.set()
        if self._stream is not None:
            self._stream.join()
            self._stream = None

    def close(self) -> None:
        self.stop_stream()
        super().close()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    log = tmp_path_factory.mktemp("bridge") / "robot_bridge_node.log"
    overrides = {
        "sim.scene": "empty",
        "sim.camera_rate_hz": "5.0",
        "safety.hold_after_s": str(HOLD_AFTER_S),
        "safety.damp_after_s": str(DAMP_AFTER_S),
        "safety.max_velocity": str(MAX_VELOCITY),
        "safety.position_margin": str(MARGIN),
        "safety.auto_resume": "true",
        "diagnostics_rate_hz": "10.0",
    }
    process = NodeProcess("psi0_ros.nodes.robot_bridge_node", *ros_parameters(overrides, SIM_YAML), log=log)
    probe = Probe()
    # The probe's estop publisher is matched with the bridge, which follows nothing before its
    # latched value arrives: release it, as an operator's estop node does at start.
    probe.estop.publish(Bool(data=False))
    try:
        probe.wait(lambda: probe.get(TOPIC_JOINT_STATES) is not None and probe.diagnostics(), "the bridge to come up")
        yield probe
    finally:
        probe.close()
        process.stop()


def test_state_imu_camera_and_diagnostics_are_published(bridge):
    joints = bridge.get(TOPIC_JOINT_STATES)
    assert list(joints.name) == list(g1.ALL_JOINTS)
    assert np.isfinite(joints.position).all() and len(joints.velocity) == 43 and len(joints.effort) == 43
    bridge.wait(lambda: bridge.get(TOPIC_IMU) is not None, "/imu/data")
    imu = bridge.get(TOPIC_IMU)
    assert imu.header.frame_id == "pelvis" and imu.linear_acceleration.z == pytest.approx(9.81, abs=0.5)
    bridge.wait(lambda: bridge.get(TOPIC_IMAGE) is not None and bridge.get(TOPIC_CAMERA_INFO) is not None, "camera")
    image, info = bridge.get(TOPIC_IMAGE), bridge.get(TOPIC_CAMERA_INFO)
    # config/sim.yaml renders what the policy consumes (320x240), not the D435's 640x480
    assert (image.width, image.height, image.encoding) == (320, 240, "rgb8") and len(image.data) == 320 * 240 * 3
    assert np.asarray(image.data, dtype=np.uint8).std() > 5.0  # a rendered scene, not a blank buffer
    assert (info.width, info.height) == (320, 240) and info.k[0] > 0 and info.k[2] == 160.0
    # STARTING until the probe's latched release arrives, then WAITING (no command yet)
    bridge.wait(lambda: bridge.diagnostics()["mode"] == "waiting", "WAITING after the estop release")
    assert bridge.diagnostics()["estop_publishers"] == "1" and bridge.diagnostics()["estop_publishers_unheard"] == "0"


def test_targets_converge(bridge):
    targets = {"left_shoulder_yaw_joint": 0.4, "right_wrist_yaw_joint": -0.3, "left_hand_index_0_joint": -0.8}
    bridge.set_targets(**targets)
    bridge.start_stream()
    bridge.wait(
        lambda: all(abs(bridge.q(name) - value) < 0.05 for name, value in targets.items()), "joints to reach targets"
    )
    assert bridge.diagnostics()["mode"] == "active"


def test_target_beyond_a_limit_is_clamped(bridge):
    upper = g1.JOINT_SPECS["left_elbow_joint"].upper
    before = bridge.counter("targets_clamped")
    bridge.set_targets(left_shoulder_yaw_joint=0.4, left_elbow_joint=upper + 1.0)
    bridge.wait(lambda: bridge.q("left_elbow_joint") > upper - MARGIN - 0.08, "the elbow to reach its limit")
    bridge.wait(lambda: bridge.counter("targets_clamped") > before, "the clamp to be counted")
    time.sleep(1.0)  # let it sit against the clamp for a while
    with bridge.lock:
        elbow = [q[g1.JOINT_INDEX["left_elbow_joint"]] for _, q, _ in bridge.history[-100:]]
    assert max(elbow) < upper  # the target was clamped inside the limit: the joint never reaches the stop


def test_a_step_jump_is_rate_limited(bridge):
    joint = "left_shoulder_yaw_joint"
    bridge.set_targets(**{joint: 0.4})
    bridge.wait(lambda: abs(bridge.q(joint) - 0.4) < 0.05, "the start pose")
    before = bridge.counter("rate_limited")
    with bridge.lock:
        start = len(bridge.history)
    bridge.set_targets(**{joint: -0.8})  # a 1.2 rad jump: unlimited, the 25 N·m motor would whip it over
    bridge.wait(lambda: abs(bridge.q(joint) + 0.8) < 0.05, "the jump to complete")
    with bridge.lock:
        samples = bridge.history[start:]
    speeds = np.abs([dq[g1.JOINT_INDEX[joint]] for _, _, dq in samples])
    assert speeds.max() < 1.5 * MAX_VELOCITY, speeds.max()
    assert speeds.max() > 0.5 * MAX_VELOCITY  # it did move at about the cap
    assert bridge.counter("rate_limited") > before


def test_nan_targets_are_rejected_and_counted(bridge):
    bridge.set_targets(left_shoulder_yaw_joint=0.2)
    bridge.wait(lambda: abs(bridge.q("left_shoulder_yaw_joint") - 0.2) < 0.05, "the start pose")
    before_nan, before_names = bridge.counter("rejected_nonfinite"), bridge.counter("rejected_bad_names")
    bridge.stop_stream()
    for _ in range(5):
        bridge.send_upper(["left_shoulder_yaw_joint", "left_elbow_joint"], [math.nan, 1.5])
        bridge.send_upper(["left_shoulder_yaw_joint"], [math.inf])
        bridge.send_upper(["left_knee_joint"], [0.5])  # a leg joint on the upper-body topic
        time.sleep(0.05)
    bridge.wait(lambda: bridge.counter("rejected_nonfinite") >= before_nan + 10, "NaN/inf rejections")
    bridge.wait(lambda: bridge.counter("rejected_bad_names") >= before_names + 5, "bad-name rejections")
    # The newest rejection is the last message sent (the knee on the upper-body topic), named with its reason.
    last = bridge.diagnostics()["last_rejection"]
    assert "not driven by" in last and "left_knee_joint" in last, last
    joints = bridge.get(TOPIC_JOINT_STATES)
    assert np.isfinite(joints.position).all()
    assert abs(bridge.q("left_shoulder_yaw_joint") - 0.2) < 0.05  # still holding the last good target
    assert abs(bridge.q("left_elbow_joint") - 0.3) < 0.1  # the 1.5 rad in the bad message was not followed
    bridge.start_stream()


def test_silence_triggers_hold_then_damp_within_the_configured_times(bridge):
    joint = "left_shoulder_pitch_joint"
    bridge.set_targets(**{joint: -0.9})  # arm raised forward: under damping, gravity pulls it down
    bridge.wait(lambda: abs(bridge.q(joint) + 0.9) < 0.1 and bridge.diagnostics()["mode"] == "active", "arm up")
    holds, damps = bridge.counter("watchdog_holds"), bridge.counter("watchdog_damps")
    bridge.stop_stream()
    bridge.wait(lambda: bridge.counter("watchdog_holds") > holds, "HOLD")
    held = bridge.q(joint)
    bridge.wait(lambda: bridge.counter("watchdog_damps") > damps, "DAMP")
    diag = bridge.diagnostics()
    hold_age, damp_age = float(diag["watchdog_hold_at_age_s"]), float(diag["watchdog_damp_at_age_s"])
    # The watchdog acted once the configured time had passed, and not much later (generous slack for load).
    assert HOLD_AFTER_S <= hold_age < HOLD_AFTER_S + 1.0
    assert DAMP_AFTER_S <= damp_age < DAMP_AFTER_S + 1.0
    assert abs(held + 0.9) < 0.15  # HOLD kept the arm where it was
    bridge.wait(lambda: bridge.q(joint) > -0.5, "the damped arm to sink under gravity")
    assert bridge.diagnostics()["mode"] == "damp"
    bridge.start_stream()  # auto_resume (sim): fresh commands bring it back, ramping from where it is
    bridge.wait(lambda: bridge.diagnostics()["mode"] == "active", "ACTIVE again")
    bridge.wait(lambda: abs(bridge.q(joint) + 0.9) < 0.1, "the arm back up")


def test_estop_damps_until_released(bridge):
    joint = "left_shoulder_pitch_joint"
    bridge.set_targets(**{joint: -0.9})
    bridge.wait(lambda: abs(bridge.q(joint) + 0.9) < 0.1, "arm up")
    estops = bridge.counter("estops")
    bridge.estop.publish(Bool(data=True))
    bridge.wait(lambda: bridge.diagnostics()["mode"] == "estop", "ESTOP")
    assert bridge.counter("estops") == estops + 1
    bridge.wait(lambda: bridge.q(joint) > -0.5, "the arm to sink while damped, although commands keep coming")
    bridge.estop.publish(Bool(data=False))
    bridge.wait(lambda: bridge.diagnostics()["mode"] == "active", "ACTIVE after the release")
    bridge.wait(lambda: abs(bridge.q(joint) + 0.9) < 0.1, "the arm back up")


def test_lower_body_command_moves_the_kinematic_base(bridge):
    x0 = float(bridge.diagnostics()["base_x_m"])

    def command(vx: float) -> LowerBodyCommand:
        values = dict.fromkeys(LOWER_BODY_COMMAND_NAMES, 0.0) | {"vx": vx, "torso_height": 0.76}
        return ros_messages.lower_body_command_message([values[n] for n in LOWER_BODY_COMMAND_NAMES], LowerBodyCommand)

    msg, bad = command(0.3), command(math.nan)
    rejected = bridge.counter("rejected_nonfinite")
    bridge.lower.publish(bad)
    deadline = time.monotonic() + TIMEOUT
    while float(bridge.diagnostics()["base_x_m"]) < x0 + 0.1 and time.monotonic() < deadline:
        bridge.lower.publish(msg)
        time.sleep(1.0 / 30.0)
    assert float(bridge.diagnostics()["base_x_m"]) >= x0 + 0.1
    bridge.wait(lambda: bridge.counter("rejected_nonfinite") > rejected, "the NaN command to be rejected")
