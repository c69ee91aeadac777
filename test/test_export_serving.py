"""chunk_node serving an ONNX export drives the simulated G1 through the deploy graph as the torch
checkpoint does: one short closed-loop episode each (psi0_ros.jobs.evaluation, the graph `psi0
eval` runs: vlm_node on the checkpoint's VLM, chunk_node, the sim bridge, all on sim time), on
the same layout. A chunk_node given the wrong backend for its directory fails in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers.tiers import require

require("rclpy", "the deploy graph's nodes")
require("mujoco", "the simulated G1")

from psi0_ros import g1  # noqa: E402
from psi0_ros.jobs.evaluation import eval_seed, evaluate  # noqa: E402
from psi0_ros.policy.checkpoint import WEIGHTS_FILE  # noqa: E402
from psi0_ros.policy.export import export_checkpoint  # noqa: E402
from psi0_ros.policy.tiny import write_tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow
EPISODE_S = 2.0  # s of sim time: ~60 control ticks, several chunks of the tiny horizon 16
TASK = "can_to_basket"


def _arm_travel(trace: str, seed: int) -> float:
    """Largest distance (rad) any arm joint moved from its first snapshot during the episode."""
    from psi0_ros.sim.simulator import G1Sim, SimConfig

    sim = G1Sim(SimConfig(base_mode="kinematic", scene="tabletop", seed=seed))
    arms = [g1.ALL_JOINTS.index(name) for name in (*g1.LEFT_ARM_JOINTS, *g1.RIGHT_ARM_JOINTS)]
    qpos = np.load(trace)["qpos"][:, sim.qpos_adr[arms]]
    return float(np.abs(qpos - qpos[0]).max())


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serving")
    checkpoint = write_tiny_checkpoint(root / "checkpoint", seed=2)
    export = root / "export"
    export_checkpoint(checkpoint, export, "onnx", "fp32", parity_observations=1)
    seed = eval_seed(0, 0)
    runs = {}
    for backend, directory in (("onnxruntime", export), ("torch", checkpoint)):
        runs[backend] = evaluate(
            directory,
            TASK,
            1,
            out_dir=root / backend,
            max_episode_s=EPISODE_S,
            log=lambda _: None,
            layout_seeds=[seed],
            node_params={"chunk_node": {"backend": backend}},
        )
    return {"export": export, "checkpoint": checkpoint, "seed": seed, "runs": runs}


def test_an_onnx_chunk_node_drives_the_sim_like_the_torch_one(episodes):
    # The export directory has no torch weights: its episode's chunks can only come from onnxruntime.
    assert not (episodes["export"] / WEIGHTS_FILE).exists()
    travel = {}
    for backend, summary in episodes["runs"].items():
        (episode,) = summary["episodes"]
        assert episode["error"] is None and episode["seed"] == episodes["seed"], (backend, episode)
        assert episode["sim_time_s"] >= EPISODE_S or episode["success"], (backend, episode)
        assert episode["chunk_node_counters"].get("inference_errors", 0) == 0, (backend, episode)
        ticks = episode["scheduler_counters"]
        # the chunks ran: most control ticks of the episode executed a chunk's action
        assert ticks.get("chunks", 0) >= 3 and ticks.get("executed", 0) >= 0.5 * 30 * EPISODE_S, (backend, ticks)
        travel[backend] = _arm_travel(episode["trace"], episodes["seed"])
    # Both moved the arms, by a like amount: the same weights (fp32 parity 1e-4) in the same scene.
    # Not equal: the tick each chunk lands on depends on this machine's timing.
    assert travel["onnxruntime"] > 0.05 and travel["torch"] > 0.05, travel
    assert 1 / 3 <= travel["onnxruntime"] / travel["torch"] <= 3, travel


def test_chunk_node_with_the_wrong_backend_is_one_clear_error(episodes):
    """A checkpoint served as an export, and an export served by eager torch: one line, exit 1."""
    for directory, backend, expected in (
        (episodes["checkpoint"], "onnxruntime", "is not an export directory"),
        (episodes["export"], "torch", f"no {WEIGHTS_FILE}"),
    ):
        command = [sys.executable, "-m", "psi0_ros.nodes.chunk_node", "--ros-args"]
        command += ["-p", f"checkpoint:={directory}", "-p", f"backend:={backend}"]
        process = subprocess.run(command, capture_output=True, text=True, timeout=120)
        lines = (process.stdout + process.stderr).strip().splitlines()
        assert process.returncode == 1 and len(lines) == 1 and expected in lines[0], lines
