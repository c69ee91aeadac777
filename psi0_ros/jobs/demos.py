"""`psi0 sim demos`: scripted demonstrations recorded like teleop sessions.

record_demos() runs one graph per episode, each in a fresh process (psi0_ros.jobs.child runs
record_episode() there): robot_bridge_node (sim backend, the episode's layout seed, grasp assist
off unless asked for), teleop_recorder, the bag recorder of `psi0 record`
(psi0_ros.nodes.bag_recorder_node) on config/record.yaml's topics, and the teleoperator
psi0_ros.nodes.sim_expert.SimExpertNode; the bag is DIR/demo_<episode>_seed_<seed>/, and
`psi0 convert DIR -o EPISODES` turns the bags into HDF5 episodes with the outcome from the task
check. The nodes (and rclpy) are imported only in the episode's process.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psi0_ros.constants import TOPIC_EPISODE_EVENTS, TOPIC_ESTOP
from psi0_ros.jobs import child
from psi0_ros.sim.demos import DEMO_SPEED, bag_name, episode_seed
from psi0_ros.sim.tasks import get_task

EPISODE_TIMEOUT_S = 900.0  # wall s before an episode is abandoned (a stuck graph)
PROCESS_TIMEOUT_S = EPISODE_TIMEOUT_S + 60.0  # wall s before the episode's process is killed


def bridge_parameters(
    seed: int,
    camera_size: tuple[int, int] | None = None,
    grasp_assist: bool = False,
    speed: float = 1.0,
    layout: str = "full",
) -> dict[str, Any]:
    """config/sim.yaml for one demo episode: tabletop (layout `seed` drawn from the `layout`
    ranges), kinematic base following the command, the sim's clock on /clock, run at `speed` times
    real time (sim.speed), every camera frame rendered (sim.camera_mode sync)."""
    from psi0_ros.paths import config_path
    from psi0_ros.robot.params import load_yaml

    params = load_yaml(config_path("sim.yaml"))
    params.update(
        {
            "backend": "sim",
            "sim.scene": "tabletop",
            "sim.seed": seed,
            "sim.layout": layout,
            "sim.base_mode": "kinematic",
            "lower_body_input": "command",
            "sim.grasp_assist": grasp_assist,
            # the whole demo graph runs on the sim's clock: the 30 Hz commands, their stamps and the
            # recorder's receive times are simulated time, so the converter's 30 Hz grid is the
            # sim's and a recorded velocity moves the base as far as when the policy replays it
            "publish_clock": True,
            "use_sim_time": True,
            "sim.speed": speed,
            # every frame rendered at its sim time (the loop waits for it): with the camera on its
            # own thread a busy machine drops frames, and the episode is flagged image_gap
            "sim.camera_mode": "sync",
        }
    )
    if camera_size is not None:
        params["sim.camera_width"], params["sim.camera_height"] = camera_size
    return params


def record_episode(
    bag: str | Path,
    episode: int,
    seed: int,
    task: str,
    topics: list[str],
    storage: str = "mcap",
    camera_size: tuple[int, int] | list[int] | None = None,
    grasp_assist: bool = False,
    speed: float = 1.0,
    layout: str = "full",
    stance_push: float = 0.0,
) -> dict[str, Any]:
    """Record one expert episode into the bag directory `bag` (must not exist); returns its outcome.
    stance_push: the probability of a StancePush in this episode (drawn from its layout seed).

    Runs the episode's graph in this process (record_demos() calls it in a child process)."""
    from rclpy.parameter import Parameter

    from psi0_ros.data.recorder import BagRecorder, RecorderError
    from psi0_ros.nodes.bag_recorder_node import BagRecorderNode
    from psi0_ros.nodes.robot_bridge_node import RobotBridgeNode
    from psi0_ros.nodes.runtime import spin_nodes
    from psi0_ros.nodes.sim_expert import SimExpertNode
    from psi0_ros.nodes.teleop_recorder_node import TeleopRecorderNode
    from psi0_ros.sim.expert import StancePush

    push = StancePush.draw(stance_push, seed)
    bag = Path(bag)
    if camera_size is not None:
        camera_size = (int(camera_size[0]), int(camera_size[1]))
    recorder = BagRecorder(bag, storage)
    recorder.open()
    result: dict[str, Any] = {"episode": episode, "seed": seed, "bag": str(bag), "task": task}
    result["stance_push"] = (
        None if push is None else {"distance_m": push.distance_m, "direction_rad": push.direction_rad}
    )
    started = time.monotonic()
    wanted = [t for t in topics if t != TOPIC_ESTOP]  # nobody presses the estop in a demo

    def stop(reason: str) -> None:
        result.setdefault("stopped_by", reason)

    def until() -> str | None:
        """spin_nodes polls this: the episode ends when it is finished, timed out or the bag failed."""
        if recorder.error is not None:
            stop(f"bag write failed: {recorder.error}")
        return result.get("stopped_by")

    def make_nodes() -> list:

        def finished(outcome: dict[str, Any]) -> None:
            result.update(outcome)
            stop("episode finished")

        overrides = [
            Parameter(k, value=v) for k, v in bridge_parameters(seed, camera_size, grasp_assist, speed, layout).items()
        ]
        bridge = RobotBridgeNode(parameter_overrides=overrides)
        on_sim_time = Parameter("use_sim_time", value=True)
        teleop = TeleopRecorderNode(
            [
                Parameter("task", value=get_task(task).instruction),
                Parameter("first_episode_index", value=episode),
                on_sim_time,
            ]
        )
        bag_node = BagRecorderNode(recorder, topics, [on_sim_time])

        def ready() -> bool:
            written = recorder.stats.messages
            return all(t in bag_node.recorded_topics for t in wanted) and all(
                written.get(t, 0) > 0 for t in wanted if t not in (TOPIC_EPISODE_EVENTS,)
            )

        expert = SimExpertNode(
            bridge.bridge.backend.sim,
            task,
            ready,
            lambda: recorder.stats.messages.get(TOPIC_EPISODE_EVENTS, 0),
            finished,
            push,
        )
        timer = threading.Timer(EPISODE_TIMEOUT_S, stop, args=(f"timed out after {EPISODE_TIMEOUT_S:g} s",))
        timer.daemon = True
        timer.start()
        result["_timer"] = timer
        return [bridge, teleop, bag_node, expert]

    try:
        spin_nodes(make_nodes, until=until)
    finally:
        timer = result.pop("_timer", None)
        if timer is not None:
            timer.cancel()
        try:
            recorder.close()
        except RecorderError as err:
            result["error"] = result.get("error") or f"bag: {err}"
    result["wall_s"] = time.monotonic() - started
    result["messages"] = dict(sorted(recorder.stats.messages.items()))
    dropped = {t: n for t, n in recorder.stats.dropped.items() if n}
    if dropped:
        result["error"] = result.get("error") or f"bag dropped messages: {dropped}"
    if result.get("success") is None and result.get("error") is None:
        result["error"] = f"episode did not finish ({result.get('stopped_by', 'interrupted')})"
    return result


