"""ROS message <-> numpy conversions shared by the nodes, the converter and the tests.

Beside psi0_ros.image (which does sensor_msgs/Image): every function here works on any object with
the message's field names (an rclpy message, a rosbags-deserialised one, a SimpleNamespace), so
this module imports without ROS. Functions that build a message take its class (`cls`) or import
it lazily when called; reading functions need no class. Units are SI (rad, rad/s, m, m/s, m/s^2).

Sections: LowerBodyCommand, JointState, Imu, CameraInfo, and the deploy graph's ActionChunk,
VLMFeatures and control-tick stamps. Keep it flat: one section per message,
functions named <message>_to_<what> (read) and <message>_message / fill_<message> (write).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from psi0_ros.constants import LOWER_BODY_COMMAND_NAMES

# --- LowerBodyCommand (psi0_ros/msg) <-> the 8-D lower-body command (DESIGN §4 dims 28-35) ------

# The one table from the command-vector names (psi0_ros.constants.LOWER_BODY_COMMAND_NAMES, the
# action names) to LowerBodyCommand.msg fields: only the height is named differently in the message.
LOWER_BODY_MESSAGE_FIELD: dict[str, str] = {name: name for name in LOWER_BODY_COMMAND_NAMES} | {
    "torso_height": "height"
}
# The message field of each vector element, in LOWER_BODY_COMMAND_NAMES order.
LOWER_BODY_FIELDS: tuple[str, ...] = tuple(LOWER_BODY_MESSAGE_FIELD[name] for name in LOWER_BODY_COMMAND_NAMES)


def lower_body_command_to_vector(msg: Any) -> np.ndarray:
    """LowerBodyCommand -> (8,) float64 in LOWER_BODY_COMMAND_NAMES order."""
    return np.array([float(getattr(msg, field)) for field in LOWER_BODY_FIELDS], dtype=np.float64)


def fill_lower_body_command(msg: Any, command: Sequence[float] | np.ndarray) -> Any:
    """Set the 8 command fields of msg from an (8,) vector in LOWER_BODY_COMMAND_NAMES order; returns msg."""
    values = np.asarray(command, dtype=np.float64).reshape(-1)
    if values.shape != (len(LOWER_BODY_FIELDS),):
        raise ValueError(f"lower-body command must have {len(LOWER_BODY_FIELDS)} values, got {values.shape}")
    for field, value in zip(LOWER_BODY_FIELDS, values, strict=True):
        setattr(msg, field, float(value))
    return msg


def lower_body_command_message(command: Sequence[float] | np.ndarray, cls: type | None = None) -> Any:
    """A LowerBodyCommand (header left empty) from an (8,) vector; cls defaults to psi0_ros.msg's."""
    if cls is None:
        from psi0_ros.msg import LowerBodyCommand as cls
    return fill_lower_body_command(cls(), command)


# --- sensor_msgs/JointState <-> joint vectors by name ------------------------------------------


