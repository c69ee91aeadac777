"""sim_expert_node and `psi0 sim demos`: scripted demonstrations recorded like teleop sessions.

SimExpertNode plays the teleoperator of one episode: it publishes psi0_ros.sim.expert's commands
on /psi0/upper_body_command and /psi0/lower_body_command at 30 Hz (a standing hold until the
recording runs), and presses the teleop recorder's buttons through its real services: ~/start
once the bag records every stream, ~/stop when the expert is done and the world has settled,
then ~/mark_success with the task check (psi0_ros.sim.tasks) on the simulated world. It is
privileged: it reads sim time and object poses from the G1Sim of the robot_bridge_node in the
same process, so the expert keeps pace with the simulation however fast it runs.

record_demos() runs one graph per episode, each in a fresh process (`python -m
psi0_ros.nodes.sim_expert_node`: rclpy's context initialises once per process, and a fresh DDS
participant per episode keeps one episode's teardown from touching the next): robot_bridge_node
(sim backend, the episode's layout seed, grasp assist off unless asked for), teleop_recorder, the bag recorder of
`psi0 record` (psi0_ros.nodes.bag_recorder_node) on config/record.yaml's topics, and
SimExpertNode; the bag is DIR/demo_<episode>_seed_<seed>/, and `psi0 convert DIR -o EPISODES` turns the bags into HDF5
episodes with the outcome from the task check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool, Trigger

from psi0_ros import g1
from psi0_ros.constants import (
    TOPIC_EPISODE_EVENTS,
    TOPIC_ESTOP,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_UPPER_BODY_COMMAND,
    relative_topic,
)
from psi0_ros.control.lower_body import LOWER_BODY_INDEX
from psi0_ros.msg import LowerBodyCommand
from psi0_ros.nodes.qos import CONTROL
from psi0_ros.sim.demos import DEMO_SPEED, EXPERT_COMMAND_RATE_HZ, SETTLE_S, bag_name, episode_seed
from psi0_ros.sim.expert import ScriptedExpert
from psi0_ros.sim.simulator import G1Sim
from psi0_ros.sim.tasks import get_task

NODE_NAME = "sim_expert"
TELEOP_SERVICES = "/teleop_recorder"  # the teleop recorder node's name: its ~/ services live here
EVENTS_PER_EPISODE = 3  # START, STOP and SUCCESS/FAILURE
FLUSH_TIMEOUT_S = 10.0  # wall s to wait for the bag to store the last events
EPISODE_TIMEOUT_S = 900.0  # wall s before an episode is abandoned (a stuck graph)


def lower_body_message(lower: np.ndarray, stamp: Any) -> LowerBodyCommand:
    msg = LowerBodyCommand()
    msg.header.stamp = stamp
    value = {name: float(lower[i]) for name, i in LOWER_BODY_INDEX.items()}
    msg.vx, msg.vy, msg.vyaw, msg.target_yaw = value["vx"], value["vy"], value["vyaw"], value["target_yaw"]
    msg.torso_roll, msg.torso_pitch, msg.torso_yaw = value["torso_roll"], value["torso_pitch"], value["torso_yaw"]
    msg.height = value["torso_height"]
    return msg


class SimExpertNode(Node):
    """One scripted episode: hold, START, expert, settle, STOP, SUCCESS/FAILURE, then on_finished."""

    def __init__(
        self,
        sim: G1Sim,
        task: str,
        recording_ready: Callable[[], bool],
        events_recorded: Callable[[], int],
        on_finished: Callable[[dict[str, Any]], None],
    ) -> None:
        super().__init__(NODE_NAME, parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.sim = sim
        self.task = get_task(task)
        self.expert = ScriptedExpert(sim, task)
        self._recording_ready = recording_ready
        self._events_recorded = events_recorded
        self._on_finished = on_finished
        self._upper_pub = self.create_publisher(JointState, relative_topic(TOPIC_UPPER_BODY_COMMAND), CONTROL)
        self._lower_pub = self.create_publisher(LowerBodyCommand, relative_topic(TOPIC_LOWER_BODY_COMMAND), CONTROL)
        self._start = self.create_client(Trigger, f"{TELEOP_SERVICES}/start")
        self._stop = self.create_client(Trigger, f"{TELEOP_SERVICES}/stop")
        self._mark = self.create_client(SetBool, f"{TELEOP_SERVICES}/mark_success")
        self._hold_lower = np.zeros(8)
        self._hold_lower[LOWER_BODY_INDEX["torso_height"]] = float(sim.base_pose()[0][2])
        self._command = (self.expert.default_upper.copy(), self._hold_lower.copy())
        self.state = "waiting"
        self._future: Any = None
        self._done_sim_time = 0.0
        self._deadline = 0.0
        self.outcome: dict[str, Any] = {"task": task, "success": None, "error": None}
        self.create_timer(1.0 / EXPERT_COMMAND_RATE_HZ, self._tick)

    def _publish(self) -> None:
        upper, lower = self._command
        stamp = self.get_clock().now().to_msg()
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(g1.UPPER_BODY_JOINTS)
        joints.position = upper.tolist()
        self._upper_pub.publish(joints)
        self._lower_pub.publish(lower_body_message(lower, stamp))

    def _response(self) -> Any | None:
        """The pending service call's response once it arrived (None while waiting)."""
        if self._future is None or not self._future.done():
            return None
        response, self._future = self._future.result(), None
        if response is None or not response.success:
            raise RuntimeError(f"teleop recorder refused ({self.state}): {getattr(response, 'message', 'no reply')}")
        return response

    def _tick(self) -> None:
        try:
            self._advance()
        except RuntimeError as err:
            self.outcome["error"] = str(err)
            self._finish()
        if self.state != "finished":
            self._publish()

    def _advance(self) -> None:
        if self.state == "waiting":
            if self._recording_ready() and self._start.service_is_ready():
                self._future = self._start.call_async(Trigger.Request())
                self.state = "starting"
        elif self.state == "starting":
            if self._response() is not None:
                self.state = "running"
        elif self.state == "running":
            self._command = self.expert.command(self.sim.time)
            if self.expert.done:
                self._done_sim_time = self.sim.time
                self.state = "settling"
        elif self.state == "settling":
            if self.sim.time - self._done_sim_time >= SETTLE_S:
                self.outcome["success"] = bool(self.task.check(self.sim))
                self.outcome["sim_time_s"] = self.sim.time
                self.outcome["grasps"] = self.sim.grasp.events if self.sim.grasp is not None else 0
                self._future = self._stop.call_async(Trigger.Request())
                self.state = "stopping"
        elif self.state == "stopping":
            if self._response() is not None:
                self._future = self._mark.call_async(SetBool.Request(data=self.outcome["success"]))
                self.state = "marking"
        elif self.state == "marking":
            if self._response() is not None:
                self._deadline = time.monotonic() + FLUSH_TIMEOUT_S
                self.state = "flushing"
        elif self.state == "flushing":
            if self._events_recorded() >= EVENTS_PER_EPISODE or time.monotonic() > self._deadline:
                self._finish()

    def _finish(self) -> None:
        if self.state != "finished":
            self.state = "finished"
            self._on_finished(self.outcome)


