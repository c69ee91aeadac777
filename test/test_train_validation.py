"""Held-out validation in stage 3: whole episodes left out of training and of the statistics,
val_* columns in metrics.csv every run.eval_every steps (kept on resume), clear config errors;
and loss.png drawn with the validation curves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from training import synthetic
from training.config import apply_overrides, preset
from training.engine import DistInfo, read_metrics, train
from training.expert import ExpertTask
from training.run import build_config, run_stage
from training.validation import VAL_METRICS, split_held_out, strided_frames

VAL_COLUMNS = ("val_loss", *(f"val_{key}" for key in VAL_METRICS))


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("episodes")
    synthetic.write_episodes(root, episodes=3, frames=24, size=(32, 32))
    return root


def _stage3(out: Path, episodes: Path, *extra: str):
    settings = [f"run.output_dir={out}", f"data.root={episodes}", "run.steps=6", "run.eval_every=3"]
    return build_config("stage3", "tiny", [*settings, "data.val_episodes=1", *extra])


def test_held_out_episode_is_left_out_and_val_columns_are_logged(episodes, tmp_path, single_thread):
    config = _stage3(tmp_path / "run", episodes)
    task = ExpertTask(config)
    result = train(task, config.run, config.optim, config)
    assert result.output is not None
    held = task.validation.held_out.entries
    trained = task.samples.source.entries
    assert len(held) == 1 and len(trained) == 2
    assert held[0].source not in {e.source for e in trained}
    assert len(task.samples) == sum(e.length for e in trained)  # no held-out frame is a training sample
    train_actions = np.concatenate([e.action for e in trained])
    np.testing.assert_allclose(task.stats.action.max, train_actions.max(axis=0), rtol=1e-6)  # stats: training only

    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for row in rows:
        has_val = row["step"] in (3, 6)
        assert all((key in row) == has_val for key in VAL_COLUMNS), row
    assert all(np.isfinite(rows[2][key]) and rows[2][key] >= 0 for key in VAL_COLUMNS)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        assert set(VAL_COLUMNS) <= set(csv.DictReader(f).fieldnames)
    assert (tmp_path / "run" / "loss.png").is_file()


def test_validation_is_reproducible_and_kept_on_resume(episodes, tmp_path, single_thread):
    whole = run_stage(_stage3(tmp_path / "whole", episodes))
    run_stage(_stage3(tmp_path / "split", episodes), max_steps=4)
    second = run_stage(_stage3(tmp_path / "split", episodes))
    assert whole.losses[4:] == second.losses  # validation draws nothing from the training's RNG
    a, b = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    for step in (3, 6):
        assert all(a[step - 1][key] == pytest.approx(b[step - 1][key], rel=1e-5) for key in VAL_COLUMNS), step


def test_val_episodes_must_leave_episodes_to_train_on(episodes, tmp_path):
    config = _stage3(tmp_path / "all", episodes, "data.val_episodes=3")
    with pytest.raises(ValueError, match=r"data.val_episodes \(3\) must be fewer than the 3 episodes"):
        ExpertTask(config).setup(DistInfo())


def test_bad_validation_settings_are_quoted():
    base = preset("stage3", "tiny")
    with pytest.raises(ValueError, match="ExpertData.val_episodes must be an int >= 0, got -1"):
        apply_overrides(base, ["data.val_episodes=-1"])
    with pytest.raises(ValueError, match="RunConfig.eval_every must be a positive int, got 0"):
        apply_overrides(base, ["run.eval_every=0"])


def test_split_is_seeded_by_episode_and_frames_are_strided(episodes):
    from training.readers import open_source

    source = open_source("episodes", str(episodes))
    train_a, held_a = split_held_out(source, 1, seed=0)
    train_b, held_b = split_held_out(source, 1, seed=0)
    assert held_a.indices == held_b.indices and sorted(train_a.indices + held_a.indices) == [0, 1, 2]
    assert split_held_out(source, 0, seed=0) == (source, None)
    assert strided_frames([10, 5], limit=100) == [(0, f) for f in range(10)] + [(1, f) for f in range(5)]
    assert strided_frames([10, 5], limit=5) == [(0, 0), (0, 3), (0, 6), (0, 9), (1, 0)]


def test_loss_plot_draws_train_and_validation_curves(tmp_path):
    from psi0_ros.loss_plot import plot_training_curves

    metrics = tmp_path / "metrics.csv"
    lines = ["step,loss,val_loss,val_arms_first_rad"]
    lines += [f"{s},{1 / s},{'' if s % 5 else 1.5 / s},{'' if s % 5 else 0.1}" for s in range(1, 21)]
    metrics.write_text("\n".join(lines) + "\n")
    out = plot_training_curves(metrics, tmp_path / "loss.png")
    assert out.is_file() and out.stat().st_size > 1000


def test_episode_reader_keeps_episodes_loaded_within_its_byte_budget(episodes, monkeypatch):
    """Frames drawn from every episode in turn must not re-read a whole file per sample."""
    import psi0_ros.data.hdf5 as hdf5
    from training import readers

    reads = []
    real = hdf5.read_episode

    def counted(path, images=True):
        if images:  # opening the source reads actions and states only
            reads.append(path)
        return real(path, images=images)

    monkeypatch.setattr(hdf5, "read_episode", counted)
    source = readers.open_source("episodes", str(episodes))
    assert len(source.entries) >= 2
    for _ in range(3):
        for episode in range(len(source.entries)):
            assert source.image(episode, 0).ndim == 3
    assert len(reads) == len(source.entries)  # each file read once, then kept
    # a budget smaller than one episode keeps only the newest: every switch reads again
    small = readers._LRU(limit=1 << 16, budget=1)
    for key in ("a", "b", "a"):
        small.get_or(key, lambda key=key: real(source.entries[0].source))
    assert list(small) == ["a"] and len(small.weights) == 1
