"""Stage 1 on the robot's own episodes: each frame's answer is the FAST tokens of that frame's 36-D action."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from psi0_ros.policy.transforms import compute_stats
from training import synthetic
from training.engine import DistInfo, read_metrics
from training.readers import HDF5EpisodeSource
from training.robot_actions import RobotActionSource
from training.run import build_config, run_stage
from training.stage1 import Stage1Task, normalize_q99


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robot_episodes") / "episodes"
    synthetic.write_episodes(root, episodes=2, frames=30)
    return root


def test_the_source_gives_every_stride_th_frame_with_its_action_and_image(episodes):
    plain = HDF5EpisodeSource(episodes)
    source = RobotActionSource(episodes, stride=3)
    assert len(source.episodes) == len(plain.entries) == 2
    for i, entry in enumerate(plain.entries):
        assert source.episodes[i].instruction == entry.instruction
        np.testing.assert_array_equal(source.episodes[i].actions, entry.action[::3])
        assert source.episodes[i].actions.shape == (10, 36)
        np.testing.assert_array_equal(source.image(i, 4), plain.image(i, 12))
        assert not np.array_equal(source.image(i, 4), source.image(i, 5))


def test_stage1_answers_decode_to_the_frames_own_actions_and_the_loss_falls(episodes, tmp_path):
    config = build_config(
        "stage1", "tiny", [f"run.output_dir={tmp_path / 'stage1'}", f"data.episodes={episodes}", "run.steps=30"]
    )
    task = Stage1Task(config)
    task.setup(DistInfo())
    source = RobotActionSource(episodes)
    stats = compute_stats([e.actions for e in source.episodes])
    start = int(task.tokenizer.convert_tokens_to_ids("<|action_start|>"))
    first_action_id = int(task.samples.action_ids[0])
    for index in (0, 17, 41):  # frames of both episodes
        episode, frame = divmod(index, 30)
        sample = task.samples[(index, 0)]
        ids = sample["input_ids"][sample["prompt_length"] :].tolist()
        assert ids[0] == start
        fast_ids = [i - first_action_id for i in ids[1:-2]]  # between the start token and (end, im_end)
        decoded = task.fast.decode(fast_ids)[0]
        expected = normalize_q99(source.episodes[episode].actions[frame][None], stats)[0]
        # FAST rounds DCT coefficients at 1/scale; one frame's DCT is the identity
        np.testing.assert_allclose(decoded, expected, atol=0.6 / task.fast.spec.scale)
    run_stage(config)
    losses = [row["loss"] for row in read_metrics(tmp_path / "stage1")]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first, (first, last)
    assert (tmp_path / "stage1" / "vlm" / "config.json").is_file()


def test_no_stage1_data_is_one_clear_error(tmp_path):
    config = build_config("stage1", "tiny", [f"run.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="data.episodes=DIR"):
        Stage1Task(config).setup(DistInfo())
