"""The G1 as URDF for rviz, and forward kinematics of the same model (ROS-free).

One source: the link tree of psi0_ros.sim.model (offsets, orientations, shapes) and the joint table
of psi0_ros.g1 (names, axes, limits), the same two tables the simulator's MJCF is written from.
So rviz, the forward kinematics used for the predicted-chunk markers and MuJoCo agree by
construction; test_description.py checks FK against MuJoCo's own body poses.

Frames follow MuJoCo's body convention, which URDF shares: a child link's frame is its parent's,
moved by the link's pos and rotated by its quat, then rotated about the joint axis by q.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import numpy as np

from psi0_ros import g1
from psi0_ros.constants import FRAME_BASE, FRAME_HEAD_CAMERA
from psi0_ros.sim import model

ROBOT_NAME = "g1_29dof_with_dex3"
HEAD_CAMERA_LINK = "head_camera_link"  # the camera body, x forward (ROS body convention)
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}

# Points rviz draws paths of: wrists (the wrist_yaw link origin) and fingertips (the far end of
# each distal finger segment, in that link's frame, m).
WRIST_LINKS: dict[str, str] = {"left": "left_wrist_yaw_link", "right": "right_wrist_yaw_link"}


def _fingertips() -> dict[str, tuple[str, np.ndarray]]:
    """{"left_thumb": (link, point in link frame), ...} from the distal segments' capsule ends."""
    tips = {}
    for link in model.robot_links():
        for side in ("left", "right"):
            for finger, distal in (("thumb", "thumb_2"), ("index", "index_1"), ("middle", "middle_1")):
                if link.name == f"{side}_hand_{distal}_link":
                    fromto = link.geoms[0].fromto
                    tips[f"{side}_{finger}"] = (link.name, np.array(fromto[3:6], dtype=np.float64))
    return tips


FINGERTIPS: dict[str, tuple[str, np.ndarray]] = _fingertips()