def bridge_parameters(
    seed: int, camera_size: tuple[int, int] | None = None, grasp_assist: bool = False, speed: float = 1.0
) -> dict[str, Any]:
    """config/sim.yaml for one demo episode: tabletop, kinematic base following the command, the
    sim's clock on /clock, run at `speed` times real time (sim.speed)."""
    from psi0_ros.paths import config_path
    from psi0_ros.robot.params import load_yaml

    params = load_yaml(config_path("sim.yaml"))
    params.update(
        {
            "backend": "sim",
            "sim.scene": "tabletop",
            "sim.seed": seed,
            "sim.base_mode": "kinematic",
            "lower_body_input": "command",
            "sim.grasp_assist": grasp_assist,
            # the whole demo graph runs on the sim's clock: the 30 Hz commands, their stamps and the
            # recorder's receive times are simulated time, so the converter's 30 Hz grid is the
            # sim's and a recorded velocity moves the base as far as when the policy replays it
            "publish_clock": True,
            "use_sim_time": True,
            "sim.speed": speed,
        }
    )
    if camera_size is not None:
        params["sim.camera_width"], params["sim.camera_height"] = camera_size
    return params


def record_episode(
    bag: Path,
    episode: int,
    seed: int,
    task: str,
    topics: list[str],
    storage: str = "mcap",
    camera_size: tuple[int, int] | None = None,
    grasp_assist: bool = False,
    speed: float = 1.0,
) -> dict[str, Any]:
    """Record one expert episode into the bag directory `bag` (must not exist); returns its outcome."""
    from psi0_ros.data.recorder import BagRecorder, RecorderError
    from psi0_ros.nodes.bag_recorder_node import BagRecorderNode
    from psi0_ros.nodes.robot_bridge_node import RobotBridgeNode
    from psi0_ros.nodes.runtime import spin_nodes
    from psi0_ros.nodes.teleop_recorder_node import TeleopRecorderNode

    recorder = BagRecorder(bag, storage)
    recorder.open()
    result: dict[str, Any] = {"episode": episode, "seed": seed, "bag": str(bag), "task": task}
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
            Parameter(k, value=v) for k, v in bridge_parameters(seed, camera_size, grasp_assist, speed).items()
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
) -> dict[str, Any]:
    """Record `episodes` expert demos into out_dir (one bag each) and write out_dir/demos.json.

    Episode i uses layout seed episode_seed(seed, i); the graph runs on the sim's clock at `speed`
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
        result = _record_in_subprocess(
            bag, i, layout_seed, task, storage or record.storage, camera_size, grasp_assist, speed
        )
        outcome = (
            "error: " + result["error"] if result.get("error") else ("success" if result["success"] else "failure")
        )
        log(f"  {outcome} in {result['wall_s']:.1f} s wall ({result.get('sim_time_s', 0.0):.1f} s simulated)")
        results.append(result)
    successes = sum(1 for r in results if r.get("success"))
    summary = {
        "task": task,
        "seed": seed,
        "grasp_assist": grasp_assist,
        "speed": speed,
        "episodes": results,
        "success_rate": successes / len(results),
        "errors": sum(1 for r in results if r.get("error")),
    }
    (out_dir / "demos.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _record_in_subprocess(
    bag: Path,
    episode: int,
    seed: int,
    task: str,
    storage: str,
    camera_size: tuple[int, int] | None,
    grasp_assist: bool,
    speed: float,
) -> dict[str, Any]:
    """record_episode() in a child process (this module's main); its result comes back as JSON."""
    result_file = bag.parent / f".{bag.name}.json"
    command = [sys.executable, "-m", __name__, "--bag", str(bag), "--episode", str(episode), "--seed", str(seed)]
    command += ["--task", task, "--storage", storage, "--result", str(result_file), "--speed", repr(speed)]
    if camera_size is not None:
        command += ["--camera-size", str(camera_size[0]), str(camera_size[1])]
    if grasp_assist:
        command.append("--grasp-assist")
    try:
        process = subprocess.run(command, timeout=EPISODE_TIMEOUT_S + 60.0)
        returncode: int | str = process.returncode
    except subprocess.TimeoutExpired:
        returncode = "timeout"
    if not result_file.is_file():
        return {
            "episode": episode,
            "seed": seed,
            "bag": str(bag),
            "task": task,
            "success": None,
            "error": f"episode process ended ({returncode}) without a result",
        }
    result = json.loads(result_file.read_text())
    result_file.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    """One episode (what record_demos runs per episode): record_episode() and its result as JSON."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="sim_expert_node", description="record one scripted expert episode")
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--episode", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", default="can_to_basket")
    parser.add_argument("--storage", default="mcap")
    parser.add_argument("--camera-size", type=int, nargs=2, metavar=("W", "H"))
    parser.add_argument("--result", type=Path, help="write the outcome as JSON here")
    parser.add_argument("--grasp-assist", action="store_true", help="switch the labelled grasp assist on")
    parser.add_argument("--speed", type=float, default=1.0, help="sim.speed: multiple of real time")
    args = parser.parse_args(remove_ros_args(list(sys.argv[1:] if argv is None else argv)))
    from psi0_ros.data.config import load_config

    topics = list(load_config().record.topics)
    size = tuple(args.camera_size) if args.camera_size else None
    result = record_episode(
        args.bag, args.episode, args.seed, args.task, topics, args.storage, size, args.grasp_assist, args.speed
    )
    if args.result is not None:
        args.result.write_text(json.dumps(result, indent=2) + "\n")
    else:
        print(json.dumps(result, indent=2))
    sys.stdout.flush()
    sys.stderr.flush()
    # The bag is closed and the result written: leave now, so a DDS participant stuck in teardown
    # cannot hold the process (as psi0 record does).
    os._exit(0 if result.get("error") is None else 1)


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
    if any(args.plan_offset) and not args.measure:
        print(
            "psi0 sim demos: --plan-offset only measures (with --measure); demonstrations plan exactly", file=sys.stderr
        )
        return 2
    if args.measure:
        summary = measure_expert(
            args.episodes, args.seed, args.task, grasp_assist=args.grasp_assist, plan_offset=args.plan_offset
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


if __name__ == "__main__":
    sys.exit(main())
