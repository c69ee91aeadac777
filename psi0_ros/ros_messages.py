"""Message <-> vector conversions shared by the nodes (needs the generated psi0_ros messages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

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
