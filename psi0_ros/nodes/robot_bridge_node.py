"""robot_bridge_node: targets in, safe PD commands out to the sim or a Unitree G1; state back out.

Thin shell over psi0_ros.robot.Bridge (DESIGN §2). Subscribes /psi0/upper_body_command (arms +
hands), /psi0/lower_body_targets (legs + waist) or, with lower_body_input=command,
/psi0/lower_body_command, and /psi0/estop (std_msgs/Bool, latched; the number of publishers it is
matched with is polled every ESTOP_MATCH_POLL_S and handed to the safety layer, which follows
nothing while a matched publisher's latched value has not arrived). Publishes /joint_states,
/imu/data, /diagnostics, and with a backend that has a camera (the sim's head camera)
/camera/ego/image_raw + camera_info, and with publish_clock (sim only) the simulated time on
/clock, for nodes run with use_sim_time. Topic names are relative (they follow the node's
namespace) but /diagnostics and /clock. The command loop runs on its own thread inside the
Bridge, not on the executor; if it dies, the diagnostics timer raises NodeFailure and the process
ends with status 1.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy._rclpy_pybind11 import RCLError
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu, JointState
from std_msgs.msg import Bool

from psi0_ros import g1, ros_messages
from psi0_ros.constants import (
    FRAME_BASE,
    FRAME_HEAD_CAMERA,
    TOPIC_CAMERA_INFO,
    TOPIC_CLOCK,
    TOPIC_DIAGNOSTICS,
    TOPIC_ESTOP,
    TOPIC_IMAGE,
    TOPIC_IMU,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_LOWER_BODY_TARGETS,
    TOPIC_UPPER_BODY_COMMAND,
    relative_topic,
)
from psi0_ros.control.safety import SafetyMode
from psi0_ros.image import rgb_to_image_fields
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CLOCK, CONTROL, LARGE_LATEST, LATCHED
from psi0_ros.nodes.runtime import NodeFailure
from psi0_ros.robot.backend import BackendCamera
from psi0_ros.robot.bridge import Bridge, BridgeSnapshot
from psi0_ros.robot.params import NODE_NAME, PARAMETERS, build_bridge

ESTOP_MATCH_POLL_S = 0.02  # s between reads of the estop subscription's matched publisher count

_LEVEL = {
    SafetyMode.STARTING: DiagnosticStatus.OK,
    SafetyMode.WAITING: DiagnosticStatus.OK,
    SafetyMode.ACTIVE: DiagnosticStatus.OK,
    SafetyMode.HOLD: DiagnosticStatus.WARN,
    SafetyMode.DAMP: DiagnosticStatus.ERROR,
    SafetyMode.ESTOP: DiagnosticStatus.ERROR,
}


class RobotBridgeNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        self.bridge: Bridge | None = None  # set before Node's init: destroy_node() may run on a half-built node
        super().__init__(NODE_NAME, **node_kwargs)
        for param in PARAMETERS:
            self.declare_parameter(
                param.name, param.default, ParameterDescriptor(description=param.description, dynamic_typing=True)
            )
        params = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        self.setup, self.bridge = build_bridge(params)
        self.published: Counter[str] = Counter()
        self.publish_failed: Counter[str] = Counter()  # per topic: a publish the middleware refused
        self.received: Counter[str] = Counter()
        inputs = MutuallyExclusiveCallbackGroup()
        outputs = MutuallyExclusiveCallbackGroup()

        self.create_subscription(
            JointState,
            relative_topic(TOPIC_UPPER_BODY_COMMAND),
            with_message_info(self._on_upper),
            CONTROL,
            callback_group=inputs,
        )
        if self.setup.bridge_config.lower_body_input == "command":
            self.create_subscription(
                LowerBodyCommand,
                relative_topic(TOPIC_LOWER_BODY_COMMAND),
                with_message_info(self._on_lower_command),
                CONTROL,
                callback_group=inputs,
            )
        else:
            self.create_subscription(
                JointState,
                relative_topic(TOPIC_LOWER_BODY_TARGETS),
                with_message_info(self._on_lower_targets),
                CONTROL,
                callback_group=inputs,
            )
        self._estop_sub = self.create_subscription(
            Bool, relative_topic(TOPIC_ESTOP), self._on_estop, LATCHED, callback_group=inputs
        )
        # In the estop callback's group, so a count read here and a sample's count never interleave.
        self.create_timer(ESTOP_MATCH_POLL_S, self._poll_estop_publishers, callback_group=inputs)

        self._joint_pub = self.create_publisher(JointState, relative_topic(TOPIC_JOINT_STATES), CONTROL)
        self._imu_pub = self.create_publisher(Imu, relative_topic(TOPIC_IMU), CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        p = self.setup.params
        if not p["publish_clock"]:  # on the sim's clock the loop thread publishes them (_start_clock)
            self.create_timer(1.0 / p["state_rate_hz"], self._publish_state, callback_group=outputs)
        self.create_timer(1.0 / p["diagnostics_rate_hz"], self._publish_diagnostics, callback_group=outputs)

        self._camera: BackendCamera | None = self.bridge.backend.camera()
        if self._camera is not None:
            model = self._camera.model
            self._image_pub = self.create_publisher(Image, relative_topic(TOPIC_IMAGE), LARGE_LATEST)
            self._info_pub = self.create_publisher(CameraInfo, relative_topic(TOPIC_CAMERA_INFO), CONTROL)
            self._camera_info = ros_messages.camera_info_message(
                model.width, model.height, model.k, FRAME_HEAD_CAMERA, cls=CameraInfo
            )
            self._last_frame = 0
            # twice the frame rate: a new frame waits at most half a frame period
            if not p["publish_clock"]:  # on the sim's clock the loop thread publishes each frame (_start_clock)
                self.create_timer(0.5 / model.rate_hz, self._publish_camera, callback_group=outputs)

        if p["publish_clock"]:
            self._start_clock(float(p["clock_rate_hz"]), float(p["state_rate_hz"]))
        self.bridge.start()
        self.get_logger().info(
            f"{self.setup.backend_name} backend up: {self.setup.bridge_config.rate_hz:g} Hz command loop, "
            f"lower body from {self.setup.bridge_config.lower_body_input}"
        )

    def _start_clock(self, clock_rate_hz: float, state_rate_hz: float) -> None:
        """Publish the sim's time on /clock from the loop thread, and run the safety layer on it.

        /joint_states and /imu/data are published from the loop thread too, every 1/state_rate_hz
        of sim time and stamped with it, and each camera frame once rendered, stamped with the sim
        time it shows: a timer of the executor fires when the executor gets to it, and on a busy
        machine at sim.speed 2 that left 0.1-0.4 s of sim time between two states or frames
        (recorded demos flagged state_gap and image_gap)."""
        backend = self.bridge.backend
        if backend.sim_time() is None:
            raise ValueError(
                f"publish_clock needs a simulation; the {self.setup.backend_name!r} backend has no sim time"
            )
        publisher = self.create_publisher(Clock, TOPIC_CLOCK, CLOCK)
        every = max(1, math.ceil(self.setup.bridge_config.rate_hz / clock_rate_hz - 1e-9))

        def publish() -> None:
            self._send(publisher, Clock(clock=Time(nanoseconds=int(backend.sim_time() * 1e9)).to_msg()), TOPIC_CLOCK)

        state_period_ns = int(1e9 / state_rate_hz)
        next_state_ns = 0

        def on_tick(tick: int) -> None:
            nonlocal next_state_ns
            if tick % every == 0:
                publish()
            now_ns = int(backend.sim_time() * 1e9)
            if now_ns >= next_state_ns:
                next_state_ns += state_period_ns * max(1, (now_ns - next_state_ns) // state_period_ns + 1)
                self._publish_state(Time(nanoseconds=now_ns).to_msg())
            if self._camera is not None:
                self._publish_camera(on_sim_time=True)

        # the watchdog measures command age in the sim's time, as the nodes on /clock produce commands
        self.bridge.clock = backend.sim_time
        publish()  # time 0 before the first tick: nodes on sim time start from the sim's clock
        self.bridge.on_tick = on_tick

    # --- inputs ---------------------------------------------------------------------------------
    def _on_upper(self, msg: JointState, info: dict | None) -> None:
        self.received[TOPIC_UPPER_BODY_COMMAND] += 1
        note_sequence(self.bridge, TOPIC_UPPER_BODY_COMMAND, info)
        if not self.bridge.submit_upper(*ros_messages.joint_state_fields(msg)):
            self._warn_rejected(TOPIC_UPPER_BODY_COMMAND)

    def _on_lower_targets(self, msg: JointState, info: dict | None) -> None:
        self.received[TOPIC_LOWER_BODY_TARGETS] += 1
        note_sequence(self.bridge, TOPIC_LOWER_BODY_TARGETS, info)
        if not self.bridge.submit_lower_targets(*ros_messages.joint_state_fields(msg)):
            self._warn_rejected(TOPIC_LOWER_BODY_TARGETS)

    def _on_lower_command(self, msg: LowerBodyCommand, info: dict | None) -> None:
        self.received[TOPIC_LOWER_BODY_COMMAND] += 1
        note_sequence(self.bridge, TOPIC_LOWER_BODY_COMMAND, info)
        if not self.bridge.submit_lower_command(ros_messages.lower_body_command_to_vector(msg)):
            self._warn_rejected(TOPIC_LOWER_BODY_COMMAND)

    def _estop_publishers(self) -> int:
        """Publishers matched with the estop subscription now (QoS-compatible ones only). rclpy
        before Iron has no Subscription.get_publisher_count(): count the graph's transient-local,
        reliable publishers of the topic instead."""
        if hasattr(self._estop_sub, "get_publisher_count"):
            return int(self._estop_sub.get_publisher_count())
        return sum(
            1
            for info in self.get_publishers_info_by_topic(self._estop_sub.topic_name)
            if info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
            and info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        )

    def _poll_estop_publishers(self) -> None:
        self.bridge.set_estop_publishers(self._estop_publishers())

    def _on_estop(self, msg: Bool) -> None:
        self.received[TOPIC_ESTOP] += 1
        self.bridge.set_estop(bool(msg.data), self._estop_publishers())
        if msg.data:
            self.get_logger().warning("estop engaged: damping all joints until /psi0/estop is false")

    def _warn_rejected(self, topic: str) -> None:
        reason = self.bridge.snapshot().safety.last_rejection
        self.get_logger().warning(f"dropped a message on {topic}: {reason}", throttle_duration_sec=1.0)

    # --- outputs --------------------------------------------------------------------------------
    def _send(self, publisher: Any, msg: Any, topic: str) -> None:
        """Publish one output; a publish the middleware refuses is counted and warned about, never
        raised: these run on the command loop's thread too, and a subscriber that does not keep up
        (a reliable one on a slow link: Fast DDS's "cannot publish data") must not stop the robot's
        command loop. Outputs are the robot's state and sensors: the next one replaces the lost one."""
        try:
            publisher.publish(msg)
        except RCLError as err:
            self.publish_failed[topic] += 1
            self.get_logger().warning(f"could not publish on {topic}: {err}", throttle_duration_sec=2.0)
            return
        self.published[topic] += 1

    def _publish_state(self, stamp: Any = None) -> None:
        """The latest state on /joint_states and /imu/data, stamped `stamp` (default: the node's clock)."""
        state = self.bridge.latest_state()
        if state is None:
            return
        if stamp is None:
            stamp = self.get_clock().now().to_msg()
        joints = ros_messages.joint_state_message(g1.ALL_JOINTS, state.q, state.dq, state.tau, cls=JointState)
        joints.header.stamp = stamp
        self._send(self._joint_pub, joints, TOPIC_JOINT_STATES)
        imu = ros_messages.fill_imu(Imu(), state.imu_quaternion, state.imu_gyro, state.imu_accel)
        imu.header.stamp = stamp
        imu.header.frame_id = FRAME_BASE
        self._send(self._imu_pub, imu, TOPIC_IMU)

    def _publish_camera(self, on_sim_time: bool = False) -> None:
        """A newly rendered frame, stamped with the node's clock or (on_sim_time) the sim time it shows."""
        frame = self._camera.latest_frame()
        if frame is None or frame.seq == self._last_frame:
            return
        self._last_frame = frame.seq
        if on_sim_time:
            stamp = Time(nanoseconds=int(frame.sim_time * 1e9)).to_msg()
        else:
            stamp = self.get_clock().now().to_msg()
        image = Image(**rgb_to_image_fields(frame.rgb))
        image.header.stamp = stamp
        image.header.frame_id = FRAME_HEAD_CAMERA
        self._send(self._image_pub, image, TOPIC_IMAGE)
        self._camera_info.header.stamp = stamp
        self._send(self._info_pub, self._camera_info, TOPIC_CAMERA_INFO)

    def _publish_diagnostics(self) -> None:
        snapshot = self.bridge.snapshot()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [diagnostic_status(snapshot, self.setup.backend_name, self.bridge.error)]
        self._send(self._diag_pub, array, TOPIC_DIAGNOSTICS)
        if self.bridge.error is not None:  # the last status says why; a bridge without its loop is no bridge
            raise NodeFailure(f"{NODE_NAME}: the command loop stopped: {self.bridge.error!r}")

    def destroy_node(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        super().destroy_node()


def with_message_info(callback):
    """callback(msg, info) as a subscription callback: rclpy passes MessageInfo where it can
    (Iron and later); on Humble the callback gets info None."""
    from rclpy.subscription import Subscription

    if hasattr(Subscription, "CallbackType"):
        return callback
    return lambda msg: callback(msg, None)


def note_sequence(bridge, topic: str, info: dict | None) -> None:
    """Hand the publisher's sequence number (rclpy MessageInfo, where the rmw gives one) to the bridge."""
    if info is not None:
        gid = info.get("publisher_gid")
        publisher = None if gid is None else bytes(gid.get("data", b"")) if isinstance(gid, dict) else gid
        bridge.note_sequence(topic, publisher, info.get("publication_sequence_number"))


def diagnostic_status(snapshot: BridgeSnapshot, backend: str, error: BaseException | None) -> DiagnosticStatus:
    """One DiagnosticStatus: level from the safety mode, values = mode, counters, ages, loop timing."""
    safety, timing = snapshot.safety, snapshot.timing
    status = DiagnosticStatus()
    status.name = f"{NODE_NAME}: safety"
    status.hardware_id = backend
    status.level = _LEVEL[safety.mode]
    status.message = f"{safety.mode.value}; {sum(safety.counters.values())} interventions"
    if error is not None:
        status.level = DiagnosticStatus.ERROR
        status.message = f"command loop stopped: {error}"
    values: dict[str, object] = {"mode": safety.mode.value, "estop": safety.estop}
    values.update(safety.counters)
    values["interventions_total"] = sum(safety.counters.values())
    values.update(safety.activity)
    for source, age in safety.command_age_s.items():
        values[f"command_age_{source}_s"] = "none" if age is None else f"{age:.3f}"
    values["last_rejection"] = safety.last_rejection
    for kind, age in safety.watchdog_trip_age_s.items():
        values[f"watchdog_{kind}_at_age_s"] = "none" if age is None else f"{age:.3f}"
    values.update(
        loop_ticks=timing.ticks,
        loop_rate_hz=f"{timing.rate_hz:.1f}",
        loop_overruns=timing.overruns,
        loop_jitter_p99_ms=f"{timing.jitter_p99_ms:.3f}",
    )
    for key, value in snapshot.backend.items():
        values[key] = f"{value:.4g}"
    status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
    return status


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [RobotBridgeNode()], args)


if __name__ == "__main__":
    sys.exit(main())
