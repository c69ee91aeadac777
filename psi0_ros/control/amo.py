"""System-0: AMO, the RL lower-body controller, as a ROS-free step function (shared/AMO.md).

AmoController turns the measured state (23 joints, IMU quaternion and gyro) and the 8-D lower-body
command into 15 leg + waist position targets, one call per 0.02 s step. It builds the observation
exactly as AMO does (OpenTeleVision/AMO play_amo.py; what Psi0 deploys on the real G1:
real/teleop/master_whole_body.py): term order, scales, the two history buffers, the adapter, the
gait phase and the in-place-stand rule. The networks are AMO's TorchScript files, loaded with
AmoController.load(directory); nothing here imports rclpy.

Where the AMO sim script and Psi0's real loop differ, Psi0's real loop is followed (what the G1
runs): measured arm q in the adapter and demo terms, yaw relative to a heading latched at the
first step, and the stand flag from |vx|, |vy| and |vyaw|.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psi0_ros import g1

# --- AMO's files -------------------------------------------------------------------------------
POLICY_FILE = "amo_jit.pt"  # TorchScript: (obs (1, 1043), extra_hist (1, 2325)) -> (1, 15)
ADAPTER_FILE = "adapter_jit.pt"  # TorchScript: (1, 12) -> (1, 15)
NORM_STATS_FILE = "adapter_norm_stats.pt"  # dict of arrays: input_mean/std (12), output_mean/std (15)
AMO_FILES: tuple[str, ...] = (POLICY_FILE, ADAPTER_FILE, NORM_STATS_FILE)
# AMO's own key names, then the short ones shared/AMO.md uses; either set is accepted.
_NORM_KEYS = (
    ("input_mean", "input_std", "output_mean", "output_std"),
    ("in_mean", "in_std", "out_mean", "out_std"),
)

# --- Joint view: 23 joints, the 29-DoF G1 without its six wrist joints ----------------------------
AMO_JOINTS: tuple[str, ...] = g1.BODY_JOINTS[0:19] + g1.BODY_JOINTS[22:26]
NUM_AMO_JOINTS = len(AMO_JOINTS)  # 23
NUM_OUTPUTS = 15  # 12 legs + 3 waist: g1.LOWER_BODY_JOINTS
ARM_VIEW = slice(15, 23)  # the 8 arm joints (shoulder pitch/roll/yaw, elbow; left then right)
# AMO's standing pose (not g1's: AMO was trained with the arms at shoulder pitch 0.5, yaw +-0.2).
DEFAULT_POSE = np.array(
    [-0.1, 0.0, 0.0, 0.3, -0.2, 0.0] * 2 + [0.0, 0.0, 0.0] + [0.5, 0.0, 0.2, 0.3] + [0.5, 0.0, -0.2, 0.3],
    dtype=np.float64,
)

# --- Observation layout -------------------------------------------------------------------------
NUM_PROPRIO = 3 + 2 + 2 + 3 * NUM_AMO_JOINTS + 2 + NUM_OUTPUTS  # 93
NUM_DEMO = 8 + 3 + 3 + 3  # 17: arm q, (vx, vy, 0), torso yaw/pitch/roll, height x3
NUM_PRIV = 3  # always zero at deployment
HISTORY_LEN = 10  # prop frames before the current one, in the observation
EXTRA_HISTORY_LEN = 25  # prop frames up to and including the current one, the second input
OBS_DIM = NUM_PROPRIO + NUM_DEMO + NUM_PRIV + HISTORY_LEN * NUM_PROPRIO  # 1043
EXTRA_HIST_DIM = EXTRA_HISTORY_LEN * NUM_PROPRIO  # 2325
ADAPTER_IN = 4 + 8  # height, torso yaw, pitch, roll, arm q
# Offsets of each prop term, in order (the test and the docs refer to them by name).
PROP_TERMS: tuple[tuple[str, int], ...] = (
    ("ang_vel", 3),
    ("roll_pitch", 2),
    ("dyaw_sin_cos", 2),
    ("dof_pos", NUM_AMO_JOINTS),
    ("dof_vel", NUM_AMO_JOINTS),
    ("last_action", NUM_AMO_JOINTS),
    ("gait", 2),
    ("adapter", NUM_OUTPUTS),
)

ANG_VEL_SCALE = 0.25
DOF_VEL_SCALE = 0.05
ACTION_SCALE = 0.25  # rad per unit of raw policy output
ACTION_CLIP = 40.0  # raw outputs are clipped to +-40 before use
ZERO_VELOCITY_ENTRIES = (4, 5, 10, 11, 13, 14)  # ankle pitch/roll of both legs, waist roll/pitch
ADAPTER_STD_EPS = 1e-8

STEP_S = 0.02  # s per step: AMO's control period (sim dt 0.002 x decimation 10)
GAIT_FREQ_HZ = 1.3
GAIT_START = (0.25, 0.25)
GAIT_SNAP = 0.05  # phase distance from 0.25 at which the gait snaps to stand / walk
STAND_SPEED = 0.1  # |vx|, |vy| (m/s) and |vyaw| (rad/s) all below this: stand in place


@dataclass(frozen=True)
class CommandRanges:
    """AMO's training ranges for its command inputs; commands are clipped into them (AMO.md)."""

    height: tuple[float, float] = (0.25, 1.55)  # m, 0.75 + offset in [-0.5, 0.8]
    torso_yaw: tuple[float, float] = (-1.57, 1.57)  # rad, whole-body torso orientation
    torso_pitch: tuple[float, float] = (-0.52, 1.57)  # rad
    torso_roll: tuple[float, float] = (-0.7, 0.7)  # rad
    vx: tuple[float, float] = (-0.5, 0.5)  # m/s
    vy: tuple[float, float] = (-0.4, 0.4)  # m/s

    def __post_init__(self) -> None:
        for name in ("height", "torso_yaw", "torso_pitch", "torso_roll", "vx", "vy"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"AMO command range {name} must have low <= high, got {(lo, hi)}")


