"""The training loop: resuming continues exactly as an uninterrupted run, 2 processes under
torchrun (gloo, CPU) match 1 process with the same global batch, the feature cache gives the
same loss as running the VLM, configs and readers fail clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import synthetic
from training.config import apply_overrides, preset
from training.engine import latest_checkpoint, read_metrics
from training.readers import DatasetError, open_source
from training.run import build_config, run_stage

ROOT = Path(__file__).resolve().parents[1]
# 2 processes vs 1 on the same global batch differ only in float summation order (DDP averages
# the gradients of two half batches): a relative loss difference below 1e-4 over 6 steps.
DISTRIBUTED_RTOL = 1e-4


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("episodes")
    synthetic.write_episodes(root, episodes=2, frames=24)
    return root


def _stage3(out: Path, episodes: Path, *extra: str):
    return build_config("stage3", "tiny", [f"run.output_dir={out}", f"data.root={episodes}", "run.steps=6", *extra])


def test_resume_continues_identically(episodes, tmp_path):
    whole = run_stage(_stage3(tmp_path / "whole", episodes))
    first = run_stage(_stage3(tmp_path / "split", episodes), max_steps=3)
    assert first.output is None and latest_checkpoint(tmp_path / "split").name == "step_00000003"
    second = run_stage(_stage3(tmp_path / "split", episodes))
    assert first.losses + second.losses == whole.losses  # bit-identical: data position, RNG, optimiser
    assert [r["step"] for r in read_metrics(tmp_path / "split")] == [1, 2, 3, 4, 5, 6]
    a = torch.load(latest_checkpoint(tmp_path / "whole") / "trainer.pt", weights_only=False)["model"]
    b = torch.load(latest_checkpoint(tmp_path / "split") / "trainer.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_match_one_with_the_same_global_batch(episodes, tmp_path):
    no_dropout = ("model.proprio_dropout=0", "model.obs_dropout=0")  # dropout masks are per process
    single = run_stage(_stage3(tmp_path / "one", episodes, *no_dropout))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "training.run", "stage3", "--preset", "tiny",
        "--set", f"run.output_dir={tmp_path / 'two'}", "--set", f"data.root={episodes}", "--set", "run.steps=6",
        *[arg for pair in no_dropout for arg in ("--set", pair)],
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    distributed = [row["loss"] for row in read_metrics(tmp_path / "two")]
    np.testing.assert_allclose(distributed, single.losses, rtol=DISTRIBUTED_RTOL)
    assert (tmp_path / "two" / "checkpoint" / "model.safetensors").is_file()


def test_feature_cache_gives_the_loss_of_running_the_vlm(episodes, tmp_path):
    cached = run_stage(_stage3(tmp_path / "cached", episodes, "data.cache_dtype=float32", "run.steps=3"))
    live = run_stage(_stage3(tmp_path / "live", episodes, "data.feature_cache=false", "run.steps=3"))
    assert (tmp_path / "cached" / "feature_cache" / "features.bin").is_file()
    assert not (tmp_path / "live" / "feature_cache").exists()
    np.testing.assert_allclose(cached.losses, live.losses, rtol=1e-4)


def test_stage3_reads_a_lerobot_dataset_in_the_reference_layout(tmp_path):
    root = synthetic.write_lerobot(tmp_path / "lerobot", episodes=2, frames=20)
    source = open_source("lerobot", str(root))
    assert [e.length for e in source.entries] == [20, 20]
    assert source.entries[0].state.shape == (20, 36) and not source.entries[0].state[:, 32:].any()
    frame = source.image(1, 7).astype(np.int16)
    assert np.abs(frame - synthetic._frame(48, 64, 1, 7)).mean() < 8  # the right frame, through h264
    result = run_stage(
        build_config(
            "stage3",
            "tiny",
            [
                f"run.output_dir={tmp_path / 'out'}",
                f"data.root={root}",
                "data.format=lerobot",
                "run.steps=3",
                "data.color_jitter=true",
            ],
        )  # fmt: skip
    )
    assert len(result.losses) == 3 and np.isfinite(result.losses).all()
    assert not (tmp_path / "out" / "feature_cache").exists()  # jitter on: no cache


def test_config_overrides_are_typed_and_checked():
    config = apply_overrides(preset("stage3", "psi0"), ["optim.lr=3e-4", "run.resume=false", "optim.betas=0.9,0.95"])
    assert config.optim.lr == 3e-4 and config.run.resume is False and config.optim.betas == (0.9, 0.95)
    assert config.optim.schedule == "cosine" and config.optim.warmup_steps == 1000 and config.run.global_batch == 128
    with pytest.raises(ValueError, match="unknown field 'lrr'"):
        apply_overrides(config, ["optim.lrr=1"])
    with pytest.raises(ValueError, match=r"OptimConfig.lr must be > 0, got -1.0"):
        apply_overrides(config, ["optim.lr=-1"])
    with pytest.raises(ValueError, match="run.steps: cannot read 'many'"):
        apply_overrides(config, ["run.steps=many"])
    with pytest.raises(ValueError, match="needs absolute actions"):
        apply_overrides(preset("stage2", "psi0"), ["model.max_delay=8"])


def test_episodes_marked_failure_are_left_out_unless_asked_for(tmp_path):
    import h5py

    root = tmp_path / "mixed"
    synthetic.write_episodes(root, episodes=3, frames=24)
    files = sorted(root.rglob("*.hdf5"))
    with h5py.File(files[1], "r+") as f:  # as `psi0 convert` marks a FAILURE event
        f.attrs["outcome"] = "failure"
    source = open_source("episodes", str(root))
    assert [e.source for e in source.entries] == [files[0], files[2]] and source.skipped == [files[1]]
    assert len(open_source("episodes", str(root), include_failures=True).entries) == 3
    for path in (files[0], files[2]):
        with h5py.File(path, "r+") as f:
            f.attrs["outcome"] = "failure"
    with pytest.raises(DatasetError, match=r"all 3 episodes are marked outcome 'failure'.*include_failures=true"):
        open_source("episodes", str(root))


def test_malformed_files_name_the_file_and_the_problem(tmp_path, episodes):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "episode_0000.hdf5").write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match=r"episode_0000\.hdf5: not a readable psi0_ros episode file"):
        open_source("episodes", str(broken))
    he = synthetic.write_humanoid_everyday(tmp_path / "he", episodes=1, frames=4)
    data = next(he.glob("*/*/episode_*/data.json"))
    data.write_text(data.read_text().replace('"joint_angles": [', '"joint_angles": [0.0, 0.0, ', 1))
    with pytest.raises(DatasetError, match=r"data\.json frame 0: expected the G1 layout \(28 joint_angles"):
        open_source("humanoid_everyday", str(he))
    data.write_text("{not json")
    with pytest.raises(DatasetError, match=r"data\.json: not valid JSON"):
        open_source("humanoid_everyday", str(he))
    lerobot = synthetic.write_lerobot(tmp_path / "lerobot", episodes=1, frames=4)
    (lerobot / "meta" / "info.json").write_text('{"codebase_version": "v3.0"}')
    with pytest.raises(DatasetError, match=r"info\.json: codebase_version 'v3.0', expected 'v2.1'"):
        open_source("lerobot", str(lerobot))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_source("episodes", str(tmp_path / "nowhere"))


def test_psi0_train_command_prints_the_config_and_names_what_is_missing(tmp_path, capsys):
    import json

    from psi0_ros.cli import main

    assert main(["train", "stage2", "--preset", "psi0", "--set", "optim.lr=2e-4", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 2e-4 and printed["data"]["horizon"] == 16
    assert printed["data"]["action_mode"] == "delta" and printed["model"]["norm_mode"] == "q99"
    assert main(["train", "stage3", "--set", f"run.output_dir={tmp_path / 'out'}"]) == 2
    assert "data.root is empty" in capsys.readouterr().out
    assert main(["train", "stage3", "--preset", "nope"]) == 2
    assert "unknown stage3 preset 'nope'" in capsys.readouterr().out


def test_end_to_end_option_trains_the_vlm_too(episodes, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "e2e"
    result = run_stage(_stage3(out, episodes, "model.train_vlm=true", "run.steps=2"))
    assert len(result.losses) == 2 and not (out / "feature_cache").exists()
    before, after = (
        load_file(str(out / "tiny_vlm" / "model.safetensors")),
        load_file(str(out / "vlm" / "model.safetensors")),
    )
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed  # the VLM's weights moved
    from psi0_ros.policy.checkpoint import read_config

    assert read_config(out / "checkpoint")[1] is not None
