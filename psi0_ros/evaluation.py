"""Closed-loop evaluation of a checkpoint on the simulated G1 (`psi0 eval`), ROS-free.

evaluate() runs each episode in its own process (`python -m psi0_ros.nodes.eval_node`): the
deploy graph (vlm_node, chunk_node, robot_bridge_node on the sim) on one layout seed, scored by
the task check of psi0_ros.sim.tasks. Evaluation layout seeds start at EVAL_SEED_BASE + seed,
far from the seeds `psi0 sim demos` uses (seed + episode index), so the policy is scored on
object poses no demonstration had. render_rollout() draws an episode's world snapshots from the
head camera and a scene camera into an animated GIF, after the episode (off the control path).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EVAL_SEED_BASE = 100_000  # eval layout seed of episode i: EVAL_SEED_BASE + seed + i (demos use seed + i)
DEFAULT_MAX_EPISODE_S = 30.0  # s of sim time per episode (the scripted expert needs ~16.5 s)
SCENE_CAMERA = {"lookat": (0.3, 0.0, 0.85), "distance": 1.8, "azimuth": 200.0, "elevation": -30.0}


def eval_seed(seed: int, episode: int) -> int:
    """Layout seed of evaluation episode `episode` (0-based) of a run started with `seed`."""
    return EVAL_SEED_BASE + seed + episode


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
) -> dict[str, Any]:
    """Run `episodes` closed-loop episodes; returns the summary (what `psi0 eval --json` writes).

    Keys: task, checkpoint, seed, success_rate, episodes (per episode: index, seed, success, sim
    and wall seconds, real-time factor, error), mean_episode_s (sim s per episode),
    realtime_factor (sim time over wall time summed over all episodes), cpu_per_sim_s (CPU seconds
    the graph's process used per simulated second), errors, max_episode_s.
    out_dir receives per-episode results and, for the first trace_episodes, world snapshots
    (trace_<i>.npz) for render_rollout(). layout_seeds replaces the evaluation seeds (e.g. the
    demonstrations' own layouts, to tell execution from generalisation); episodes is then its length."""
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
        result = _episode_in_subprocess(
            checkpoint, task, layout_seed, max_episode_s, work / f"episode_{i:04d}.json", trace
        )
        result["episode"] = i
        outcome = (
            "error: " + result["error"] if result.get("error") else ("success" if result["success"] else "failure")
        )
        log(
            f"  {outcome}: {result.get('sim_time_s', 0.0):.1f} s simulated in {result.get('wall_s', 0.0):.1f} s wall "
            f"(real-time factor {result.get('realtime_factor', 0.0):.2f})"
        )
        results.append(result)
    ran = [r for r in results if "sim_time_s" in r]
    sim_total = sum(r["sim_time_s"] for r in ran)
    wall_total = sum(r["wall_s"] for r in ran)
    return {
        "task": task,
        "checkpoint": str(checkpoint),
        "seed": seed,
        "layout_seeds": seeds,
        "max_episode_s": max_episode_s,
        "success_rate": sum(1 for r in results if r.get("success")) / len(results),
        "episodes": results,
        "mean_episode_s": sim_total / len(ran) if ran else 0.0,
        "realtime_factor": sim_total / wall_total if wall_total > 0 else 0.0,
        "cpu_per_sim_s": sum(r.get("cpu_s", 0.0) for r in ran) / sim_total if sim_total > 0 else 0.0,
        "errors": sum(1 for r in results if r.get("error")),
    }


def _episode_in_subprocess(
    checkpoint: Path, task: str, seed: int, max_episode_s: float, result_file: Path, trace: Path | None
) -> dict[str, Any]:
    command = [sys.executable, "-m", "psi0_ros.nodes.eval_node", "--checkpoint", str(Path(checkpoint).resolve())]
    command += ["--task", task]
    command += ["--seed", str(seed), "--max-episode-s", str(max_episode_s), "--result", str(result_file)]
    if trace is not None:
        command += ["--trace", str(trace)]
    result_file.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        process = subprocess.run(command, timeout=max(300.0, 40.0 * max_episode_s))
        returncode: int | str = process.returncode
    except subprocess.TimeoutExpired:
        returncode = "timeout"
    if not result_file.is_file():
        return {
            "seed": seed,
            "task": task,
            "success": None,
            "error": f"episode process ended ({returncode}) without a result after {time.monotonic() - started:.0f} s",
        }
    return json.loads(result_file.read_text())


def render_rollout(
    trace: Path, seed: int, out: Path, size: tuple[int, int] = (320, 240), scene_camera: bool = True, fps: float = 5.0
) -> int:
    """An animated GIF of one episode from its world snapshots: the head camera (left) and, with
    scene_camera, a fixed third-person view (right). Returns the number of frames."""
    import mujoco
    from PIL import Image

    import psi0_ros.sim  # noqa: F401  (MUJOCO_GL=egl before mujoco renders)
    from psi0_ros.sim.camera import HeadCamera
    from psi0_ros.sim.simulator import G1Sim, SimConfig, Snapshot

    data = np.load(trace)
    sim = G1Sim(SimConfig(base_mode="kinematic", scene="tabletop", seed=seed))
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
