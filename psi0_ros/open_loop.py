"""Open-loop evaluation: the policy's chunks against the actions an episode recorded.

For frames sampled every `stride` ticks of each episode, the policy sees the recorded state, image
and instruction and predicts K chunks (K = `samples`, each from different noise); each chunk is
compared with the episode's actions over the same ticks (the comparison stops at the episode's
end). Nothing runs in closed loop, so this measures imitation of the recording, not task success.

Metric groups (DESIGN §4 action layout, physical units):
- hands (dims 0-13, rad), arms (14-27, rad): keys end in "_rad";
- lower_velocity (32-33, vx and vy, m/s) and lower_yaw_rate (34, vyaw, rad/s): no unit suffix.

Keys of a split's summary (every value a mean absolute value over each scored (frame, tick, dim),
or over (sample, frame, tick, dim) where K samples are scored):
- <group>_first[_rad], <group>_chunk[_rad]: error of one sampled chunk's first action / of the
  whole chunk, averaged over the K samples (what one deployed draw does);
- bias_<group>[_rad]: error of the mean of the K chunks; spread_<group>[_rad]: mean absolute
  deviation of the K chunks around their mean (0 when K = 1). A large bias with a small spread is
  a systematic error; a large spread is sampling noise;
- jitter_<group>, expert_jitter_<group>: mean |a[t+1] - 2 a[t] + a[t-1]| along the predicted chunk
  and along the recorded actions over the same ticks (units per tick²);
- hold_state_<group>_first[_rad], hold_state_<group>_chunk[_rad]: the baseline that holds the
  current state (hands + arms: state dims 0-27, which map onto action dims 0-27; lower-body
  velocities 0; torso and target yaw: the recorded action, so it scores 0 there);
- nearest_<group>_first[_rad], nearest_<group>_chunk[_rad] (with training episodes): the
  baseline that replays the action chunk of the training frame whose state is nearest (L2 over
  dims 0-27), padded with its episode's last action; the evaluated episode itself is never its
  own neighbour;
- frames, episodes, samples, stride, horizon.

Where the predicted walk ends (walk_drift): a grasp after a walk depends on where the base stops,
which the per-tick errors above hide (a small bias in vy over a second of walking, or a stop a few
ticks early). Every `walk_every` ticks from the episode's start the policy plans a chunk from that
tick's recorded observation, and its first `walk_every` rows are executed (as chunk_node does with
its execution horizon); the velocities (vx, vy, vyaw) of these executed rows and of the recording
are each integrated from rest through the kinematic base's rules (psi0_ros.sim.kinematic: the
acceleration limit, AMO's stand speed below which the base stands). Keys (episodes that walk):
- walk_drift_m: median over episodes of the distance between where the base comes to rest after
  its first walk under the policy's and under the recorded velocities [m];
- walk_drift_within_15mm: the fraction of episodes within 1.5 cm (about what the grasp allows);
- walk_vy_spread_ratio: the standard deviation over episodes of the policy's mid-walk vy over the
  recording's (1: it walks each layout as recorded; near 0: the same walk whatever the layout),
  walk_vy_corr: their correlation;
- walk_episodes, walk_every (the vy keys need two walking episodes whose vy differ).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from psi0_ros.constants import ACTION_ARMS, ACTION_DIM, ACTION_HANDS, ACTION_UPPER_BODY
from psi0_ros.policy.transforms import pad_state

if TYPE_CHECKING:
    from psi0_ros.policy.interface import Policy

EPISODE_SUFFIX = ".hdf5"
LOWER_VELOCITY = slice(32, 34)  # vx, vy (m/s)
LOWER_YAW_RATE = slice(34, 35)  # vyaw (rad/s)
GROUPS: dict[str, slice] = {
    "hands": ACTION_HANDS,
    "arms": ACTION_ARMS,
    "lower_velocity": LOWER_VELOCITY,
    "lower_yaw_rate": LOWER_YAW_RATE,
}
_UNIT_SUFFIX = {"hands": "_rad", "arms": "_rad", "lower_velocity": "", "lower_yaw_rate": ""}


def metric_key(group: str, what: str = "", prefix: str = "") -> str:
    """("arms", "first") -> "arms_first_rad"; ("lower_velocity", "first") -> "lower_velocity_first";
    ("arms", "", "bias_") -> "bias_arms_rad"."""
    return f"{prefix}{group}{'_' + what if what else ''}{_UNIT_SUFFIX[group]}"


# --- metrics on hand-made arrays ------------------------------------------------------------------
def expert_chunk(actions: np.ndarray, frame: int, horizon: int) -> np.ndarray:
    """The recorded actions (n, 36) over a chunk's ticks frame..frame+horizon-1, n <= horizon
    (clipped at the episode's end)."""
    return np.asarray(actions[frame : frame + horizon], dtype=np.float64)


def chunk_errors(predicted: np.ndarray, expert: np.ndarray, dims: slice) -> tuple[float, float]:
    """(first-action, whole-chunk) mean absolute error over dims. predicted (H, 36); expert (n, 36),
    n <= H: the chunk is compared over its first n ticks."""
    n = min(len(predicted), len(expert))
    if n == 0:
        raise ValueError("no recorded action to compare the chunk with")
    difference = np.abs(np.asarray(predicted[:n], np.float64)[:, dims] - np.asarray(expert[:n], np.float64)[:, dims])
    return float(difference[0].mean()), float(difference.mean())


def bias_and_spread(samples: np.ndarray, expert: np.ndarray, dims: slice) -> tuple[float, float]:
    """samples (K, H, 36), expert (n, 36): (error of the mean chunk, mean |sample - mean|) over dims
    and the first n ticks."""
    n = min(samples.shape[1], len(expert))
    chunks = np.asarray(samples[:, :n, dims], np.float64)
    mean = chunks.mean(axis=0)
    bias = np.abs(mean - np.asarray(expert[:n], np.float64)[:, dims]).mean()
    spread = np.abs(chunks - mean[None]).mean()
    return float(bias), float(spread)


def jitter(chunk: np.ndarray, dims: slice) -> float:
    """Mean |a[t+1] - 2 a[t] + a[t-1]| over dims along chunk (n, 36); nan when n < 3."""
    chunk = np.asarray(chunk, np.float64)[:, dims]
    if len(chunk) < 3:
        return float("nan")
    return float(np.abs(np.diff(chunk, n=2, axis=0)).mean())


def hold_state_chunk(state: np.ndarray, recorded: np.ndarray, horizon: int) -> np.ndarray:
    """The "hold the current state" baseline (horizon, 36): hands + arms at the state's joints
    (state dims 0-27 = action dims 0-27), lower-body velocities (vx, vy, vyaw) 0, and torso
    rpy/height and target yaw as recorded (recorded: (n, 36), the expert chunk, padded with its
    last row), so the baseline is only scored on what it predicts."""
    chunk = np.repeat(np.asarray(recorded[-1:], np.float64), horizon, axis=0)
    chunk[: len(recorded)] = recorded[:horizon]
    chunk[:, ACTION_UPPER_BODY] = pad_state(state)[ACTION_UPPER_BODY]
    chunk[:, 32:35] = 0.0
    return chunk


def padded_chunk(actions: np.ndarray, frame: int, horizon: int) -> np.ndarray:
    """actions[frame : frame + horizon], padded with the last action (as training cuts chunks)."""
    steps = np.minimum(frame + np.arange(horizon), len(actions) - 1)
    return np.asarray(actions[steps], np.float64)


class NearestFrames:
    """Nearest training frame by L2 distance of the state's hands + arms (dims 0-27)."""

    def __init__(self, episodes: Sequence[EpisodeLike]):
        if not episodes:
            raise ValueError("no training episodes for the nearest-frame baseline")
        self.actions = [np.asarray(e.action, np.float64) for e in episodes]
        states = [pad_state(e.state)[:, ACTION_UPPER_BODY].astype(np.float64) for e in episodes]
        self.states = np.concatenate(states)
        self.episode = np.concatenate([np.full(len(s), i) for i, s in enumerate(states)])
        self.frame = np.concatenate([np.arange(len(s)) for s in states])
        self.names = [e.name for e in episodes]

    def chunk(self, state: np.ndarray, horizon: int, exclude: str = "") -> np.ndarray:
        """(horizon, 36) action chunk of the nearest frame of an episode not named `exclude`."""
        distance = ((self.states - pad_state(state)[ACTION_UPPER_BODY]) ** 2).sum(axis=1)
        if exclude:
            own = np.array([name == exclude for name in self.names])[self.episode]
            if own.all():
                raise ValueError(f"the only training episode is the evaluated one ({exclude})")
            distance = np.where(own, np.inf, distance)
        best = int(np.argmin(distance))
        return padded_chunk(self.actions[self.episode[best]], int(self.frame[best]), horizon)


@dataclass
class _Mean:
    total: float = 0.0
    count: int = 0

    def add(self, value: float, weight: int = 1) -> None:
        if np.isfinite(value):
            self.total += value * weight
            self.count += weight

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else float("nan")


@dataclass
class OpenLoopScores:
    """Running means of the metrics over scored frames; summary() gives the keys of the module doc."""

    groups: dict[str, slice] = field(default_factory=lambda: dict(GROUPS))
    frames: int = 0
    _means: dict[str, _Mean] = field(default_factory=dict)

    def _add(self, key: str, value: float, weight: int = 1) -> None:
        self._means.setdefault(key, _Mean()).add(value, weight)

    def add_frame(
        self,
        samples: np.ndarray,  # (K, H, 36) predicted chunks, physical units
        expert: np.ndarray,  # (n, 36) recorded actions over the chunk's ticks, n <= H
        state: np.ndarray | None = None,  # (32,) or (36,): scores the hold-state baseline
        nearest: np.ndarray | None = None,  # (H, 36): scores the nearest-frame baseline
    ) -> None:
        samples = np.asarray(samples, np.float64)
        if samples.ndim != 3 or samples.shape[2] != ACTION_DIM:
            raise ValueError(f"samples must be (K, H, {ACTION_DIM}), got {samples.shape}")
        n = min(samples.shape[1], len(expert))
        self.frames += 1
        for group, dims in self.groups.items():
            for chunk in samples:
                first, whole = chunk_errors(chunk, expert, dims)
                self._add(metric_key(group, "first"), first)
                self._add(metric_key(group, "chunk"), whole, n)
                self._add(f"jitter_{group}", jitter(chunk[:n], dims), n)
            bias, spread = bias_and_spread(samples, expert, dims)
            self._add(metric_key(group, prefix="bias_"), bias, n)
            self._add(metric_key(group, prefix="spread_"), spread, n)
            self._add(f"expert_jitter_{group}", jitter(expert[:n], dims), n)
            for prefix, baseline in (
                ("hold_state_", None if state is None else hold_state_chunk(state, expert, samples.shape[1])),
                ("nearest_", nearest),
            ):
                if baseline is None:
                    continue
                first, whole = chunk_errors(baseline, expert, dims)
                self._add(metric_key(group, "first", prefix), first)
                self._add(metric_key(group, "chunk", prefix), whole, n)

    def summary(self) -> dict[str, float]:
        """Every metric scored at least once (a key is missing, not nan, when nothing scored it)."""
        result: dict[str, float] = {key: mean.value for key, mean in sorted(self._means.items()) if mean.count}
        result["frames"] = self.frames
        return result


# --- where the predicted walk ends ----------------------------------------------------------------------
SETTLE_TICKS = 10  # after a walk's last command the base has stopped (0.3 m/s at 1 m/s^2: 9 ticks at 30 Hz)


def integrate_base(velocities: np.ndarray, rate_hz: float) -> np.ndarray:
    """(T, 3) commanded vx, vy (heading frame, m/s) and vyaw (rad/s) -> (T, 2) planar base positions
    from rest at the origin, heading 0, by the kinematic base's rules: all three below its stand
    speed stands in place, and the velocity follows the command at its acceleration limit."""
    from psi0_ros.sim.kinematic import KinematicConfig, ramped_velocity, stands

    config, dt = KinematicConfig(), 1.0 / rate_hz
    position, velocity, yaw = np.zeros(2), np.zeros(2), 0.0
    path = np.zeros((len(velocities), 2))
    for t, (vx, vy, vyaw) in enumerate(np.asarray(velocities, np.float64)):
        standing = stands(vx, vy, vyaw, config.stand_speed)
        velocity = ramped_velocity(velocity, np.zeros(2) if standing else np.array([vx, vy]), config.max_accel, dt)
        cos, sin = np.cos(yaw), np.sin(yaw)
        position = position + dt * np.array(
            [cos * velocity[0] - sin * velocity[1], sin * velocity[0] + cos * velocity[1]]
        )
        yaw += (0.0 if standing else vyaw) * dt
        path[t] = position
    return path


def first_walk(velocities: np.ndarray, settle_ticks: int = 10) -> tuple[int, int] | None:
    """(first, last) tick of the first walk in (T, 3) commanded velocities: from the first command
    at or above the stand speed to the last one before `settle_ticks` standing ticks; None if the
    base never walks."""
    from psi0_ros.sim.kinematic import KinematicConfig

    walking = np.abs(np.asarray(velocities)).max(axis=1) >= KinematicConfig().stand_speed
    ticks = np.flatnonzero(walking)
    if ticks.size == 0:
        return None
    for tick in ticks:
        if not walking[tick + 1 : tick + 1 + settle_ticks].any():
            return int(ticks[0]), int(tick)
    return int(ticks[0]), int(ticks[-1])


def executed_velocities(chunk_at: Callable[[int], np.ndarray], length: int, every: int) -> np.ndarray:
    """(length, 3) vx, vy, vyaw the deploy graph would command: a chunk planned at ticks 0, every,
    2 every, ... (chunk_at(tick) -> (H, 36)), each followed for its first `every` rows."""
    executed = np.zeros((length, 3))
    for tick in range(0, length, every):
        rows = np.asarray(chunk_at(tick))[: min(every, length - tick), 32:35]
        executed[tick : tick + len(rows)] = rows
    return executed


@dataclass
class WalkDrift:
    """The walk_* keys of the module doc, one episode at a time (add), summary() at the end."""

    every: int
    rate_hz: float = 30.0
    drifts: list[float] = field(default_factory=list)
    recorded_vy: list[float] = field(default_factory=list)
    predicted_vy: list[float] = field(default_factory=list)

    def add(self, actions: np.ndarray, chunk_at: Callable[[int], np.ndarray]) -> None:
        """actions: the episode's recorded (T, 36); chunk_at(tick) -> the policy's (H, 36) chunk
        planned from the recorded observation at that tick. An episode that never walks is skipped."""
        recorded = np.asarray(actions, np.float64)[:, 32:35]
        walk = first_walk(recorded)
        if walk is None:
            return
        executed = executed_velocities(chunk_at, len(recorded), self.every)
        ours = first_walk(executed)
        last = len(recorded) - 1
        target = integrate_base(recorded, self.rate_hz)[min(walk[1] + SETTLE_TICKS, last)]
        # where the policy's base comes to rest after its own first walk (where it stood if it never walked)
        reached = integrate_base(executed, self.rate_hz)[min(ours[1] + SETTLE_TICKS, last) if ours else 0]
        self.drifts.append(float(np.hypot(*(reached - target))))
        middle = (walk[0] + walk[1]) // 2
        self.recorded_vy.append(float(recorded[middle, 1]))
        self.predicted_vy.append(float(executed[middle, 1]))

    def summary(self) -> dict[str, float]:
        result: dict[str, float] = {"walk_episodes": len(self.drifts), "walk_every": self.every}
        if not self.drifts:
            return result
        result.update(
            walk_drift_m=float(np.median(self.drifts)),
            walk_drift_within_15mm=float(np.mean(np.array(self.drifts) <= 0.015)),
        )
        spread = float(np.std(self.recorded_vy))
        if len(self.drifts) > 1 and spread > 0:  # missing, not nan, where the recordings do not vary
            result["walk_vy_spread_ratio"] = float(np.std(self.predicted_vy) / spread)
            if np.std(self.predicted_vy) > 0:
                result["walk_vy_corr"] = float(np.corrcoef(self.recorded_vy, self.predicted_vy)[0, 1])
        return result


# --- episodes ---------------------------------------------------------------------------------------
class EpisodeLike(Protocol):
    name: str
    state: np.ndarray  # (T, 32 or 36)
    action: np.ndarray  # (T, 36)
    instruction: str

    def image(self, frame: int) -> np.ndarray: ...


@dataclass
class Episode:
    """One episode for open-loop evaluation; image(frame) -> (H, W, 3) uint8 RGB."""

    name: str  # the file, or any unique name (the nearest-frame baseline never matches its own)
    state: np.ndarray  # (T, 36) padded state, physical units
    action: np.ndarray  # (T, 36) physical units
    instruction: str
    load_image: Callable[[int], np.ndarray]

    def image(self, frame: int) -> np.ndarray:
        return self.load_image(frame)


class _HDF5Images:
    """The frames of one camera of an episode file, read on first use (JPEG or raw)."""

    def __init__(self, path: Path, camera: str):
        self.path, self.camera = path, camera
        self.frames: Any = None

    def __call__(self, frame: int) -> np.ndarray:
        if self.frames is None:
            from psi0_ros.data.hdf5 import read_episode

            self.frames = read_episode(self.path, images=True).images[self.camera]
        data = self.frames[frame]
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data)
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))

    def release(self) -> None:
        self.frames = None


