"""The generated URDF and its forward kinematics against the simulator's MJCF, compiled by MuJoCo:
same joints, parents, axes and limits; link poses and fingertips equal MuJoCo's own kinematics
(mj_kinematics) at random joint configurations."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from psi0_ros import g1
from psi0_ros.constants import FRAME_BASE, FRAME_HEAD_CAMERA
from psi0_ros.robot import description
from psi0_ros.sim import model


@pytest.fixture(scope="module")
def sim():
    """The robot exactly as the simulator builds it (kinematic base: the pelvis is a mocap body)."""
    root = ET.Element("mujoco", {"model": "g1"})
    ET.SubElement(root, "compiler", {"angle": "radian"})  # as sim/scene.py writes it
    worldbody = ET.SubElement(root, "worldbody")
    actuator = ET.SubElement(root, "actuator")
    model.add_robot(worldbody, actuator, "kinematic")
    m = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
    return m, mujoco.MjData(m)


def test_urdf_parses_with_ros_urdf_parser():
    urdf_parser_py = pytest.importorskip("urdf_parser_py.urdf", reason="urdf-parser-py not installed")
    robot = urdf_parser_py.URDF.from_xml_string(description.urdf_xml())
    assert robot.get_root() == FRAME_BASE
    movable = {j.name for j in robot.joints if j.type == "revolute"}
    assert movable == set(g1.ALL_JOINTS)
    for joint in robot.joints:
        if joint.type == "revolute":
            spec = g1.JOINT_SPECS[joint.name]
            assert (joint.limit.lower, joint.limit.upper) == pytest.approx((spec.lower, spec.upper), abs=1e-5)
            assert joint.limit.effort == pytest.approx(spec.effort) and joint.limit.velocity == pytest.approx(
                spec.velocity
            )
    assert FRAME_HEAD_CAMERA in {link.name for link in robot.links}


def test_urdf_joints_match_the_compiled_mjcf(sim):
    m, _ = sim
    root = ET.fromstring(description.urdf_xml())
    links = {el.get("name") for el in root.findall("link")}
    joints = {el.get("name"): el for el in root.findall("joint") if el.get("type") == "revolute"}
    assert set(joints) == set(g1.ALL_JOINTS)
    assert len(links) == len(root.findall("joint")) + 1  # a tree: one parent joint per link but the root
    for name, el in joints.items():
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        body = m.jnt_bodyid[jid]
        parent = m.body_parentid[body]
        assert el.find("child").get("link") == mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, body)
        assert el.find("parent").get("link") == mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, parent)
        axis = [float(v) for v in el.find("axis").get("xyz").split()]
        np.testing.assert_allclose(axis, m.jnt_axis[jid], err_msg=name)
        limit = el.find("limit")
        np.testing.assert_allclose(
            [float(limit.get("lower")), float(limit.get("upper"))], m.jnt_range[jid], atol=1e-5, err_msg=name
        )
        origin = el.find("origin")
        np.testing.assert_allclose([float(v) for v in origin.get("xyz").split()], m.body_pos[body], atol=1e-6)


def _mujoco_poses(m, d, q: np.ndarray) -> dict[str, np.ndarray]:
    """Link poses relative to the pelvis, from MuJoCo's own kinematics."""
    d.qpos[:] = 0
    for name, value in zip(g1.ALL_JOINTS, q, strict=True):
        d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)]] = value
    mujoco.mj_kinematics(m, d)
    pelvis = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, FRAME_BASE)
    base = np.eye(4)
    base[:3, :3], base[:3, 3] = d.xmat[pelvis].reshape(3, 3), d.xpos[pelvis]
    poses = {}
    for body in range(1, m.nbody):
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = d.xmat[body].reshape(3, 3), d.xpos[body]
        poses[mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, body)] = np.linalg.solve(base, pose)
    return poses


def test_forward_kinematics_equals_mujoco_at_random_configurations(sim):
    m, d = sim
    rng = np.random.default_rng(7)
    lower, upper = g1.table("lower"), g1.table("upper")
    for trial in range(5):
        q = rng.uniform(lower, upper)
        expected = _mujoco_poses(m, d, q)
        got = description.forward_kinematics(q)
        for name, pose in expected.items():
            np.testing.assert_allclose(got[name], pose, atol=1e-9, err_msg=f"trial {trial} {name}")
        # the same through the name-keyed form, with the base moved
        base = np.eye(4)
        base[:3, 3] = (0.5, -0.2, 0.8)
        moved = description.forward_kinematics(dict(zip(g1.ALL_JOINTS, q, strict=True)), base=base)
        np.testing.assert_allclose(moved["left_wrist_yaw_link"], base @ expected["left_wrist_yaw_link"], atol=1e-9)


def test_fingertips_are_the_ends_of_mujocos_distal_capsules(sim):
    m, d = sim
    q = np.random.default_rng(1).uniform(g1.table("lower"), g1.table("upper"))
    _mujoco_poses(m, d, q)  # leaves d at q
    pelvis = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, FRAME_BASE)
    points = description.hand_points(description.forward_kinematics(q))
    assert set(points) == {f"{s}_{p}" for s in ("left", "right") for p in ("wrist", "thumb", "index", "middle")}
    for name, (link, _offset) in description.FINGERTIPS.items():
        body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, link)
        geom = int(np.flatnonzero(m.geom_bodyid == body)[0])
        axis = d.geom_xmat[geom].reshape(3, 3)[:, 2]
        ends = [d.geom_xpos[geom] + sign * axis * m.geom_size[geom][1] for sign in (1.0, -1.0)]
        # the segment runs from the link origin (the joint) to the tip: the tip is the far end
        tip_world = max(ends, key=lambda end: np.linalg.norm(end - d.xpos[body]))
        tip = d.xmat[pelvis].reshape(3, 3).T @ (tip_world - d.xpos[pelvis])
        np.testing.assert_allclose(points[name], tip, atol=1e-9, err_msg=name)


def test_hand_paths_follow_the_chunk_columns():
    names = list(g1.LEFT_ARM_JOINTS) + ["vx"]
    actions = np.zeros((4, len(names)))
    actions[:, 3] = np.linspace(0.0, 1.5, 4)  # bend the left elbow over the chunk
    paths = description.hand_paths(names, actions, current={})
    assert paths["left_wrist"].shape == (4, 3)
    assert np.all(np.linalg.norm(np.diff(paths["left_wrist"], axis=0), axis=1) > 0.01)
    np.testing.assert_allclose(paths["right_wrist"], np.repeat(paths["right_wrist"][:1], 4, axis=0))
    with pytest.raises(ValueError, match="dim names"):
        description.hand_paths(names[:-1], actions, current={})


def test_matrix_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        r = description.quat_to_matrix(quat)
        back = np.array(description.matrix_to_quat(r))
        np.testing.assert_allclose(back * np.sign(back[0]), quat * np.sign(quat[0]), atol=1e-12)
        np.testing.assert_allclose(r, description.quat_to_matrix(back), atol=1e-12)
