"""The main job end to end, small: `psi0 demo` (what `make run` runs) with 3 expert demos (one held
out of training), a few training steps, the open-loop scores and 2 short evaluation episodes on new
layouts plus 1 on a demo's own, then every artefact is opened with a reader
nobody here wrote where one exists (mcap for the bags, h5py for the episodes, PIL for the images).
A second run must reuse demos, episodes and checkpoint (cache keyed by inputs) and still evaluate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from psi0_ros.jobs.main_job import MainJobConfig, step_key, step_sources

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--demos", "3", "--val-demos", "1", "--seen-episodes", "1", "--train-steps", "12", "--train-batch", "8"]
ARGS += ["--eval-episodes", "2", "--max-episode-s", "3"]


def _demo(out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "psi0_ros.cli", "demo", "--out", str(out), *ARGS]
    process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-4000:]
    return process


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("main_job") / "demo"
    first = _demo(out)
    first_json = json.loads((out / "eval.json").read_text())
    bag_times = {p: p.stat().st_mtime_ns for p in (out / "demos").rglob("*.mcap")}
    checkpoint_time = (out / "train" / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    second = _demo(out)
    return {
        "out": out,
        "first": first,
        "first_json": first_json,
        "second": second,
        "second_json": json.loads((out / "eval.json").read_text()),
        "bag_times": bag_times,
        "checkpoint_time": checkpoint_time,
    }


def test_bags_hold_the_expert_streams_and_outcomes(runs):
    from mcap.reader import make_reader

    demos = json.loads((runs["out"] / "demos" / "demos.json").read_text())
    assert len(demos["episodes"]) == 3 and demos["errors"] == 0 and demos["layout"] == "lab"
    bags = sorted((runs["out"] / "demos").glob("demo_*"))
    assert len(bags) == 3
    for bag in bags:
        assert (bag / "metadata.yaml").is_file()
        counts: dict[str, int] = {}
        for file in bag.glob("*.mcap"):
            with file.open("rb") as f:
                for _, channel, _ in make_reader(f).iter_messages():
                    counts[channel.topic] = counts.get(channel.topic, 0) + 1
        for topic in ("/joint_states", "/camera/ego/image_raw", "/psi0/upper_body_command", "/psi0/episode_events"):
            assert counts.get(topic, 0) > 0, (bag, topic, counts)
        assert counts["/psi0/episode_events"] == 3  # START, STOP, SUCCESS/FAILURE


def test_episodes_load_with_h5py(runs):
    files = sorted((runs["out"] / "episodes").rglob("*.hdf5"))
    assert len(files) == 3
    demos = json.loads((runs["out"] / "demos" / "demos.json").read_text())
    for file, demo in zip(files, demos["episodes"], strict=True):
        with h5py.File(file, "r") as f:
            action, state = f["action"][()], f["observations/state"][()]
            assert action.shape[1] == 36 and state.shape[0] == action.shape[0] > 100
            assert np.isfinite(action).all()
            outcome = f.attrs["outcome"]
            outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
            assert outcome == ("success" if demo["success"] else "failure")


def test_checkpoint_loads_and_infers_a_chunk(runs):
    from psi0_ros.policy.interface import Observation, Policy

    policy = Policy.from_checkpoint(runs["out"] / "train" / "checkpoint", seed=0)
    with h5py.File(sorted((runs["out"] / "episodes").rglob("*.hdf5"))[0], "r") as f:
        state = f["observations/state"][0]
    image = np.zeros((240, 320, 3), np.uint8)
    chunk = policy.infer(Observation(state=state, image=image, instruction="pick up the red can"))
    assert chunk.shape == (policy.horizon, 36) and np.isfinite(chunk).all()


def test_eval_json_has_the_issue_keys_and_consistent_numbers(runs):
    result = runs["first_json"]
    for key in ("success_rate", "episodes", "mean_episode_s", "seed", "realtime_factor", "wall_s", "cached"):
        assert key in result, key
    assert len(result["episodes"]) == 2 and result["errors"] == 0
    assert result["success_rate"] == sum(bool(e["success"]) for e in result["episodes"]) / 2
    assert result["cached"] == {"demos": False, "convert": False, "train": False}
    for episode in result["episodes"]:
        assert episode["seed"] >= 100_000  # never a demo's layout (demos used 0, 1 and 2)
        ran = episode["sim_time_s"] + episode["startup_s"]  # the episode counts from the first command
        assert episode["realtime_factor"] == pytest.approx(ran / episode["wall_s"])
        if not episode["success"]:
            assert episode["sim_time_s"] >= 3.0
        # both processes' threads (the bridge's, the policy's), 2 cores
        assert 0.0 < episode["policy_cpu_s"] < episode["cpu_s"] < 4.0 * episode["wall_s"], episode
        ticks = episode["scheduler_counters"]
        assert ticks["executed"] > 0 and ticks["chunks"] > 0, ticks  # the policy drove the robot
    sim = sum(e["sim_time_s"] for e in result["episodes"])
    clock = sim + sum(e["startup_s"] for e in result["episodes"])
    assert result["cpu_per_sim_s"] == pytest.approx(sum(e["cpu_s"] for e in result["episodes"]) / clock)
    assert result["realtime_factor"] == pytest.approx(clock / sum(e["wall_s"] for e in result["episodes"]))
    assert result["mean_episode_s"] == pytest.approx(sim / 2)
    assert result["wall_s"] >= sum(result["step_s"].values()) - 1.0
    assert result["layout"] == "lab"


def test_open_loop_and_seen_layouts_beside_the_new_ones(runs):
    result = runs["first_json"]
    split = json.loads((runs["out"] / "train" / "split.json").read_text())
    assert len(split["train"]) == 2 and len(split["held_out"]) == 1
    assert not set(split["train"]) & set(split["held_out"])
    assert result["held_out_episodes"] == split["held_out"]
    for name in ("train", "held_out"):
        scores = result["open_loop"][name]
        for key in ("arms_first_rad", "arms_chunk_rad", "hold_state_arms_first_rad", "hands_first_rad"):
            assert np.isfinite(scores[key]) and scores[key] >= 0.0, (name, key)
        assert scores["frames"] > 0
    # the seen-layout evaluation ran on a training demo's own layout seed
    trained_seeds = {int(Path(f).name.split("_seed_")[1].split("_")[0]) for f in split["train"]}
    seen = result["seen"]
    assert len(seen["episodes"]) == 1 and seen["layout_seeds"][0] in trained_seeds
    assert result["seen_success_rate"] == seen["success_rate"]
    metrics = (runs["out"] / "train" / "metrics.csv").read_text().splitlines()
    assert "val_loss" in metrics[0] and "val_arms_first_rad" in metrics[0]
    report = (runs["out"] / "report.md").read_text()
    assert "demonstrations' own layouts" in report and "hold current state" in report


def test_report_and_its_images_load(runs):
    out = runs["out"]
    report = (out / "report.md").read_text()
    assert "Closed-loop success" in report and "100000" in report
    for name in ("rollout.gif", "predicted_vs_expert.png", "loss.png"):
        assert f"]({name})" in report
    with Image.open(out / "rollout.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames >= 5
        assert gif.size == (640, 240)  # head camera | scene camera, 320x240 each
        gif.seek(gif.n_frames - 1)
        assert np.asarray(gif.convert("RGB")).std() > 5  # a rendered scene, not a blank frame
    for name in ("predicted_vs_expert.png", "loss.png"):
        with Image.open(out / name) as png:
            assert png.format == "PNG" and png.size[0] > 300


def test_second_run_reuses_every_cached_step_and_evaluates_again(runs):
    second = runs["second_json"]
    assert second["cached"] == {"demos": True, "convert": True, "train": True}
    assert len(second["episodes"]) == 2 and "eval" in second["step_s"]
    assert {p: p.stat().st_mtime_ns for p in runs["bag_times"]} == runs["bag_times"]
    checkpoint = runs["out"] / "train" / "checkpoint" / "model.safetensors"
    assert checkpoint.stat().st_mtime_ns == runs["checkpoint_time"]
    assert "demos: cached" in runs["second"].stdout and "train: cached" in runs["second"].stdout


def test_cache_keys_follow_their_inputs():
    base = MainJobConfig()
    demos = step_key("demos", {"episodes": base.demos}, "", ROOT)
    assert step_key("demos", {"episodes": base.demos}, "", ROOT) == demos
    assert step_key("demos", {"episodes": base.demos + 1}, "", ROOT) != demos
    train = step_key("train", {"steps": 10}, demos, ROOT)
    assert step_key("train", {"steps": 11}, demos, ROOT) != train
    assert step_key("train", {"steps": 10}, "other-upstream", ROOT) != train


def _copy_of_the_tree(dest: Path) -> Path:
    import shutil

    for name in ("psi0_ros", "training", "config", "msg"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_cache_keys_follow_the_sources_their_step_imports(tmp_path):
    """A step's key covers what its command imports (also inside functions) and the config files
    that code names: the safety layer and config/record.yaml change the demos' key, code the demos
    never import does not."""
    root = _copy_of_the_tree(tmp_path)
    demos = step_sources("demos", root)
    for path in ("psi0_ros/robot/bridge.py", "psi0_ros/control/safety.py", "psi0_ros/data/recorder.py"):
        assert Path(path) in demos, path
    assert Path("config/record.yaml") in demos and Path("config/sim.yaml") in demos
    assert not any(p.parts[0] == "training" for p in demos)
    assert Path("config/record.yaml") in step_sources("convert", root)  # the converter reads convert.cameras

    def keys() -> dict[str, str]:
        return {step: step_key(step, {}, "", root) for step in ("demos", "convert", "train")}

    def edit(path: str) -> None:
        file = root / path
        file.write_text(file.read_text() + "\n# changed\n")

    before = keys()
    edit("psi0_ros/robot/bridge.py")
    after = keys()
    assert after["demos"] != before["demos"] and after["train"] == before["train"]
    edit("training/engine.py")  # the demos never import training
    trained = keys()
    assert trained["demos"] == after["demos"] and trained["convert"] == after["convert"]
    assert trained["train"] != after["train"]
    after = trained
    edit("psi0_ros/bench/rtc.py")  # nor does any step import the benchmarks
    assert keys() == after
    edit("config/record.yaml")
    changed = keys()
    assert changed["demos"] != after["demos"] and changed["convert"] != after["convert"]
    assert changed["train"] == after["train"]


def test_the_episode_runner_names_an_episode_whose_process_left_no_result(tmp_path):
    from psi0_ros.jobs import child
    from psi0_ros.sim.tasks import get_task

    result_file = tmp_path / "episode.json"
    # the child raises (unknown task): its process ends without writing a result
    result = child.run_episode(get_task, {"name": "juggle"}, result_file, 120.0, {"seed": 7, "task": "juggle"})
    assert result["seed"] == 7 and result["task"] == "juggle" and result["success"] is None
    assert result["error"].startswith("episode process ended (1) without a result")
    with pytest.raises(ValueError, match="not a module-level function"):
        child.run_episode(lambda: {}, {}, result_file, 120.0, {})


def test_eval_names_a_missing_checkpoint_and_an_unknown_task(tmp_path, capsys):
    from psi0_ros.cli import main

    assert main(["eval", "--checkpoint", str(tmp_path / "nothing"), "--episodes", "1"]) == 2
    assert "nothing" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert main(["eval", "--checkpoint", str(tmp_path), "--task", "juggle", "--episodes", "1"]) == 2
    assert "juggle" in capsys.readouterr().err
    for speed in ("0", "-1", "nan"):
        assert main(["eval", "--checkpoint", str(tmp_path), "--sim-speed", speed, "--episodes", "1"]) == 2
        assert "--sim-speed must be a finite number > 0" in capsys.readouterr().err
