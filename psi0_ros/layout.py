"""The vector layouts of DESIGN §4 and every rule that reads them, in one module.

ROS-free and torch-free (numpy only), so the converter, training, the policy, chunk_node /
chunk_runner, the RTC scheduler and the command publisher all index the same vectors the same way:

- action, 36-D: hands 0-13, arms 14-27 (joint targets [rad]), lower-body command 28-35
  (torso roll/pitch/yaw [rad], height [m], vx/vy [m/s], vyaw [rad/s], target_yaw [rad]);
- state, 32-D zero-padded to 36: hands + arms measured, torso roll/pitch/yaw/height = the lower-body
  command in force (the previously commanded values, as Psi0 records and serves them);
- which action dimensions a delta model predicts, which are held, which are velocities;
- state assembly (build_state for the converter, deploy_state for chunk_node) and delta <-> absolute.

Names (ACTION_NAMES, STATE_NAMES, LOWER_BODY_COMMAND_NAMES) stay in psi0_ros.constants beside the
topic names; this module re-exports them so a reader of a layout needs only this one.
"""

from __future__ import annotations

import numpy as np

from psi0_ros.constants import (
    ACTION_ARMS,
    ACTION_DIM,
    ACTION_HANDS,
    ACTION_LOWER_BODY,
    ACTION_NAMES,
    ACTION_UPPER_BODY,
    LOWER_BODY_COMMAND_NAMES,
    STATE_DIM,
    STATE_NAMES,
    STATE_PADDED_DIM,
)
from psi0_ros.g1 import ALL_JOINTS, JOINT_INDEX

__all__ = [
    "ACTION_ARMS",
    "ACTION_DIM",
    "ACTION_HANDS",
    "ACTION_LOWER_BODY",
    "ACTION_NAMES",
    "ACTION_UPPER_BODY",
    "DELTA_ACTION_DIMS",
    "DELTA_ACTION_MASK",
    "LOWER_BODY_COMMAND_NAMES",
    "LOWER_BODY_DIM",
    "NUM_JOINTS",
    "STANDING_HEIGHT_M",
    "STATE_DIM",
    "STATE_JOINT_COLUMNS",
    "STATE_NAMES",
    "STATE_PADDED_DIM",
    "STATE_PAD_NAMES",
    "STATE_TORSO",
    "STATE_TORSO_COMMAND_COLUMNS",
    "STATE_UPPER_BODY",
    "VELOCITY_DIMS",
    "actions_to_deltas",
    "build_state",
    "check_actions",
    "default_lower_body_command",
    "deltas_to_actions",
    "deploy_state",
    "held_lower_body",
    "pad_state",
]

NUM_JOINTS = len(ALL_JOINTS)  # 43: psi0_ros.g1.ALL_JOINTS, the order of /joint_states columns
LOWER_BODY_DIM = ACTION_LOWER_BODY.stop - ACTION_LOWER_BODY.start  # 8: DESIGN §4, dims 28-35

# --- State ------------------------------------------------------------------------------------
STATE_UPPER_BODY = slice(0, 28)  # DESIGN §4: hands 14 + arms 14, the same joints as ACTION_UPPER_BODY
STATE_TORSO = slice(28, 32)  # DESIGN §4: torso roll, pitch, yaw [rad], height [m] (commanded values)
STATE_PAD_NAMES: tuple[str, ...] = tuple(f"pad_{i}" for i in range(STATE_DIM, STATE_PADDED_DIM))  # dims 32-35
# Joint columns (in ALL_JOINTS) of state dims 0-27, and the lower-body command entries of dims 28-31.
STATE_JOINT_COLUMNS = np.array([JOINT_INDEX[n] for n in STATE_NAMES[STATE_UPPER_BODY]], dtype=np.intp)
STATE_TORSO_COMMAND_COLUMNS = np.array(
    [LOWER_BODY_COMMAND_NAMES.index(n) for n in STATE_NAMES[STATE_TORSO]], dtype=np.intp
)