def record_demos(
    out_dir: Path,
    episodes: int,
    seed: int = 0,
    task: str = "can_to_basket",
    storage: str | None = None,
    camera_size: tuple[int, int] | None = None,
    grasp_assist: bool = False,
    speed: float = DEMO_SPEED,
    log: Callable[[str], None] = print,
    layout: str = "full",
    stance_push: float = 0.0,
) -> dict[str, Any]:
    """Record `episodes` expert demos into out_dir (one bag each) and write out_dir/demos.json.

    Episode i uses layout seed episode_seed(seed, i) within the `layout` ranges; the graph runs on the sim's clock at `speed`
    times real time (nothing but the wall time changes: stamps, rates and the recorded commands are
    in sim time). Returns the summary written to demos.json:
    episodes (per-episode outcome, seed, bag, wall_s, messages), success_rate, seed, task.
    """
    from psi0_ros.data.config import load_config

    get_task(task)  # a bad name fails before anything starts
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    record = load_config().record
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i in range(episodes):
        layout_seed = episode_seed(seed, i)
        bag = out_dir / bag_name(i, layout_seed)
        if bag.exists():
            raise FileExistsError(f"{bag} exists; choose another --out or remove it")
        log(f"psi0 sim demos: episode {i + 1}/{episodes} (layout seed {layout_seed}) -> {bag}")
        kwargs = {
            "bag": str(bag),
            "episode": i,
            "seed": layout_seed,
            "task": task,
            "topics": list(record.topics),
            "storage": storage or record.storage,
            "camera_size": None if camera_size is None else list(camera_size),
            "grasp_assist": grasp_assist,
            "speed": speed,
            "layout": layout,
            "stance_push": stance_push,
        }
        identity = {"episode": i, "seed": layout_seed, "bag": str(bag), "task": task}
        result_file = out_dir / f".{bag.name}.json"
        result = child.run_episode(record_episode, kwargs, result_file, PROCESS_TIMEOUT_S, identity)
        result_file.unlink(missing_ok=True)
        outcome = (
            "error: " + result["error"] if result.get("error") else ("success" if result["success"] else "failure")
        )
        log(f"  {outcome} in {result.get('wall_s', 0.0):.1f} s wall ({result.get('sim_time_s', 0.0):.1f} s simulated)")
        results.append(result)
    successes = sum(1 for r in results if r.get("success"))
    summary = {
        "task": task,
        "seed": seed,
        "grasp_assist": grasp_assist,
        "speed": speed,
        "layout": layout,
        "stance_push": stance_push,
        "episodes": results,
        "success_rate": successes / len(results),
        "errors": sum(1 for r in results if r.get("error")),
    }
    (out_dir / "demos.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_demos(args: argparse.Namespace) -> int:
    """`psi0 sim demos`: record (or with --measure only score) the expert's episodes."""
    from psi0_ros.sim.demos import measure_expert

    try:
        get_task(args.task)
    except ValueError as err:
        print(f"psi0 sim demos: {err}", file=sys.stderr)
        return 2
    if args.episodes < 1:
        print(f"psi0 sim demos: --episodes must be >= 1, got {args.episodes}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.speed) and args.speed > 0.0):
        print(f"psi0 sim demos: --speed must be a finite number > 0, got {args.speed}", file=sys.stderr)
        return 2
    if not 0.0 <= args.stance_push <= 1.0:
        print(f"psi0 sim demos: --stance-push is a probability in [0, 1], got {args.stance_push}", file=sys.stderr)
        return 2
    if any(args.plan_offset) and not args.measure:
        print(
            "psi0 sim demos: --plan-offset only measures (with --measure); demonstrations plan exactly", file=sys.stderr
        )
        return 2
    if args.measure:
        summary = measure_expert(
            args.episodes,
            args.seed,
            args.task,
            grasp_assist=args.grasp_assist,
            plan_offset=args.plan_offset,
            layout=args.layout,
            stance_push=args.stance_push,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "expert.json").write_text(json.dumps(summary, indent=2) + "\n")
        return 0
    try:
        summary = record_demos(
            args.out,
            args.episodes,
            args.seed,
            args.task,
            args.storage,
            grasp_assist=args.grasp_assist,
            speed=args.speed,
            layout=args.layout,
            stance_push=args.stance_push,
        )
    except (FileExistsError, OSError, ValueError) as err:
        print(f"psi0 sim demos: {err}", file=sys.stderr)
        return 1
    n = len(summary["episodes"])
    print(
        f"psi0 sim demos: {n} episodes in {args.out}, success rate {summary['success_rate']:.2f}, "
        f"{summary['errors']} errors; convert with: psi0 convert {args.out} -o EPISODES"
    )
    return 1 if summary["errors"] else 0
