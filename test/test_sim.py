"""The MuJoCo G1 (psi0_ros.sim): model vs joint table, physics, kinematic base, camera, tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.tiers import require

import psi0_ros.sim  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is imported)
from psi0_ros import g1
from psi0_ros.constants import LOWER_BODY_COMMAND_NAMES
from psi0_ros.control.command import JointCommand

mujoco = require("mujoco")

from psi0_ros.sim.kinematic import KinematicLowerBody  # noqa: E402
from psi0_ros.sim.model import CAMERA_HEIGHT, CAMERA_WIDTH  # noqa: E402
from psi0_ros.sim.scene import OBJECTS, TABLE_HEIGHT, sample_layout  # noqa: E402
from psi0_ros.sim.simulator import G1Sim, SimConfig  # noqa: E402
from psi0_ros.sim.tasks import TASKS, get_task  # noqa: E402


def lower_command(**values: float) -> np.ndarray:
    command = np.zeros(8)
    command[LOWER_BODY_COMMAND_NAMES.index("torso_height")] = 0.76
    for name, value in values.items():
        command[LOWER_BODY_COMMAND_NAMES.index(name)] = value
    return command


@pytest.fixture(scope="module")
def kinematic_sim() -> G1Sim:
    return G1Sim(SimConfig(base_mode="kinematic", scene="tabletop", seed=3))


@pytest.mark.parametrize("mode", ["kinematic", "physics"])
def test_model_matches_the_joint_table(mode):
    sim = G1Sim(SimConfig(base_mode=mode, scene="empty"))
    model = sim.model
    for i, spec in enumerate(g1.ALL):
        joint = model.joint(spec.name)
        assert tuple(joint.range) == pytest.approx((spec.lower, spec.upper))
        assert np.argmax(np.abs(joint.axis)) == "xyz".index(spec.axis) and np.abs(joint.axis).max() == 1.0
        actuator = model.actuator(i)
        assert actuator.name == spec.name and model.actuator_trnid[i, 0] == joint.id
        assert tuple(actuator.forcerange) == pytest.approx((-spec.effort, spec.effort))
    assert model.nu == 43
    total_mass = float(model.body_subtreemass[sim.pelvis_id])
    assert 30.0 < total_mass < 45.0, total_mass  # the G1 with hands weighs about 35 kg


def test_physics_mode_falls_without_support_and_stands_in_the_harness():
    free = G1Sim(SimConfig(base_mode="physics", scene="empty", harness=False))
    held = G1Sim(SimConfig(base_mode="physics", scene="empty", harness=True))
    start_z = held.base_pose()[0][2]
    free.step(1000)  # 2 s of PD holding the default pose: no balance controller, so it tips over
    held.step(1000)
    assert free.base_pose()[0][2] < 0.5
    position, quat = held.base_pose()
    assert position[2] == pytest.approx(start_z, abs=0.03)
    assert abs(quat[0]) > 0.99  # still upright
    _, gyro, accel = held.imu()
    assert np.linalg.norm(gyro) < 0.05
    assert np.linalg.norm(accel) == pytest.approx(9.81, abs=0.3)  # standing still: the IMU feels gravity only


def test_pd_motors_track_a_target_and_saturate_at_the_effort_limit():
    sim = G1Sim(SimConfig(base_mode="kinematic", scene="empty"))
    q_target = g1.table("default")
    i = g1.JOINT_INDEX["left_shoulder_yaw_joint"]
    q_target[i] = 0.6
    sim.apply(JointCommand.position(q_target, g1.table("kp"), g1.table("kd")))
    sim.step(500)
    q, dq, tau = sim.joint_state()
    assert q[i] == pytest.approx(0.6, abs=0.02) and abs(dq[i]) < 0.05
    far = q.copy()
    far[i] = q[i] + 2.0  # kp * 2 rad = 80 N·m, above the 25 N·m motor
    sim.apply(JointCommand.position(far, g1.table("kp"), g1.table("kd")))
    sim.step(1)
    _, _, tau = sim.joint_state()
    assert abs(tau[i]) == pytest.approx(g1.JOINT_SPECS["left_shoulder_yaw_joint"].effort, rel=1e-6)
    with pytest.raises(ValueError, match="non-finite"):
        sim.apply(JointCommand.position(np.full(43, np.nan), g1.table("kp"), g1.table("kd")))


def test_kinematic_base_follows_the_lower_body_command():
    sim = G1Sim(SimConfig(base_mode="kinematic", scene="empty"))
    body = KinematicLowerBody(sim)
    dt = 0.004
    for _ in range(500):  # 2 s at vx = 0.3 m/s (0.3 s of it ramping at 1 m/s^2)
        body.step(lower_command(vx=0.3), dt)
        sim.step(2)
    x, y, _ = sim.base_pose()[0]
    assert x == pytest.approx(0.3 * 2.0 - 0.3**2 / 2.0, abs=0.01) and abs(y) < 1e-6
    for _ in range(750):  # turn to target_yaw = 0.5 rad and crouch to 0.68 m, torso pitched 0.2 rad
        targets = body.step(lower_command(target_yaw=0.5, torso_height=0.68, torso_pitch=0.2), dt)
        sim.step(2)
    position, quat = sim.base_pose()
    assert 2.0 * math.atan2(quat[3], quat[0]) == pytest.approx(0.5, abs=0.01)
    assert position[2] == pytest.approx(0.68, abs=1e-3)
    legs = targets[: len(g1.LEG_JOINTS)]
    assert sim.standing_height(np.concatenate([legs, targets[12:]])) == pytest.approx(
        0.68, abs=0.01
    )  # soles on the floor
    assert targets[g1.LOWER_BODY_JOINTS.index("waist_pitch_joint")] == pytest.approx(0.2)
    assert body.height_range[0] < 0.7 and body.height_range[1] > 0.78


def test_kinematic_base_stands_in_place_below_amos_stand_speed():
    """AMO's in-place-stand rule: |vx|, |vy|, |vyaw| all under 0.1 -> no stepping at all."""
    sim = G1Sim(SimConfig(base_mode="kinematic", scene="empty"))
    body = KinematicLowerBody(sim)
    for _ in range(250):  # 1 s of commands just under the threshold
        body.step(lower_command(vx=0.09, vy=-0.09), 0.004)
        sim.step(2)
    assert np.abs(sim.base_pose()[0][:2]).max() < 1e-9
    for _ in range(250):  # one component over it: the base walks with both
        body.step(lower_command(vx=0.11, vy=-0.05), 0.004)
        sim.step(2)
    x, y, _ = sim.base_pose()[0]
    assert x > 0.08 and y < -0.03, (x, y)


