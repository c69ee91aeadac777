"""viz_node: what rviz needs to show the robot and the policy's plan.

Thin shell over psi0_ros.robot.description. Publishes the URDF generated from the joint table as
robot_description (std_msgs/String, transient-local, and as the parameter of that name); /tf from
/joint_states and /tf_static for the fixed links (unless publish_tf is false because
robot_state_publisher runs), so a remote rviz needs nothing but this node; and the wrist and
fingertip paths of the newest /psi0/action_chunk as a visualization_msgs/MarkerArray.
config/psi0.rviz shows all of it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, TransformStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, String
from visualization_msgs.msg import Marker, MarkerArray

from psi0_ros import g1
from psi0_ros.constants import (
    FRAME_BASE,
    TOPIC_ACTION_CHUNK,
    TOPIC_CHUNK_MARKERS,
    TOPIC_DIAGNOSTICS,
    TOPIC_JOINT_STATES,
    TOPIC_ROBOT_DESCRIPTION,
    TOPIC_TF,
    TOPIC_TF_STATIC,
    relative_topic,
)
from psi0_ros.msg import ActionChunk
from psi0_ros.nodes.qos import CONTROL, LATCHED
from psi0_ros.robot.description import axis_rotation, hand_paths, link_origins, matrix_to_quat, urdf_xml

NODE_NAME = "viz_node"
MARKER_NAMESPACE = "psi0_chunk"
# Path colours (r, g, b): wrists dark, fingertips light; left blue, right orange.
_COLORS = {
    "left": {"wrist": (0.1, 0.3, 0.9), "tip": (0.5, 0.7, 1.0)},
    "right": {"wrist": (0.9, 0.4, 0.1), "tip": (1.0, 0.7, 0.4)},
}


def _tf2_message_type():
    """tf2_msgs/TFMessage; a clear error where the tf2_msgs package is not installed."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as err:
        raise RuntimeError(
            "viz_node: tf2_msgs is not installed, so /tf cannot be published. Install ROS 2's tf2_msgs "
            "(scripts/setup.sh builds it into the venv), or run robot_state_publisher and set publish_tf:=false"
        ) from err
    return TFMessage


def _transform_msg(parent: str, child: str, pose: np.ndarray, stamp) -> TransformStamped:
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in pose[:3, 3]
    )
    w, x, y, z = matrix_to_quat(pose[:3, :3])
    msg.transform.rotation.w, msg.transform.rotation.x = w, x
    msg.transform.rotation.y, msg.transform.rotation.z = y, z
    return msg


class VizNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.urdf = urdf_xml()
        self.declare_parameter(
            "robot_description",
            self.urdf,
            ParameterDescriptor(description="the G1 URDF, generated from psi0_ros/g1.py + sim/model.py (read only)"),
        )
        self.declare_parameter(
            "publish_tf",
            True,
            ParameterDescriptor(description="publish /tf from /joint_states (false where robot_state_publisher runs)"),
        )
        self.declare_parameter(
            "marker_width_m", 0.006, ParameterDescriptor(description="line width of the predicted hand paths (m)")
        )
        self.publish_tf = bool(self.get_parameter("publish_tf").value)
        self.marker_width = float(self.get_parameter("marker_width_m").value)
        self._origins = link_origins()
        self._lock = threading.Lock()
        self._joints: dict[str, float] = {}
        self.counters = {"joint_states": 0, "chunks": 0, "bad_chunks": 0}

        description_pub = self.create_publisher(String, relative_topic(TOPIC_ROBOT_DESCRIPTION), LATCHED)
        description_pub.publish(String(data=self.urdf))
        self._description_pub = description_pub
        group = MutuallyExclusiveCallbackGroup()
        if self.publish_tf:
            tf_type = _tf2_message_type()
            self._tf_type = tf_type
            self._tf_pub = self.create_publisher(tf_type, relative_topic(TOPIC_TF), CONTROL)
            self._tf_static_pub = self.create_publisher(tf_type, relative_topic(TOPIC_TF_STATIC), LATCHED)
            self._publish_static()
        self._marker_pub = self.create_publisher(MarkerArray, relative_topic(TOPIC_CHUNK_MARKERS), CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)
        self.create_subscription(
            JointState, relative_topic(TOPIC_JOINT_STATES), self._on_joints, CONTROL, callback_group=group
        )
        self.create_subscription(
            ActionChunk, relative_topic(TOPIC_ACTION_CHUNK), self._on_chunk, CONTROL, callback_group=group
        )
        self.get_logger().info(
            f"robot_description published ({len(self.urdf)} bytes); /tf {'on' if self.publish_tf else 'off'}"
        )

    def _publish_static(self) -> None:
        stamp = self.get_clock().now().to_msg()
        fixed = [
            _transform_msg(parent, child, origin, stamp)
            for child, (parent, origin, joint) in self._origins.items()
            if joint is None
        ]
        self._tf_static_pub.publish(self._tf_type(transforms=fixed))

    def _on_joints(self, msg: JointState) -> None:
        q = {name: float(v) for name, v in zip(msg.name, msg.position, strict=False) if np.isfinite(v)}
        with self._lock:
            self._joints.update(q)
            self.counters["joint_states"] += 1
        if not self.publish_tf:
            return
        transforms = []
        for child, (parent, origin, joint) in self._origins.items():
            if joint is None or joint not in q:
                continue
            rotation = np.eye(4)
            rotation[:3, :3] = axis_rotation(g1.JOINT_SPECS[joint].axis, q[joint])
            transforms.append(_transform_msg(parent, child, origin @ rotation, msg.header.stamp))
        self._tf_pub.publish(self._tf_type(transforms=transforms))

    def _on_chunk(self, msg: ActionChunk) -> None:
        try:
            actions = np.asarray(msg.actions, dtype=np.float64).reshape(msg.horizon, msg.action_dim)
            with self._lock:
                current = dict(self._joints)
            paths = hand_paths(list(msg.dim_names), actions, current)
        except ValueError as err:
            self.counters["bad_chunks"] += 1
            self.get_logger().warning(f"chunk {msg.chunk_id} not drawn: {err}", throttle_duration_sec=2.0)
            return
        self.counters["chunks"] += 1
        self._marker_pub.publish(self.markers(paths, msg))

    def _publish_diagnostics(self) -> None:
        with self._lock:
            counters = dict(self.counters)
        status = DiagnosticStatus(name=f"{NODE_NAME}: rviz", hardware_id="viz", level=DiagnosticStatus.OK)
        status.message = f"{counters['chunks']} chunks drawn, {counters['bad_chunks']} refused"
        if counters["bad_chunks"]:
            status.level = DiagnosticStatus.WARN
        status.values = [KeyValue(key=k, value=str(v)) for k, v in counters.items()]
        status.values.append(KeyValue(key="publish_tf", value=str(self.publish_tf)))
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def markers(self, paths: dict[str, np.ndarray], chunk: ActionChunk) -> MarkerArray:
        array = MarkerArray()
        clear = Marker()
        clear.action = Marker.DELETEALL
        clear.ns = MARKER_NAMESPACE
        array.markers.append(clear)
        for marker_id, (name, path) in enumerate(sorted(paths.items())):
            side, kind = name.split("_", 1)
            marker = Marker()
            marker.header.frame_id = FRAME_BASE
            marker.header.stamp = chunk.header.stamp
            marker.ns = MARKER_NAMESPACE
            marker.id = marker_id
            marker.type = Marker.LINE_STRIP
            marker.action = Marker.ADD
            marker.pose.orientation.w = 1.0
            marker.scale.x = self.marker_width * (2.0 if kind == "wrist" else 1.0)
            r, g, b = _COLORS[side]["wrist" if kind == "wrist" else "tip"]
            marker.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
            marker.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in path]
            marker.text = name
            array.markers.append(marker)
        return array


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [VizNode()], args)


if __name__ == "__main__":
    sys.exit(main())
