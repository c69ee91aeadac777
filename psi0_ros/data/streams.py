"""Message -> vector mapping for the episode files (shared/DESIGN.md §4-§5).

- joint positions (43): /joint_states by joint name, in psi0_ros.g1.ALL_JOINTS order;
- action (36): hands + arms from /psi0/upper_body_command (JointState, by name), lower-body
  command (dims 28-35) from /psi0/lower_body_command (LowerBodyCommand fields);
- state (32, zero-padded to 36): hands + arms measured, torso roll/pitch/yaw/height = the lower-body
  command in force, i.e. the PREVIOUSLY COMMANDED values, as Psi0 records them and overrides them
  from the running chunk when serving (the G1 measures no whole-body torso orientation or pelvis
  height). psi0_ros.layout.build_state() is the one definition of that rule, for convert, training
  and chunk_node; the layout's slices and column tables live there too.
Works on rclpy messages and rosbags-deserialised ones alike (both have the same field names).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psi0_ros.constants import ACTION_DIM, ACTION_LOWER_BODY, ACTION_NAMES, ACTION_UPPER_BODY
from psi0_ros.g1 import JOINT_INDEX
from psi0_ros.ros_messages import LOWER_BODY_FIELDS  # noqa: F401 - the message field of each lower-body dim
from psi0_ros.ros_messages import imu_to_vectors as imu_vectors  # noqa: F401 - the converter's name
from psi0_ros.ros_messages import lower_body_command_to_vector as lower_body_vector  # noqa: F401

UPPER_BODY_NAMES: tuple[str, ...] = ACTION_NAMES[ACTION_UPPER_BODY]  # 28 joint names
UPPER_BODY_INDEX: dict[str, int] = {name: i for i, name in enumerate(UPPER_BODY_NAMES)}


def _columns(names: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the message, columns from index) for the names that index knows."""
    src, dst = [], []
    for i, name in enumerate(names):
        column = index.get(name)
        if column is not None:
            src.append(i)
            dst.append(column)
    return np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp)


def joint_columns(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """For a JointState name list: (positions in the message, columns in ALL_JOINTS) of known joints."""
    return _columns(names, JOINT_INDEX)


def upper_body_columns(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """For an upper-body command's name list: (positions in the message, action columns 0-27)."""
    return _columns(names, UPPER_BODY_INDEX)


def assemble_action(upper_body: np.ndarray, lower_body: np.ndarray) -> np.ndarray:
    """(T, 28) upper-body targets + (T, 8) lower-body command -> (T, 36) float32 action."""
    action = np.empty((upper_body.shape[0], ACTION_DIM), dtype=np.float32)
    action[:, ACTION_UPPER_BODY] = upper_body
    action[:, ACTION_LOWER_BODY] = lower_body
    return action
