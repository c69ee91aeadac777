"""Safety promises of robot_bridge_node that only show over real DDS, with a real bridge process.

The bridge (sim backend, kinematic base, robot-like settings: auto_resume false) is started AFTER
a latched /psi0/estop = true was published from another participant, while commands already
stream. The tests then run in file order on that one process (starting MuJoCo + rclpy costs
seconds): estop honoured from the first tick, the kinematic base frozen under HOLD / DAMP /
ESTOP, estop release after a watchdog DAMP, empty messages, NaN or wrong-length velocity/effort
fields, and commands lost in a flood counted. Every wait polls with a generous timeout (a shared machine).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers.ros_nodes import ROOT, NodeProcess, ProbeNode, ros_parameters, upper_body_targets  # noqa: E402
from psi0_ros.msg import LowerBodyCommand  # noqa: E402
from sensor_msgs.msg import Imu, JointState  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from psi0_ros import g1  # noqa: E402
from psi0_ros.constants import (  # noqa: E402
    TOPIC_DIAGNOSTICS,
    TOPIC_ESTOP,
    TOPIC_IMU,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_UPPER_BODY_COMMAND,
)
from psi0_ros.nodes.qos import CONTROL, LATCHED  # noqa: E402

SIM_YAML = ROOT / "config" / "sim.yaml"
HOLD_AFTER_S, DAMP_AFTER_S = 0.6, 2.0
TIMEOUT = 90.0  # s, for any one condition on a loaded 2-core machine
UPPER_DEFAULT = g1.table("default", g1.UPPER_BODY_JOINTS)
# Joints that gravity hardly moves when damped (rotation about a hanging arm's own axis), so any
# motion toward their targets is the bridge following commands.
PROBE_TARGETS = {"left_shoulder_yaw_joint": 0.9, "right_shoulder_yaw_joint": -0.9}


def yaw_of(imu: Imu) -> float:
    q = imu.orientation
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


class Probe(ProbeNode):
    """The test's side of the graph: command streams out, /joint_states, /imu/data, /diagnostics in."""

    timeout = TIMEOUT
    not_yet = (TypeError, ValueError, KeyError, AttributeError, IndexError)  # a message not there yet

    def __init__(self) -> None:
        super().__init__("psi0_safety_probe")
        self.joints: list[tuple[float, np.ndarray]] = []  # (receipt time, q)
        self.yaws: list[tuple[float, float]] = []  # (receipt time, base yaw from the IMU)
        self.diags: list[tuple[float, dict[str, str]]] = []  # (receipt time, values)
        self.upper = self.node.create_publisher(JointState, TOPIC_UPPER_BODY_COMMAND, CONTROL)
        self.lower = self.node.create_publisher(LowerBodyCommand, TOPIC_LOWER_BODY_COMMAND, CONTROL)
        self.estop = self.node.create_publisher(Bool, TOPIC_ESTOP, LATCHED)
        self.node.create_subscription(JointState, TOPIC_JOINT_STATES, self._on_joints, CONTROL)
        self.node.create_subscription(Imu, TOPIC_IMU, self._on_imu, CONTROL)
        self.node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diag, CONTROL)
        self.start()
        self.upper_targets: np.ndarray | None = UPPER_DEFAULT.copy()  # None: send empty JointStates
        self.lower_command: LowerBodyCommand | None = None  # None: the lower stream is silent
        self.upper_on = threading.Event()
        self._streamer = threading.Thread(target=self._stream, daemon=True)
        self._streamer.start()

    def _on_joints(self, msg: JointState) -> None:
        with self.lock:
            self.joints.append((time.monotonic(), np.array(msg.position)))

    def _on_imu(self, msg: Imu) -> None:
        with self.lock:
            self.yaws.append((time.monotonic(), yaw_of(msg)))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diags.append((time.monotonic(), {kv.key: kv.value for kv in msg.status[0].values}))

    def _stream(self) -> None:
        """30 Hz, like chunk_node: upper-body targets while upper_on, the lower command when set."""
        while not self.closing.wait(1.0 / 30.0):
            with self.lock:
                upper, lower = self.upper_targets, self.lower_command
            if self.upper_on.is_set():
                msg = JointState()
                msg.header.stamp = self.node.get_clock().now().to_msg()
                if upper is not None:
                    msg.name, msg.position = list(g1.UPPER_BODY_JOINTS), upper.tolist()
                self.upper.publish(msg)
            if lower is not None:
                self.lower.publish(lower)

    def set_targets(self, **targets: float) -> None:
        values = upper_body_targets(**targets)
        with self.lock:
            self.upper_targets = values

    def set_lower(self, command: LowerBodyCommand | None) -> None:
        with self.lock:
            self.lower_command = command

    def diagnostics(self) -> dict[str, str]:
        with self.lock:
            return dict(self.diags[-1][1]) if self.diags else {}

    def mode(self) -> str:
        return self.diagnostics().get("mode", "")

    details = diagnostics

    def counter(self, name: str) -> int:
        return int(self.diagnostics().get(name, "0"))

    def q(self, joint: str) -> float:
        with self.lock:
            return float(self.joints[-1][1][g1.JOINT_INDEX[joint]])

    def yaw(self) -> float:
        with self.lock:
            return self.yaws[-1][1]

    def mark(self) -> float:
        return time.monotonic()

    def modes_since(self, t: float) -> list[str]:
        with self.lock:
            return [values.get("mode", "") for stamp, values in self.diags if stamp >= t]

    def base_in_mode(self, mode: str, since: float) -> tuple[np.ndarray, np.ndarray]:
        """Base (x, y, z) from every diagnostics message in `mode` received after `since` (skipping
        the first, which may straddle the switch), and the IMU yaws received in that stretch."""
        with self.lock:
            stretch = [(t, v) for t, v in self.diags if t >= since and v.get("mode") == mode][1:]
            if len(stretch) < 2:
                raise AssertionError(f"too few diagnostics in {mode}: {len(stretch)}")
            start, end = stretch[0][0], stretch[-1][0]
            yaws = np.array([y for t, y in self.yaws if start <= t <= end - 0.15])
        positions = np.array([[float(v[f"base_{axis}_m"]) for axis in "xyz"] for _, v in stretch])
        return positions, yaws

    def close(self) -> None:
        self.closing.set()
        self._streamer.join()
        super().close()


