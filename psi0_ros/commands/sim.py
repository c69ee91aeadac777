"""`psi0 sim`: the simulated G1 behind robot_bridge_node as a live ROS 2 graph, in one process.

Publishes /joint_states, /imu/data, /camera/ego/image_raw + camera_info and /diagnostics and
accepts /psi0/upper_body_command, /psi0/lower_body_command (kinematic mode) or
/psi0/lower_body_targets (physics mode) and /psi0/estop, like the robot. --demo adds
sim_demo_node, which drives the robot through those same topics. When it ends (--duration or
Ctrl-C) it prints what happened: sim time and real-time factor, loop timing, messages published
and received, safety interventions, and the task check on the final scene.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

NAME = "sim"
HELP = "run the simulated G1 behind robot_bridge_node as a live ROS 2 graph (--demo: scripted motion)"


def configure(parser: argparse.ArgumentParser) -> None:
    from psi0_ros.sim.scene import LAYOUTS

    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="seconds to run (default: until Ctrl-C)"
    )
    parser.add_argument("--demo", action="store_true", help="also run sim_demo_node: wave, grip, squat, walk")
    parser.add_argument("--scene", choices=("tabletop", "empty"), help="scene (default from the config)")
    parser.add_argument("--seed", type=int, help="object layout seed (default from the config)")
    parser.add_argument("--layout", choices=LAYOUTS, help="layout ranges (default from the config)")
    parser.add_argument("--mode", choices=("kinematic", "physics"), help="lower-body mode (default from the config)")
    parser.add_argument("--task", default="can_to_basket", help="task whose success is reported at the end")
    parser.add_argument("--no-camera", action="store_true", help="do not render the head camera")
    parser.add_argument("--config", type=Path, help="robot_bridge_node parameter file (default: config/sim.yaml)")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    from psi0_ros.sim.demos import DEMOS_HELP, configure_demos

    actions = parser.add_subparsers(dest="action", metavar="{demos}")
    configure_demos(actions.add_parser("demos", help=DEMOS_HELP, description=DEMOS_HELP))


def sim_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """config/sim.yaml (or --config) with the command-line choices applied."""
    from psi0_ros.paths import config_path
    from psi0_ros.robot.params import load_yaml

    params = load_yaml(args.config or config_path("sim.yaml"))
    params["backend"] = "sim"
    if args.scene:
        params["sim.scene"] = args.scene
    if args.seed is not None:
        params["sim.seed"] = args.seed
    if args.layout is not None:
        params["sim.layout"] = args.layout
    if args.mode:
        params["sim.base_mode"] = args.mode
    if args.no_camera:
        params["sim.camera_mode"] = "off"
    # Only the kinematic base follows the 8-D command itself; physics needs leg targets (lower_body_node).
    params["lower_body_input"] = "command" if params.get("sim.base_mode", "kinematic") == "kinematic" else "targets"
    return params


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "demos":
        from psi0_ros.jobs.demos import run_demos

        return run_demos(args)
    from psi0_ros.sim.tasks import get_task

    task = get_task(args.task)  # a bad name fails before anything starts
    if args.duration is not None and not args.duration > 0:
        raise SystemExit(f"psi0 sim: --duration must be > 0 s, got {args.duration}")
    params = sim_parameters(args)

    from rclpy.parameter import Parameter

    from psi0_ros.nodes.robot_bridge_node import RobotBridgeNode
    from psi0_ros.nodes.runtime import spin_nodes

    built: dict[str, Any] = {}

    def make_nodes() -> list[Any]:
        overrides = [Parameter(name, value=value) for name, value in params.items()]
        built["bridge"] = RobotBridgeNode(parameter_overrides=overrides)
        if args.demo:
            from psi0_ros.nodes.sim_demo_node import SimDemoNode

            kinematic = params["lower_body_input"] == "command"
            built["demo"] = SimDemoNode(parameter_overrides=[Parameter("lower_body", value=kinematic)])
        _print_start(params, args, task.instruction)
        return list(built.values())

    progress = _Progress(args.duration, built)
    stopped: list[str] = []
    try:
        status = spin_nodes(
            make_nodes,
            until=progress.update,
            after_spin=lambda reason: stopped.append(reason),
            prog=f"psi0 {NAME}",
        )
    finally:
        progress.close()
    bridge_node = built.get("bridge")
    if bridge_node is None:
        return 1
    # spin_nodes destroyed the nodes: the bridge loop is stopped and the world is ours to inspect.
    interrupted = bool(stopped) and stopped[0] in ("SIGINT", "SIGTERM")
    summary = summarise(bridge_node, built.get("demo"), task, interrupted)
    print(format_summary(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["loop_error"] or status else 0


def _print_start(params: dict[str, Any], args: argparse.Namespace, instruction: str) -> None:
    until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
    print(
        f"psi0 sim: G1 in the {params['sim.scene']} scene (seed {params['sim.seed']}), {params['sim.base_mode']} "
        f"lower body, camera {params['sim.camera_mode']}, {'with the demo, ' if args.demo else ''}running {until}."
    )
    print(f"  task for the final check: {args.task} ({instruction!r})", flush=True)


class _Progress:
    """The progress bar while spinning, and the --duration stop (spin_nodes' `until`)."""

    def __init__(self, duration: float | None, built: dict[str, Any]) -> None:
        self._duration, self._built = duration, built
        self._bar: Any = None
        self._start = self._last = 0.0

    def update(self) -> str | None:
        from tqdm import tqdm

        now = time.monotonic()
        if self._bar is None:
            self._bar = tqdm(total=self._duration, unit="s", bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s {postfix}")
            self._start = self._last = now
        if self._duration is not None and now - self._start >= self._duration:
            return f"{self._duration:g} s elapsed"
        bridge = self._built["bridge"].bridge
        if bridge.error is not None:
            return "the command loop stopped"
        if now - self._last >= 1.0:
            snapshot = bridge.snapshot()
            sim_time = snapshot.backend.get("sim_time_s", 0.0)
            rtf = sim_time / snapshot.timing.wall_s if snapshot.timing.wall_s > 0 else 0.0
            self._bar.set_postfix_str(f"sim {sim_time:.1f} s, rtf {rtf:.2f}, {snapshot.safety.mode.value}")
            self._bar.update(now - self._last)
            self._last = now
        return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def summarise(bridge_node: Any, demo: Any, task: Any, interrupted: bool) -> dict[str, Any]:
    """What really happened, from the bridge's and nodes' own counters."""
    snapshot = bridge_node.bridge.snapshot()
    timing, safety, backend = snapshot.timing, snapshot.safety, snapshot.backend
    sim = bridge_node.bridge.backend.sim
    sim_time = float(backend.get("sim_time_s", 0.0))
    position, _ = sim.base_pose()
    return {
        "interrupted": interrupted,
        "loop_error": None if bridge_node.bridge.error is None else repr(bridge_node.bridge.error),
        "wall_s": timing.wall_s,
        "sim_time_s": sim_time,
        "realtime_factor": sim_time / timing.wall_s if timing.wall_s > 0 else 0.0,
        "control_ticks": timing.ticks,
        "control_rate_hz": timing.rate_hz,
        "control_jitter_p99_ms": timing.jitter_p99_ms,
        "control_overruns": timing.overruns,
        "camera_frames_rendered": int(backend.get("camera_frames", 0)),
        "camera_frames_skipped": int(backend.get("camera_frames_skipped", 0)),
        "camera_render_ms": backend.get("camera_render_ms"),
        "published": dict(sorted(bridge_node.published.items())),
        "received": dict(sorted(bridge_node.received.items())),
        "demo_published": dict(sorted(demo.published.items())) if demo is not None else {},
        "safety_mode": safety.mode.value,
        "interventions": safety.counters,
        "interventions_total": sum(safety.counters.values()),
        "base_position_m": [round(float(v), 4) for v in position],
        "task": task.name,
        "task_success": task.check(sim),  # None: the scene has no objects for this task
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        "",
        f"psi0 sim summary{' (interrupted)' if s['interrupted'] else ''}:",
        f"  time: {s['sim_time_s']:.2f} s simulated in {s['wall_s']:.2f} s wall (real-time factor {s['realtime_factor']:.2f})",
        f"  command loop: {s['control_ticks']} ticks at {s['control_rate_hz']:.1f} Hz, "
        f"jitter p99 {s['control_jitter_p99_ms']:.2f} ms, overruns {s['control_overruns']}",
    ]
    if s["camera_frames_rendered"]:
        lines.append(
            f"  head camera: {s['camera_frames_rendered']} frames rendered ({s['camera_render_ms']:.1f} ms each), "
            f"{s['camera_frames_skipped']} skipped"
        )
    published = ", ".join(f"{topic} {count}" for topic, count in s["published"].items()) or "nothing"
    received = ", ".join(f"{topic} {count}" for topic, count in s["received"].items()) or "nothing"
    lines += [f"  published: {published}", f"  received: {received}"]
    counters = ", ".join(f"{name} {count}" for name, count in s["interventions"].items() if count) or "none"
    lines.append(f"  safety: mode {s['safety_mode']}, {s['interventions_total']} interventions ({counters})")
    x, y, z = s["base_position_m"]
    lines.append(f"  robot: pelvis at x {x:+.3f} y {y:+.3f} z {z:.3f} m")
    outcome = {True: "success", False: "not achieved", None: "not checked (the scene lacks its objects)"}
    lines.append(f"  task {s['task']}: {outcome[s['task_success']]}")
    if s["loop_error"]:
        lines.append(f"  ERROR: the command loop stopped: {s['loop_error']}")
    return "\n".join(lines)
