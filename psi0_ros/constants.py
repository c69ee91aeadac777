"""Names shared by every part of psi0_ros: topics, frames, vector layouts, rates.

One module so that nodes, the converter, training and tests agree on every string and index
(shared/DESIGN.md §2-§4; docs/interfaces.md). Joint tables of the robot live in psi0_ros.g1.
"""

from __future__ import annotations

from psi0_ros.g1 import ARM_JOINTS, HAND_JOINTS, LEFT_ARM_JOINTS, LEFT_HAND_JOINTS, RIGHT_ARM_JOINTS, RIGHT_HAND_JOINTS

# --- Topics -----------------------------------------------------------------------------------
# Each TOPIC_* is the full name at the root namespace: what bags, config/record.yaml and the
# converter see. Nodes create their publishers and subscriptions with relative_topic(TOPIC_*), a
# relative name, so a pushed namespace (`ros2 launch ... namespace:=robot1`, `__ns:=/robot1`)
# moves them with the node ("/robot1/joint_states"); GLOBAL_TOPICS stay absolute, as the ROS
# convention has it for /diagnostics (one aggregator) and /tf, /tf_static.
TOPIC_IMAGE = "/camera/ego/image_raw"
TOPIC_CAMERA_INFO = "/camera/ego/camera_info"
TOPIC_INSTRUCTION = "/psi0/instruction"
TOPIC_VLM_FEATURES = "/psi0/vlm_features"
TOPIC_ACTION_CHUNK = "/psi0/action_chunk"
TOPIC_EXECUTOR_STATE = "/psi0/executor_state"  # psi0_ros/ExecutorState: the robot's ticks and queue (docs/deploy.md)
TOPIC_UPPER_BODY_COMMAND = "/psi0/upper_body_command"
TOPIC_LOWER_BODY_COMMAND = "/psi0/lower_body_command"
TOPIC_LOWER_BODY_TARGETS = "/psi0/lower_body_targets"
TOPIC_ESTOP = "/psi0/estop"
TOPIC_EPISODE_EVENTS = "/psi0/episode_events"
TOPIC_JOINT_STATES = "/joint_states"
TOPIC_IMU = "/imu/data"
TOPIC_DIAGNOSTICS = "/diagnostics"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"
TOPIC_CLOCK = "/clock"  # rosgraph_msgs/Clock: the sim's time (robot_bridge_node publish_clock), as Gazebo's
GLOBAL_TOPICS: frozenset[str] = frozenset({TOPIC_DIAGNOSTICS, TOPIC_TF, TOPIC_TF_STATIC, TOPIC_CLOCK})


def relative_topic(topic: str) -> str:
    """The name a node uses for `topic`: relative ("joint_states"), except GLOBAL_TOPICS (absolute)."""
    return topic if topic in GLOBAL_TOPICS else topic.lstrip("/")


# --- Visualisation topics (viz_node) ----------------------------------------------------------
TOPIC_ROBOT_DESCRIPTION = "/robot_description"  # std_msgs/String, transient-local (as robot_state_publisher)
TOPIC_CHUNK_MARKERS = "/psi0/chunk_markers"  # visualization_msgs/MarkerArray: predicted hand paths

# --- Frames -----------------------------------------------------------------------------------
FRAME_BASE = "pelvis"
FRAME_HEAD_CAMERA = "head_camera_optical_frame"

# --- Rates [Hz] -------------------------------------------------------------------------------
CONTROL_RATE_HZ = 30.0  # Psi0 action chunks are executed at 30 Hz
LOWER_BODY_RATE_HZ = 50.0  # AMO runs at dt = 0.02 s
CAMERA_RATE_HZ = 30.0

# --- Action layout, 36-D (DESIGN §4) ----------------------------------------------------------
LOWER_BODY_COMMAND_NAMES: tuple[str, ...] = (
    "torso_roll",  # rad
    "torso_pitch",  # rad
    "torso_yaw",  # rad
    "torso_height",  # m
    "vx",  # m/s
    "vy",  # m/s
    "vyaw",  # rad/s
    "target_yaw",  # rad
)
ACTION_NAMES: tuple[str, ...] = (
    LEFT_HAND_JOINTS + RIGHT_HAND_JOINTS + LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS + LOWER_BODY_COMMAND_NAMES
)
ACTION_DIM = len(ACTION_NAMES)  # 36
ACTION_HANDS = slice(0, 14)
ACTION_ARMS = slice(14, 28)
ACTION_UPPER_BODY = slice(0, 28)
ACTION_LOWER_BODY = slice(28, 36)

# --- State layout, 32-D zero-padded to 36 (DESIGN §4) -----------------------------------------
STATE_NAMES: tuple[str, ...] = HAND_JOINTS + ARM_JOINTS + ("torso_roll", "torso_pitch", "torso_yaw", "torso_height")
STATE_DIM = len(STATE_NAMES)  # 32
STATE_PADDED_DIM = ACTION_DIM  # 36: the model sees state zero-padded to the action width

assert ACTION_DIM == 36, ACTION_DIM
assert STATE_DIM == 32, STATE_DIM
