"""Scripted demonstrations: which seed each episode gets, and the expert run without ROS.

`psi0 sim demos` (psi0_ros.jobs.demos.record_demos) records one bag per episode
through the real graph; this module holds what needs no ROS: the per-episode seeds and bag
names, and run_expert_episode(), which drives the same ScriptedExpert through the same Bridge
and safety layer as robot_bridge_node does, but ticked on sim time as fast as the CPU allows
(no camera, no DDS): what the expert's success rate is measured with.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from psi0_ros import g1
from psi0_ros.sim.scene import LAYOUTS

DEMOS_HELP = "record scripted expert demonstrations into bags through the real recorder (one bag per episode)"
DEMO_SEED_STRIDE = 1  # episode i of a run with --seed S uses layout seed S + i
EXPERT_COMMAND_RATE_HZ = 30.0  # the teleop rig's and the policy's command rate
SETTLE_S = 1.0  # s of sim time after the expert finishes before the task check
MAX_EPISODE_S = 60.0  # s of sim time; an expert still running then is a failure
# `psi0 sim demos` runs the demo graph (on the sim's clock) at twice real time (sim.speed): 2 cores
# keep up (real-time factor ~1.9 measured) and its recordings replay to success as at 1x
DEMO_SPEED = 2.0


def episode_seed(seed: int, episode: int) -> int:
    """Layout seed of episode `episode` (0-based) of a demo run started with `seed`."""
    return seed + DEMO_SEED_STRIDE * episode


def bag_name(episode: int, seed: int) -> str:
    """Bag directory of one episode: demo_<episode>_seed_<layout seed>."""
    return f"demo_{episode:04d}_seed_{seed}"


@dataclass(frozen=True)
class ExpertOutcome:
    seed: int
    task: str
    success: bool  # the task check on the settled world
    expert_finished: bool  # False: the expert ran out of MAX_EPISODE_S
    sim_time_s: float
    wall_s: float
    side: str  # hand the expert used
    grasps: int  # welds the grasp assist made
    reach_error_m: float  # worst IK position error of the plan
    pushed: bool = False  # the base was pushed off the grasp stance (StancePush)

    def to_dict(self) -> dict:
        return asdict(self)


def run_expert_episode(
    seed: int,
    task: str = "can_to_basket",
    rate_hz: float = 250.0,
    grasp_assist: bool = False,
    plan_offset: tuple[float, float] = (0.0, 0.0),
    layout: str = "full",
    stance_push: float = 0.0,
) -> ExpertOutcome:
    """One expert episode on a fresh sim (camera off), bridge ticked on sim time. The fingers alone
    hold the object unless grasp_assist switches the labelled weld aid (psi0_ros.sim.grasp) on;
    stance_push: the probability of a StancePush (as `psi0 sim demos --stance-push` records it)."""
    import psi0_ros.sim  # noqa: F401  (MUJOCO_GL before mujoco loads)
    from psi0_ros.control import SafetyConfig
    from psi0_ros.robot.bridge import Bridge, BridgeConfig
    from psi0_ros.robot.sim_backend import SimBackend, SimBackendConfig
    from psi0_ros.sim.expert import ScriptedExpert, StancePush
    from psi0_ros.sim.simulator import SimConfig
    from psi0_ros.sim.tasks import get_task

    check = get_task(task)
    backend = SimBackend(
        SimBackendConfig(sim=SimConfig(seed=seed, layout=layout, grasp_assist=grasp_assist), camera_mode="off")
    )
    bridge = Bridge(
        backend,
        BridgeConfig(
            # the gains robot_bridge_node gives the sim (config/sim.yaml), so --measure scores what demos record
            SafetyConfig(control_rate_hz=rate_hz, auto_resume=True, gains=g1.BACKEND_GAINS["sim"]),
            lower_body_input="command",
        ),
    )
    sim = backend.sim
    clock = [0.0]
    bridge.clock = lambda: clock[0]  # the watchdog runs on sim time: no wall-clock pacing
    expert = ScriptedExpert(sim, task, plan_offset, StancePush.draw(stance_push, seed))
    every = max(1, round(rate_hz / EXPERT_COMMAND_RATE_HZ))
    started = time.perf_counter()
    tick = 0
    settle_ticks = int(round(SETTLE_S * rate_hz))
    while settle_ticks > 0 and clock[0] < MAX_EPISODE_S:
        if tick % every == 0:
            upper, lower = expert.command(sim.time)
            bridge.submit_upper(g1.UPPER_BODY_JOINTS, upper)
            bridge.submit_lower_command(lower)
        bridge.tick()
        clock[0] += 1.0 / rate_hz
        tick += 1
        if expert.done:
            settle_ticks -= 1
    backend.close()
    return ExpertOutcome(
        seed=seed,
        task=task,
        success=bool(check.check(sim)),
        expert_finished=expert.done,
        sim_time_s=sim.time,
        wall_s=time.perf_counter() - started,
        side=expert.side,
        grasps=sim.grasp.events if sim.grasp is not None else 0,
        reach_error_m=expert.reach_error,
        pushed=expert.pushed_at is not None,
    )


def replay_episode(
    episode_file: Path, seed: int, task: str = "can_to_basket", max_s: float = MAX_EPISODE_S, layout: str = "full"
) -> dict:
    """Replay a converted episode's recorded actions open loop on a fresh sim of layout `seed`.

    The bridge is built from config/sim.yaml by robot_bridge_node's own build_bridge (layout
    `seed`, camera off, no start-up wait) and ticked on sim time; row k of /action is commanded
    at k/30 s of simulated time, the policy's rate. Returns {success, sim_time_s, base_xy}: whether the recorded commands alone, without the
    expert's feedback, redo the task (they do when the recording's clock is the sim's)."""
    import psi0_ros.sim  # noqa: F401  (MUJOCO_GL before mujoco loads)
    from psi0_ros.constants import ACTION_LOWER_BODY, ACTION_NAMES, ACTION_UPPER_BODY, CONTROL_RATE_HZ
    from psi0_ros.data.hdf5 import read_action_state
    from psi0_ros.paths import config_path
    from psi0_ros.robot.params import build_bridge, load_yaml
    from psi0_ros.sim.tasks import get_task

    check = get_task(task)
    action, _ = read_action_state(Path(episode_file))
    params = {
        **load_yaml(config_path("sim.yaml")),
        "sim.seed": seed,
        "sim.layout": layout,
        "sim.camera_mode": "off",
        "safety.estop_wait_s": 0.0,
    }
    _, bridge = build_bridge(params)
    backend = bridge.backend
    sim = backend.sim
    bridge.clock = backend.sim_time
    upper_names = ACTION_NAMES[ACTION_UPPER_BODY]
    row, next_command = 0, 0.0
    success = False
    while sim.time < max_s and not success:
        if sim.time + 1e-9 >= next_command:
            a = action[min(row, len(action) - 1)]
            bridge.submit_upper(upper_names, a[ACTION_UPPER_BODY])
            bridge.submit_lower_command(a[ACTION_LOWER_BODY])
            row += 1
            next_command += 1.0 / CONTROL_RATE_HZ
        bridge.tick()
        success = bool(check.check(sim))
    base = sim.base_pose()[0]
    backend.close()
    return {"success": success, "sim_time_s": sim.time, "base_xy": [float(base[0]), float(base[1])]}


