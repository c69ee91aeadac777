"""Which topics the converter reads from a bag and the message types it expects on each.

Shared by the converter (convert.py and the modules it runs) and `psi0 inspect` (validate.py).
"""

from __future__ import annotations

from collections.abc import Collection

from psi0_ros.data.config import ConvertConfig

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"  # what image_transport's compressed plugin publishes
COMPRESSED_SUFFIX = "/compressed"  # image_transport's topic for the compressed stream of an image topic
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMU = "sensor_msgs/msg/Imu"
STRING = "std_msgs/msg/String"
LOWER_BODY_COMMAND = "psi0_ros/msg/LowerBodyCommand"
EPISODE_EVENT = "psi0_ros/msg/EpisodeEvent"


def camera_topics(config: ConvertConfig, present: Collection[str] = ()) -> tuple[tuple[str, str], ...]:
    """(camera, topic) pairs: the configured topic, or its image_transport compressed stream
    (<topic>/compressed) when only that one is in the bag (present: the bag's topics)."""
    resolved = []
    for name, topic in config.cameras:
        compressed = topic + COMPRESSED_SUFFIX
        resolved.append((name, compressed if topic not in present and compressed in present else topic))
    return tuple(resolved)


def expected_types(config: ConvertConfig, present: Collection[str] = ()) -> dict[str, tuple[str, ...]]:
    """topic -> accepted message types for every topic the converter reads."""
    types: dict[str, tuple[str, ...]] = {
        config.joint_states_topic: (JOINT_STATE,),
        config.upper_body_command_topic: (JOINT_STATE,),
        config.lower_body_command_topic: (LOWER_BODY_COMMAND,),
        config.imu_topic: (IMU,),
        config.camera_info_topic: (CAMERA_INFO,),
        config.events_topic: (EPISODE_EVENT,),
        config.instruction_topic: (STRING,),
    }
    types.update({topic: (IMAGE, COMPRESSED_IMAGE) for _, topic in camera_topics(config, present)})
    return types


def required_topics(config: ConvertConfig, present: Collection[str] = ()) -> list[str]:
    """Topics without which no episode can be converted."""
    return [
        config.joint_states_topic,
        config.upper_body_command_topic,
        config.lower_body_command_topic,
        *(topic for _, topic in camera_topics(config, present)),
    ]


def event_topics(config: ConvertConfig) -> tuple[str, str]:
    """The topics read when a bag is planned (episode markers and instructions), not per episode."""
    return config.events_topic, config.instruction_topic