@dataclass(frozen=True)
class AmoCommand:
    """What AMO tracks: base velocity, heading and whole-body torso pose (DESIGN §3 LowerBodyCommand)."""

    vx: float = 0.0  # m/s, forward
    vy: float = 0.0  # m/s, left
    vyaw: float = 0.0  # rad/s; only feeds the stand flag (target_yaw carries the heading)
    target_yaw: float = 0.0  # rad, heading relative to the heading at start
    torso_roll: float = 0.0  # rad
    torso_pitch: float = 0.0  # rad
    torso_yaw: float = 0.0  # rad
    height: float = 0.75  # m, AMO's absolute torso height (0.75 nominal)

    @classmethod
    def from_vector(cls, command: np.ndarray) -> AmoCommand:
        """From an (8,) vector in constants.LOWER_BODY_COMMAND_NAMES order (action indices 28-35)."""
        roll, pitch, yaw, height, vx, vy, vyaw, target_yaw = (float(v) for v in np.asarray(command).reshape(8))
        return cls(vx, vy, vyaw, target_yaw, roll, pitch, yaw, height)

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in self.__dict__.values())


def clip_command(command: AmoCommand, ranges: CommandRanges) -> tuple[AmoCommand, tuple[str, ...]]:
    """Clip a command into AMO's ranges; returns it and the names of the fields that were clipped."""
    values = dict(command.__dict__)
    clipped = []
    for name in ("height", "torso_yaw", "torso_pitch", "torso_roll", "vx", "vy"):
        lo, hi = getattr(ranges, name)
        value = min(max(values[name], lo), hi)
        if value != values[name]:
            clipped.append(name)
            values[name] = value
    return AmoCommand(**values), tuple(clipped)


def quantize_velocity(command: AmoCommand) -> AmoCommand:
    """Psi0's robot-client filter on predicted base velocities (optional; off by default).

    vx -> 0.35 m/s if vx > 0.25 else 0 (no walking backwards); vy -> 0 if |vy| < 0.3 else +-0.5;
    vyaw unchanged. Psi0 applies this between its policy and AMO on the real robot.
    """
    vx = 0.35 if command.vx > 0.25 else 0.0
    vy = 0.0 if abs(command.vy) < 0.3 else math.copysign(0.5, command.vy)
    return AmoCommand(**{**command.__dict__, "vx": vx, "vy": vy})


