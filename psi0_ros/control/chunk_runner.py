"""What chunk_node does besides ROS wiring: load the policy for serving, build its observation
from the newest inputs, check them, and wrap inference (timing, injected test delays).

ROS-free: the node hands in plain arrays and gets arrays back.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psi0_ros.constants import ACTION_LOWER_BODY, LOWER_BODY_COMMAND_NAMES
from psi0_ros.control.scheduler import POLICY_RTC_MODE, SCHEDULER_MODES
from psi0_ros.data.streams import NUM_JOINTS, build_state, joint_columns

# Pelvis height [m] assumed as "previously commanded" before the first command (G1 standing height).
STANDING_HEIGHT_M = 0.75


def default_lower_body_command() -> np.ndarray:
    """(8,) the lower-body command in force before any chunk ran: stand still, upright."""
    command = np.zeros(len(LOWER_BODY_COMMAND_NAMES), dtype=np.float64)
    command[LOWER_BODY_COMMAND_NAMES.index("torso_height")] = STANDING_HEIGHT_M
    return command


def load_serving_policy(
    checkpoint: Path,
    mode: str,
    num_steps: int = 0,
    guidance_beta: float = 0.0,
    device: str = "cpu",
    seed: int = 0,
) -> object:
    """The checkpoint's policy with the inference-time choices layered over its own config:
    the RTC mode the scheduler mode needs, and (when > 0) Euler steps and guidance beta.
    Nothing in config.json changes; a bad value raises naming it."""
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.interface import Policy
    from psi0_ros.policy.transforms import Normalizer

    if mode not in SCHEDULER_MODES:
        raise ValueError(f"unknown scheduler mode {mode!r}; expected one of {SCHEDULER_MODES}")
    loaded = load_checkpoint(Path(checkpoint), device)
    config = loaded.config
    rtc = dataclasses.replace(config.rtc, mode=POLICY_RTC_MODE[mode])
    if guidance_beta > 0:
        rtc = dataclasses.replace(rtc, guidance_beta=float(guidance_beta))
    flow = dataclasses.replace(config.flow, num_steps=int(num_steps)) if num_steps > 0 else config.flow
    config = dataclasses.replace(config, rtc=rtc, flow=flow)
    normalizer = Normalizer(loaded.stats, config.norm.mode, config.norm.normalize_state)
    return Policy(config, loaded.expert, normalizer, seed=seed)


def joint_positions(names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
    """A JointState's positions as (43,) in ALL_JOINTS order; joints it lacks are NaN."""
    result = np.full(NUM_JOINTS, np.nan, dtype=np.float64)
    src, dst = joint_columns(names)
    values = np.asarray(positions, dtype=np.float64)
    if values.shape[0] != len(names):
        raise ValueError(f"joint state has {len(names)} names but {values.shape[0]} positions")
    result[dst] = values[src]
    return result


def deploy_state(positions: np.ndarray, commanded_action: np.ndarray | None) -> np.ndarray:
    """(36,) policy state from (43,) joint positions and the last commanded 36-D action, through
    the converter's own build_state (so deploy and training see the same state)."""
    lower = default_lower_body_command() if commanded_action is None else commanded_action[ACTION_LOWER_BODY]
    return build_state(np.asarray(positions)[None], np.asarray(lower, dtype=np.float64)[None])[0]


def check_state(state: np.ndarray) -> str | None:
    """Why a state must not be inferred on (None: fine)."""
    if not np.isfinite(state).all():
        return "joint state has NaN/inf or lacks a joint the policy needs"
    return None


class DelaySchedule:
    """Test/bench hook: sleep before inference i for delays_s[min(i, len - 1)] seconds."""

    def __init__(self, delays_s: Sequence[float]):
        self.delays_s = [float(v) for v in delays_s]
        self.calls = 0

    def wrap(self, infer: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def delayed(*args: object, **kwargs: object) -> np.ndarray:
            if self.delays_s:
                delay = self.delays_s[min(self.calls, len(self.delays_s) - 1)]
                self.calls += 1
                if delay > 0:
                    time.sleep(delay)
            return infer(*args, **kwargs)

        return delayed


@dataclass
class RateCounter:
    """Events per second over a sliding window of wall time."""

    window_s: float = 5.0

    def __post_init__(self) -> None:
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s


def percentiles_ms(samples_s: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) in ms; NaN when there are no samples."""
    if not samples_s:
        return math.nan, math.nan
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
