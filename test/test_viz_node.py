"""viz_node in a real process over real topics: robot_description reaches a late subscriber
(transient-local) and equals the generated URDF; /tf from /joint_states carries each joint's
transform at the published angle, /tf_static the fixed frames; an /psi0/action_chunk becomes
wrist and fingertip paths equal to forward kinematics of the chunk."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
tf2_msgs = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not installed (scripts/setup.sh builds it)")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from helpers.ros_nodes import NodeProcess, ProbeNode  # noqa: E402
from psi0_ros.msg import ActionChunk  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from psi0_ros import g1  # noqa: E402
from psi0_ros.constants import (  # noqa: E402
    ACTION_NAMES,
    FRAME_HEAD_CAMERA,
    TOPIC_ACTION_CHUNK,
    TOPIC_CHUNK_MARKERS,
    TOPIC_DIAGNOSTICS,
    TOPIC_JOINT_STATES,
    TOPIC_ROBOT_DESCRIPTION,
    TOPIC_TF,
    TOPIC_TF_STATIC,
)
from psi0_ros.nodes.qos import CONTROL, LATCHED  # noqa: E402
from psi0_ros.robot import description  # noqa: E402

TIMEOUT = 90.0
Q = np.random.default_rng(5).uniform(g1.table("lower"), g1.table("upper"))


class Probe(ProbeNode):
    timeout = TIMEOUT

    def __init__(self) -> None:
        super().__init__("psi0_viz_probe")
        self.joints_pub = self.node.create_publisher(JointState, TOPIC_JOINT_STATES, CONTROL)
        self.chunk_pub = self.node.create_publisher(ActionChunk, TOPIC_ACTION_CHUNK, CONTROL)
        TFMessage = tf2_msgs.TFMessage
        self.watch(TFMessage, TOPIC_TF, CONTROL)
        self.watch(TFMessage, TOPIC_TF_STATIC, LATCHED)
        self.watch(MarkerArray, TOPIC_CHUNK_MARKERS, CONTROL)
        self.watch(DiagnosticArray, TOPIC_DIAGNOSTICS, CONTROL)
        self.node.create_timer(0.05, self._publish_joints)
        self.start()

    def subscribe_description(self) -> None:
        """A late subscriber: joins after viz_node published its one message."""
        self.watch(String, TOPIC_ROBOT_DESCRIPTION, LATCHED)

    def _publish_joints(self) -> None:
        msg = JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(g1.ALL_JOINTS)
        msg.position = Q.tolist()
        self.joints_pub.publish(msg)


def _pose(transform) -> np.ndarray:
    t, r = transform.translation, transform.rotation
    pose = np.eye(4)
    pose[:3, :3] = description.quat_to_matrix((r.w, r.x, r.y, r.z))
    pose[:3, 3] = (t.x, t.y, t.z)
    return pose


def test_viz_node_publishes_description_tf_and_chunk_paths(tmp_path):
    log = tmp_path / "viz_node.log"
    node = NodeProcess("psi0_ros.nodes.viz_node", log=log)
    probe = Probe()
    try:
        probe.wait(lambda: probe.get(TOPIC_TF) is not None, "/tf")
        assert node.proc.poll() is None, log.read_text()[-3000:]
        probe.subscribe_description()
        probe.wait(lambda: probe.get(TOPIC_ROBOT_DESCRIPTION) is not None, "robot_description (transient-local)")
        assert probe.get(TOPIC_ROBOT_DESCRIPTION).data == description.urdf_xml()

        # /tf: every joint's parent->child transform, chained, gives FK of the published angles.
        tf = probe.get(TOPIC_TF)
        edges = {t.child_frame_id: (t.header.frame_id, _pose(t.transform)) for t in tf.transforms}
        probe.wait(lambda: probe.get(TOPIC_TF_STATIC) is not None, "/tf_static")
        for t in probe.get(TOPIC_TF_STATIC).transforms:
            edges[t.child_frame_id] = (t.header.frame_id, _pose(t.transform))
        assert len(tf.transforms) == len(g1.ALL_JOINTS)
        expected = description.forward_kinematics(Q)
        for link in ("left_hand_index_1_link", "right_ankle_roll_link", FRAME_HEAD_CAMERA):
            pose, frame = np.eye(4), link
            while frame != "pelvis":
                parent, edge = edges[frame]
                pose, frame = edge @ pose, parent
            np.testing.assert_allclose(pose, expected[link], atol=1e-6, err_msg=link)

        # A chunk: the left elbow bends over 10 rows; markers are the FK paths of the chunk.
        actions = np.tile(g1.table("default", tuple(n for n in ACTION_NAMES if n in g1.JOINT_SPECS)), (10, 1))
        names = [n for n in ACTION_NAMES if n in g1.JOINT_SPECS]
        actions[:, names.index("left_elbow_joint")] = np.linspace(0.0, 1.2, 10)
        chunk = ActionChunk()
        chunk.chunk_id, chunk.horizon, chunk.action_dim = 1, 10, len(names)
        chunk.dim_names = names
        chunk.actions = actions.astype(np.float32).reshape(-1).tolist()
        probe.chunk_pub.publish(chunk)
        probe.wait(lambda: probe.get(TOPIC_CHUNK_MARKERS) is not None, "chunk markers")
        markers = [m for m in probe.get(TOPIC_CHUNK_MARKERS).markers if m.action == Marker.ADD]
        by_name = {m.text: m for m in markers}
        assert set(by_name) == {f"{s}_{p}" for s in ("left", "right") for p in ("wrist", "thumb", "index", "middle")}
        current = dict(zip(g1.ALL_JOINTS, Q.tolist(), strict=True))
        paths = description.hand_paths(names, actions.astype(np.float32), current)
        for name, marker in by_name.items():
            assert marker.type == Marker.LINE_STRIP and marker.header.frame_id == "pelvis"
            got = np.array([(p.x, p.y, p.z) for p in marker.points])
            np.testing.assert_allclose(got, paths[name], atol=1e-6, err_msg=name)
        assert np.ptp(np.array([(p.x, p.y, p.z) for p in by_name["left_wrist"].points]), axis=0).max() > 0.05

        # A malformed chunk (fewer values than horizon x action_dim) is refused, counted, not drawn.
        drawn = probe.get(TOPIC_CHUNK_MARKERS)
        chunk.chunk_id, chunk.actions = 2, chunk.actions[:-1]
        probe.chunk_pub.publish(chunk)

        def refused() -> bool:
            diag = probe.get(TOPIC_DIAGNOSTICS)
            values = {} if diag is None else {kv.key: kv.value for kv in diag.status[0].values}
            return values.get("bad_chunks") == "1" and values.get("chunks") == "1"

        probe.wait(refused, "the malformed chunk on /diagnostics")
        assert probe.get(TOPIC_CHUNK_MARKERS) is drawn
    finally:
        probe.close()
        node.stop()


# tf2_msgs/msg/TFMessage's type hash as ROS 2 Jazzy/Kilted publish it (`ros2 topic info -v /tf`).
# With the pip wheels the message is built from scripts/tf2_msgs: it must hash the same, or a
# remote rviz with a real tf2_msgs would never match viz_node's /tf.
ROS2_TFMESSAGE_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_tf_message_has_the_ros2_type_hash():
    import json

    prefixes = [sys.prefix] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in prefixes:
        path = os.path.join(prefix, "share", "tf2_msgs", "msg", "TFMessage.json")
        if os.path.exists(path):
            with open(path) as f:
                hashes = {h["type_name"]: h["hash_string"] for h in json.load(f)["type_hashes"]}
            assert hashes["tf2_msgs/msg/TFMessage"] == ROS2_TFMESSAGE_HASH
            return
    pytest.skip(f"no share/tf2_msgs/msg/TFMessage.json under {prefixes} (a distro before Iron has no type hashes)")