def test_layouts_are_seeded_on_the_table_and_apart():
    a, b, c = sample_layout("tabletop", 5), sample_layout("tabletop", 5), sample_layout("tabletop", 6)
    assert a == b and a != c
    for layout in (a, c):
        assert {o.name for o in layout.objects} == set(OBJECTS)
        for obj in layout.objects:
            assert 0.4 < obj.x < 0.65 and abs(obj.y) < 0.3 and obj.z > TABLE_HEIGHT
        can, cube = layout.pose("can"), layout.pose("cube")
        assert math.hypot(can.x - cube.x, can.y - cube.y) > 0.08
    assert sample_layout("empty", 0).objects == ()
    with pytest.raises(ValueError, match="unknown scene"):
        sample_layout("kitchen", 0)


def test_lab_layouts_keep_each_object_in_its_own_box_and_still_vary():
    boxes = {"can": ((0.45, 0.55), (-0.20, -0.10)), "basket": ((0.48, 0.58), (0.08, 0.18))}
    layouts = [sample_layout("tabletop", seed, "lab") for seed in range(40)]
    assert layouts[3] == sample_layout("tabletop", 3, "lab") and layouts[3] != sample_layout("tabletop", 3)
    for name, ((x0, x1), (y0, y1)) in boxes.items():
        xs = np.array([layout.pose(name).x for layout in layouts])
        ys = np.array([layout.pose(name).y for layout in layouts])
        assert ((x0 <= xs) & (xs <= x1) & (y0 <= ys) & (ys <= y1)).all(), name
        # the range is really used: at least +-4 cm of the +-5 cm in each axis over 40 seeds
        assert np.ptp(xs) > 0.08 and np.ptp(ys) > 0.08, name
    for layout in layouts:
        assert layout.pose("cube").y > layout.pose("basket").y  # the distractor lies beyond the basket
    assert G1Sim(SimConfig(seed=3, layout="lab", base_mode="kinematic")).layout == layouts[3]
    with pytest.raises(ValueError, match="unknown layout"):
        sample_layout("tabletop", 0, "kitchen")
    with pytest.raises(ValueError, match="unknown layout"):
        SimConfig(layout="everywhere")