# --- Action dimensions by role ------------------------------------------------------------------
# Velocities of the 36-D action (vx, vy, vyaw; DESIGN §4 dims 32-34): zeroed whenever a pose is held,
# so a hold never walks on.
VELOCITY_DIMS: tuple[int, ...] = tuple(
    ACTION_LOWER_BODY.start + LOWER_BODY_COMMAND_NAMES.index(n) for n in ("vx", "vy", "vyaw")
)
# Psi0 stage 2 (src/psi/config/transform.py, HEPosttrainRepackTransform): deltas over the 28 hand +
# arm joints; the 8 lower-body dims are not predicted but held (held_lower_body) and masked out of
# the loss.
DELTA_ACTION_DIMS = ACTION_UPPER_BODY  # slice(0, 28)
DELTA_ACTION_MASK: np.ndarray = np.zeros(ACTION_DIM, dtype=bool)
DELTA_ACTION_MASK[DELTA_ACTION_DIMS] = True  # (36,): the dimensions a delta model is trained on
DELTA_ACTION_MASK.setflags(write=False)

# Pelvis height [m] assumed as "previously commanded" before the first command (G1 standing height).
STANDING_HEIGHT_M = 0.75

assert STATE_NAMES[STATE_UPPER_BODY] == ACTION_NAMES[ACTION_UPPER_BODY]  # deltas integrate from the state
assert ACTION_HANDS.stop == ACTION_ARMS.start and ACTION_ARMS.stop == ACTION_UPPER_BODY.stop


def pad_state(state: np.ndarray) -> np.ndarray:
    """(..., 32) or (..., 36) state -> (..., 36) float32, zero-padded (DESIGN §4)."""
    state = np.asarray(state, dtype=np.float32)
    if state.shape[-1:] == (STATE_PADDED_DIM,):
        return state
    if state.shape[-1:] != (STATE_DIM,):
        raise ValueError(f"state must have {STATE_DIM} (or padded {STATE_PADDED_DIM}) values, got shape {state.shape}")
    pad = np.zeros(state.shape[:-1] + (STATE_PADDED_DIM - STATE_DIM,), dtype=np.float32)
    return np.concatenate([state, pad], axis=-1)