def episode_files(paths: Iterable[Path]) -> list[Path]:
    """Episode files named, or found (*.hdf5, not temporaries) under directories; sorted per path."""
    from psi0_ros.data.hdf5 import is_temp_file

    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob(f"*{EPISODE_SUFFIX}") if not is_temp_file(p))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"episode file or directory not found: {path}")
    return files


def read_episodes(paths: Iterable[Path], camera: str = "", include_failures: bool = False) -> list[Episode]:
    """psi0_ros HDF5 episodes (DESIGN §5) from files and directories; images are read on demand.
    Episodes marked outcome "failure" are left out unless include_failures, as in training."""
    from psi0_ros.data.hdf5 import read_episode

    paths = list(paths)
    episodes: list[Episode] = []
    files = episode_files(paths)
    for path in files:
        data = read_episode(path, images=False)
        if not include_failures and str(data.attrs.get("outcome", "")) == "failure":
            continue
        cameras = sorted(data.camera_info)
        if camera and camera not in cameras:
            raise ValueError(f"{path}: no camera {camera!r} (cameras: {cameras})")
        if not cameras:
            raise ValueError(f"{path}: episode has no camera images")
        state, action = pad_state(data.state), np.asarray(data.action, np.float32)
        if state.shape[0] != action.shape[0] or action.shape[1:] != (ACTION_DIM,):
            raise ValueError(f"{path}: state {state.shape} and action {action.shape} do not line up")
        instruction = str(data.attrs.get("task", "") or "")
        episodes.append(
            Episode(str(path.resolve()), state, action, instruction, _HDF5Images(path, camera or cameras[0]))
        )
    if not episodes:
        raise ValueError(f"no episodes to evaluate in {[str(p) for p in paths]} (failures are left out)")
    return episodes