def _object_corners(sim: G1Sim, name: str) -> np.ndarray:
    """World corners (8, 3) of the axis-aligned box around all geoms of a body."""
    body = sim.model.body(name).id
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for geom in np.flatnonzero(sim.model.geom_bodyid == body):
        center, rot = sim.data.geom_xpos[geom], sim.data.geom_xmat[geom].reshape(3, 3)
        size = sim.model.geom_size[geom]
        half = size if sim.model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_BOX else np.array([size[0], size[0], size[1]])
        extent = np.abs(rot) @ half
        lo, hi = np.minimum(lo, center - extent), np.maximum(hi, center + extent)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


# Which pixels "look like" each object: its dominant colour channel clearly above the other two.
_COLOUR = {"can": 0, "cube": 1, "basket": 2}


def test_head_camera_sees_the_objects(kinematic_sim):
    from psi0_ros.sim.camera import HeadCamera

    sim = kinematic_sim
    sim.step(50)
    camera = HeadCamera(sim.model)
    try:
        snapshot = sim.snapshot()
        rgb = camera.render(snapshot)
        assert rgb.shape == (CAMERA_HEIGHT, CAMERA_WIDTH, 3) and rgb.dtype == np.uint8
        assert rgb.std() > 20.0
        pixels = rgb.astype(np.int32)
        for name in OBJECTS:
            uv, depth = camera.project(_object_corners(sim, name), snapshot)
            assert (depth > 0.2).all(), name
            u0, v0 = np.floor(uv.min(axis=0)).astype(int)
            u1, v1 = np.ceil(uv.max(axis=0)).astype(int)
            assert 0 <= u0 < u1 <= CAMERA_WIDTH and 0 <= v0 < v1 <= CAMERA_HEIGHT, (name, uv)
            c = _COLOUR[name]
            others = [k for k in range(3) if k != c]
            matches = (pixels[:, :, c] > 60) & (pixels[:, :, c] > 1.6 * pixels[:, :, others].max(axis=2))
            inside = matches[v0:v1, u0:u1]
            assert inside.mean() > 0.2, (name, inside.mean())  # the object fills a good part of its box
            assert inside.sum() > 0.8 * matches.sum(), name  # and that colour is found where the object is
            box = pixels[v0:v1, u0:u1]
            assert box.std() > 10.0  # not a flat patch
    finally:
        camera.close()


def test_task_checks_see_an_object_in_the_basket():
    sim = G1Sim(SimConfig(scene="tabletop", seed=1))
    assert not any(task.success(sim) for task in TASKS.values())
    basket, _ = sim.body_pose("basket")
    joint = sim.model.joint("can_joint").qposadr[0]
    sim.data.qpos[joint : joint + 3] = basket + np.array([0.0, 0.0, 0.08])
    sim.data.qpos[joint + 3 : joint + 7] = (1.0, 0.0, 0.0, 0.0)
    sim.data.qvel[:] = 0.0
    sim.step(500)  # it drops into the basket and settles
    assert get_task("can_to_basket").success(sim)
    assert not get_task("cube_to_basket").success(sim)
    sim.data.qpos[joint : joint + 3] = (0.5, 0.0, TABLE_HEIGHT + 0.2)
    mujoco.mj_forward(sim.model, sim.data)
    assert get_task("lift_can").success(sim) and not get_task("can_to_basket").success(sim)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("fold_laundry")
    empty = G1Sim(SimConfig(scene="empty"))
    assert get_task("can_to_basket").check(empty) is None and get_task("lift_can").check(sim) is True
