"""Transforms between robot vectors and model tensors, kept outside the nn.Modules.

- Layout: psi0_ros.layout (the 36-D action, the 32-D state zero-padded to 36, delta <-> absolute).
- Statistics: per-dimension min/max/mean/std/1st/99th percentiles of actions and states,
  computed from episode files (DESIGN §5) and saved as normalization.json in a checkpoint.
- Normalisation to [-1, 1] from bounds (min/max) or q99 (1st/99th percentile), as Psi0 does it:
  values are clipped to [-1, 1]; a dimension whose bounds coincide (e.g. the zero padding) keeps
  its raw value for actions and becomes 0 for states. Denormalised actions are clipped to the
  bounds, so the policy never commands outside the range its training data covered.
- The transform list (as openpi lists its transforms): small steps derived from a PolicyConfig by
  make_transforms(), applied forward to build training targets and model inputs, and in reverse
  to turn the model's output into the robot's absolute 36-D actions. Training and Policy.infer run
  the same list, so the two cannot disagree on what the numbers mean.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from psi0_ros.constants import ACTION_DIM, ACTION_NAMES, STATE_DIM, STATE_NAMES, STATE_PADDED_DIM
from psi0_ros.layout import (
    DELTA_ACTION_MASK,
    actions_to_deltas,
    check_actions,
    deltas_to_actions,
    held_lower_body,
    pad_state,
)

if TYPE_CHECKING:
    from psi0_ros.policy.config import PolicyConfig

STATS_SCHEMA_VERSION = 1


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


# --- The transform list ---------------------------------------------------------------------------
@dataclass
class Sample:
    """One observation (and, in training, its action chunk) on its way through the transform list.

    Forward (robot -> model): `state` becomes the model's input state, `actions` the model's
    targets, `valid` / `dims` the rows / dimensions the loss counts. Inverse (model -> robot):
    `actions` goes from the model's space back to absolute 36-D actions in physical units.
    """

    state: np.ndarray  # (32 | 36,) physical; the model's (36,) input after forward
    actions: np.ndarray | None = None  # (rows, 36): absolute physical, or the model's space
    valid: np.ndarray | None = None  # (rows,) bool: real rows (False: an episode end padded)
    dims: np.ndarray | None = None  # (36,) bool: dimensions the model is trained on
    start_state: np.ndarray | None = None  # (36,) physical state the chunk starts from (never normalised)
    lower_body: np.ndarray | None = None  # (8,) lower-body command a delta model holds; None: held_lower_body

    def weights(self) -> np.ndarray:
        """(rows, 36) float32 loss weights: valid rows x trained dimensions."""
        rows = self.actions.shape[0]
        valid = np.ones(rows, dtype=bool) if self.valid is None else self.valid
        dims = np.ones(ACTION_DIM, dtype=bool) if self.dims is None else self.dims
        return (valid[:, None] & dims[None, :]).astype(np.float32)


def _replace(sample: Sample, **changes: Any) -> Sample:
    return dataclasses.replace(sample, **changes)


class PadState:
    """The 32-D state zero-padded to the model's 36 (DESIGN §4); the physical state is kept for
    the steps that integrate from it."""

    extra_rows = 0

    def forward(self, sample: Sample) -> Sample:
        state = pad_state(sample.state)
        return _replace(sample, state=state, start_state=state if sample.start_state is None else sample.start_state)

    def inverse(self, sample: Sample) -> Sample:
        return sample


class DeltaActions:
    """Psi0 stage 2: a[t+1] - a[t] over hands + arms (layout.actions_to_deltas); the lower body is
    not trained on (layout.DELTA_ACTION_MASK) and held when serving (layout.deltas_to_actions)."""

    extra_rows = 1  # T deltas need T + 1 absolute actions

    def forward(self, sample: Sample) -> Sample:
        if sample.actions is None:
            return sample
        valid = None if sample.valid is None else sample.valid[1:]
        dims = DELTA_ACTION_MASK if sample.dims is None else sample.dims & DELTA_ACTION_MASK
        return _replace(sample, actions=actions_to_deltas(sample.actions), valid=valid, dims=dims)

    def inverse(self, sample: Sample) -> Sample:
        start = sample.start_state
        lower_body = held_lower_body(start) if sample.lower_body is None else sample.lower_body
        return _replace(sample, actions=deltas_to_actions(sample.actions, start, lower_body))


class Normalize:
    """Physical units <-> the model's [-1, 1] (Normalizer: the checkpoint's statistics and mode)."""

    extra_rows = 0

    def __init__(self, normalizer: Normalizer):
        self.normalizer = normalizer

    def forward(self, sample: Sample) -> Sample:
        actions = None if sample.actions is None else self.normalizer.normalize_actions(sample.actions)
        return _replace(sample, state=self.normalizer.normalize_state(sample.state), actions=actions)

    def inverse(self, sample: Sample) -> Sample:
        return _replace(sample, actions=self.normalizer.denormalize_actions(sample.actions))


class Transforms:
    """An ordered list of steps: forward in order (robot -> model), inverse in reverse order."""

    def __init__(self, steps: Sequence[Any]):
        self.steps = tuple(steps)

    @property
    def extra_rows(self) -> int:
        """Absolute actions a chunk of H model rows needs beyond H (1 for deltas)."""
        return sum(step.extra_rows for step in self.steps)

    def forward(self, sample: Sample) -> Sample:
        for step in self.steps:
            sample = step.forward(sample)
        return sample

    def inverse(self, sample: Sample) -> Sample:
        for step in reversed(self.steps):
            sample = step.inverse(sample)
        return sample


def make_transforms(config: PolicyConfig, stats: NormStats) -> Transforms:
    """The transform list a PolicyConfig declares: pad the state, (delta), normalise."""
    return action_transforms(
        config.action.representation, Normalizer(stats, config.norm.mode, config.norm.normalize_state)
    )


def action_transforms(representation: str, normalizer: Normalizer) -> Transforms:
    """The transform list of an action representation over a normaliser. A new representation is
    one step class here and one branch below (and its name in config.ACTION_REPRESENTATIONS)."""
    steps: list[Any] = [PadState()]
    if representation == "delta":
        steps.append(DeltaActions())
    elif representation != "absolute":
        raise ValueError(f"no transform for action representation {representation!r}")
    steps.append(Normalize(normalizer))
    return Transforms(steps)
