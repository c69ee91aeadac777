"""`psi0 eval` runs the policy's nodes in a process of their own beside the bridge's, as the deploy
graph does: the chunks that drive the sim come from that process, the episode's clock starts at
the first command the bridge follows, and a policy process that fails to start or dies mid-episode
is one clear episode error, with no process left behind."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from psi0_ros.jobs.evaluation import eval_seed, evaluate
from psi0_ros.policy.tiny import write_tiny_checkpoint

pytestmark = pytest.mark.slow

TASK = "can_to_basket"
EPISODE_S = 3.0


def _policy_processes() -> list[int]:
    """PIDs of this machine's evaluation policy processes (psi0_ros.jobs.child running run_policy)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"psi0_ros.jobs.child" in command and b'"run_policy"' in command:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("eval_processes") / "checkpoint", seed=2)


def _evaluate(checkpoint: Path, out: Path, episode_s: float = EPISODE_S, **kwargs) -> dict:
    return evaluate(
        checkpoint,
        TASK,
        1,
        out_dir=out,
        max_episode_s=episode_s,
        log=lambda _: None,
        layout_seeds=[eval_seed(0, 0)],
        **kwargs,
    )


def test_the_policy_runs_in_its_own_process_and_drives_the_sim(checkpoint, tmp_path):
    summary = _evaluate(checkpoint, tmp_path)
    (episode,) = summary["episodes"]
    assert summary["policy_process"] is True
    assert episode["error"] is None, episode
    # the figures of chunk_node came back from the policy's process, which used CPU of its own
    assert episode["policy_cpu_s"] > 0.1 and episode["cpu_s"] > episode["policy_cpu_s"], episode
    assert episode["inference_p50_ms"] > 0 and episode["chunk_node_counters"].get("inference_errors", 0) == 0
    # the episode's budget is counted from the first command: the policy commanded all of it
    assert episode["startup_s"] >= 0 and episode["sim_time_s"] >= EPISODE_S, episode
    ticks = episode["scheduler_counters"]
    assert ticks["executed"] >= 0.8 * 30 * EPISODE_S, ticks
    commands = np.load(episode["commands"])  # written by the policy's process
    assert len(commands["ticks"]) == ticks["executed"]
    assert not _policy_processes()


def test_the_composed_episode_still_runs_in_one_process(checkpoint, tmp_path):
    (episode,) = _evaluate(checkpoint, tmp_path, policy_process=False)["episodes"]
    assert episode["error"] is None and episode.get("policy_cpu_s") is None, episode
    assert episode["scheduler_counters"]["executed"] >= 0.8 * 30 * EPISODE_S, episode


def test_a_policy_process_that_cannot_start_is_one_episode_error(checkpoint, tmp_path):
    started = time.monotonic()
    # a torch checkpoint served as an export: chunk_node refuses it at start-up
    (episode,) = _evaluate(checkpoint, tmp_path, node_params={"chunk_node": {"backend": "onnxruntime"}})["episodes"]
    assert episode["success"] is None and "the policy's process ended before its nodes were up" in episode["error"]
    assert time.monotonic() - started < 120
    assert not _policy_processes()


def test_a_policy_process_killed_mid_episode_ends_the_episode_with_an_error(checkpoint, tmp_path):
    killed = []

    def kill_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            # once its nodes are up (run_policy's ready file in the episode's scratch directory)
            if list(Path(tempfile.gettempdir()).glob("psi0_eval_policy_*/policy.ready")):
                time.sleep(2.0)  # the bridge is up and the episode under way
                for pid in _policy_processes():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.1)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    (episode,) = _evaluate(checkpoint, tmp_path, episode_s=30.0)["episodes"]
    killer.join(timeout=10)
    assert killed, "no policy process was found to kill"
    assert episode["error"] == "the policy's process ended during the episode", episode
    assert episode["sim_time_s"] < 30.0
    assert not _policy_processes()