def joint_state_to_vector(msg: Any, names: Sequence[str], field: str = "position") -> np.ndarray:
    """The values of `field` (position | velocity | effort) for `names`, in that order, float64.

    Joints may come in any order and the message may carry others; a joint of `names` that the
    message lacks, or a field shorter than the name list, is a ValueError naming it.
    """
    msg_names = list(msg.name)
    values = np.asarray(getattr(msg, field), dtype=np.float64).reshape(-1)
    if values.size != len(msg_names):
        raise ValueError(f"JointState has {len(msg_names)} names but {values.size} {field} values")
    index = {name: i for i, name in enumerate(msg_names)}
    missing = [name for name in names if name not in index]
    if missing:
        raise ValueError(f"JointState lacks joints {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return values[[index[name] for name in names]]


def joint_state_positions(msg: Any) -> tuple[list[str], list[float]]:
    """(names, positions) as plain lists, for code that matches names itself."""
    return list(msg.name), [float(v) for v in msg.position]


def joint_state_fields(msg: Any) -> tuple[list[str], list[float], list[float], list[float]]:
    """(names, positions, velocities, efforts) as plain lists, for the bridge's safety checks
    (a non-finite velocity or effort drops the whole command)."""
    return (
        list(msg.name),
        [float(v) for v in msg.position],
        [float(v) for v in msg.velocity],
        [float(v) for v in msg.effort],
    )


def fill_joint_state(
    msg: Any,
    names: Sequence[str],
    position: Sequence[float] | np.ndarray,
    velocity: Sequence[float] | np.ndarray | None = None,
    effort: Sequence[float] | np.ndarray | None = None,
) -> Any:
    """Set name/position (and velocity/effort when given) of msg; every array must match names."""
    msg.name = list(names)
    for field, values in (("position", position), ("velocity", velocity), ("effort", effort)):
        if values is None:
            continue
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.size != len(names):
            raise ValueError(f"JointState {field} has {array.size} values for {len(names)} names")
        setattr(msg, field, array.tolist())
    return msg


def joint_state_message(
    names: Sequence[str],
    position: Sequence[float] | np.ndarray,
    velocity: Sequence[float] | np.ndarray | None = None,
    effort: Sequence[float] | np.ndarray | None = None,
    cls: type | None = None,
) -> Any:
    """A JointState (header left empty); cls defaults to sensor_msgs.msg.JointState."""
    if cls is None:
        from sensor_msgs.msg import JointState as cls
    return fill_joint_state(cls(), names, position, velocity, effort)


# --- sensor_msgs/Imu ------------------------------------------------------------------------------


def imu_to_vectors(msg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Imu -> orientation (4,) xyzw as in the message, angular velocity (3,) rad/s, acceleration (3,) m/s^2.

    Also accepts an object whose three fields are already arrays (psi0_ros.data.cdr.ImuSample).
    """
    o, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
    if isinstance(o, np.ndarray):
        return o, w, a
    return (
        np.array([o.x, o.y, o.z, o.w], dtype=np.float64),
        np.array([w.x, w.y, w.z], dtype=np.float64),
        np.array([a.x, a.y, a.z], dtype=np.float64),
    )


def fill_imu(
    msg: Any, quaternion_wxyz: Sequence[float] | np.ndarray, gyro: Sequence[float], accel: Sequence[float]
) -> Any:
    """Set orientation (from w, x, y, z: the order of psi0_ros.robot.RobotState and MuJoCo),
    angular_velocity [rad/s] and linear_acceleration [m/s^2] of msg; returns msg."""
    w, x, y, z = (float(v) for v in quaternion_wxyz)
    msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = w, x, y, z
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in gyro)
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in accel)
    return msg


# --- sensor_msgs/CameraInfo ---------------------------------------------------------------------


def fill_camera_info(
    msg: Any,
    width: int,
    height: int,
    k: Sequence[float] | np.ndarray,
    frame_id: str = "",
    distortion_model: str = "plumb_bob",
    d: Sequence[float] | None = None,
) -> Any:
    """A pinhole camera without distortion (unless d is given): K (3x3, px), R = I, P = [K | 0]."""
    matrix = np.asarray(k, dtype=np.float64).reshape(3, 3)
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = distortion_model
    msg.d = [0.0] * 5 if d is None else [float(v) for v in d]
    msg.k = matrix.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = np.hstack([matrix, np.zeros((3, 1))]).reshape(-1).tolist()
    return msg


def camera_info_message(
    width: int, height: int, k: Sequence[float] | np.ndarray, frame_id: str = "", cls: type | None = None
) -> Any:
    """A CameraInfo (see fill_camera_info); cls defaults to sensor_msgs.msg.CameraInfo."""
    if cls is None:
        from sensor_msgs.msg import CameraInfo as cls
    return fill_camera_info(cls(), width, height, k, frame_id)


def camera_info_to_attrs(msg: Any) -> dict[str, Any]:
    """CameraInfo -> the plain values the episode files keep (width, height, model, K, D, frame_id)."""
    return {
        "width": int(msg.width),
        "height": int(msg.height),
        "distortion_model": str(msg.distortion_model),
        "K": np.asarray(msg.k, dtype=np.float64).tolist(),
        "D": np.asarray(msg.d, dtype=np.float64).tolist(),
        "frame_id": str(msg.header.frame_id),
    }


# --- Deploy graph: ActionChunk, VLMFeatures, commands (issue 9) ---------------------------------


def tick_stamp(tick: int, rate_hz: float) -> tuple[int, int]:
    """(sec, nanosec) of a control tick's start in the shared time base (tick / rate seconds)."""
    ns = (int(tick) * 1_000_000_000 * 1000) // int(round(rate_hz * 1000))  # integer maths: exact for large ticks
    return ns // 1_000_000_000, ns % 1_000_000_000


def stamp_tick(sec: int, nanosec: int, rate_hz: float) -> int:
    """The control tick a tick_stamp() encodes."""
    return int(round((int(sec) * 1_000_000_000 + int(nanosec)) * rate_hz / 1e9))


def action_chunk_message(
    chunk_id: int,
    start_tick: int,
    actions: np.ndarray,
    prefix_length: int,
    rate_hz: float,
    inference_ms: float,
    dim_names: Sequence[str],
    stamp: Any = None,
) -> Any:
    """An ActionChunk from a (H, D) chunk in physical units (row-major)."""
    from psi0_ros.msg import ActionChunk

    actions = np.asarray(actions, dtype=np.float32)
    msg = ActionChunk()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.chunk_id = int(chunk_id)
    msg.start_tick = int(start_tick)
    msg.control_rate_hz = float(rate_hz)
    msg.horizon, msg.action_dim = (int(v) for v in actions.shape)
    msg.prefix_length = int(prefix_length)
    msg.dim_names = list(dim_names)
    msg.actions = actions.reshape(-1).tolist()
    msg.inference_ms = float(inference_ms)
    return msg


def action_chunk_array(msg: Any) -> np.ndarray:
    """ActionChunk -> (horizon, action_dim) float64, or ValueError naming the inconsistency."""
    horizon, dim = int(msg.horizon), int(msg.action_dim)
    data = np.asarray(msg.actions, dtype=np.float64)
    if horizon <= 0 or dim <= 0 or data.size != horizon * dim:
        raise ValueError(f"ActionChunk {msg.chunk_id}: {data.size} values for horizon {horizon} x action_dim {dim}")
    if len(msg.dim_names) not in (0, dim):
        raise ValueError(f"ActionChunk {msg.chunk_id}: {len(msg.dim_names)} dim_names for action_dim {dim}")
    if not np.isfinite(data).all():
        raise ValueError(f"ActionChunk {msg.chunk_id}: non-finite actions")
    return data.reshape(horizon, dim)


def vlm_features_message(
    features: np.ndarray,
    mask: np.ndarray,
    instruction: str,
    image_seq: int,
    stamp: Any,
    dtype: str = "float32",
) -> Any:
    """VLMFeatures from (S, D) features and an (S,) bool mask."""
    from psi0_ros.msg import VLMFeatures
    from psi0_ros.policy.vlm import features_to_bytes

    msg = VLMFeatures()
    msg.header.stamp = stamp
    msg.image_seq = int(image_seq)
    msg.instruction = instruction
    msg.num_tokens, msg.feature_dim = (int(v) for v in np.asarray(features).shape)
    msg.dtype = dtype
    msg.data = features_to_bytes(np.asarray(features, dtype=np.float32), dtype)
    msg.attention_mask = np.asarray(mask, dtype=np.uint8).tobytes()
    return msg


def vlm_features_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """VLMFeatures -> features (S, D) float32 and mask (S,) bool, or ValueError naming the problem."""
    from psi0_ros.policy.vlm import features_from_bytes

    features = features_from_bytes(bytes(msg.data), int(msg.num_tokens), int(msg.feature_dim), str(msg.dtype))
    mask = np.frombuffer(bytes(msg.attention_mask), dtype=np.uint8).astype(bool)
    if mask.shape != (features.shape[0],):
        raise ValueError(f"VLMFeatures: attention_mask has {mask.size} entries for {features.shape[0]} tokens")
    if not mask.any():
        raise ValueError("VLMFeatures: attention_mask has no real token")
    return features, mask
