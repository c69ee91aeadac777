"""One closed-loop evaluation episode: the deploy graph on the sim, scored by the task check.

`python -m psi0_ros.nodes.eval_node --checkpoint DIR --task NAME --seed S --result FILE` runs, in
this one process (composed, as `psi0 deploy --composed`), the deploy graph's nodes from
psi0_ros.deploy_graph.deploy_nodes("sim", ...): vlm_node and chunk_node on the checkpoint with the
task's instruction, and robot_bridge_node with the sim backend on layout seed S. The bridge is
made last, so the sim clock starts once the policy is loaded. While the graph spins, the runtime's
`until` hook reads the bridge's G1Sim (privileged, as the scripted expert does): the task check
every poll, and a snapshot of the world every TRACE_PERIOD_S of sim time. The episode ends at the
first success or after max_episode_s of sim time. The result (success, sim time, wall time, the
sim's real-time factor, chunk_node's counters) is written as JSON, the snapshots as an .npz next to it
(psi0_ros.evaluation renders the GIF from them, off the control path).

psi0_ros.evaluation.evaluate() runs one such process per episode (rclpy initialises once per
process, and a fresh DDS participant per episode keeps one episode's teardown from the next).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TRACE_PERIOD_S = 0.2  # s of sim time between world snapshots kept for the rollout GIF
WALL_TIMEOUT_FACTOR = 20.0  # an episode is abandoned after this many times its sim-time budget in wall time
WALL_TIMEOUT_MIN_S = 120.0
# Head-camera frames per simulated second in evaluation: vlm_node encodes the newest frame and
# chunk_node asks for a chunk every ~0.5 s, so 30 Hz would mostly render frames nobody reads.
CAMERA_RATE_HZ = 10.0
UNWATCHED_NODES = ("viz_node",)  # rviz's feed: nobody watches an evaluation, and its FK costs CPU


def episode_nodes(
    checkpoint: str, task: str, seed: int, torch_threads: int = 1, camera_rate_hz: float = CAMERA_RATE_HZ
) -> list[Any]:
    """The deploy graph's node specs for one evaluation episode (sim backend, layout seed `seed`).

    Every node runs on the sim's time (the bridge publishes /clock, the others use_sim_time): a
    control tick is 1/30 s of simulated time however fast this CPU runs the sim, so a commanded
    base velocity moves the robot as far as in the demonstrations."""
    from psi0_ros.deploy_graph import deploy_nodes
    from psi0_ros.sim.tasks import get_task

    overrides = {
        "robot_bridge_node": {
            "sim.seed": seed,
            "sim.scene": "tabletop",
            "sim.camera_rate_hz": camera_rate_hz,
        },
        "vlm_node": {"torch_threads": torch_threads},
        "chunk_node": {"torch_threads": torch_threads},
    }
    nodes = deploy_nodes("sim", checkpoint, get_task(task).instruction, "", None, overrides, sim_time=True)
    nodes = [n for n in nodes if n.name not in UNWATCHED_NODES]
    # the sim is the scorer here: its clock starts when the bridge is made, so the bridge goes last
    return [n for n in nodes if n.name != "robot_bridge_node"] + [n for n in nodes if n.name == "robot_bridge_node"]


def run_episode(
    checkpoint: str, task: str, seed: int, max_episode_s: float, trace: Path | None = None, torch_threads: int = 1
) -> dict[str, Any]:
    """Run one episode in this process; returns its outcome (see the module docstring)."""
    import importlib

    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from psi0_ros.nodes.runtime import spin_nodes
    from psi0_ros.sim.tasks import get_task

    check = get_task(task)
    specs = episode_nodes(checkpoint, task, seed, torch_threads)
    result: dict[str, Any] = {"task": task, "seed": seed, "success": None, "error": None}
    state: dict[str, Any] = {"sim": None, "snapshots": [], "next_trace": 0.0, "chunk": None}
    wall_limit = max(WALL_TIMEOUT_MIN_S, WALL_TIMEOUT_FACTOR * max_episode_s)

    def make_nodes() -> list[Any]:
        made = []
        for spec in specs:
            module = importlib.import_module(spec.module)
            node_class = next(
                v
                for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, Node) and v.__module__ == module.__name__
            )
            overrides = [Parameter(name, value=value) for name, value in spec.params.items()]
            made.append(node_class(parameter_overrides=overrides))
            if spec.name == "robot_bridge_node":
                state["sim"] = made[-1].bridge.backend.sim
            if spec.name == "chunk_node":
                state["chunk"] = made[-1]
        state["wall0"], state["sim0"], state["cpu0"] = time.monotonic(), state["sim"].time, time.process_time()
        return made

    def until() -> str | None:
        sim = state["sim"]
        if sim is None:
            return None
        now = sim.time
        if trace is not None and now >= state["next_trace"]:
            state["snapshots"].append(sim.snapshot())
            state["next_trace"] = now + TRACE_PERIOD_S
        if check.check(sim):
            result["success"] = True
            return "task achieved"
        if now - state["sim0"] >= max_episode_s:
            result["success"] = False
            return f"{max_episode_s:g} s of sim time without success"
        if time.monotonic() - state["wall0"] > wall_limit:
            result["error"] = f"wall-clock limit {wall_limit:g} s reached"
            return "wall-clock limit"
        return None

    def after_spin(reason: str) -> None:
        sim = state["sim"]
        result["stopped_by"] = reason
        if sim is not None and "wall0" in state:
            wall = time.monotonic() - state["wall0"]
            result["sim_time_s"] = sim.time - state["sim0"]
            result["wall_s"] = wall
            result["realtime_factor"] = result["sim_time_s"] / wall if wall > 0 else 0.0
            result["cpu_s"] = time.process_time() - state["cpu0"]  # every thread of the graph's process
            can, _ = sim.body_pose(check.objects[0])
            result["object_final_xyz"] = [float(v) for v in can]
        chunk = state["chunk"]
        if chunk is not None:
            result["chunk_node_counters"] = {k: int(v) for k, v in sorted(chunk.counters.items())}
            # executed / held / missed ticks, chunks whose delay reached the trained max (delay_clamped)
            result["scheduler_counters"] = {k: int(v) for k, v in sorted(chunk.scheduler.stats.counters.items())}
        return None

    status = spin_nodes(make_nodes, [], until=until, after_spin=after_spin, prog="eval_node")
    if result["success"] is None and result["error"] is None:
        result["error"] = f"episode did not finish (exit status {status}, {result.get('stopped_by') or 'no reason'})"
    if trace is not None and state["snapshots"]:
        snaps = state["snapshots"]
        np.savez_compressed(
            trace,
            time=np.array([s.time for s in snaps]),
            qpos=np.stack([s.qpos for s in snaps]),
            mocap_pos=np.stack([s.mocap_pos for s in snaps]),
            mocap_quat=np.stack([s.mocap_quat for s in snaps]),
        )
        result["trace"] = str(trace)
    return result


def main(argv: list[str] | None = None) -> int:
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="eval_node", description="one closed-loop evaluation episode on the sim")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--task", default="can_to_basket")
    parser.add_argument("--seed", type=int, default=0, help="layout seed")
    parser.add_argument("--max-episode-s", type=float, default=30.0, help="sim seconds before a failure")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--result", type=Path, required=True, help="write the outcome as JSON here")
    parser.add_argument("--trace", type=Path, help="write world snapshots (.npz) here for the rollout GIF")
    args = parser.parse_args(remove_ros_args(list(sys.argv[1:] if argv is None else argv)))
    result = run_episode(args.checkpoint, args.task, args.seed, args.max_episode_s, args.trace, args.torch_threads)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if result.get("error") is None else 1)  # as sim_expert_node: no DDS teardown can hold us


if __name__ == "__main__":
    sys.exit(main())
