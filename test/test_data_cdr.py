"""The JointState / Imu CDR fast paths agree with rosbags' deserialiser, and step aside when unsure;
JointStates read in batches (peek, then decode many of one layout at once) agree as well."""

from __future__ import annotations

import numpy as np
import pytest

from psi0_ros.data.cdr import decode_imu, decode_joint_state, decode_joint_state_batch, peek_joint_state
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


@pytest.mark.parametrize("frame_id", ["", "abc", "pelvis"])
@pytest.mark.parametrize("velocity_len,effort_len", [(None, None), (0, 0), (None, 0), (3, None)])
def test_joint_states_decoded_in_a_batch_match_rosbags(frame_id, velocity_len, effort_len):
    rng = np.random.default_rng(len(frame_id))
    names = [f"joint_{i}" for i in range(3 if velocity_len == 3 else 43)]
    raws = [
        bytes(
            STORE.serialize_cdr(
                _joint_state(names, velocity_len, effort_len, frame_id, rng), "sensor_msgs/msg/JointState"
            )
        )
        for _ in range(5)
    ]
    peeked = [peek_joint_state(raw) for raw in raws]
    assert len({(len(p.raw), p.layout) for p in peeked}) == 1  # one layout: the stamps differ, nothing else
    position, velocity, effort = decode_joint_state_batch([p.raw for p in peeked])
    for i, (raw, p) in enumerate(zip(raws, peeked, strict=True)):
        ref = STORE.deserialize_cdr(raw, "sensor_msgs/msg/JointState")
        assert p.stamp_ns == ref.header.stamp.sec * 10**9 + ref.header.stamp.nanosec
        assert p.name == tuple(ref.name)
        for got, field in ((position, "position"), (velocity, "velocity"), (effort, "effort")):
            assert np.array_equal(got[i], getattr(ref, field))


def test_a_batch_whose_sequences_split_differently_is_refused():
    """Equal lengths and names, but 2 velocities and 3 efforts against the reverse: the batch
    decoder must not read one's efforts as the other's velocities."""
    rng = np.random.default_rng(3)
    names = [f"j{i}" for i in range(43)]
    a = bytes(STORE.serialize_cdr(_joint_state(names, 2, 3, "", rng), "sensor_msgs/msg/JointState"))
    b = bytes(STORE.serialize_cdr(_joint_state(names, 3, 2, "", rng), "sensor_msgs/msg/JointState"))
    pa, pb = peek_joint_state(a), peek_joint_state(b)
    assert (len(pa.raw), pa.layout) == (len(pb.raw), pb.layout)
    assert decode_joint_state_batch([pa.raw, pb.raw]) is None
    assert decode_joint_state_batch([pa.raw, pa.raw]) is not None


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


def test_the_joint_state_aligner_decodes_peeked_messages_as_decoded_ones():
    """The converter's aligner fed peeked messages (batched, and one by one where a batch is
    refused) puts the same values on the grid as fed fully decoded ones."""
    from psi0_ros.data.aligners import JointStateAligner
    from psi0_ros.data.bags import Stamped
    from psi0_ros.data.config import ConvertConfig
    from psi0_ros.g1 import ALL_JOINTS

    rng = np.random.default_rng(4)
    names = list(ALL_JOINTS)
    raws = [
        bytes(STORE.serialize_cdr(_joint_state(names, v, e, "", rng), "sensor_msgs/msg/JointState"))
        for v, e in [(None, None)] * 6 + [(2, 3), (3, 2)]
    ]
    results = []
    for decode in (decode_joint_state, peek_joint_state):
        aligner = JointStateAligner("/joint_states", ConvertConfig())
        for i, raw in enumerate(raws):
            receive = 1_000_000_000 + i * 4_000_000
            aligner.add(Stamped(receive, receive, decode(raw)))
        ticks = np.arange(1_000_000_000, 1_000_000_000 + 28_000_000, 3_000_000, dtype=np.int64)
        positions, velocities, efforts = aligner.align(ticks)
        results.append((positions.values, positions.valid, velocities, efforts))
    (p0, v0, vel0, eff0), (p1, v1, vel1, eff1) = results
    np.testing.assert_array_equal(p0, p1)
    np.testing.assert_array_equal(v0, v1)
    assert vel0 is None and vel1 is None and eff0 is None and eff1 is None  # two messages lack them
    assert v0.any()
