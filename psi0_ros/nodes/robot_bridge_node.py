"""robot_bridge_node: targets in, safe PD commands out to the sim or a Unitree G1; state back out.

Thin shell over psi0_ros.robot.Bridge (DESIGN §2). Subscribes /psi0/upper_body_command (arms +
hands), /psi0/lower_body_targets (legs + waist) or, with lower_body_input=command,
/psi0/lower_body_command, and /psi0/estop (std_msgs/Bool, latched). Publishes /joint_states,
/imu/data, /diagnostics, and with the sim backend /camera/ego/image_raw + camera_info. The
command loop runs on its own thread inside the Bridge, not on the executor.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, Imu, JointState
from std_msgs.msg import Bool

from psi0_ros import g1
from psi0_ros.constants import (
    FRAME_BASE,
    FRAME_HEAD_CAMERA,
    TOPIC_CAMERA_INFO,
    TOPIC_DIAGNOSTICS,
    TOPIC_ESTOP,
    TOPIC_IMAGE,
    TOPIC_IMU,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_LOWER_BODY_TARGETS,
    TOPIC_UPPER_BODY_COMMAND,
)
from psi0_ros.control.safety import SafetyMode
from psi0_ros.image import rgb_to_image_fields
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST, LATCHED
from psi0_ros.robot.bridge import BridgeSnapshot
from psi0_ros.robot.params import NODE_NAME, PARAMETERS, build_bridge

_LEVEL = {
    SafetyMode.WAITING: DiagnosticStatus.OK,
    SafetyMode.ACTIVE: DiagnosticStatus.OK,
    SafetyMode.HOLD: DiagnosticStatus.WARN,
    SafetyMode.DAMP: DiagnosticStatus.ERROR,
    SafetyMode.ESTOP: DiagnosticStatus.ERROR,
}


def lower_body_command_vector(msg: LowerBodyCommand) -> np.ndarray:
    """LowerBodyCommand -> (8,) in LOWER_BODY_COMMAND_NAMES order (DESIGN §4 indices 28-35)."""
    return np.array(
        [msg.torso_roll, msg.torso_pitch, msg.torso_yaw, msg.height, msg.vx, msg.vy, msg.vyaw, msg.target_yaw],
        dtype=np.float64,
    )


class RobotBridgeNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        for param in PARAMETERS:
            self.declare_parameter(
                param.name, param.default, ParameterDescriptor(description=param.description, dynamic_typing=True)
            )
        params = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        self.setup, self.bridge = build_bridge(params)
        self.published: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        inputs = MutuallyExclusiveCallbackGroup()
        outputs = MutuallyExclusiveCallbackGroup()

        self.create_subscription(JointState, TOPIC_UPPER_BODY_COMMAND, self._on_upper, CONTROL, callback_group=inputs)
        if self.setup.bridge_config.lower_body_input == "command":
            self.create_subscription(
                LowerBodyCommand, TOPIC_LOWER_BODY_COMMAND, self._on_lower_command, CONTROL, callback_group=inputs
            )
        else:
            self.create_subscription(
                JointState, TOPIC_LOWER_BODY_TARGETS, self._on_lower_targets, CONTROL, callback_group=inputs
            )
        self.create_subscription(Bool, TOPIC_ESTOP, self._on_estop, LATCHED, callback_group=inputs)

        self._joint_pub = self.create_publisher(JointState, TOPIC_JOINT_STATES, CONTROL)
        self._imu_pub = self.create_publisher(Imu, TOPIC_IMU, CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, CONTROL)
        p = self.setup.params
        self.create_timer(1.0 / p["state_rate_hz"], self._publish_state, callback_group=outputs)
        self.create_timer(1.0 / p["diagnostics_rate_hz"], self._publish_diagnostics, callback_group=outputs)

        self._camera = None
        backend = self.bridge.backend
        if getattr(backend, "camera_enabled", False):
            from psi0_ros.sim.camera import intrinsics

            self._camera = backend
            self._image_pub = self.create_publisher(Image, TOPIC_IMAGE, LARGE_LATEST)
            self._info_pub = self.create_publisher(CameraInfo, TOPIC_CAMERA_INFO, CONTROL)
            size = (backend.config.camera_width, backend.config.camera_height)
            self._camera_info = self._make_camera_info(intrinsics(*size))
            self._last_frame = 0
            self.create_timer(0.5 / p["sim.camera_rate_hz"], self._publish_camera, callback_group=outputs)

        self.bridge.start()
        self.get_logger().info(
            f"{self.setup.backend_name} backend up: {self.setup.bridge_config.rate_hz:g} Hz command loop, "
            f"lower body from {self.setup.bridge_config.lower_body_input}"
        )

    # --- inputs ---------------------------------------------------------------------------------
    def _on_upper(self, msg: JointState) -> None:
        self.received[TOPIC_UPPER_BODY_COMMAND] += 1
        if not self.bridge.submit_upper(list(msg.name), list(msg.position)):
            self._warn_rejected(TOPIC_UPPER_BODY_COMMAND)

    def _on_lower_targets(self, msg: JointState) -> None:
        self.received[TOPIC_LOWER_BODY_TARGETS] += 1
        if not self.bridge.submit_lower_targets(list(msg.name), list(msg.position)):
            self._warn_rejected(TOPIC_LOWER_BODY_TARGETS)

    def _on_lower_command(self, msg: LowerBodyCommand) -> None:
        self.received[TOPIC_LOWER_BODY_COMMAND] += 1
        if not self.bridge.submit_lower_command(lower_body_command_vector(msg)):
            self._warn_rejected(TOPIC_LOWER_BODY_COMMAND)

    def _on_estop(self, msg: Bool) -> None:
        self.received[TOPIC_ESTOP] += 1
        self.bridge.set_estop(bool(msg.data))
        if msg.data:
            self.get_logger().warning("estop engaged: damping all joints until /psi0/estop is false")

    def _warn_rejected(self, topic: str) -> None:
        reason = self.bridge.snapshot().safety.last_rejection
        self.get_logger().warning(f"dropped a message on {topic}: {reason}", throttle_duration_sec=1.0)

    # --- outputs --------------------------------------------------------------------------------
    def _publish_state(self) -> None:
        snapshot = self.bridge.snapshot()
        state = snapshot.state
        if state is None:
            return
        stamp = self.get_clock().now().to_msg()
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(g1.ALL_JOINTS)
        joints.position = state.q.tolist()
        joints.velocity = state.dq.tolist()
        joints.effort = state.tau.tolist()
        self._joint_pub.publish(joints)
        self.published[TOPIC_JOINT_STATES] += 1
        imu = Imu()
        imu.header.stamp = stamp
        imu.header.frame_id = FRAME_BASE
        w, x, y, z = (float(v) for v in state.imu_quaternion)
        imu.orientation.w, imu.orientation.x, imu.orientation.y, imu.orientation.z = w, x, y, z
        imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = (float(v) for v in state.imu_gyro)
        ax, ay, az = (float(v) for v in state.imu_accel)
        imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = ax, ay, az
        self._imu_pub.publish(imu)
        self.published[TOPIC_IMU] += 1

    def _publish_camera(self) -> None:
        frame = self._camera.latest_frame()
        if frame is None or frame.seq == self._last_frame:
            return
        self._last_frame = frame.seq
        stamp = self.get_clock().now().to_msg()
        image = Image(**rgb_to_image_fields(frame.rgb))
        image.header.stamp = stamp
        image.header.frame_id = FRAME_HEAD_CAMERA
        self._image_pub.publish(image)
        self._camera_info.header.stamp = stamp
        self._info_pub.publish(self._camera_info)
        self.published[TOPIC_IMAGE] += 1
        self.published[TOPIC_CAMERA_INFO] += 1

    @staticmethod
    def _make_camera_info(k) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = FRAME_HEAD_CAMERA
        info.width, info.height = k.width, k.height
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = k.matrix().reshape(-1).tolist()
        info.r = np.eye(3).reshape(-1).tolist()
        info.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _publish_diagnostics(self) -> None:
        snapshot = self.bridge.snapshot()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [diagnostic_status(snapshot, self.setup.backend_name, self.bridge.error)]
        self._diag_pub.publish(array)
        self.published[TOPIC_DIAGNOSTICS] += 1

    def destroy_node(self) -> None:
        self.bridge.stop()
        super().destroy_node()


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
