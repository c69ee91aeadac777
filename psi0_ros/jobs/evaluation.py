"""`psi0 eval`: closed-loop evaluation of a checkpoint on the simulated G1.

evaluate() runs each episode in its own process (psi0_ros.jobs.child runs run_episode() there):
the deploy graph's nodes from psi0_ros.deploy_graph.deploy_nodes("sim", ...), with vlm_node and
chunk_node (the checkpoint, the task's instruction) in a second process of their own (run_policy(),
a child of the episode's process), as the deploy graph runs its nodes, and robot_bridge_node with
the sim backend on one layout seed in the episode's process; policy_process=False composes all of
them in the episode's process (as `psi0 deploy --composed`). The bridge is made last, once the
policy is loaded, and the episode's clock starts at the first command the bridge follows (the
robot stands as placed until then; DDS's connection time between two processes is not the
policy's). While the graph spins, the runtime's `until` hook reads the bridge's G1Sim (privileged,
as the scripted expert does): the task check of psi0_ros.sim.tasks every poll, and a snapshot of
the world every TRACE_PERIOD_S of sim time. An episode ends at the first success or after
max_episode_s of sim time; its result (success, sim time, wall time, the sim's real-time factor,
chunk_node's counters from whichever process ran it) comes back as JSON, the snapshots as an .npz
next to it. The nodes (and rclpy) are imported only in the episodes' processes.

Evaluation layout seeds start at EVAL_SEED_BASE + seed, far from the seeds `psi0 sim demos` uses
(seed + episode index), so the policy is scored on object poses no demonstration had.
render_rollout() draws an episode's world snapshots from the head camera and a scene camera into
an animated GIF, after the episode (off the control path).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.jobs import child

EVAL_SEED_BASE = 100_000  # eval layout seed of episode i: EVAL_SEED_BASE + seed + i (demos use seed + i)
DEFAULT_MAX_EPISODE_S = 30.0  # s of sim time per episode (the scripted expert needs ~16.5 s)
SCENE_CAMERA = {"lookat": (0.3, 0.0, 0.85), "distance": 1.8, "azimuth": 200.0, "elevation": -30.0}
TRACE_PERIOD_S = 0.2  # s of sim time between world snapshots kept for the rollout GIF
REACH_MOVE_M = 0.02  # m: the task's object has been reached (grasped or pushed) once it moved this far
WALL_TIMEOUT_FACTOR = 20.0  # an episode is abandoned after this many times its sim-time budget in wall time
WALL_TIMEOUT_MIN_S = 120.0
# Head-camera frames per simulated second in evaluation: vlm_node encodes the newest frame and
# chunk_node asks for a chunk every ~0.5 s, so 30 Hz would mostly render frames nobody reads.
CAMERA_RATE_HZ = 10.0
UNWATCHED_NODES = ("viz_node",)  # rviz's feed: nobody watches an evaluation, and its FK costs CPU


def process_timeout_s(max_episode_s: float) -> float:
    """Wall s before an episode's process is killed: beyond run_episode's own wall-clock limit."""
    return max(300.0, 40.0 * max_episode_s)


def eval_seed(seed: int, episode: int) -> int:
    """Layout seed of evaluation episode `episode` (0-based) of a run started with `seed`."""
    return EVAL_SEED_BASE + seed + episode


def episode_nodes(
    checkpoint: str,
    task: str,
    seed: int,
    torch_threads: int = 1,
    camera_rate_hz: float = CAMERA_RATE_HZ,
    layout: str = "full",
    node_params: dict[str, dict[str, Any]] | None = None,
) -> list[Any]:
    """The deploy graph's node specs for one evaluation episode (sim backend, layout seed `seed`);
    node_params: parameters laid over the evaluation's own, per node (e.g. chunk_node's mode and
    inference_latency_ms for `psi0 ablate rtc`).

    Every node runs on the sim's time (the bridge publishes /clock, the others use_sim_time): a
    control tick is 1/30 s of simulated time however fast this CPU runs the sim, so a commanded
    base velocity moves the robot as far as in the demonstrations."""
    from psi0_ros.deploy_graph import deploy_nodes
    from psi0_ros.sim.tasks import get_task

    overrides = {
        "robot_bridge_node": {
            "sim.seed": seed,
            "sim.layout": layout,
            "sim.scene": "tabletop",
            "sim.camera_rate_hz": camera_rate_hz,
            # nobody holds an estop in an evaluation episode (as in the demos): follow the first command
            "safety.estop_wait_s": 0.0,
        },
        "vlm_node": {"torch_threads": torch_threads},
        "chunk_node": {"torch_threads": torch_threads},
    }
    for node, params in (node_params or {}).items():
        overrides.setdefault(node, {}).update(params)
    nodes = deploy_nodes("sim", checkpoint, get_task(task).instruction, "", None, overrides, sim_time=True)
    nodes = [n for n in nodes if n.name not in UNWATCHED_NODES]
    # the sim is the scorer here: its clock starts when the bridge is made, so the bridge goes last
    return [n for n in nodes if n.name != "robot_bridge_node"] + [n for n in nodes if n.name == "robot_bridge_node"]


def _watch_reach(sim: Any, objects: tuple[str, ...], state: dict[str, Any]) -> None:
    """Where the base stood when the task's object first moved REACH_MOVE_M (the reach that moved
    it: a grasp, or a push), and where the objects stood at the start."""
    if "reach" in state:
        return
    if "objects0" not in state:
        state["objects0"] = [sim.body_pose(name)[0].copy() for name in objects]
        return
    now = sim.body_pose(objects[0])[0]
    if float(np.hypot(*(now[:2] - state["objects0"][0][:2]))) > REACH_MOVE_M:
        state["reach"] = (sim.time - state["sim0"], sim.base_pose()[0][:2].copy())


def _reach_summary(task: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """reach_s (sim s into the episode), base_xy_m, and base_minus_expert_stance_m: the base
    against the stance the scripted expert grasps from on this layout (sim.expert.grasp_stance;
    a failed grasp several cm off it is a stance the policy misjudged from the image). None if the
    object never moved."""
    from psi0_ros.sim.expert import grasp_stance

    if "reach" not in state:
        return None
    t, base = state["reach"]
    objects0 = state["objects0"]
    _, stance = grasp_stance(task, objects0[0], objects0[1] if len(objects0) > 1 else None)
    return {
        "reach_s": round(float(t), 3),
        "base_xy_m": [round(float(v), 4) for v in base],
        "base_minus_expert_stance_m": [round(float(v), 4) for v in base - stance],
    }


STARTUP_LIMIT_S = 20.0  # s of sim time the first command may take (DDS connects two processes in ~4 s)
POLICY_READY_TIMEOUT_S = 600.0  # s the bridge waits for the policy's process to load the checkpoint
POLICY_STOP_TIMEOUT_S = 60.0  # s the policy's process has to write its figures once told to stop


def chunk_summary(chunk: Any, commands: str | Path | None) -> dict[str, Any]:
    """chunk_node's figures of an episode: its counters and its scheduler's (executed / held /
    missed ticks, chunks whose delay reached the trained max: delay_clamped), the motion of the
    commanded arm targets (junction jumps, jerk), the median inference wall time (the injected
    latency included); the per-tick targets go to `commands` when given."""
    from psi0_ros.control.chunk_runner import percentiles_ms
    from psi0_ros.jobs.ablation_metrics import command_log, motion_metrics

    log = command_log(list(chunk.scheduler.executed), list(chunk.landings))
    p50, _ = percentiles_ms(list(chunk.worker.latencies_s))
    out: dict[str, Any] = {
        "chunk_node_counters": {k: int(v) for k, v in sorted(chunk.counters.items())},
        "scheduler_counters": {k: int(v) for k, v in sorted(chunk.scheduler.stats.counters.items())},
        "motion": motion_metrics(log, chunk.rate_hz),
        "inference_p50_ms": None if np.isnan(p50) else p50,
    }
    if commands is not None:
        log.save(commands)
        out["commands"] = str(commands)
    return out


def run_policy(
    checkpoint: str,
    task: str,
    seed: int,
    ready: str,
    torch_threads: int = 1,
    layout: str = "full",
    node_params: dict[str, dict[str, Any]] | None = None,
    commands: str | None = None,
) -> dict[str, Any]:
    """The policy's nodes of one episode (vlm_node, chunk_node) in this process, as the deploy
    graph runs them (a process each, or another machine), beside run_episode's bridge: `ready` is
    written once the checkpoint is loaded; runs until SIGTERM (or until the episode's process is
    gone); returns chunk_summary() and this process's CPU seconds."""
    import os

    from psi0_ros.nodes.graph import make_node
    from psi0_ros.nodes.runtime import spin_nodes

    specs = episode_nodes(checkpoint, task, seed, torch_threads, layout=layout, node_params=node_params)
    specs = [spec for spec in specs if spec.name != "robot_bridge_node"]
    parent = os.getppid()
    result: dict[str, Any] = {"error": None}
    state: dict[str, Any] = {"chunk": None}

    def make_nodes() -> list[Any]:
        made = [make_node(spec) for spec in specs]
        state["chunk"] = next(n for n, spec in zip(made, specs, strict=True) if spec.name == "chunk_node")
        state["cpu0"] = time.process_time()
        Path(ready).write_text("ready\n")
        return made

    def until() -> str | None:
        return "the episode's process is gone" if os.getppid() != parent else None

    def after_spin(reason: str) -> None:
        result["stopped_by"] = reason
        if state["chunk"] is not None:
            result.update(chunk_summary(state["chunk"], commands))
            result["cpu_s"] = time.process_time() - state["cpu0"]
        return None

    status = spin_nodes(make_nodes, [], until=until, after_spin=after_spin, prog="psi0 eval policy")
    if state["chunk"] is None:
        result["error"] = f"the policy's nodes did not start (exit status {status})"
    return result