def quat_to_matrix(quat_wxyz: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a (w, x, y, z) quaternion (normalised first, as MuJoCo does)."""
    w, x, y, z = np.asarray(quat_wxyz, dtype=np.float64) / np.linalg.norm(quat_wxyz)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_rpy(r: np.ndarray) -> tuple[float, float, float]:
    """URDF's fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll)) of a rotation matrix."""
    pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        roll = math.atan2(r[2, 1], r[2, 2])
        yaw = math.atan2(r[1, 0], r[0, 0])
    else:  # gimbal lock: put it all in yaw
        roll = 0.0
        yaw = math.atan2(-r[0, 1], r[1, 1])
    return roll, pitch, yaw


def matrix_to_quat(r: np.ndarray) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a rotation matrix (Shepperd's method)."""
    trace = float(np.trace(r))
    if trace > 0.0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x, y, z = 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        v = [0.0, 0.0, 0.0]
        v[i] = 0.25 * s
        v[j] = (r[j, i] + r[i, j]) / s
        v[k] = (r[k, i] + r[i, k]) / s
        w = (r[k, j] - r[j, k]) / s
        x, y, z = v
    return float(w), float(x), float(y), float(z)


def axis_rotation(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    raise ValueError(f"unknown joint axis {axis!r}; expected x, y or z")


def _transform(rotation: np.ndarray, translation: np.ndarray | tuple[float, ...]) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rotation
    t[:3, 3] = translation
    return t


def _camera_transform() -> np.ndarray:
    """head camera body in torso_link: the sim camera's pose, as a frame with x forward, z up."""
    pitch = model.CAMERA_PITCH
    return _transform(axis_rotation("y", pitch), model.CAMERA_POS)


# ROS optical frame (z forward, x right, y down) in the camera body frame (x forward, z up).
_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def link_origins() -> dict[str, tuple[str, np.ndarray, str | None]]:
    """{link: (parent, parent->link transform at q = 0 (4, 4), joint name or None)}, parents first."""
    origins: dict[str, tuple[str, np.ndarray, str | None]] = {}
    for link in model.robot_links():
        rotation = quat_to_matrix(link.quat) if link.quat is not None else np.eye(3)
        origins[link.name] = (link.parent, _transform(rotation, link.pos), link.joint)
    origins[HEAD_CAMERA_LINK] = ("torso_link", _camera_transform(), None)
    origins[FRAME_HEAD_CAMERA] = (HEAD_CAMERA_LINK, _transform(_OPTICAL, (0.0, 0.0, 0.0)), None)
    return origins


_ORIGINS = link_origins()


def forward_kinematics(q: Mapping[str, float] | np.ndarray, base: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Pose (4, 4) of every link in the base's parent frame (the pelvis frame when base is None).

    q: joint angles (rad) by name, or a (43,) array in g1.ALL_JOINTS order; joints not named stay 0.
    """
    if isinstance(q, Mapping):
        angles = {name: float(value) for name, value in q.items()}
    else:
        values = np.asarray(q, dtype=np.float64).reshape(-1)
        if values.shape != (len(g1.ALL_JOINTS),):
            raise ValueError(f"forward_kinematics needs {len(g1.ALL_JOINTS)} joint values, got {values.shape}")
        angles = dict(zip(g1.ALL_JOINTS, values.tolist(), strict=True))
    poses = {FRAME_BASE: np.eye(4) if base is None else np.asarray(base, dtype=np.float64)}
    for name, (parent, origin, joint) in _ORIGINS.items():
        pose = poses[parent] @ origin
        if joint is not None:
            pose = pose @ _transform(axis_rotation(g1.JOINT_SPECS[joint].axis, angles.get(joint, 0.0)), (0, 0, 0))
        poses[name] = pose
    return poses


def hand_points(poses: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{"left_wrist": (3,), "left_thumb": (3,), ...}: wrist and fingertip positions from link poses."""
    points = {f"{side}_wrist": poses[link][:3, 3].copy() for side, link in WRIST_LINKS.items()}
    for name, (link, offset) in FINGERTIPS.items():
        points[name] = poses[link][:3, :3] @ offset + poses[link][:3, 3]
    return points


# --- URDF ---------------------------------------------------------------------------------------------


def _fmt(values) -> str:
    return " ".join(f"{float(v) + 0.0:.6g}" for v in values)


def _origin(parent: ET.Element, transform: np.ndarray) -> None:
    ET.SubElement(parent, "origin", {"xyz": _fmt(transform[:3, 3]), "rpy": _fmt(matrix_to_rpy(transform[:3, :3]))})


def _visual(link_el: ET.Element, geom: model.Geom) -> None:
    visual = ET.SubElement(link_el, "visual")
    if geom.type == "capsule" and geom.fromto is not None:
        a, b = np.array(geom.fromto[:3]), np.array(geom.fromto[3:])
        length = float(np.linalg.norm(b - a))
        direction = (b - a) / length if length > 0 else np.array([0.0, 0.0, 1.0])
        # a rotation taking z onto the capsule's direction
        z = np.array([0.0, 0.0, 1.0])
        v, c = np.cross(z, direction), float(z @ direction)
        if np.linalg.norm(v) < 1e-12:
            rotation = np.eye(3) if c > 0 else axis_rotation("x", math.pi)
        else:
            k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
            rotation = np.eye(3) + k + k @ k / (1.0 + c)
        _origin(visual, _transform(rotation, (a + b) / 2.0))
        shape = ET.SubElement(ET.SubElement(visual, "geometry"), "cylinder")
        shape.set("radius", f"{geom.size[0]:.6g}")
        shape.set("length", f"{length:.6g}")
    else:
        _origin(visual, _transform(np.eye(3), geom.pos or (0.0, 0.0, 0.0)))
        geometry = ET.SubElement(visual, "geometry")
        if geom.type == "sphere":
            ET.SubElement(geometry, "sphere", {"radius": f"{geom.size[0]:.6g}"})
        elif geom.type == "box":
            ET.SubElement(geometry, "box", {"size": _fmt(2.0 * np.array(geom.size))})  # MJCF: half sizes
        else:
            raise ValueError(f"no URDF shape for MJCF geom type {geom.type!r}")
    rgba = [float(v) for v in geom.rgba.split()]
    material = ET.SubElement(visual, "material", {"name": "c" + "_".join(f"{int(v * 100)}" for v in rgba)})
    ET.SubElement(material, "color", {"rgba": _fmt(rgba)})


def urdf_xml() -> str:
    """The robot as a URDF string: pelvis root, one revolute joint per g1 joint, primitive visuals."""
    robot = ET.Element("robot", {"name": ROBOT_NAME})
    ET.SubElement(robot, "link", {"name": FRAME_BASE})
    links = {link.name: link for link in model.robot_links()}
    for name, (parent, origin, joint) in _ORIGINS.items():
        link_el = ET.SubElement(robot, "link", {"name": name})
        if name in links:
            for geom in links[name].geoms:
                _visual(link_el, geom)
        if joint is None:
            joint_el = ET.SubElement(robot, "joint", {"name": f"{name}_fixed", "type": "fixed"})
        else:
            joint_el = ET.SubElement(robot, "joint", {"name": joint, "type": "revolute"})
        ET.SubElement(joint_el, "parent", {"link": parent})
        ET.SubElement(joint_el, "child", {"link": name})
        _origin(joint_el, origin)
        if joint is not None:
            spec = g1.JOINT_SPECS[joint]
            ET.SubElement(joint_el, "axis", {"xyz": _fmt(_AXES[spec.axis])})
            ET.SubElement(
                joint_el,
                "limit",
                {
                    "lower": f"{spec.lower:.6g}",
                    "upper": f"{spec.upper:.6g}",
                    "effort": f"{spec.effort:.6g}",
                    "velocity": f"{spec.velocity:.6g}",
                },
            )
    ET.indent(robot)
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode") + "\n"


def hand_paths(
    dim_names: list[str] | tuple[str, ...], actions: np.ndarray, current: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Wrist and fingertip paths (m, pelvis frame) over an action chunk, by forward kinematics.

    actions: (H, D) with columns named by dim_names; columns that name a joint set it, every
    other joint keeps its current angle (rad). Returns {"left_wrist": (H, 3), ...}.
    """
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != len(dim_names):
        raise ValueError(f"chunk actions {actions.shape} do not match {len(dim_names)} dim names")
    columns = [(i, name) for i, name in enumerate(dim_names) if name in g1.JOINT_SPECS]
    rows: dict[str, list[np.ndarray]] = {}
    for row in actions:
        q = dict(current)
        q.update({name: float(row[i]) for i, name in columns})
        for point, xyz in hand_points(forward_kinematics(q)).items():
            rows.setdefault(point, []).append(xyz)
    return {point: np.array(xyzs) for point, xyzs in rows.items()}