def check_actions(actions: np.ndarray, name: str = "actions") -> np.ndarray:
    """(..., 36) finite float32, or ValueError naming what is wrong."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.shape[-1:] != (ACTION_DIM,):
        raise ValueError(f"{name} must have {ACTION_DIM} values per row, got shape {actions.shape}")
    if not np.isfinite(actions).all():
        bad = sorted({ACTION_NAMES[i] for i in np.nonzero(~np.isfinite(actions))[-1]})
        raise ValueError(f"{name} contain non-finite values in {bad}")
    return actions


# --- State assembly -----------------------------------------------------------------------------
def build_state(joint_positions: np.ndarray, lower_body_command: np.ndarray) -> np.ndarray:
    """The 32-D state zero-padded to 36 (DESIGN §4), Psi0's definition: the one rule for the
    converter, training and chunk_node.

    joint_positions: (T, 43) measured, in ALL_JOINTS order [rad] -> hands + arms (dims 0-27);
    lower_body_command: (T, 8), action dims 28-35, the command in force at each frame (the one
    previously commanded) -> torso roll/pitch/yaw [rad] and height [m] (dims 28-31), not the
    measured waist joints. When serving, pass the lower-body command of the running chunk.
    Returns (T, 36) float32.
    """
    positions = np.asarray(joint_positions)
    command = np.asarray(lower_body_command)
    if positions.ndim != 2 or positions.shape[1] != NUM_JOINTS:
        raise ValueError(f"joint_positions must be (T, {NUM_JOINTS}), got {positions.shape}")
    if command.shape != (positions.shape[0], LOWER_BODY_DIM):
        raise ValueError(f"lower_body_command must be ({positions.shape[0]}, {LOWER_BODY_DIM}), got {command.shape}")
    state = np.zeros((positions.shape[0], STATE_PADDED_DIM), dtype=np.float32)
    state[:, STATE_UPPER_BODY] = positions[:, STATE_JOINT_COLUMNS]
    state[:, STATE_TORSO] = command[:, STATE_TORSO_COMMAND_COLUMNS]
    return state


def default_lower_body_command() -> np.ndarray:
    """(8,) the lower-body command in force before any chunk ran: stand still, upright."""
    command = np.zeros(LOWER_BODY_DIM, dtype=np.float64)
    command[LOWER_BODY_COMMAND_NAMES.index("torso_height")] = STANDING_HEIGHT_M
    return command


def deploy_state(positions: np.ndarray, commanded_action: np.ndarray | None) -> np.ndarray:
    """(36,) policy state from (43,) joint positions and the last commanded 36-D action (None before
    the first: default_lower_body_command), through build_state, so deploy and training agree."""
    lower = default_lower_body_command() if commanded_action is None else commanded_action[ACTION_LOWER_BODY]
    return build_state(np.asarray(positions)[None], np.asarray(lower, dtype=np.float64)[None])[0]


# --- Delta <-> absolute actions (Psi0 stage 2) ---------------------------------------------------
# The stage-2 expert (the released action_header.safetensors) predicts, for a chunk of T steps,
# d[t] = a[t+1] - a[t] over the 28 hand + arm joints. a[0] is the action at the observation's frame,
# so a chunk of T deltas needs T + 1 absolute actions. The state's first 28 values are the same
# joints in the same order, which is what the inverse starts from when serving.
def actions_to_deltas(actions: np.ndarray) -> np.ndarray:
    """(..., T+1, 36) absolute actions -> (..., T, 36) deltas a[t+1] - a[t] (training).

    Hands + arms (DELTA_ACTION_DIMS) get the differences; the 8 lower-body columns are 0 (stage 2
    does not model them; mask them out of the loss with DELTA_ACTION_MASK). A frame repeated to pad
    the end of an episode gives a zero delta, as in Psi0.
    """
    actions = check_actions(actions)
    if actions.ndim < 2 or actions.shape[-2] < 2:
        raise ValueError(f"delta actions need at least 2 consecutive actions (..., T+1, 36), got shape {actions.shape}")
    deltas = np.zeros(actions.shape[:-2] + (actions.shape[-2] - 1, ACTION_DIM), dtype=np.float32)
    deltas[..., DELTA_ACTION_DIMS] = actions[..., 1:, DELTA_ACTION_DIMS] - actions[..., :-1, DELTA_ACTION_DIMS]
    return deltas


def deltas_to_actions(deltas: np.ndarray, start: np.ndarray, lower_body: np.ndarray) -> np.ndarray:
    """(..., T, 36) deltas -> (..., T, 36) absolute actions a[1..T] (serving).

    start: the hands + arms a[0] the chunk starts from, (..., 28) or a state (..., 32 | 36) whose
    first 28 values are used (when serving: the current state, Psi0's absolute joint state).
    lower_body: (..., 8) lower-body command (LOWER_BODY_COMMAND_NAMES) held over the chunk, since
    a delta model does not predict it; the model's output there is ignored.
    """
    deltas = check_actions(deltas, "deltas")
    if deltas.ndim < 2:
        raise ValueError(f"deltas must be a chunk (..., T, 36), got shape {deltas.shape}")
    upper = DELTA_ACTION_DIMS.stop - DELTA_ACTION_DIMS.start
    start = np.asarray(start, dtype=np.float32)
    if start.shape[-1:] not in ((upper,), (STATE_DIM,), (STATE_PADDED_DIM,)):
        raise ValueError(
            f"start must have {upper} (hands + arms) or {STATE_DIM}/{STATE_PADDED_DIM} values, got {start.shape}"
        )
    lower_body = np.asarray(lower_body, dtype=np.float32)
    if lower_body.shape[-1:] != (LOWER_BODY_DIM,):
        raise ValueError(f"lower_body must have {LOWER_BODY_DIM} values, got shape {lower_body.shape}")
    for name, value in (("start", start), ("lower_body", lower_body)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains non-finite values")
    actions = np.empty(deltas.shape, dtype=np.float32)
    start_upper = start[..., STATE_UPPER_BODY][..., None, :]
    actions[..., DELTA_ACTION_DIMS] = start_upper + np.cumsum(deltas[..., DELTA_ACTION_DIMS], axis=-2)
    actions[..., ACTION_LOWER_BODY] = lower_body[..., None, :]
    return actions


def held_lower_body(state: np.ndarray) -> np.ndarray:
    """(8,) lower-body command that holds still: the state's torso roll/pitch/yaw/height (the
    previously commanded values), zero vx/vy/vyaw, target_yaw 0."""
    state = pad_state(state)
    if state.ndim != 1:
        raise ValueError(f"state must be one vector, got shape {state.shape}")
    lower = np.zeros(LOWER_BODY_DIM, dtype=np.float32)
    lower[STATE_TORSO_COMMAND_COLUMNS] = state[STATE_TORSO]
    return lower