def _wait_for_policy(policy: Any, ready: Path) -> None:
    """Until run_policy() has its nodes up (it writes `ready`); a clear error if it ends first."""
    deadline = time.monotonic() + POLICY_READY_TIMEOUT_S
    while not ready.is_file():
        if not policy.running():
            raise RuntimeError("the policy's process ended before its nodes were up (its own error is printed above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the policy's nodes were not up after {POLICY_READY_TIMEOUT_S:g} s")
        time.sleep(0.05)


def _stop_policy(policy: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Stop the policy's process; its figures, with its CPU seconds added to the episode's."""
    figures = policy.stop(POLICY_STOP_TIMEOUT_S, {})
    if figures.get("error"):
        return {"policy_error": figures["error"]}
    out = {k: v for k, v in figures.items() if k not in ("error", "stopped_by", "cpu_s")}
    out["policy_cpu_s"] = figures.get("cpu_s")
    if "cpu_s" in result and figures.get("cpu_s") is not None:
        out["cpu_s"] = result["cpu_s"] + figures["cpu_s"]
    return out


def run_episode(
    checkpoint: str,
    task: str,
    seed: int,
    max_episode_s: float,
    trace: str | Path | None = None,
    torch_threads: int = 1,
    layout: str = "full",
    node_params: dict[str, dict[str, Any]] | None = None,
    commands: str | Path | None = None,
    policy_process: bool = True,
) -> dict[str, Any]:
    """Run one episode; returns its outcome (see the module docstring).

    evaluate() calls it in a child process; trace: where the world snapshots (.npz) go, or None;
    commands: where the commanded arm targets per tick go (ablation_metrics.CommandLog), or None.
    policy_process: the policy's nodes run in a process of their own (run_policy), as the deploy
    graph runs them; False composes them with the bridge in this one."""
    import tempfile

    scratch = tempfile.TemporaryDirectory(prefix="psi0_eval_policy_")
    ready = Path(scratch.name) / "policy.ready"
    policy = None
    if policy_process:  # it loads the checkpoint while this process loads the sim
        kwargs = {"checkpoint": checkpoint, "task": task, "seed": seed, "torch_threads": torch_threads}
        kwargs.update(layout=layout, node_params=node_params, commands=None if commands is None else str(commands))
        policy = child.Background(run_policy, {**kwargs, "ready": str(ready)}, Path(scratch.name) / "policy.json")

    from psi0_ros.control.safety import SafetyMode
    from psi0_ros.nodes.graph import make_node
    from psi0_ros.nodes.runtime import spin_nodes
    from psi0_ros.sim.tasks import get_task

    check = get_task(task)
    specs = episode_nodes(checkpoint, task, seed, torch_threads, layout=layout, node_params=node_params)
    result: dict[str, Any] = {"task": task, "seed": seed, "success": None, "error": None}
    state: dict[str, Any] = {"sim": None, "snapshots": [], "next_trace": 0.0, "chunk": None}
    wall_limit = max(WALL_TIMEOUT_MIN_S, WALL_TIMEOUT_FACTOR * max_episode_s)
    startup_limit = max(STARTUP_LIMIT_S, max_episode_s)

    def make_nodes() -> list[Any]:
        nonlocal specs
        if policy is not None:
            try:
                _wait_for_policy(policy, ready)
            except RuntimeError as err:
                result["error"] = str(err)
                raise
            specs = [spec for spec in specs if spec.name == "robot_bridge_node"]
        made = []
        for spec in specs:  # one at a time: the bridge (the sim's clock) last
            made.append(make_node(spec))
            if spec.name == "robot_bridge_node":
                state["bridge"] = made[-1].bridge
                state["sim"] = state["bridge"].backend.sim
            if spec.name == "chunk_node":
                state["chunk"] = made[-1]
        state["wall0"], state["start0"], state["cpu0"] = time.monotonic(), state["sim"].time, time.process_time()
        return made

    def until() -> str | None:
        sim = state["sim"]
        if sim is None:
            return None
        if policy is not None and not policy.running():
            result["error"] = "the policy's process ended during the episode"
            return "policy process ended"
        now = sim.time
        if "sim0" not in state:
            if state["bridge"].safety.mode in (SafetyMode.STARTING, SafetyMode.WAITING):
                if now - state["start0"] < startup_limit:
                    return None
                result["success"] = False
                return f"no command in {startup_limit:g} s of sim time"
            state["sim0"] = now  # the episode starts with the first command the bridge follows
        if trace is not None and now >= state["next_trace"]:
            state["snapshots"].append(sim.snapshot())
            state["next_trace"] = now + TRACE_PERIOD_S
        _watch_reach(sim, check.objects, state)
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
            start = state.get("sim0", sim.time)
            result["startup_s"] = start - state["start0"]
            result["sim_time_s"] = sim.time - start
            result["wall_s"] = wall
            result["realtime_factor"] = (sim.time - state["start0"]) / wall if wall > 0 else 0.0
            result["cpu_s"] = time.process_time() - state["cpu0"]  # every thread of the graph's process
            can, _ = sim.body_pose(check.objects[0])
            result["object_final_xyz"] = [float(v) for v in can]
            result["collisions"] = sim.collisions.summary()  # psi0_ros.sim.collisions
            result["reach"] = _reach_summary(task, state)
        if state["chunk"] is not None:
            result.update(chunk_summary(state["chunk"], commands))
        elif policy is not None:
            result.update(_stop_policy(policy, result))
        return None

    try:
        status = spin_nodes(make_nodes, [], until=until, after_spin=after_spin, prog="psi0 eval episode")
    finally:
        if policy is not None and policy.running():  # spin_nodes never got to after_spin
            policy.stop(POLICY_STOP_TIMEOUT_S, {})
        scratch.cleanup()
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


def evaluate(
    checkpoint: Path,
    task: str,
    episodes: int,
    seed: int = 0,
    out_dir: Path | None = None,
    max_episode_s: float = DEFAULT_MAX_EPISODE_S,
    trace_episodes: int = 1,
    log: Callable[[str], None] = print,
    layout_seeds: list[int] | None = None,
    layout: str = "full",
    node_params: dict[str, dict[str, Any]] | None = None,
    policy_process: bool = True,
) -> dict[str, Any]:
    """Run `episodes` closed-loop episodes; returns the summary (what `psi0 eval --json` writes).

    Keys: task, checkpoint, seed, success_rate, episodes (per episode: index, seed, success, sim
    and wall seconds, real-time factor, error), mean_episode_s (sim s per episode),
    realtime_factor (sim time over wall time summed over all episodes, start-up included),
    cpu_per_sim_s (CPU seconds the graph's processes used per simulated second), errors, max_episode_s.
    out_dir receives per-episode results and, for the first trace_episodes, world snapshots
    (trace_<i>.npz) for render_rollout(). layout_seeds replaces the evaluation seeds (e.g. the
    demonstrations' own layouts, to tell execution from generalisation); episodes is then its length.
    Each episode also reports its collisions (psi0_ros.sim.collisions) and the motion of its
    commanded arm targets (psi0_ros.jobs.ablation_metrics; the per-tick targets in
    commands_<i>.npz); node_params lays parameters over the graph's (episode_nodes);
    policy_process: see run_episode (False: the whole graph in the episode's process)."""
    from psi0_ros.sim.tasks import get_task

    get_task(task)  # a bad name fails before anything starts
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint} (config.json missing)")
    seeds = [eval_seed(seed, i) for i in range(episodes)] if layout_seeds is None else [int(s) for s in layout_seeds]
    if len(seeds) < 1:
        raise ValueError(f"episodes must be >= 1, got {len(seeds)}")
    if max_episode_s <= 0:
        raise ValueError(f"max_episode_s must be > 0, got {max_episode_s}")
    work = Path(out_dir) if out_dir is not None else Path(checkpoint).parent / "eval"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for i, layout_seed in enumerate(seeds):
        log(f"psi0 eval: episode {i + 1}/{len(seeds)} (layout seed {layout_seed})")
        trace = work / f"trace_{i:04d}.npz" if i < trace_episodes else None
        kwargs = {
            "checkpoint": str(checkpoint.resolve()),
            "task": task,
            "seed": layout_seed,
            "max_episode_s": max_episode_s,
            "trace": None if trace is None else str(trace),
            "layout": layout,
            "node_params": node_params,
            "commands": str(work / f"commands_{i:04d}.npz"),
            "policy_process": policy_process,
        }
        result = child.run_episode(
            run_episode,
            kwargs,
            work / f"episode_{i:04d}.json",
            process_timeout_s(max_episode_s),
            {"seed": layout_seed, "task": task},
        )
        result["episode"] = i
        outcome = (
            "error: " + result["error"] if result.get("error") else ("success" if result["success"] else "failure")
        )
        log(
            f"  {outcome}: {result.get('sim_time_s', 0.0):.1f} s simulated after {result.get('startup_s', 0.0):.1f} s "
            f"to the first command, in {result.get('wall_s', 0.0):.1f} s wall "
            f"(real-time factor {result.get('realtime_factor', 0.0):.2f})"
        )
        results.append(result)
    ran = [r for r in results if "sim_time_s" in r]
    sim_total = sum(r["sim_time_s"] for r in ran)  # the episodes' own time, from their first command
    clock_total = sim_total + sum(r.get("startup_s", 0.0) for r in ran)  # all the sim ran
    wall_total = sum(r["wall_s"] for r in ran)
    return {
        "task": task,
        "checkpoint": str(checkpoint),
        "seed": seed,
        "layout_seeds": seeds,
        "layout": layout,
        "max_episode_s": max_episode_s,
        "success_rate": sum(1 for r in results if r.get("success")) / len(results),
        "episodes": results,
        "mean_episode_s": sim_total / len(ran) if ran else 0.0,
        "realtime_factor": clock_total / wall_total if wall_total > 0 else 0.0,
        "cpu_per_sim_s": sum(r.get("cpu_s", 0.0) for r in ran) / clock_total if clock_total > 0 else 0.0,
        "errors": sum(1 for r in results if r.get("error")),
        "reach_stance_error_m": reach_stance_errors(results),
        "policy_process": policy_process,
    }


def reach_stance_errors(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median distance (m) of the base from the expert's grasp stance when the object first moved,
    over the successful and the failed episodes, and how many failed without ever moving it."""
    out: dict[str, Any] = {}
    for name, wanted in (("success", True), ("failure", False)):
        errors = [
            float(np.hypot(*r["reach"]["base_minus_expert_stance_m"]))
            for r in results
            if bool(r.get("success")) == wanted and r.get("reach")
        ]
        out[f"{name}_median"] = round(float(np.median(errors)), 4) if errors else None
        out[f"{name}_episodes"] = len(errors)
    out["failure_never_reached"] = sum(1 for r in results if r.get("success") is False and not r.get("reach"))
    return out


def render_rollout(
    trace: Path,
    seed: int,
    out: Path,
    size: tuple[int, int] = (320, 240),
    scene_camera: bool = True,
    fps: float = 5.0,
    layout: str = "full",
) -> int:
    """An animated GIF of one episode from its world snapshots: the head camera (left) and, with
    scene_camera, a fixed third-person view (right). Returns the number of frames."""
    import mujoco
    from PIL import Image

    import psi0_ros.sim  # noqa: F401  (MUJOCO_GL=egl before mujoco renders)
    from psi0_ros.sim.camera import HeadCamera
    from psi0_ros.sim.simulator import G1Sim, SimConfig, Snapshot

    data = np.load(trace)
    sim = G1Sim(SimConfig(base_mode="kinematic", scene="tabletop", seed=seed, layout=layout))
    head = HeadCamera(sim.model, size[0], size[1])
    scene = mujoco.Renderer(sim.model, height=size[1], width=size[0]) if scene_camera else None
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.lookat[:] = SCENE_CAMERA["lookat"]
    camera.distance, camera.azimuth, camera.elevation = (
        SCENE_CAMERA["distance"],
        SCENE_CAMERA["azimuth"],
        SCENE_CAMERA["elevation"],
    )
    frames = []
    try:
        for k in range(len(data["time"])):
            snapshot = Snapshot(float(data["time"][k]), data["qpos"][k], data["mocap_pos"][k], data["mocap_quat"][k])
            views = [head.render(snapshot)]
            if scene is not None:
                scene.update_scene(head.data, camera=camera)  # head.data holds this snapshot's kinematics
                views.append(scene.render().copy())
            frames.append(Image.fromarray(np.concatenate(views, axis=1)))
    finally:
        head.close()
        if scene is not None:
            scene.close()
    if not frames:
        raise ValueError(f"{trace} holds no snapshots")
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return len(frames)
