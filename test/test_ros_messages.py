"""psi0_ros.ros_messages on real rosidl messages and on plain objects with the same fields."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers.tiers import require

from psi0_ros import ros_messages
from psi0_ros.constants import LOWER_BODY_COMMAND_NAMES

require("psi0_ros.msg", "the generated messages (make setup)")
sensor_msgs = require("sensor_msgs.msg")

from psi0_ros.msg import LowerBodyCommand  # noqa: E402


def test_lower_body_command_round_trip_through_the_one_field_table():
    command = np.arange(1, 9, dtype=np.float64) / 8.0
    msg = ros_messages.lower_body_command_message(command)
    assert isinstance(msg, LowerBodyCommand)
    # the message's `height` is the vector's torso_height; every other name is the same
    assert msg.height == command[LOWER_BODY_COMMAND_NAMES.index("torso_height")]
    assert msg.vx == command[LOWER_BODY_COMMAND_NAMES.index("vx")]
    assert msg.target_yaw == command[LOWER_BODY_COMMAND_NAMES.index("target_yaw")]
    np.testing.assert_array_equal(ros_messages.lower_body_command_to_vector(msg), command)
    assert set(ros_messages.LOWER_BODY_FIELDS) == set(LowerBodyCommand.get_fields_and_field_types()) - {"header"}
    with pytest.raises(ValueError, match="must have 8 values"):
        ros_messages.lower_body_command_message(np.zeros(7))


def test_joint_state_by_name_in_any_order_and_missing_joints_named():
    msg = ros_messages.joint_state_message(["b", "a", "c"], [2.0, 1.0, 3.0], velocity=[0.2, 0.1, 0.3])
    assert isinstance(msg, sensor_msgs.JointState) and list(msg.name) == ["b", "a", "c"]
    np.testing.assert_array_equal(ros_messages.joint_state_to_vector(msg, ["a", "c"]), [1.0, 3.0])
    np.testing.assert_array_equal(ros_messages.joint_state_to_vector(msg, ["c", "b"], "velocity"), [0.3, 0.2])
    with pytest.raises(ValueError, match=r"lacks joints \['z'\]"):
        ros_messages.joint_state_to_vector(msg, ["a", "z"])
    with pytest.raises(ValueError, match="0 effort values"):
        ros_messages.joint_state_to_vector(msg, ["a"], "effort")
    with pytest.raises(ValueError, match="position has 2 values for 3 names"):
        ros_messages.joint_state_message(["a", "b", "c"], [1.0, 2.0])
    plain = SimpleNamespace(name=["a"], position=(0.5,))  # a rosbags-style object works too
    assert ros_messages.joint_state_positions(plain) == (["a"], [0.5])


def test_imu_quaternion_orders():
    msg = ros_messages.fill_imu(sensor_msgs.Imu(), [0.9, 0.1, 0.2, 0.3], [1.0, 2.0, 3.0], [0.0, 0.0, 9.81])
    assert (msg.orientation.w, msg.orientation.x) == (0.9, 0.1)
    orientation, gyro, accel = ros_messages.imu_to_vectors(msg)
    np.testing.assert_array_equal(orientation, [0.1, 0.2, 0.3, 0.9])  # xyzw, as in the message
    np.testing.assert_array_equal(gyro, [1.0, 2.0, 3.0])
    assert accel[2] == pytest.approx(9.81)


def test_camera_info_is_a_pinhole_without_distortion():
    k = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    msg = ros_messages.camera_info_message(640, 480, k, "cam")
    assert isinstance(msg, sensor_msgs.CameraInfo)
    assert list(msg.p) == [500.0, 0.0, 320.0, 0.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(msg.r) == [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0] and list(msg.d) == [0.0] * 5
    attrs = ros_messages.camera_info_to_attrs(msg)
    assert attrs == {
        "width": 640,
        "height": 480,
        "distortion_model": "plumb_bob",
        "K": k.reshape(-1).tolist(),
        "D": [0.0] * 5,
        "frame_id": "cam",
    }
