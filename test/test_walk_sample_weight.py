"""Drawing the walking frames more often (data.walk_sample_weight): which frames count as walking
(their chunk commands the base at or above the lower body's stand speed, read from episode files
written by the real writer), the weighted draw's proportions, its determinism and resume, and the
setting's check."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from psi0_ros.control.amo import STAND_SPEED
from psi0_ros.layout import ACTION_DIM, STATE_DIM, STATE_PADDED_DIM, VELOCITY_DIMS
from training import synthetic
from training.config import RunConfig
from training.engine import DistInfo, GlobalBatchSampler
from training.run import build_config, run_stage

HORIZON = 8


def _write_walk(root, frames: int, walks: list[tuple[int, int, int, float]]) -> None:
    """One episode whose base command is `value` on dimension VELOCITY_DIMS[dim] over [first, last)."""
    from psi0_ros.data.hdf5 import EpisodeData, write_episode
    from psi0_ros.layout import NUM_JOINTS

    action = np.zeros((frames, ACTION_DIM), np.float32)
    action[:, : VELOCITY_DIMS[0]] = np.linspace(0, 0.3, frames)[:, None]  # arms etc. move throughout
    for first, last, dim, value in walks:
        action[first:last, VELOCITY_DIMS[dim]] = value
    state = np.zeros((frames, STATE_PADDED_DIM), np.float32)
    state[:, :STATE_DIM] = action[:, :STATE_DIM]
    write_episode(
        EpisodeData(
            timestamps=np.arange(frames) / 30.0,
            action=action,
            state=state,
            joint_positions=np.zeros((frames, NUM_JOINTS)),
            images={"ego": [synthetic._jpeg(synthetic._frame(24, 32, 0, t)) for t in range(frames)]},
            image_offsets={"ego": np.zeros(frames, np.float32)},
            attrs={"task": "walk", "episode_index": 0, "fps": 30.0, "outcome": "success"},
        ),
        root / "episode_0000.hdf5",
    )


def test_walking_frames_are_those_whose_chunk_commands_the_base_to_move(tmp_path):
    from psi0_ros.policy.transforms import Normalizer
    from training.expert import ExpertSamples, compute_norm_stats, open_source

    # vx walks over frames 20-29; vyaw turns over 40-41; a vy just under the stand speed over 50-59
    # (the lower body stands in place for it); the episode ends at 64
    _write_walk(tmp_path, 64, [(20, 30, 0, 0.3), (40, 42, 2, -0.2), (50, 60, 1, 0.9 * STAND_SPEED)])
    source = open_source("episodes", str(tmp_path), "", False)
    normalizer = Normalizer(compute_norm_stats(source, "absolute"), "bounds", True)
    samples = ExpertSamples(source, normalizer, HORIZON, "absolute", 0, None, False)
    walking = samples.walking()
    expected = np.zeros(64, bool)
    expected[20 - HORIZON + 1 : 30] = True  # a frame's chunk is its next HORIZON rows
    expected[40 - HORIZON + 1 : 42] = True
    np.testing.assert_array_equal(walking, expected)


def _sampler(weights, start_step: int = 0, size: int = 100, seed: int = 0) -> GlobalBatchSampler:
    run = RunConfig(output_dir="unused", global_batch=32, seed=seed)
    return GlobalBatchSampler(size, run, DistInfo(), start_step=start_step, weights=weights)


def _draws(sampler: GlobalBatchSampler, batches: int) -> list[list[tuple[int, int]]]:
    stream = iter(sampler)
    return [next(stream) for _ in range(batches)]


def test_the_weighted_draw_keeps_the_proportions_and_is_reproducible():
    weights = np.ones(100)
    weights[:10] = 9.0  # 10 walking frames of 100, drawn 9x: half of the draws
    batches = _draws(_sampler(weights), 400)
    indices = np.array([index for batch in batches for index, _ in batch])
    share = float((indices < 10).mean())
    assert abs(share - 0.5) < 0.03, share
    assert len(set(indices[indices >= 10])) == 90  # every other frame is still drawn
    # the same stream from the same seed, and a resumed sampler continues it exactly
    assert _draws(_sampler(weights), 400) == batches
    assert _draws(_sampler(weights, start_step=250), 150) == batches[250:]
    assert _draws(_sampler(weights, seed=1), 10) != batches[:10]
    # equal weights are the plain permutation: each frame once per epoch, as without weights
    assert _draws(_sampler(np.full(100, 3.0)), 6) == _draws(_sampler(None), 6)
    epoch = [index for batch in _draws(_sampler(None), 3) for index, _ in batch]
    assert len(set(epoch)) == len(epoch) == 96


@pytest.mark.parametrize("weights", [np.ones(99), np.r_[np.ones(99), -1.0], np.r_[np.ones(99), np.nan], np.zeros(100)])
def test_bad_sampling_weights_are_refused(weights):
    with pytest.raises(ValueError, match="sampling weights must be 100 finite values >= 0"):
        _sampler(weights)


def test_a_run_drawing_walking_frames_more_differs_and_resumes_identically(tmp_path):
    root = tmp_path / "episodes"
    root.mkdir()
    _write_walk(root, 64, [(30, 40, 0, 0.3)])  # 17 of 64 frames walking

    def config(out: str, *extra: str):
        return build_config(
            "stage3",
            "tiny",
            [f"run.output_dir={tmp_path / out}", f"data.root={root}", "run.steps=6", *extra],
        )

    plain = run_stage(config("plain"))
    whole = run_stage(config("whole", "data.walk_sample_weight=5"))
    first = run_stage(config("split", "data.walk_sample_weight=5"), max_steps=3)
    second = run_stage(config("split", "data.walk_sample_weight=5"))
    assert first.losses + second.losses == whole.losses
    assert whole.losses != plain.losses


def test_the_setting_is_checked_and_defaults_to_drawing_every_frame_once():
    assert build_config("stage3", "tiny").data.walk_sample_weight == 1.0
    assert build_config("stage3", "psi0").data.walk_sample_weight == 1.0
    assert build_config("stage3", "sim").data.walk_sample_weight == 6.0  # the main job's recipe
    assert build_config("stage3", "sim", ["data.walk_sample_weight=4"]).data.walk_sample_weight == 4.0
    with pytest.raises(ValueError, match="walk_sample_weight must be > 0"):
        build_config("stage3", "sim", ["data.walk_sample_weight=0"])
    data = build_config("stage3", "sim").data
    with pytest.raises(ValueError, match="walk_sample_weight must be > 0"):
        replace(data, walk_sample_weight=True)
