"""Deterministic sample messages of every psi0_ros type, built by hand (shared by a test and
the child publisher process, so both sides know exactly what must arrive)."""

from __future__ import annotations

import numpy as np

from psi0_ros.constants import ACTION_DIM, ACTION_NAMES


def action_chunk(horizon: int = 30):
    from psi0_ros.msg import ActionChunk

    msg = ActionChunk()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 123_456_789
    msg.header.frame_id = "pelvis"
    msg.chunk_id = 7
    msg.start_tick = 210
    msg.control_rate_hz = 30.0
    msg.horizon = horizon
    msg.action_dim = ACTION_DIM
    msg.prefix_length = 5
    msg.dim_names = list(ACTION_NAMES)
    msg.actions = np.linspace(-3.0, 3.0, horizon * ACTION_DIM, dtype=np.float32)
    msg.inference_ms = 41.5
    return msg


def vlm_features(num_tokens: int = 512, feature_dim: int = 2048):
    """num_tokens x feature_dim float16: 2 MiB with the defaults."""
    from psi0_ros.msg import VLMFeatures

    rng = np.random.default_rng(0)
    msg = VLMFeatures()
    msg.header.stamp.sec = 1_700_000_001
    msg.header.frame_id = "head_camera_optical_frame"
    msg.image_seq = 99
    msg.instruction = "pick up the can and put it in the basket"
    msg.num_tokens = num_tokens
    msg.feature_dim = feature_dim
    msg.dtype = "float16"
    features = rng.standard_normal((num_tokens, feature_dim)).astype(np.float16)
    msg.data = features.tobytes()
    mask = np.ones(num_tokens, dtype=np.uint8)
    mask[-17:] = 0
    msg.attention_mask = mask.tobytes()
    return msg


def lower_body_command():
    from psi0_ros.msg import LowerBodyCommand

    msg = LowerBodyCommand()
    msg.header.stamp.sec = 1_700_000_002
    msg.vx, msg.vy, msg.vyaw, msg.target_yaw = 0.25, -0.125, 0.5, 1.5
    msg.torso_roll, msg.torso_pitch, msg.torso_yaw, msg.height = 0.0625, -0.25, 0.375, 0.75
    return msg


def episode_event():
    from psi0_ros.msg import EpisodeEvent

    msg = EpisodeEvent()
    msg.header.stamp.sec = 1_700_000_003
    msg.type = EpisodeEvent.SUCCESS
    msg.episode_index = 12
    msg.task = "fold the towel"
    return msg


SAMPLES = {
    "ActionChunk": action_chunk,
    "VLMFeatures": vlm_features,
    "LowerBodyCommand": lower_body_command,
    "EpisodeEvent": episode_event,
}
TOPICS = {name: f"/psi0_test/{name.lower()}" for name in SAMPLES}