def publish_latched_estop(engaged: bool) -> tuple[rclpy.Context, object]:
    """An estop from its own participant (as `ros2 topic pub` would be); kept alive by the caller."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("psi0_safety_estop", context=context)
    publisher = node.create_publisher(Bool, TOPIC_ESTOP, LATCHED)
    publisher.publish(Bool(data=engaged))
    return context, node


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    log = tmp_path_factory.mktemp("bridge_safety") / "robot_bridge_node.log"
    estop_context, estop_node = publish_latched_estop(True)
    probe = Probe()
    probe.set_targets(**PROBE_TARGETS)
    probe.upper_on.set()  # commands stream before the bridge exists
    start = LowerBodyCommand()
    start.vx, start.vyaw, start.height, start.target_yaw = 0.4, 1.0, 0.6, 1.5
    probe.set_lower(start)
    overrides = {
        "sim.scene": "empty",
        "sim.camera_mode": "'off'",  # quoted: a bare off is YAML for false
        "safety.hold_after_s": str(HOLD_AFTER_S),
        "safety.damp_after_s": str(DAMP_AFTER_S),
        "safety.auto_resume": "false",
        "safety.estop_wait_s": "60.0",  # the latched estop must arrive within this (discovery on a slow machine)
        "diagnostics_rate_hz": "10.0",
    }
    process = NodeProcess("psi0_ros.nodes.robot_bridge_node", *ros_parameters(overrides, SIM_YAML), log=log)
    try:
        probe.wait(lambda: probe.joints and probe.diagnostics(), "the bridge to come up")
        probe.estop_node = estop_node
        yield probe
    finally:
        probe.close()
        estop_node.destroy_node()
        rclpy.shutdown(context=estop_context)
        process.stop()


def release_estop(probe: Probe) -> None:
    probe.estop.publish(Bool(data=False))
    probe.wait(lambda: probe.mode() in ("waiting", "active"), "the estop release")


def engage_estop(probe: Probe) -> None:
    probe.estop.publish(Bool(data=True))
    probe.wait(lambda: probe.mode() == "estop", "ESTOP")


def test_a_bridge_started_after_a_latched_estop_follows_nothing(bridge):
    bridge.wait(lambda: bridge.mode() == "estop", "the latched estop to reach the bridge")
    time.sleep(2.0)  # commands keep streaming meanwhile
    with bridge.lock:
        first_q = bridge.joints[0][1]
        qs = np.array([q for _, q in bridge.joints])
        modes = [v.get("mode") for _, v in bridge.diags]
    assert "active" not in modes, modes
    assert bridge.counter("ticks_active") == 0 and bridge.counter("ticks_estop") > 0
    for joint, target in PROBE_TARGETS.items():
        i = g1.JOINT_INDEX[joint]
        toward = (qs[:, i] - first_q[i]) * np.sign(target - first_q[i])  # progress toward the target
        assert toward.max() < 0.01, (joint, toward.max())
    base = np.array([float(bridge.diagnostics()[f"base_{axis}_m"]) for axis in "xyz"])
    assert abs(base[0]) < 1e-3 and abs(bridge.yaw()) < 1e-3  # the base did not follow vx / vyaw either


def test_the_kinematic_base_stays_put_under_hold_damp_and_estop(bridge):
    release_estop(bridge)
    bridge.wait(lambda: bridge.mode() == "active", "ACTIVE with both streams")
    bridge.wait(lambda: float(bridge.diagnostics()["base_x_m"]) > 0.05, "the base to move")
    # Keep asking for motion in every mode: forward, turning toward a target yaw ahead, crouching.
    stop = threading.Event()

    def keep_asking() -> None:
        low = True
        while not stop.wait(0.5):
            msg = LowerBodyCommand()
            msg.vx, msg.vyaw = 0.4, 0.5
            msg.target_yaw = math.remainder(bridge.yaw() + 1.0, 2.0 * math.pi)
            msg.height = 0.6 if low else 0.78
            low = not low
            bridge.set_lower(msg)

    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    try:
        since = bridge.mark()
        bridge.upper_on.clear()  # the upper stream goes quiet while lower commands keep coming
        bridge.wait(lambda: bridge.mode() == "damp", "HOLD, then DAMP")
        time.sleep(1.5)
        engage_estop(bridge)
        time.sleep(1.5)
        for mode in ("hold", "damp", "estop"):
            positions, yaws = bridge.base_in_mode(mode, since)
            assert np.ptp(positions, axis=0).max() < 3e-3, (mode, positions)
            assert yaws.size > 2 and np.ptp(yaws) < 3e-3, (mode, yaws)
    finally:
        stop.set()
        asker.join()


def test_estop_release_after_a_watchdog_damp_waits_for_fresh_commands(bridge):
    bridge.set_lower(None)
    release_estop(bridge)
    bridge.set_targets(left_shoulder_yaw_joint=0.3)
    bridge.upper_on.set()
    lower = LowerBodyCommand()
    lower.height = 0.74
    bridge.set_lower(lower)
    bridge.wait(lambda: bridge.mode() == "active", "ACTIVE")
    damps = bridge.counter("watchdog_damps")
    bridge.upper_on.clear()
    bridge.set_lower(None)  # everything silent: HOLD, then a latched DAMP
    bridge.wait(lambda: bridge.counter("watchdog_damps") > damps and bridge.mode() == "damp", "DAMP")
    engage_estop(bridge)
    since = bridge.mark()
    bridge.estop.publish(Bool(data=False))
    bridge.wait(lambda: bridge.mode() != "estop", "the release")
    time.sleep(1.0)
    after = [m for m in bridge.modes_since(since) if m != "estop"]
    assert after and set(after) == {"waiting"}, after  # not straight back to DAMP
    bridge.set_targets(left_shoulder_yaw_joint=-0.4)
    bridge.upper_on.set()
    bridge.wait(lambda: bridge.mode() == "active", "ACTIVE on fresh commands")
    bridge.wait(lambda: abs(bridge.q("left_shoulder_yaw_joint") + 0.4) < 0.05, "the fresh target to be followed")


def test_empty_joint_states_do_not_feed_the_watchdog(bridge):
    bridge.set_targets(left_shoulder_yaw_joint=0.2)
    bridge.upper_on.set()
    bridge.wait(lambda: bridge.mode() == "active", "ACTIVE")
    damps = bridge.counter("watchdog_damps")
    with bridge.lock:
        bridge.upper_targets = None  # the stream goes on, with empty messages
    bridge.wait(lambda: bridge.counter("watchdog_damps") > damps, "DAMP although empty messages keep coming")
    assert bridge.counter("rejected_empty") > 0
    engage_estop(bridge)  # recover for the next test: estop true -> false leaves the latched DAMP
    bridge.set_targets(left_shoulder_yaw_joint=0.2)
    release_estop(bridge)
    bridge.wait(lambda: bridge.mode() == "active", "ACTIVE again")


def test_nonfinite_velocity_or_effort_drops_the_whole_message(bridge):
    joint = "left_shoulder_yaw_joint"
    bridge.wait(lambda: abs(bridge.q(joint) - 0.2) < 0.05, "the start pose")
    bridge.upper_on.clear()
    rejected = bridge.counter("rejected_nonfinite")
    names = list(g1.UPPER_BODY_JOINTS)
    positions = UPPER_DEFAULT.copy()
    positions[names.index(joint)] = -0.6
    for bad_field in ("velocity", "effort") * 10:
        msg = JointState()
        msg.name, msg.position = names, positions.tolist()
        values = [0.0] * len(names)
        values[3] = math.nan if bad_field == "velocity" else math.inf
        setattr(msg, bad_field, values)
        bridge.upper.publish(msg)
        time.sleep(0.03)
    bridge.wait(lambda: bridge.counter("rejected_nonfinite") >= rejected + 20, "all 20 messages rejected")
    bad_length, bad_names = bridge.counter("rejected_bad_length"), bridge.counter("rejected_bad_names")
    for bad_field in ("velocity", "effort") * 5:  # finite, but not one value per name: dropped as well
        msg = JointState()
        msg.name, msg.position = names, positions.tolist()
        setattr(msg, bad_field, [0.0] * (len(names) - 1))
        bridge.upper.publish(msg)
        time.sleep(0.03)
    bridge.wait(lambda: bridge.counter("rejected_bad_length") >= bad_length + 10, "10 wrong-length rejections")
    assert bridge.counter("rejected_bad_names") == bad_names  # counted under their own reason
    assert "27 effort" in bridge.diagnostics()["last_rejection"]
    assert abs(bridge.q(joint) - 0.2) < 0.05  # the -0.6 in the bad messages was not followed
    bridge.set_targets(left_shoulder_yaw_joint=0.2)
    engage_estop(bridge)
    release_estop(bridge)
    bridge.upper_on.set()


def test_commands_lost_in_a_flood_are_counted(bridge):
    bridge.wait(lambda: bridge.mode() == "active", "ACTIVE")
    received_before = bridge.counter("commands_received")
    dropped_before = bridge.counter("commands_dropped")
    bridge.upper_on.clear()
    sent = 3000
    names = list(g1.UPPER_BODY_JOINTS)
    for _ in range(sent):  # as fast as this process can: more than the bridge's queue of 10 holds
        msg = JointState()
        msg.name, msg.position = names, UPPER_DEFAULT.tolist()
        bridge.upper.publish(msg)
    bridge.upper_on.set()  # the stream carries on, so a loss at the end of the flood shows as a gap too

    def accounted() -> int:
        diag = bridge.diagnostics()
        received = int(diag["commands_received"]) - received_before
        return received + int(diag["commands_dropped"]) - dropped_before

    # Every flood message is accounted for, either received or counted as lost ...
    bridge.wait(lambda: accounted() >= sent, "every flood message received or counted as dropped")
    assert bridge.counter("commands_dropped") > dropped_before  # a flood of 3000 into a queue of 10 loses some
    assert accounted() <= sent + 200  # ... and no more (the 30 Hz stream adds a few)
