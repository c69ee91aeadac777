"""The safety layer: every target on its way to a motor passes SafetyLayer.update().

Inputs arrive as named joint targets from sources (the upper-body command: arms and hands; the
lower-body targets: legs and waist), an optional 8-D lower-body command, and the estop. Each
control tick, update() turns the newest valid targets into one JointCommand for all joints:

    validate (names, NaN/inf)  ->  clamp to position limits  ->  estop / watchdog / state check  ->
    velocity- and acceleration-bounded profile from the last commanded pose and velocity  ->
    kp/kd table  ->  finite check

Modes: STARTING (the estop state is not known yet: hold the pose measured at start, store no
command; see set_estop_publishers() for when it is known), WAITING (no command yet: hold the pose measured at start), ACTIVE, HOLD (a stream went
quiet, or the measured state is NaN: stop at the last commanded setpoint and stay there),
DAMP (quiet for too long: kp = 0, damping only; latched unless auto_resume), ESTOP (damping,
latched until the estop is released). Leaving DAMP/ESTOP restarts position control from the
measured pose at rest, so nothing jumps. Not thread-safe: the caller serialises
(psi0_ros.robot.bridge.Bridge holds a lock).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from psi0_ros import g1
from psi0_ros.control.command import JointCommand
from psi0_ros.control.limits import JointLimits, profile_step
from psi0_ros.control.lower_body import LowerBodyCommandLimits
from psi0_ros.control.watchdog import Watchdog, WatchdogState

RATE_LIMIT_GRACE_S = 0.1  # s of continuous step/velocity limiting before it counts as an intervention

# Which joints each command source may drive (DESIGN §2).
SOURCE_UPPER = "upper"  # /psi0/upper_body_command: 14 arm + 14 hand joints
SOURCE_LOWER = "lower"  # /psi0/lower_body_targets (or the sim's kinematic lower body): 12 leg + 3 waist
SOURCE_JOINTS: dict[str, tuple[str, ...]] = {
    SOURCE_UPPER: g1.UPPER_BODY_JOINTS,
    SOURCE_LOWER: g1.LOWER_BODY_JOINTS,
}


class SafetyMode(enum.Enum):
    STARTING = "starting"
    WAITING = "waiting"
    ACTIVE = "active"
    HOLD = "hold"
    DAMP = "damp"
    ESTOP = "estop"


@dataclass(frozen=True)
class SafetyConfig:
    """Safety settings; config/robot_bridge.yaml and config/sim.yaml hold the deployed values."""

    control_rate_hz: float = 500.0  # ticks per second of the command loop
    position_margin: float = 0.02  # rad kept clear of each URDF position limit
    velocity_scale: float = 0.5  # fraction of each URDF joint velocity limit a target may move at
    max_velocity: float = 3.0  # rad/s, cap on every joint's target velocity
    max_step: float = 0.02  # rad, cap on a target's change per tick (whatever the rate)
    # rad/s^2, bound on every joint's commanded acceleration and deceleration: a position ramp
    # brakes in time instead of stopping dead, which the PD loop would overshoot (docs/safety.md).
    # 6 rather than 8: with the sim's AMO gains (lower arm kp than the table this was tuned on) the
    # shoulder pitch passed its URDF limit by 0.0015 rad at 8 and stayed inside at 6.
    max_acceleration: float = 6.0
    # s to wait for the latched /psi0/estop sample when no estop publisher is matched, counted from
    # the first command received (the commands' discovery is done; the estop's gets as long again).
    # A matched estop publisher is waited for without a bound. inf: follow nothing before an
    # explicit estop message.
    estop_wait_s: float = 2.0
    hold_after_s: float = 0.25  # no fresh command for this long -> hold the last safe pose
    damp_after_s: float = 2.0  # ... and for this long -> damp
    auto_resume: bool = False  # leave a watchdog DAMP by itself when commands return (sim only)
    gains: str = "psi0_real"  # gain set of psi0_ros.g1.GAIN_SETS ("psi0_real", "amo_sim")
    kp_scale: float = 1.0  # multiplies the kp table (psi0_ros.g1)
    kd_scale: float = 1.0  # multiplies the kd table
    damping_kd_scale: float = 1.0  # kd in DAMP/ESTOP = kd table * this
    lower_body: LowerBodyCommandLimits = field(default_factory=LowerBodyCommandLimits)

    def __post_init__(self) -> None:
        if not self.control_rate_hz > 0.0:
            raise ValueError(f"control_rate_hz must be > 0, got {self.control_rate_hz}")
        if not self.max_step > 0.0:
            raise ValueError(f"max_step must be > 0 rad, got {self.max_step}")
        if not self.max_acceleration > 0.0:
            raise ValueError(f"max_acceleration must be > 0 rad/s^2, got {self.max_acceleration}")
        if not self.estop_wait_s >= 0.0:
            raise ValueError(f"estop_wait_s must be >= 0 s, got {self.estop_wait_s}")
        if not 0.0 < self.hold_after_s < self.damp_after_s:
            raise ValueError(f"need 0 < hold_after_s < damp_after_s, got {self.hold_after_s} and {self.damp_after_s}")
        for name in ("kp_scale", "kd_scale", "damping_kd_scale"):
            value = getattr(self, name)
            if not 0.0 <= value <= 2.0:
                raise ValueError(f"{name} must be in [0, 2], got {value}")
        if self.gains not in g1.GAIN_SETS:
            raise ValueError(f"gains must be one of {sorted(g1.GAIN_SETS)}, got {self.gains!r}")
        # JointLimits validates margin / velocity_scale / max_velocity.
        JointLimits.from_table(g1.ALL_JOINTS, self.position_margin, self.velocity_scale, self.max_velocity)

    @property
    def dt(self) -> float:
        return 1.0 / self.control_rate_hz

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> SafetyConfig:
        """Build from flat parameters (ROS parameters / YAML); lower_body.* keys fill the limits.

        An unknown key is an error naming it, so a typo in a YAML file does not pass silently.
        """
        own = {f for f in cls.__dataclass_fields__ if f != "lower_body"}
        lower_fields = set(LowerBodyCommandLimits.__dataclass_fields__)
        kwargs: dict[str, object] = {}
        lower: dict[str, object] = {}
        for key, value in values.items():
            if key.startswith("lower_body."):
                sub = key.split(".", 1)[1]
                if sub not in lower_fields:
                    raise ValueError(f"unknown safety parameter {key!r}; known: {sorted(lower_fields)}")
                lower[sub] = float(value)  # type: ignore[arg-type]
            elif key in own:
                if key == "gains":
                    kwargs[key] = str(value)
                else:
                    kwargs[key] = bool(value) if key == "auto_resume" else float(value)  # type: ignore[arg-type]
            else:
                raise ValueError(f"unknown safety parameter {key!r}; known: {sorted(own)}")
        return cls(**kwargs, lower_body=LowerBodyCommandLimits(**lower))  # type: ignore[arg-type]


@dataclass
class InterventionCounters:
    """How often the safety layer stepped in, since start. Reported on /diagnostics."""

    targets_clamped: int = 0  # joint targets outside the URDF range, clipped (per joint per message)
    rate_limited: int = 0  # times a joint was held back by the step/velocity limit for over RATE_LIMIT_GRACE_S
    rejected_nonfinite: int = 0  # messages dropped for NaN/inf values
    rejected_bad_names: int = 0  # messages dropped for unknown, duplicate or foreign joint names
    # messages dropped for arrays of the wrong length: positions, or a non-empty velocity/effort, not
    # one value per name; a lower-body command without 8 values
    rejected_bad_length: int = 0
    rejected_empty: int = 0  # messages without any joint target (they do not feed the watchdog)
    commands_dropped: int = 0  # commands lost before they reached the bridge (publisher sequence gaps)
    lower_command_clamped: int = 0  # lower-body commands with an entry out of bounds (clipped)
    watchdog_holds: int = 0  # entries into HOLD
    watchdog_damps: int = 0  # entries into DAMP
    estops: int = 0  # estop engagements
    state_nonfinite: int = 0  # ticks whose measured joint state held NaN/inf (HOLD while they last)
    output_nonfinite: int = 0  # ticks whose command came out non-finite (replaced by damping)

    def total(self) -> int:
        return sum(asdict(self).values())

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SafetyStatus:
    mode: SafetyMode
    estop: bool  # engaged; False also while not known yet (mode STARTING says so)
    command_age_s: dict[str, float | None]  # per source, None before its first command
    counters: dict[str, int]
    last_rejection: str  # why the newest rejected message was dropped ("" if none)
    # Command age [s] at the newest watchdog HOLD / DAMP entry (how promptly the watchdog acted).
    watchdog_trip_age_s: dict[str, float | None]
    # Not interventions: ticks spent in each mode ("ticks_active", ...) and commands received per
    # source ("commands_received_upper", ...) since start.
    activity: dict[str, int]


class SafetyLayer:
    """Turns named targets into safe per-joint PD commands for `joints` (default: all 43)."""

    def __init__(self, config: SafetyConfig, joints: tuple[str, ...] = g1.ALL_JOINTS) -> None:
        self.config = config
        self.joints = tuple(joints)
        self.index = {name: i for i, name in enumerate(self.joints)}
        self.limits = JointLimits.from_table(
            self.joints, config.position_margin, config.velocity_scale, config.max_velocity
        )
        kp, kd = g1.gains(config.gains, self.joints)
        self.kp = kp * config.kp_scale
        self.kd = kd * config.kd_scale
        self.damping_kd = kd * config.damping_kd_scale
        # rad/s per joint: the velocity limit, and no more than max_step per tick
        self._max_velocity = np.minimum(self.limits.velocity, config.max_step / config.dt)
        self._max_acceleration = np.full(len(self.joints), config.max_acceleration)
        self._limited_since = np.full(len(self.joints), np.nan)  # when each joint's current limiting began
        self._limit_counted = np.zeros(len(self.joints), dtype=bool)
        self._urdf_lower, self._urdf_upper = g1.table("lower", self.joints), g1.table("upper", self.joints)
        self.counters = InterventionCounters()
        self._watchdogs = {source: Watchdog(config.hold_after_s, config.damp_after_s) for source in SOURCE_JOINTS}
        self._source_slots = {
            source: np.array([self.index[n] for n in names if n in self.index], dtype=np.int64)
            for source, names in SOURCE_JOINTS.items()
        }
        self._targets = np.full(len(self.joints), np.nan)  # newest valid target per joint, NaN = none
        self._last_q: np.ndarray | None = None  # last commanded pose; None while damped/not started
        self._last_v = np.zeros(len(self.joints))  # rad/s, last commanded velocity
        # None: not known yet (no estop message, estop_wait_s not over); estop_wait_s 0: no wait at all
        self._estop: bool | None = False if config.estop_wait_s == 0.0 else None
        self._first_command: float | None = None  # when the first command arrived (the estop wait starts)
        # Estop publishers matched now, and how many of them are known to have been heard: the
        # matched count when the newest estop sample arrived (a count cannot say which publisher
        # spoke), lowered when publishers leave. More matched than heard: a publisher whose
        # latched value has not arrived yet, so nothing is followed.
        self._estop_matched = 0
        self._estop_heard = 0
        self._mode = SafetyMode.STARTING if self._estop is None else SafetyMode.WAITING
        self._damp_latched = False
        self._lower_command: np.ndarray | None = None
        self._last_rejection = ""
        self._watchdog_trip_age: dict[str, float | None] = {"hold": None, "damp": None}
        self._ticks = {mode: 0 for mode in SafetyMode}
        self._received = dict.fromkeys(SOURCE_JOINTS, 0)

    # --- inputs ---------------------------------------------------------------------------------
    def submit(
        self,
        source: str,
        names: Sequence[str],
        positions: Sequence[float],
        now: float,
        velocities: Sequence[float] = (),
        efforts: Sequence[float] = (),
    ) -> bool:
        """Offer targets [rad] for some joints of one source; False (counted) if the message is bad.

        velocities / efforts are the message's other fields (sensor_msgs/JointState): they are not
        followed, but empty or one value per name, all finite, or the whole message is dropped.
        Only a message that sets at least one target feeds the source's watchdog.
        """
        if source not in SOURCE_JOINTS:
            raise ValueError(f"unknown command source {source!r}; expected one of {sorted(SOURCE_JOINTS)}")
        self._received[source] += 1
        self._note_command(now)
        allowed = SOURCE_JOINTS[source]
        names = list(names)
        values = np.asarray(positions, dtype=np.float64).reshape(-1)
        extra = {
            "velocities": np.asarray(velocities, dtype=np.float64).reshape(-1),
            "efforts": np.asarray(efforts, dtype=np.float64).reshape(-1),
        }
        if not names and values.shape[0] == 0:
            self.counters.rejected_empty += 1
            self._last_rejection = f"{source}: a message without joint targets"
            return False
        # One position per name; velocity/effort empty (ROS allows it) or one per name. A sender
        # whose arrays disagree is broken, so its positions are not followed either.
        lengths = {"positions": values.shape[0], **{k: v.shape[0] for k, v in extra.items() if v.shape[0]}}
        wrong = [(k, n) for k, n in lengths.items() if n != len(names)]
        if wrong:
            self.counters.rejected_bad_length += 1
            self._last_rejection = f"{source}: {len(names)} names but {wrong[0][1]} {wrong[0][0]}"
            return False
        problem = ""
        if len(set(names)) != len(names):
            problem = "duplicate joint names"
        else:
            foreign = [n for n in names if n not in allowed or n not in self.index]
            if foreign:
                problem = f"joints not driven by the {source} command: {foreign[:4]}"
        if problem:
            self.counters.rejected_bad_names += 1
            self._last_rejection = f"{source}: {problem}"
            return False
        for field_name, field_values in (("positions", values), *extra.items()):
            if not np.isfinite(field_values).all():
                bad = [n for n, v in zip(names, field_values, strict=True) if not np.isfinite(v)]
                self.counters.rejected_nonfinite += 1
                self._last_rejection = f"{source}: non-finite {field_name} for {bad[:4]}"
                return False
        slots = np.array([self.index[n] for n in names], dtype=np.int64)
        clipped = np.clip(values, self.limits.lower[slots], self.limits.upper[slots])
        # Pulling a target off the stop (into the margin band) is routine; outside the URDF range it is counted.
        outside = (values < self._urdf_lower[slots]) | (values > self._urdf_upper[slots])
        self.counters.targets_clamped += int(np.count_nonzero(outside))
        if not self._accepting():
            return True  # valid, but nothing is followed until the estop is known and released / damp reset
        self._targets[slots] = clipped
        self._watchdogs[source].feed(now)
        return True

    def submit_lower_body_command(self, command: Sequence[float], now: float) -> np.ndarray | None:
        """Validate and clip an 8-D lower-body command (LOWER_BODY_COMMAND_NAMES order).

        Returns the clipped command, or None (counted) if it holds NaN/inf or has the wrong size.
        An accepted command becomes the newest one for lower_body_command() and feeds the lower
        source's watchdog (the leg/waist targets a follower derives from it come through
        set_follower_targets(), which feeds nothing).
        """
        self._received[SOURCE_LOWER] += 1
        self._note_command(now)
        values = np.asarray(command, dtype=np.float64).reshape(-1)
        if values.shape[0] != 8:
            self.counters.rejected_bad_length += 1
            self._last_rejection = f"lower-body command has {values.shape[0]} values, expected 8"
            return None
        if not np.isfinite(values).all():
            self.counters.rejected_nonfinite += 1
            self._last_rejection = "lower-body command: non-finite values"
            return None
        clipped, mask = self.config.lower_body.apply(values)
        if mask.any():
            self.counters.lower_command_clamped += 1
        if self._accepting():
            self._lower_command = clipped
            self._watchdogs[SOURCE_LOWER].feed(now)
        return clipped

    def set_follower_targets(self, positions: np.ndarray) -> None:
        """Leg/waist targets (15,) [rad] derived from the lower-body command by a follower (the
        sim's kinematic mode). Stored only once a lower-body command has been accepted since the
        last (re)start; they never feed the watchdog: only the command itself does."""
        if not self._accepting() or self._watchdogs[SOURCE_LOWER].last_fresh is None:
            return
        slots = self._source_slots[SOURCE_LOWER]
        values = np.asarray(positions, dtype=np.float64).reshape(-1)
        if values.shape[0] != slots.shape[0] or not np.isfinite(values).all():
            self.counters.rejected_nonfinite += 1
            self._last_rejection = "lower-body follower: non-finite or mis-sized targets"
            return
        self._targets[slots] = np.clip(values, self.limits.lower[slots], self.limits.upper[slots])

    def lower_body_command(self) -> np.ndarray | None:
        """The lower-body command to follow now (8,), or None: the base stands still where it is.

        Only ACTIVE follows a command. In every other mode (STARTING, WAITING, HOLD, DAMP, ESTOP)
        the whole command is withheld (velocities, heading, height and torso alike), so the base
        freezes with the joints.
        """
        if self._lower_command is None or self._mode is not SafetyMode.ACTIVE or self._estop is not False:
            return None
        return self._lower_command.copy()

    def count_dropped(self, count: int) -> None:
        """Commands known lost on the way (e.g. a gap in the publisher's sequence numbers)."""
        if count > 0:
            self.counters.commands_dropped += int(count)

    def _accepting(self) -> bool:
        """Whether new targets are stored: the estop known and released (and, while STARTING, every
        matched estop publisher heard), no latched DAMP (unless auto_resume)."""
        if self._mode is SafetyMode.STARTING and self._estop_unheard():
            return False
        return self._estop is False and (not self._damp_latched or self.config.auto_resume)

    def _note_command(self, now: float) -> None:
        if self._first_command is None:
            self._first_command = now

    def set_estop_publishers(self, matched: int) -> None:
        """How many /psi0/estop publishers the subscription is matched with now (the node polls it).

        While more are matched than have been heard (a publisher whose latched value has not
        arrived), nothing is followed: STARTING lasts, ACTIVE becomes HOLD. With none matched,
        STARTING ends estop_wait_s after the first command (nobody holds an estop).
        """
        self._estop_matched = max(0, int(matched))
        self._estop_heard = min(self._estop_heard, self._estop_matched)

    def _estop_unheard(self) -> int:
        return max(0, self._estop_matched - self._estop_heard)

    def set_estop(self, engaged: bool, publishers: int | None = None) -> None:
        """An estop sample. `publishers`: the matched estop publisher count read when it arrived
        (None: the count last set). Whatever the count, a sample that says true engages."""
        if publishers is not None:
            self._estop_matched = max(int(publishers), 1)  # its own publisher is matched, whatever the count said
        self._estop_heard = self._estop_matched
        if engaged and not self._estop:
            self.counters.estops += 1
        if not engaged and self._estop:
            self._restart()  # release: start over from the measured pose, old targets forgotten
        self._estop = bool(engaged)

    def reset(self) -> None:
        """Operator reset of a latched DAMP: hold the measured pose and wait for fresh commands."""
        if self._damp_latched:
            self._restart()

    def _restart(self) -> None:
        self._damp_latched = False
        self._last_q = None
        self._targets[:] = np.nan
        self._lower_command = None
        for watchdog in self._watchdogs.values():
            watchdog.forget()

    # --- the control tick -----------------------------------------------------------------------
    def update(self, now: float, measured_q: np.ndarray, measured_dq: np.ndarray | None = None) -> JointCommand:
        """One control tick: the command to send now, given the measured joint positions (N,) [rad]
        and, where the robot reports them, velocities (N,) [rad/s] for the measured-state guards."""
        measured_q = np.asarray(measured_q, dtype=np.float64)
        state_ok = bool(np.isfinite(measured_q).all())
        if measured_dq is not None:
            measured_dq = np.asarray(measured_dq, dtype=np.float64)
            state_ok = state_ok and bool(np.isfinite(measured_dq).all())
        if not state_ok:
            self.counters.state_nonfinite += 1
        mode = self._next_mode(now)
        if mode is SafetyMode.ACTIVE and (not state_ok or self._estop_unheard()):
            # no trustworthy state, or an estop publisher whose value is not known: hold the commanded pose
            mode = SafetyMode.HOLD
        self._ticks[mode] += 1
        if mode in (SafetyMode.ESTOP, SafetyMode.DAMP):
            return self._damp(mode)
        if self._last_q is None:
            if not state_ok:
                return self._damp(mode)  # cannot start position control from an unknown pose
            self._last_q, _ = self.limits.clamp(measured_q)
            self._last_v[:] = 0.0
        self._mode = mode
        if mode is SafetyMode.ACTIVE:
            target, _ = self.limits.clamp(np.where(np.isnan(self._targets), self._last_q, self._targets))
            step = profile_step(
                target,
                self._last_q,
                self._last_v,
                self._velocity_caps(measured_dq if state_ok else None),
                self._max_acceleration,
                self.config.dt,
                self.limits.lower,
                self.limits.upper,
                measured_q if state_ok else None,  # brake for the room left from where the joint really is
            )
            self._last_q, self._last_v = step.q, step.v
            self._count_rate_limiting(now, step.limited & (np.abs(step.v) >= self._max_velocity - 1e-9))
        else:
            # WAITING / STARTING hold the pose measured at start; HOLD stops the ramp where it is
            # (the last commanded setpoint, velocity 0) rather than braking on toward a target
            # nobody re-commanded: from the 3 rad/s cap that braking ran on 0.75 rad at 6 rad/s^2.
            self._last_v[:] = 0.0
        command = JointCommand.position(self._last_q, self.kp, self.kd, dq=self._last_v)
        if not command.is_finite():
            self.counters.output_nonfinite += 1
            self._last_q = None
            return JointCommand.damping(self.damping_kd)
        return command

    def _velocity_caps(self, measured_dq: np.ndarray | None) -> np.ndarray:
        """Velocity caps (N,) [rad/s] for this tick: a joint measured faster than its cap (gravity
        pulling it along) gets its cap lowered by the excess, so the command brakes it instead of
        running ahead with it."""
        if measured_dq is None:
            return self._max_velocity
        excess = np.maximum(np.abs(measured_dq) - self._max_velocity, 0.0)
        return np.maximum(self._max_velocity - excess, 0.0)

    def _count_rate_limiting(self, now: float, cut: np.ndarray) -> None:
        """Count a joint once per stretch of more than RATE_LIMIT_GRACE_S at its velocity cap
        short of its target.

        A 30 Hz stream whose messages arrive bunched is cut for a tick or two: smoothing, not an
        intervention. A step jump, or a stream that asks for more speed than allowed, keeps a
        joint limited for longer and is counted once per stretch.
        """
        self._limited_since[~cut] = np.nan
        self._limited_since[cut & np.isnan(self._limited_since)] = now
        long = cut & (now - self._limited_since >= RATE_LIMIT_GRACE_S) & ~self._limit_counted
        self.counters.rate_limited += int(np.count_nonzero(long))
        self._limit_counted = (self._limit_counted | long) & cut

    def _damp(self, mode: SafetyMode) -> JointCommand:
        self._mode = mode
        self._last_q = None  # position control restarts from the measured pose, at rest
        self._last_v[:] = 0.0
        return JointCommand.damping(self.damping_kd)

    def _next_mode(self, now: float) -> SafetyMode:
        if self._estop:
            return SafetyMode.ESTOP
        if self._mode is SafetyMode.STARTING:
            if self._estop_unheard():
                return SafetyMode.STARTING  # a matched estop publisher's latched value is on its way
            if self._estop is None:
                if self._first_command is None or now - self._first_command < self.config.estop_wait_s:
                    return SafetyMode.STARTING
                self._estop = False  # no estop publisher matched in time: nobody is holding one
        states = [w.state(now) for w in self._watchdogs.values()]
        active = [s for s in states if s is not WatchdogState.WAITING]
        if self._damp_latched:
            if self.config.auto_resume and active and all(s is WatchdogState.FRESH for s in active):
                self._damp_latched = False
                self._last_q = None
                return SafetyMode.ACTIVE
            return SafetyMode.DAMP
        if not active:
            return SafetyMode.WAITING
        if WatchdogState.DAMP in active:
            self._damp_latched = True
            self.counters.watchdog_damps += 1
            self._watchdog_trip_age["damp"] = self._stalest_age(now)
            return SafetyMode.DAMP
        if WatchdogState.HOLD in active:
            if self._mode is not SafetyMode.HOLD:
                self.counters.watchdog_holds += 1
                self._watchdog_trip_age["hold"] = self._stalest_age(now)
            return SafetyMode.HOLD
        return SafetyMode.ACTIVE

    def _stalest_age(self, now: float) -> float:
        return max(age for w in self._watchdogs.values() if (age := w.age(now)) is not None)

    # --- reporting ------------------------------------------------------------------------------
    @property
    def mode(self) -> SafetyMode:
        return self._mode

    def status(self, now: float) -> SafetyStatus:
        activity = {f"ticks_{mode.value}": n for mode, n in self._ticks.items()}
        activity.update({f"commands_received_{source}": n for source, n in self._received.items()})
        activity["commands_received"] = sum(self._received.values())
        activity["estop_publishers"] = self._estop_matched
        activity["estop_publishers_unheard"] = self._estop_unheard()
        return SafetyStatus(
            mode=self._mode,
            estop=bool(self._estop),
            command_age_s={source: w.age(now) for source, w in self._watchdogs.items()},
            counters=self.counters.as_dict(),
            last_rejection=self._last_rejection,
            watchdog_trip_age_s=dict(self._watchdog_trip_age),
            activity=activity,
        )