def measure_expert(
    episodes: int,
    seed: int = 0,
    task: str = "can_to_basket",
    grasp_assist: bool = False,
    log: Callable[[str], None] = print,
    plan_offset: tuple[float, float] = (0.0, 0.0),
    layout: str = "full",
    stance_push: float = 0.0,
) -> dict:
    """The expert's success rate over `episodes` layouts (seeds as `psi0 sim demos` uses them);
    plan_offset: the expert plans for the object displaced by (dx, dy) m (ScriptedExpert)."""
    outcomes = []
    for i in range(episodes):
        outcome = run_expert_episode(
            episode_seed(seed, i),
            task,
            grasp_assist=grasp_assist,
            plan_offset=plan_offset,
            layout=layout,
            stance_push=stance_push,
        )
        log(f"seed {outcome.seed}: {'success' if outcome.success else 'failure'} ({outcome.wall_s:.1f} s wall)")
        outcomes.append(outcome.to_dict())
    rate = sum(o["success"] for o in outcomes) / len(outcomes)
    log(
        f"expert success rate {rate:.2f} over {len(outcomes)} episodes (task {task}, seeds {seed}..{seed + episodes - 1})"
    )
    return {
        "task": task,
        "seed": seed,
        "grasp_assist": grasp_assist,
        "layout": layout,
        "plan_offset_m": list(plan_offset),
        "stance_push": stance_push,
        "episodes": outcomes,
        "success_rate": rate,
    }


def _offset(text: str) -> tuple[float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected DX,DY in metres, got {text!r}")
    return parts[0], parts[1]


def configure_demos(parser: argparse.ArgumentParser) -> None:
    """Arguments of `psi0 sim demos`."""
    parser.add_argument("--episodes", type=int, default=10, help="demonstrations to record (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the bags (one per episode)")
    parser.add_argument("--seed", type=int, default=0, help="layout seed of the first episode (episode i: seed + i)")
    parser.add_argument("--task", default="can_to_basket", help="task the expert performs (default can_to_basket)")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="full",
        help="ranges the object layouts are drawn from: full (anywhere on the table) or lab (each object "
        "+-5 cm around a fixed spot, docs/sim.md) (default full)",
    )
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), help="bag storage (default from config/record.yaml)")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="no ROS, no bags: run the expert on the sim as fast as it goes and report its success rate",
    )
    parser.add_argument(
        "--plan-offset",
        type=_offset,
        default=(0.0, 0.0),
        metavar="DX,DY",
        help="with --measure: the expert plans for the object displaced by DX,DY m (world x, y), as a "
        "policy that sees it only roughly; how far off a grasp may be",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEMO_SPEED,
        help=f"run the demo graph (on the sim's clock) at this multiple of real time (default {DEMO_SPEED:g}); "
        "stamps, rates and recorded commands are in sim time either way",
    )
    parser.add_argument(
        "--grasp-assist",
        action="store_true",
        help="switch the labelled grasp assist on (docs/sim.md); by default the fingers alone hold the object",
    )
    parser.add_argument(
        "--stance-push",
        type=float,
        default=0.0,
        metavar="P",
        help="in this fraction of the episodes the base is pushed 2-5 cm off the grasp stance once it has "
        "settled there, and the expert steps back: demonstrations of the recovery (docs/sim.md; default 0)",
    )