# --- the policy on episodes ----------------------------------------------------------------------
def open_loop_metrics(
    policy: Policy,
    episodes: Sequence[EpisodeLike],
    samples: int = 1,
    stride: int = 10,
    train_episodes: Sequence[EpisodeLike] | None = None,
    walk_every: int | None = None,
    rate_hz: float = 30.0,
) -> dict[str, float]:
    """One split's summary (keys: the module doc). The policy sees each sampled frame's recorded
    state, image and instruction (through its VLM) and draws `samples` chunks; policy.reset() at
    each episode makes the numbers reproducible. walk_every: also the walk_* keys, a chunk planned
    every that many ticks (chunk_node's execution horizon; None: half the policy's horizon, as
    chunk_node's default; 0: not scored)."""

    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    nearest = NearestFrames(train_episodes) if train_episodes else None
    scores = OpenLoopScores()
    horizon = policy.horizon
    every = max(1, horizon // 2) if walk_every is None else walk_every
    walk = WalkDrift(every, rate_hz) if every > 0 else None
    for episode in episodes:
        policy.reset()
        for frame in range(0, len(episode.action), stride):
            state = episode.state[frame]
            observation = _observation(policy, episode, frame)  # encoded once for the K samples
            chunks = np.stack([policy.infer(observation) for _ in range(samples)])
            baseline = None if nearest is None else nearest.chunk(state, horizon, exclude=episode.name)
            scores.add_frame(chunks, expert_chunk(episode.action, frame, horizon), state, baseline)
        if walk is not None:
            walk.add(episode.action, lambda tick, episode=episode: policy.infer(_observation(policy, episode, tick)))
        release = getattr(getattr(episode, "load_image", None), "release", None)
        if release is not None:
            release()
    summary: dict[str, float] = scores.summary()
    summary.update(episodes=len(episodes), samples=samples, stride=stride, horizon=horizon)
    if walk is not None:
        summary.update(walk.summary())
    return summary


def _observation(policy: Policy, episode: EpisodeLike, frame: int) -> Any:
    """The episode's recorded observation at `frame`, its image through the policy's VLM."""
    from psi0_ros.policy.interface import Observation

    state = episode.state[frame]
    observation = Observation(state=state, image=episode.image(frame), instruction=episode.instruction)
    if policy.vlm is None:
        return observation
    features, mask = policy.encode(observation.image, observation.instruction)
    return Observation(state=state, vlm_features=features, vlm_mask=mask)
