"""Which topics the converter reads from a bag and the message types it expects on each.

Shared by the converter (convert.py and the modules it runs) and `psi0 inspect` (validate.py).
"""

from __future__ import annotations

from psi0_ros.data.config import ConvertConfig

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMU = "sensor_msgs/msg/Imu"
STRING = "std_msgs/msg/String"
LOWER_BODY_COMMAND = "psi0_ros/msg/LowerBodyCommand"
EPISODE_EVENT = "psi0_ros/msg/EpisodeEvent"


def expected_types(config: ConvertConfig) -> dict[str, str]:
    """topic -> message type for every topic the converter reads."""
    types = {
        config.joint_states_topic: JOINT_STATE,
        config.upper_body_command_topic: JOINT_STATE,
        config.lower_body_command_topic: LOWER_BODY_COMMAND,
        config.imu_topic: IMU,
        config.camera_info_topic: CAMERA_INFO,
        config.events_topic: EPISODE_EVENT,
        config.instruction_topic: STRING,
    }
    types.update({topic: IMAGE for _, topic in config.cameras})
    return types


def required_topics(config: ConvertConfig) -> list[str]:
    """Topics without which no episode can be converted."""
    return [
        config.joint_states_topic,
        config.upper_body_command_topic,
        config.lower_body_command_topic,
        *(topic for _, topic in config.cameras),
    ]


def event_topics(config: ConvertConfig) -> tuple[str, str]:
    """The topics read when a bag is planned (episode markers and instructions), not per episode."""
    return config.events_topic, config.instruction_topic
