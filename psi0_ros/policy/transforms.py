"""Transforms between robot vectors and model tensors, kept outside the nn.Modules.

- Layout: the 36-D action and the 32-D state zero-padded to 36 (DESIGN §4, psi0_ros.constants).
- Statistics: per-dimension min/max/mean/std/1st/99th percentiles of actions and states,
  computed from episode files (DESIGN §5) and saved as normalization.json in a checkpoint.
- Delta actions (Psi0 stage 2): the model predicts a[t+1] - a[t] over hands + arms; the inverse
  integrates a chunk of deltas from the current hands + arms (actions_to_deltas, deltas_to_actions).
- Normalisation to [-1, 1] from bounds (min/max) or q99 (1st/99th percentile), as Psi0 does it:
  values are clipped to [-1, 1]; a dimension whose bounds coincide (e.g. the zero padding) keeps
  its raw value for actions and becomes 0 for states. Denormalised actions are clipped to the
  bounds, so the policy never commands outside the range its training data covered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.constants import (
    ACTION_DIM,
    ACTION_LOWER_BODY,
    ACTION_NAMES,
    ACTION_UPPER_BODY,
    STATE_DIM,
    STATE_NAMES,
    STATE_PADDED_DIM,
)

STATS_SCHEMA_VERSION = 1


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


# --- Delta actions (Psi0 stage 2) -------------------------------------------------------------
# Psi0's stage-2 expert (the released action_header.safetensors) predicts, for a chunk of T steps,
# d[t] = a[t+1] - a[t] over the 28 hand + arm joints (Psi0 src/psi/config/transform.py,
# HEPosttrainRepackTransform: `actions[1:] - actions[:-1]` on the 28-D joint_angles, padded to 36
# with the pads masked out of the loss). a[0] is the action at the observation's frame, so a chunk
# of T deltas needs T + 1 absolute actions. The state's first 28 values are the same joints in the
# same order (constants.STATE_NAMES), which is what the inverse starts from when serving.
STATE_TORSO = slice(28, 32)  # torso roll, pitch, yaw [rad], height [m] in the state
DELTA_ACTION_DIMS = ACTION_UPPER_BODY  # slice(0, 28): hands 14 + arms 14
DELTA_ACTION_MASK: np.ndarray = np.zeros(ACTION_DIM, dtype=bool)
DELTA_ACTION_MASK[DELTA_ACTION_DIMS] = True  # (36,): the dimensions a delta model is trained on
DELTA_ACTION_MASK.setflags(write=False)


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
    lower_body: (..., 8) lower-body command (constants.LOWER_BODY_COMMAND_NAMES) held over the
    chunk, since a delta model does not predict it; the model's output there is ignored.
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
    lower_dim = ACTION_LOWER_BODY.stop - ACTION_LOWER_BODY.start
    if lower_body.shape[-1:] != (lower_dim,):
        raise ValueError(f"lower_body must have {lower_dim} values, got shape {lower_body.shape}")
    for name, value in (("start", start), ("lower_body", lower_body)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains non-finite values")
    actions = np.empty(deltas.shape, dtype=np.float32)
    start_upper = start[..., DELTA_ACTION_DIMS][..., None, :]
    actions[..., DELTA_ACTION_DIMS] = start_upper + np.cumsum(deltas[..., DELTA_ACTION_DIMS], axis=-2)
    actions[..., ACTION_LOWER_BODY] = lower_body[..., None, :]
    return actions


def held_lower_body(state: np.ndarray) -> np.ndarray:
    """(8,) lower-body command that holds still: the state's torso roll/pitch/yaw/height (the
    previously commanded values, see torso_state), zero vx/vy/vyaw, target_yaw 0."""
    state = pad_state(state)
    if state.ndim != 1:
        raise ValueError(f"state must be one vector, got shape {state.shape}")
    lower = np.zeros(ACTION_LOWER_BODY.stop - ACTION_LOWER_BODY.start, dtype=np.float32)
    lower[:4] = state[STATE_TORSO]
    return lower


@dataclass(frozen=True)
class ArrayStats:
    """Per-dimension statistics of one vector stream, each a float64 array (D,)."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int

    def __post_init__(self) -> None:
        dim = None
        for name in ("min", "max", "mean", "std", "q01", "q99"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim != 1 or (dim is not None and value.shape[0] != dim):
                raise ValueError(f"ArrayStats.{name} must be a vector like the others, got shape {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"ArrayStats.{name} contains non-finite values")
            dim = value.shape[0]
            object.__setattr__(self, name, value)

    @property
    def dim(self) -> int:
        return int(self.min.shape[0])

    def bounds(self, mode: str) -> tuple[np.ndarray, np.ndarray]:
        if mode == "bounds":
            return self.min, self.max
        if mode == "q99":
            return self.q01, self.q99
        raise ValueError(f"unknown normalisation mode {mode!r} (bounds, q99)")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {k: getattr(self, k).tolist() for k in ("min", "max", "mean", "std", "q01", "q99")}
        data["count"] = self.count
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArrayStats:
        missing = [k for k in ("min", "max", "mean", "std", "q01", "q99", "count") if k not in data]
        if missing:
            raise ValueError(f"statistics lack {missing}")
        return cls(**{k: (int(data[k]) if k == "count" else np.asarray(data[k], dtype=np.float64)) for k in data})


def compute_stats(rows: Iterable[np.ndarray]) -> ArrayStats:
    """Statistics over the rows of several (T, D) arrays (e.g. one per episode)."""
    arrays = [np.asarray(r, dtype=np.float64) for r in rows]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError("no data to compute statistics from")
    dims = {a.shape[-1] for a in arrays}
    if len(dims) != 1 or any(a.ndim != 2 for a in arrays):
        raise ValueError(f"every array must be (T, D) with one D, got shapes {[a.shape for a in arrays]}")
    data = np.concatenate(arrays, axis=0)
    if not np.isfinite(data).all():
        raise ValueError("data contain non-finite values")
    return ArrayStats(
        min=data.min(0),
        max=data.max(0),
        mean=data.mean(0),
        std=data.std(0),
        q01=np.quantile(data, 0.01, axis=0),
        q99=np.quantile(data, 0.99, axis=0),
        count=int(data.shape[0]),
    )


@dataclass(frozen=True)
class NormStats:
    """Statistics of the 36-D actions and the 36-D (padded) states."""

    action: ArrayStats
    state: ArrayStats

    def __post_init__(self) -> None:
        if self.action.dim != ACTION_DIM:
            raise ValueError(f"action statistics must be {ACTION_DIM}-D, got {self.action.dim}")
        if self.state.dim != STATE_PADDED_DIM:
            raise ValueError(f"state statistics must be {STATE_PADDED_DIM}-D, got {self.state.dim}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": STATS_SCHEMA_VERSION,
            "action_names": list(ACTION_NAMES),
            "state_names": list(STATE_NAMES) + [f"pad_{i}" for i in range(STATE_PADDED_DIM - STATE_DIM)],
            "action": self.action.to_dict(),
            "state": self.state.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormStats:
        if data.get("schema_version") != STATS_SCHEMA_VERSION:
            raise ValueError(
                f"normalisation statistics schema_version must be {STATS_SCHEMA_VERSION}, got {data.get('schema_version')!r}"
            )
        if list(data.get("action_names", [])) != list(ACTION_NAMES):
            raise ValueError(
                "normalisation statistics were computed for a different action layout (action_names differ)"
            )
        return cls(action=ArrayStats.from_dict(data["action"]), state=ArrayStats.from_dict(data["state"]))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> NormStats:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"normalisation statistics not found: {path}")
        try:
            data = json.loads(path.read_text())
            return cls.from_dict(data)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"bad normalisation statistics in {path}: {err}") from None


def stats_from_reference(data: dict[str, Any], action_key: str = "action", state_key: str = "states") -> NormStats:
    """NormStats from a Psi0 stats file (meta/stats_psi0.json: {key: {min, max, q01, q99, ...}}).

    Shorter vectors are zero-padded to 36, as Psi0 pads them; fields the file lacks are filled
    (mean: midpoint, std: 0, q01/q99: min/max, count: 0).
    """

    def one(key: str, dim: int) -> ArrayStats:
        if key not in data:
            raise ValueError(f"Psi0 statistics have no {key!r} entry (keys: {sorted(data)})")
        entry = data[key]
        if "min" not in entry or "max" not in entry:
            raise ValueError(f"Psi0 statistics {key!r} lack min/max")
        low, high = (np.asarray(entry[k], dtype=np.float64).reshape(-1) for k in ("min", "max"))
        if low.shape[0] > dim:
            raise ValueError(f"Psi0 statistics {key!r} have {low.shape[0]} dimensions, more than {dim}")
        fields = {
            "min": low,
            "max": high,
            "mean": np.asarray(entry.get("mean", (low + high) / 2), dtype=np.float64).reshape(-1),
            "std": np.asarray(entry.get("std", np.zeros_like(low)), dtype=np.float64).reshape(-1),
            "q01": np.asarray(entry.get("q01", low), dtype=np.float64).reshape(-1),
            "q99": np.asarray(entry.get("q99", high), dtype=np.float64).reshape(-1),
        }
        padded = {k: np.concatenate([v, np.zeros(dim - v.shape[0])]) for k, v in fields.items()}
        count = np.asarray(entry.get("count", 0)).reshape(-1)
        return ArrayStats(**padded, count=int(count[0]) if count.size else 0)

    return NormStats(action=one(action_key, ACTION_DIM), state=one(state_key, STATE_PADDED_DIM))


def stats_from_episodes(paths: Sequence[Path]) -> NormStats:
    """Statistics of the actions and states of episode files (DESIGN §5), read by the data reader."""
    from psi0_ros.data.hdf5 import read_action_state

    actions, states = [], []
    for path in paths:
        action, state = read_action_state(Path(path))
        if action.ndim != 2 or action.shape[1] != ACTION_DIM:
            raise ValueError(f"episode {path}: action must be (T, {ACTION_DIM}), got {action.shape}")
        actions.append(action)
        states.append(pad_state(state).astype(np.float64))
    if not actions:
        raise ValueError("no episode files given")
    return NormStats(action=compute_stats(actions), state=compute_stats(states))


class Normalizer:
    """Physical units <-> the model's [-1, 1] space, for actions (36) and states (36)."""

    def __init__(self, stats: NormStats, mode: str = "bounds", normalize_state: bool = True):
        self.stats = stats
        self.mode = mode
        self.normalize_state_enabled = normalize_state
        self.action_low, self.action_high = (b.astype(np.float32) for b in stats.action.bounds(mode))
        self.state_low, self.state_high = (b.astype(np.float32) for b in stats.state.bounds(mode))
        self._action_flat = self.action_high == self.action_low  # bounds coincide: no scale to learn
        self._state_flat = self.state_high == self.state_low

    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        """(..., 36) physical -> (..., 36) in [-1, 1]; flat dimensions keep their raw value (Psi0)."""
        actions = check_actions(actions)
        span = np.where(self._action_flat, 1.0, self.action_high - self.action_low)
        scaled = (actions - self.action_low) / span * 2.0 - 1.0
        return np.clip(np.where(self._action_flat, actions, scaled), -1.0, 1.0).astype(np.float32)

    def denormalize_actions(self, normalized: np.ndarray) -> np.ndarray:
        """(..., 36) model output -> physical units, clipped to the training bounds first."""
        normalized = np.clip(np.asarray(normalized, dtype=np.float32), -1.0, 1.0)
        return ((normalized + 1.0) * 0.5 * (self.action_high - self.action_low) + self.action_low).astype(np.float32)

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        """(..., 32 or 36) physical -> (..., 36); flat dimensions (the padding) become 0."""
        state = pad_state(state)
        if not np.isfinite(state).all():
            raise ValueError("state contains non-finite values")
        if not self.normalize_state_enabled:
            return state
        span = np.where(self._state_flat, 1.0, self.state_high - self.state_low)
        scaled = np.clip((state - self.state_low) / span * 2.0 - 1.0, -1.0, 1.0)
        return np.where(self._state_flat, 0.0, scaled).astype(np.float32)
