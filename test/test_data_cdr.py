"""The JointState / Imu CDR fast paths agree with rosbags' deserialiser, and step aside when unsure."""

from __future__ import annotations

import numpy as np
import pytest

from psi0_ros.data.cdr import decode_imu, decode_joint_state
from psi0_ros.data.typestore import make_typestore

STORE = make_typestore()
T = STORE.types


def _header(sec: int, nanosec: int, frame_id: str):
    stamp = T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _joint_state(names, velocity_len, effort_len, frame_id, rng):
    n = len(names)
    return T["sensor_msgs/msg/JointState"](
        header=_header(int(rng.integers(0, 2**31 - 1)), int(rng.integers(0, 10**9)), frame_id),
        name=names,
        position=rng.standard_normal(n),
        velocity=rng.standard_normal(velocity_len if velocity_len is not None else n),
        effort=rng.standard_normal(effort_len if effort_len is not None else n),
    )


# frame_id lengths 0-8 and names of different lengths move every later field across alignments
@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "pelvis", "imu_link", "torso_lnk"])
@pytest.mark.parametrize(
    "names,velocity_len,effort_len",
    [
        ([f"joint_{i}_joint" for i in range(43)], None, None),
        (["a", "bb", "ccc"], 0, 0),
        (["left_hand_thumb_0_joint"], None, 0),
        ([], 0, 0),
        (["x" * 7, "y" * 8, "ü"], 3, None),
    ],
)
def test_joint_state_fast_path_matches_rosbags(frame_id, names, velocity_len, effort_len):
    rng = np.random.default_rng(len(frame_id) * 100 + len(names))
    msg = _joint_state(names, velocity_len, effort_len, frame_id, rng)
    raw = bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
    for _ in range(2):  # the second decode takes the cached-names branch
        fast = decode_joint_state(raw)
        ref = STORE.deserialize_cdr(raw, "sensor_msgs/msg/JointState")
        assert fast is not None
        assert fast.stamp_ns == ref.header.stamp.sec * 10**9 + ref.header.stamp.nanosec
        assert fast.name == tuple(ref.name)
        for field in ("position", "velocity", "effort"):
            assert np.array_equal(getattr(fast, field), getattr(ref, field))


def test_same_name_bytes_at_another_offset_are_not_confused():
    rng = np.random.default_rng(1)
    names = [f"j{i}" for i in range(5)]
    a = bytes(STORE.serialize_cdr(_joint_state(names, None, None, "ab", rng), "sensor_msgs/msg/JointState"))
    b = bytes(STORE.serialize_cdr(_joint_state(names[:4], None, None, "abcdef", rng), "sensor_msgs/msg/JointState"))
    assert decode_joint_state(a).name == tuple(names)
    assert decode_joint_state(b).name == tuple(names[:4])


def test_imu_fast_path_matches_rosbags():
    rng = np.random.default_rng(2)
    for frame_id in ("", "i", "imu", "imu_link", "imu_link_x"):
        quat = T["geometry_msgs/msg/Quaternion"](*rng.standard_normal(4))
        vec = T["geometry_msgs/msg/Vector3"]
        msg = T["sensor_msgs/msg/Imu"](
            header=_header(7, 123, frame_id),
            orientation=quat,
            orientation_covariance=rng.standard_normal(9),
            angular_velocity=vec(*rng.standard_normal(3)),
            angular_velocity_covariance=rng.standard_normal(9),
            linear_acceleration=vec(*rng.standard_normal(3)),
            linear_acceleration_covariance=rng.standard_normal(9),
        )
        raw = bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/Imu"))
        fast = decode_imu(raw)
        o, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
        assert fast.stamp_ns == 7 * 10**9 + 123
        assert np.array_equal(fast.orientation, [o.x, o.y, o.z, o.w])
        assert np.array_equal(fast.angular_velocity, [w.x, w.y, w.z])
        assert np.array_equal(fast.linear_acceleration, [a.x, a.y, a.z])


def test_big_endian_and_truncated_messages_fall_back():
    rng = np.random.default_rng(3)
    msg = _joint_state(["a", "b"], None, None, "f", rng)
    big = bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/JointState", little_endian=False))
    assert decode_joint_state(big) is None
    little = bytes(STORE.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
    assert decode_joint_state(little[:-9]) is None  # the effort sequence overruns the buffer
    assert decode_imu(little[:20]) is None