def quat_to_rpy(quat_wxyz: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw (rad) of a (w, x, y, z) quaternion, ZYX convention, pitch clamped at +-pi/2."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    sinp = 2.0 * (w * y - z * x)
    pitch = math.copysign(math.pi / 2.0, sinp) if abs(sinp) >= 1.0 else math.asin(sinp)
    yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
    return np.array([roll, pitch, yaw], dtype=np.float64)


def wrap_angle(angle: float) -> float:
    """To [-pi, pi)."""
    return float(np.remainder(angle + math.pi, 2.0 * math.pi) - math.pi)


@dataclass(frozen=True)
class AmoState:
    """One step's measurements. q, dq: (23,) in AMO_JOINTS order (rad, rad/s); quat (4,) w, x, y, z
    of the pelvis IMU; gyro (3,) rad/s in the IMU (body) frame."""

    q: np.ndarray
    dq: np.ndarray
    quat: np.ndarray
    gyro: np.ndarray

    def is_finite(self) -> bool:
        return all(np.all(np.isfinite(a)) for a in (self.q, self.dq, self.quat, self.gyro))


@dataclass(frozen=True)
class AdapterNorm:
    """The adapter's input/output normalisation (adapter_norm_stats.pt), float64."""

    input_mean: np.ndarray  # (12,)
    input_std: np.ndarray  # (12,)
    output_mean: np.ndarray  # (15,)
    output_std: np.ndarray  # (15,)

    def __post_init__(self) -> None:
        for name, size in (("input_mean", 12), ("input_std", 12), ("output_mean", 15), ("output_std", 15)):
            value = np.asarray(getattr(self, name))
            if value.reshape(-1).shape != (size,):
                raise ValueError(f"adapter norm stats {name}: expected {size} values, got shape {value.shape}")


class AmoObservation:
    """AMO's observation builder: the stateful part of AMO (histories, gait phase, last action, yaw).

    build() makes (obs (1043,), extra_hist (2325,)) for one step from the measurements, the
    command and the adapter's output; record_action() stores the policy's clipped raw output for
    the next step's last-action term. Arrays are float64.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, keep_yaw_offset: bool = False) -> None:
        """Zero histories and last action, gait to its start; re-latch the heading unless kept."""
        self.prop_history: deque[np.ndarray] = deque(
            [np.zeros(NUM_PROPRIO) for _ in range(HISTORY_LEN)], maxlen=HISTORY_LEN
        )
        self.extra_history: deque[np.ndarray] = deque(
            [np.zeros(NUM_PROPRIO) for _ in range(EXTRA_HISTORY_LEN)], maxlen=EXTRA_HISTORY_LEN
        )
        self.gait_phase = np.array(GAIT_START, dtype=np.float64)
        self.last_action = np.zeros(NUM_AMO_JOINTS)
        self.in_place_stand = True  # the flag of the previous step (AMO starts standing)
        if not keep_yaw_offset:
            self.yaw_offset: float | None = None  # rad, latched from the IMU at the first step

    def adapter_input(self, state: AmoState, command: AmoCommand) -> np.ndarray:
        """(12,): height, torso yaw, torso pitch, torso roll, then the 8 measured arm joints."""
        head = [command.height, command.torso_yaw, command.torso_pitch, command.torso_roll]
        return np.concatenate([np.array(head, dtype=np.float64), np.asarray(state.q, np.float64)[ARM_VIEW]])

    def build(self, state: AmoState, command: AmoCommand, adapter_output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(state.q, dtype=np.float64)
        rpy = quat_to_rpy(state.quat)
        if self.yaw_offset is None:
            self.yaw_offset = float(rpy[2])
        # The stand flag of the previous step decides whether heading error is shown (AMO's order).
        dyaw = 0.0 if self.in_place_stand else wrap_angle(rpy[2] - self.yaw_offset - command.target_yaw)
        dof_vel = np.asarray(state.dq, dtype=np.float64).copy()
        dof_vel[list(ZERO_VELOCITY_ENTRIES)] = 0.0
        prop = np.concatenate(
            [
                np.asarray(state.gyro, dtype=np.float64) * ANG_VEL_SCALE,
                rpy[:2],
                [math.sin(dyaw), math.cos(dyaw)],
                q - DEFAULT_POSE,
                dof_vel * DOF_VEL_SCALE,
                self.last_action,
                np.sin(2.0 * math.pi * self.gait_phase),
                np.asarray(adapter_output, dtype=np.float64).reshape(NUM_OUTPUTS),
            ]
        )
        demo = np.zeros(NUM_DEMO)
        demo[0:8] = q[ARM_VIEW]
        demo[8], demo[9] = command.vx, command.vy  # demo[10] is never set by AMO
        demo[11], demo[12], demo[13] = command.torso_yaw, command.torso_pitch, command.torso_roll
        demo[14:17] = command.height
        self.in_place_stand = (
            abs(command.vx) < STAND_SPEED and abs(command.vy) < STAND_SPEED and abs(command.vyaw) < STAND_SPEED
        )
        history = np.concatenate(list(self.prop_history))  # before this frame is appended
        self.prop_history.append(prop)
        self.extra_history.append(prop)
        obs = np.concatenate([prop, demo, np.zeros(NUM_PRIV), history])
        extra = np.concatenate(list(self.extra_history))  # including this frame
        self._advance_gait()
        return obs, extra

    def record_action(self, raw_clipped: np.ndarray, state: AmoState) -> None:
        """Last action for the next step: the 15 clipped raw outputs, then the arms as if commanded."""
        arms = (np.asarray(state.q, dtype=np.float64)[ARM_VIEW] - DEFAULT_POSE[ARM_VIEW]) / ACTION_SCALE
        self.last_action = np.concatenate([np.asarray(raw_clipped, dtype=np.float64).reshape(NUM_OUTPUTS), arms])

    def _advance_gait(self) -> None:
        self.gait_phase = np.remainder(self.gait_phase + STEP_S * GAIT_FREQ_HZ, 1.0)
        near = np.abs(self.gait_phase - 0.25) < GAIT_SNAP
        if self.in_place_stand and near.any():
            self.gait_phase = np.array([0.25, 0.25])
        if not self.in_place_stand and near.all():
            self.gait_phase = np.array([0.25, 0.75])


Network = Callable[..., object]  # a TorchScript module


def missing_amo_files(directory: str | Path) -> list[Path]:
    """The AMO files absent from directory (empty when all three are there)."""
    root = Path(directory)
    return [root / name for name in AMO_FILES if not (root / name).is_file()]


def load_adapter_norm(path: str | Path) -> AdapterNorm:
    """Read adapter_norm_stats.pt (a pickled dict of numpy arrays, as AMO ships it).

    torch.load with weights_only=False unpickles: load only files you trust, as with AMO itself.
    """
    import torch

    stats = torch.load(str(path), map_location="cpu", weights_only=False)
    if not isinstance(stats, dict):
        raise ValueError(f"{path}: expected a dict of arrays, got {type(stats).__name__}")
    for keys in _NORM_KEYS:
        if all(k in stats for k in keys):
            arrays = [np.asarray(torch.as_tensor(stats[k]).cpu().numpy(), dtype=np.float64).reshape(-1) for k in keys]
            return AdapterNorm(*arrays)
    raise ValueError(f"{path}: needs keys {_NORM_KEYS[0]} (or {_NORM_KEYS[1]}), has {sorted(stats)}")


class AmoController:
    """AMO's step: measurements + command -> 15 leg/waist targets (rad, g1.LOWER_BODY_JOINTS order).

    policy and adapter are TorchScript modules (or any callables on torch tensors with the same
    signatures). Not thread-safe; one call per STEP_S.
    """

    def __init__(
        self,
        policy: Network,
        adapter: Network,
        norm: AdapterNorm,
        ranges: CommandRanges | None = None,
        quantize: bool = False,
        device: str = "cpu",
    ) -> None:
        self.policy, self.adapter, self.norm = policy, adapter, norm
        self.ranges = ranges or CommandRanges()
        self.quantize = quantize
        self.device = device
        self.observation = AmoObservation()
        self.last_obs: np.ndarray | None = None  # (1043,), for diagnostics and tests
        self.last_extra_hist: np.ndarray | None = None  # (2325,)
        self.last_clipped: tuple[str, ...] = ()  # command fields clipped at the last step

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", **kwargs: object) -> AmoController:
        """Load AMO's three files from directory; a missing file is a FileNotFoundError naming each."""
        import torch

        missing = missing_amo_files(directory)
        if missing:
            raise FileNotFoundError(
                f"AMO checkpoint {directory} is missing {len(missing)} file(s): " + ", ".join(str(p) for p in missing)
            )
        root = Path(directory)
        policy = torch.jit.load(str(root / POLICY_FILE), map_location=device).eval()
        adapter = torch.jit.load(str(root / ADAPTER_FILE), map_location=device).eval()
        return cls(policy, adapter, load_adapter_norm(root / NORM_STATS_FILE), device=device, **kwargs)

    def reset(self, keep_yaw_offset: bool = False) -> None:
        self.observation.reset(keep_yaw_offset)

    def prepare_command(self, command: AmoCommand) -> AmoCommand:
        """The command as AMO sees it: optionally quantised (Psi0), then clipped into AMO's ranges."""
        if self.quantize:
            command = quantize_velocity(command)
        command, self.last_clipped = clip_command(command, self.ranges)
        return command

    def run_adapter(self, adapter_input: np.ndarray) -> np.ndarray:
        """(12,) -> (15,): normalise, the adapter MLP, de-normalise."""
        import torch

        n = self.norm
        x = (adapter_input - n.input_mean) / (n.input_std + ADAPTER_STD_EPS)
        with torch.no_grad():
            y = self.adapter(torch.as_tensor(x, dtype=torch.float32, device=self.device).view(1, -1))
        y = np.asarray(y.detach().cpu().numpy(), dtype=np.float64).reshape(NUM_OUTPUTS)
        return y * n.output_std + n.output_mean

    def step(self, state: AmoState, command: AmoCommand) -> np.ndarray:
        """One 0.02 s step; returns (15,) targets = default + 0.25 * clip(raw, -40, 40).

        Raises ValueError on non-finite input or output (the caller publishes nothing then).
        """
        import torch

        if not state.is_finite():
            raise ValueError("AMO input state has NaN/inf")
        if not command.is_finite():
            raise ValueError("AMO command has NaN/inf")
        command = self.prepare_command(command)
        adapter_out = self.run_adapter(self.observation.adapter_input(state, command))
        obs, extra = self.observation.build(state, command, adapter_out)
        self.last_obs, self.last_extra_hist = obs, extra
        with torch.no_grad():
            raw = self.policy(
                torch.as_tensor(obs, dtype=torch.float32, device=self.device).view(1, OBS_DIM),
                torch.as_tensor(extra, dtype=torch.float32, device=self.device).view(1, EXTRA_HIST_DIM),
            )
        raw = np.asarray(raw.detach().cpu().numpy(), dtype=np.float64).reshape(NUM_OUTPUTS)
        if not np.all(np.isfinite(raw)):
            raise ValueError("AMO policy output has NaN/inf")
        raw = np.clip(raw, -ACTION_CLIP, ACTION_CLIP)
        self.observation.record_action(raw, state)
        return DEFAULT_POSE[:NUM_OUTPUTS] + ACTION_SCALE * raw


assert NUM_PROPRIO == 93 and OBS_DIM == 1043 and EXTRA_HIST_DIM == 2325
assert tuple(AMO_JOINTS[:NUM_OUTPUTS]) == g1.LOWER_BODY_JOINTS


# --- Running AMO from streams of messages ---------------------------------------------------------
INPUTS = ("joint_states", "imu", "command")


@dataclass(frozen=True)
class LowerBodyConfig:
    """lower_body_node's settings (config/lower_body.yaml)."""

    checkpoint_dir: str = ""  # directory holding AMO_FILES
    rate_hz: float = 50.0  # AMO's 0.02 s step; below 50 Hz the robot drifts (Psi0's maintainers)
    state_timeout_s: float = 0.1  # joint states / IMU older than this: no new targets
    command_timeout_s: float = 0.5  # lower-body command older than this: no new targets
    reset_after_s: float = 0.5  # a pause in stepping longer than this restarts the histories
    quantize_velocity: bool = False  # Psi0's robot-client velocity filter (quantize_velocity)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.checkpoint_dir:
            raise ValueError(
                "lower-body checkpoint_dir is empty: give the directory of amo_jit.pt, adapter_jit.pt, adapter_norm_stats.pt"
            )
        for name in ("rate_hz", "state_timeout_s", "command_timeout_s", "reset_after_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"lower-body {name} must be > 0, got {getattr(self, name)}")


@dataclass
class AmoRunner:
    """Feeds AmoController from the newest inputs, each stamped with its arrival time (monotonic s).

    tick(now) returns targets, or None with the reason counted: an input missing, stale or
    non-finite means no new targets (the robot bridge's watchdog then holds the last safe pose).
    """

    controller: AmoController
    config: LowerBodyConfig

    def __post_init__(self) -> None:
        self.latest: dict[str, tuple[float, object]] = {}
        self.counters: dict[str, int] = {"steps": 0, "resets": 0, "clipped_commands": 0, "nonfinite_outputs": 0}
        for name in INPUTS:
            self.counters[f"missing_{name}"] = 0
            self.counters[f"stale_{name}"] = 0
            self.counters[f"nonfinite_{name}"] = 0
        self.last_step_time: float | None = None
        self.last_skip_reason = ""

    def submit(self, name: str, value: object, now: float) -> None:
        if name not in INPUTS:
            raise KeyError(f"unknown AMO input {name!r}; expected one of {INPUTS}")
        self.latest[name] = (now, value)

    def ages(self, now: float) -> dict[str, float | None]:
        return {name: (now - self.latest[name][0]) if name in self.latest else None for name in INPUTS}

    def _skip(self, reason: str, counter: str) -> None:
        self.counters[counter] += 1
        self.last_skip_reason = reason

    def tick(self, now: float) -> np.ndarray | None:
        for name in INPUTS:
            if name not in self.latest:
                self._skip(f"no {name} yet", f"missing_{name}")
                return None
            timeout = self.config.command_timeout_s if name == "command" else self.config.state_timeout_s
            age = now - self.latest[name][0]
            if age > timeout:
                self._skip(f"{name} is {age:.3f} s old (timeout {timeout:g} s)", f"stale_{name}")
                return None
        q, dq = self.latest["joint_states"][1]
        quat, gyro = self.latest["imu"][1]
        command = self.latest["command"][1]
        state = AmoState(q=q, dq=dq, quat=quat, gyro=gyro)
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(dq))):
            self._skip("joint states have NaN/inf", "nonfinite_joint_states")
            return None
        if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(gyro))):
            self._skip("IMU has NaN/inf", "nonfinite_imu")
            return None
        if not command.is_finite():
            self._skip("lower-body command has NaN/inf", "nonfinite_command")
            return None
        if self.last_step_time is not None and now - self.last_step_time > self.config.reset_after_s:
            self.controller.reset(keep_yaw_offset=True)  # stale histories would be garbage to AMO
            self.counters["resets"] += 1
        try:
            targets = self.controller.step(state, command)
        except ValueError as err:
            self._skip(str(err), "nonfinite_outputs")
            return None
        if self.controller.last_clipped:
            self.counters["clipped_commands"] += 1
        self.counters["steps"] += 1
        self.last_step_time = now
        self.last_skip_reason = ""
        return targets
