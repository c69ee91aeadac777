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
    return {
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
