"""`psi0 bench sim`: simulator real-time factor with the head camera at 30 Hz, and bridge loop jitter.

realtime_factor: the simulated G1 (tabletop scene, kinematic lower body, the demo motion fed
through the bridge and its safety layer at the control rate) stepped as fast as it goes while the
640x480 head camera renders every 1/30 s of sim time, on this thread: sim seconds per wall
second. Baseline in the same run: the same without the camera (realtime_factor_no_camera), and
with the camera at 320x240, the size config/sim.yaml renders (realtime_factor_camera_320x240).

bridge_jitter_p99_ms: the bridge command loop paced in real time at --rate with the sim backend
as `psi0 sim` runs it (camera rendering on its own thread): 99th percentile of how late each tick
starts. Baselines in the same run: the same loop with the camera off, and with a backend that
does nothing (the pacing and safety-layer cost alone). The variants alternate over --rounds
rounds (the seconds are split between them) and each figure is the median over the rounds, so
load from other processes falls on all of them alike.

limit_overshoot_rad / speed_over_cap: a limit-to-limit sweep of every arm and hand joint at once
in physics mode (harness on, empty scene), through the bridge and its safety layer at --rate, with
targets 0.5 rad beyond each URDF limit sent at 30 Hz. Measured from the sim's own joint states
each tick: the worst distance past a URDF limit (rad; target 0.0) and the worst joint speed over
that joint's velocity cap (ratio; target <= 1.1), the larger of the sim's joint velocity and the
step the joint made over the tick; limit_overshoot_joint / speed_over_cap_joint name the worst
joints (per-joint figures are under limit_sweep.per_joint).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

HELP = "sim real-time factor with the head camera at 30 Hz, and bridge command-loop jitter (p99 ms)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sim-seconds", type=float, default=6.0, help="simulated seconds per variant, all rounds")
    parser.add_argument("--loop-seconds", type=float, default=6.0, help="wall seconds per jitter variant, all rounds")
    parser.add_argument("--rate", type=float, default=250.0, help="bridge control rate [Hz] (config/sim.yaml: 250)")
    parser.add_argument("--camera-rate", type=float, default=30.0, help="head camera frames per sim second")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the medians are reported")


def _bridge(camera_mode: str, rate: float, camera_rate: float, size: tuple[int, int] = (640, 480)):
    from psi0_ros.control import SafetyConfig
    from psi0_ros.robot.bridge import Bridge, BridgeConfig
    from psi0_ros.robot.sim_backend import SimBackend, SimBackendConfig

    backend = SimBackend(
        SimBackendConfig(
            camera_mode=camera_mode, camera_rate_hz=camera_rate, camera_width=size[0], camera_height=size[1]
        )
    )
    config = BridgeConfig(SafetyConfig(control_rate_hz=rate, auto_resume=True), lower_body_input="command")
    return Bridge(backend, config)


def realtime_factor(
    camera: bool, sim_seconds: float, rate: float, camera_rate: float, size: tuple[int, int] = (640, 480)
) -> dict[str, float]:
    """Free-running sim + bridge ticks with the demo motion; camera rendered synchronously."""
    from psi0_ros import g1
    from psi0_ros.sim.demo import DemoScript

    bridge = _bridge("sync" if camera else "off", rate, camera_rate, size)
    bridge.backend.start()
    demo = DemoScript()
    sim_clock = [0.0]
    bridge.clock = lambda: sim_clock[0]  # the watchdog runs on sim time here: no wall-clock pacing
    ticks = int(round(sim_seconds * rate))
    command_every = max(1, int(round(rate / 30.0)))  # the policy's 30 Hz
    started = time.perf_counter()
    for tick in range(ticks):
        if tick % command_every == 0:
            upper, lower = demo.sample(sim_clock[0])
            bridge.submit_upper(g1.UPPER_BODY_JOINTS, upper)
            bridge.submit_lower_command(lower)
        bridge.tick()
        sim_clock[0] += 1.0 / rate
    wall = time.perf_counter() - started
    stats = bridge.backend.stats()
    bridge.backend.close()
    return {"rtf": stats["sim_time_s"] / wall, "frames": stats.get("camera_frames", 0.0), "wall_s": wall}


def loop_jitter(camera_mode: str | None, seconds: float, rate: float, camera_rate: float) -> dict[str, float]:
    """Run the paced bridge loop for `seconds`; camera_mode None = a backend that does nothing."""
    from psi0_ros import g1
    from psi0_ros.robot.backend import RobotBackend, RobotState

    if camera_mode is None:

        class NullBackend(RobotBackend):
            name = "null"

            def __init__(self) -> None:
                q = g1.table("default")
                self.state = RobotState(
                    0.0,
                    q,
                    np.zeros(43),
                    np.zeros(43),
                    np.array([1.0, 0, 0, 0]),
                    np.zeros(3),
                    np.array([0.0, 0.0, 9.81]),
                )

            def read_state(self) -> RobotState:
                return self.state

            def write_command(self, command) -> None:
                pass

        from psi0_ros.control import SafetyConfig
        from psi0_ros.robot.bridge import Bridge, BridgeConfig

        bridge = Bridge(NullBackend(), BridgeConfig(SafetyConfig(control_rate_hz=rate)))
    else:
        bridge = _bridge(camera_mode, rate, camera_rate)
    bridge.start()
    time.sleep(seconds)
    timing = bridge.timing()
    stats = bridge.backend.stats()
    bridge.stop()
    return {
        "p50": timing.jitter_p50_ms,
        "p99": timing.jitter_p99_ms,
        "max": timing.jitter_max_ms,
        "rate_hz": timing.rate_hz,
        "overruns": float(timing.overruns),
        "frames": stats.get("camera_frames", 0.0),
    }


def sweep_groups() -> list[tuple[str, ...]]:
    """The joints swept together: each arm and hand joint with its mirror image (14 groups)."""
    from psi0_ros import g1

    pairs = zip(g1.LEFT_ARM_JOINTS + g1.LEFT_HAND_JOINTS, g1.RIGHT_ARM_JOINTS + g1.RIGHT_HAND_JOINTS, strict=True)
    return [tuple(pair) for pair in pairs]


def limit_sweep(groups: list[tuple[str, ...]] | None = None, rate: float = 250.0) -> dict[str, Any]:
    """Sweep each group of joints limit to limit in physics mode and measure what the sim reports.

    Physics base with the harness, empty scene, the bridge and its safety layer at `rate` with
    the default SafetyConfig (an explicit estop release first). For each group in turn the 30 Hz
    upper-body command asks for 0.5 rad beyond the upper URDF limit, then beyond the lower one,
    then the default pose, each for long enough to get there at the velocity and acceleration
    bounds plus 0.4 s; the other joints hold their default pose. Every tick reads the sim's own
    joint state. Returns the worst overshoot past a URDF limit [rad] (0.0 if none), the worst
    speed / velocity cap (speed: the larger of |dq| and the tick's |step| / dt), the joints where they happened, and how much of each range was covered.
    """
    from psi0_ros import g1
    from psi0_ros.control import SafetyConfig
    from psi0_ros.robot.bridge import Bridge, BridgeConfig
    from psi0_ros.robot.sim_backend import SimBackend, SimBackendConfig
    from psi0_ros.sim.simulator import SimConfig

    groups = sweep_groups() if groups is None else groups
    sim = SimConfig(base_mode="physics", scene="empty", harness=True)
    backend = SimBackend(SimBackendConfig(sim=sim, camera_mode="off"))
    bridge = Bridge(
        backend,
        BridgeConfig(SafetyConfig(control_rate_hz=rate, gains=g1.BACKEND_GAINS["sim"]), lower_body_input="targets"),
    )
    sim_clock = [0.0]
    bridge.clock = lambda: sim_clock[0]
    bridge.set_estop(False)  # an explicit release, as an operator's latched /psi0/estop false
    safety = bridge.safety
    caps = np.minimum(safety.limits.velocity, safety.config.max_step * rate)  # rad/s, per joint (43,)
    default = g1.table("default", g1.UPPER_BODY_JOINTS)
    command_every = max(1, int(round(rate / 30.0)))
    over: dict[str, float] = {}
    ratio: dict[str, float] = {}
    coverage: dict[str, float] = {}
    for joints in groups:
        index = np.array([g1.JOINT_INDEX[n] for n in joints])
        slots = np.array([g1.UPPER_BODY_JOINTS.index(n) for n in joints])
        lower, upper = g1.table("lower", joints), g1.table("upper", joints)
        cap = caps[index]
        travel_s = float(np.max((upper - lower) / cap + cap / safety.config.max_acceleration)) + 0.4
        seen_low, seen_high = np.full(len(joints), np.inf), np.full(len(joints), -np.inf)
        worst_over, worst_ratio = np.full(len(joints), -np.inf), np.zeros(len(joints))
        previous = backend.sim.joint_state()[0][index]
        for goal in (upper + 0.5, lower - 0.5, default[slots]):
            targets = default.copy()
            targets[slots] = goal
            for tick in range(int(round(travel_s * rate))):
                if tick % command_every == 0:
                    bridge.submit_upper(g1.UPPER_BODY_JOINTS, targets)
                bridge.tick()
                sim_clock[0] += 1.0 / rate
                q, dq, _ = backend.sim.joint_state()
                q, dq = q[index], dq[index]
                worst_over = np.maximum(worst_over, np.maximum(q - upper, lower - q))
                # the sim's joint velocity, and the step the joint made over this tick
                speed = np.maximum(np.abs(dq), np.abs(q - previous) * rate)
                worst_ratio = np.maximum(worst_ratio, speed / cap)
                previous = q
                seen_low, seen_high = np.minimum(seen_low, q), np.maximum(seen_high, q)
        for i, name in enumerate(joints):
            over[name], ratio[name] = float(worst_over[i]), float(worst_ratio[i])
            coverage[name] = float((seen_high[i] - seen_low[i]) / (upper[i] - lower[i]))
    backend.close()
    worst_joint = max(over, key=over.__getitem__)
    fastest_joint = max(ratio, key=ratio.__getitem__)
    return {
        "limit_overshoot_rad": max(0.0, over[worst_joint]),
        "limit_overshoot_joint": worst_joint,
        "limit_closest_rad": over[worst_joint],  # signed: < 0 = stayed that far inside
        "speed_over_cap": ratio[fastest_joint],
        "speed_over_cap_joint": fastest_joint,
        "sweep_coverage_min": min(coverage.values()),
        "per_joint": {n: {"overshoot_rad": over[n], "speed_over_cap": ratio[n], "coverage": coverage[n]} for n in over},
        "sim_seconds": sim_clock[0],
        "interventions": safety.counters.as_dict(),
        "max_acceleration": safety.config.max_acceleration,
    }


def _median(values: list[float]) -> float:
    return float(np.median(values))


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psi0_ros.sim  # noqa: F401  (MUJOCO_GL=egl before mujoco loads)

    # Alternate the variants in rounds, so load from other processes hits them alike; medians.
    rtf: dict[str, list[float]] = {"camera": [], "no_camera": [], "camera_320x240": []}
    frames: list[float] = []
    jitter: dict[str, list[dict[str, float]]] = {"thread": [], "off": [], "null": []}
    for _ in range(args.rounds):
        with_camera = realtime_factor(True, args.sim_seconds / args.rounds, args.rate, args.camera_rate)
        rtf["camera"].append(with_camera["rtf"])
        frames.append(with_camera["frames"])
        rtf["no_camera"].append(
            realtime_factor(False, args.sim_seconds / args.rounds, args.rate, args.camera_rate)["rtf"]
        )
        small = realtime_factor(True, args.sim_seconds / args.rounds, args.rate, args.camera_rate, (320, 240))
        rtf["camera_320x240"].append(small["rtf"])
        for variant in jitter:
            mode = None if variant == "null" else variant
            jitter[variant].append(loop_jitter(mode, args.loop_seconds / args.rounds, args.rate, args.camera_rate))
    p99 = {variant: _median([r["p99"] for r in runs]) for variant, runs in jitter.items()}
    sweep = limit_sweep(rate=args.rate)
    return {
        "limit_overshoot_rad": sweep["limit_overshoot_rad"],
        "limit_overshoot_joint": sweep["limit_overshoot_joint"],
        "speed_over_cap": sweep["speed_over_cap"],
        "speed_over_cap_joint": sweep["speed_over_cap_joint"],
        "limit_sweep": sweep,
        "realtime_factor": _median(rtf["camera"]),
        "realtime_factor_no_camera": _median(rtf["no_camera"]),
        "camera_cost_ratio": _median(rtf["no_camera"]) / _median(rtf["camera"]),
        "realtime_factor_camera_320x240": _median(rtf["camera_320x240"]),
        "camera_320x240_speedup": _median(rtf["camera_320x240"]) / _median(rtf["camera"]),
        "camera_fps_sim": sum(frames) / args.sim_seconds,
        "bridge_jitter_p99_ms": p99["thread"],
        "bridge_jitter_p50_ms": _median([r["p50"] for r in jitter["thread"]]),
        "bridge_jitter_max_ms": max(r["max"] for r in jitter["thread"]),
        "bridge_rate_hz": _median([r["rate_hz"] for r in jitter["thread"]]),
        "bridge_overruns": sum(r["overruns"] for r in jitter["thread"]),
        "bridge_camera_fps": sum(r["frames"] for r in jitter["thread"]) / args.loop_seconds,
        "bridge_jitter_p99_ms_no_camera": p99["off"],
        "bridge_jitter_p99_ms_null_backend": p99["null"],
        "bridge_jitter_over_null_backend": p99["thread"] / max(p99["null"], 1e-6),
        "rounds": {
            "realtime_factor": rtf["camera"],
            "realtime_factor_no_camera": rtf["no_camera"],
            "realtime_factor_camera_320x240": rtf["camera_320x240"],
            "bridge_jitter_p99_ms": {v: [r["p99"] for r in runs] for v, runs in jitter.items()},
        },
        "settings": {
            "sim_seconds": args.sim_seconds,
            "loop_seconds": args.loop_seconds,
            "rounds": args.rounds,
            "control_rate_hz": args.rate,
            "camera_rate_hz": args.camera_rate,
            "scene": "tabletop",
            "base_mode": "kinematic",
        },
    }
