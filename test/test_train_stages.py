"""The three stages at their tiny presets chain into each other (stage 1 VLM -> stage 2 expert ->
stage 3 fine-tune), each loss falls, and stage 3's product loads as a psi0_ros policy checkpoint
and produces a chunk (what chunk_node does with it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training import synthetic
from training.engine import read_metrics
from training.run import build_config, run_stage


def _falls(output_dir: Path, window: int = 5) -> tuple[float, float]:
    losses = [row["loss"] for row in read_metrics(output_dir)]
    return float(np.mean(losses[:window])), float(np.mean(losses[-window:]))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chain")
    egodex = synthetic.write_egodex(root / "egodex", episodes=2, frames=24)
    he = synthetic.write_humanoid_everyday(root / "he", episodes=2, frames=24)
    episodes = root / "episodes"
    synthetic.write_episodes(episodes, episodes=2, frames=30)
    out = {name: root / name for name in ("stage1", "stage2", "stage3")}
    run_stage(
        build_config(
            "stage1",
            "tiny",
            [
                f"run.output_dir={out['stage1']}",
                f"data.egodex={egodex}",
                f"data.humanoid_everyday={he}",
                "run.steps=30",
            ],
        )
    )
    run_stage(
        build_config(
            "stage2",
            "tiny",
            [
                f"run.output_dir={out['stage2']}",
                f"data.root={he}",
                f"model.vlm={out['stage1'] / 'vlm'}",
                "run.steps=30",
            ],
        )
    )
    run_stage(
        build_config(
            "stage3",
            "tiny",
            [
                f"run.output_dir={out['stage3']}",
                f"data.root={episodes}",
                f"model.init={out['stage2'] / 'checkpoint'}",
                "model.vlm=",
                "run.steps=30",
            ],
        )
    )
    return out


def test_stage1_trains_the_vlm_on_fast_tokens_and_writes_a_vlm_and_tokenizer(chain):
    first, last = _falls(chain["stage1"])
    assert last < 0.9 * first, (first, last)
    assert (chain["stage1"] / "vlm" / "config.json").is_file()
    assert (chain["stage1"] / "fast" / "fast_config.json").is_file()
    assert (chain["stage1"] / "loss.png").is_file() and (chain["stage1"] / "metrics.csv").is_file()


def test_stage2_learns_delta_actions_on_the_stage1_vlm(chain):
    from psi0_ros.policy.checkpoint import read_config

    first, last = _falls(chain["stage2"])
    assert last < 0.9 * first, (first, last)
    config, vlm = read_config(chain["stage2"] / "checkpoint")
    assert config.expert.horizon == 16 and config.norm.mode == "q99" and not config.norm.normalize_state
    assert config.flow.max_delay == 0 and config.rtc.mode == "none"


def test_stage3_starts_from_the_stage2_blocks_and_its_checkpoint_drives_the_policy(chain):
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.interface import ActionPrefix, Observation, Policy

    first, last = _falls(chain["stage3"])
    assert last < 0.9 * first, (first, last)
    policy = Policy.from_checkpoint(chain["stage3"] / "checkpoint", seed=0)
    assert policy.config.expert.horizon == 30 and policy.config.flow.max_delay == 8
    assert policy.config.rtc.mode == "training" and policy.config.norm.mode == "bounds"
    frame = synthetic._frame(48, 64, 0, 3)
    observation = Observation(state=np.zeros(32, np.float32), image=frame, instruction="pick up the red cup")
    chunk = policy.infer(observation)
    assert chunk.shape == (30, 36) and np.isfinite(chunk).all()
    # chunk_node's way: no VLM in the process, features from vlm_node (here: this VLM's own).
    features, mask = policy.encode(frame, "pick up the red cup")
    served = Policy.from_checkpoint(chain["stage3"] / "checkpoint", load_vlm=False, seed=0)
    same = served.infer(Observation(state=np.zeros(32, np.float32), vlm_features=features, vlm_mask=mask))
    np.testing.assert_allclose(same, chunk, atol=1e-5)
    prefix = ActionPrefix(actions=chunk[15:], delay=4)
    following = policy.infer(observation, prefix)
    np.testing.assert_array_equal(following[:4], chunk[15:19])
    # The stage-2 expert (horizon 16) gave only the transformer blocks: chunk lengths differ.
    stage2 = load_checkpoint(chain["stage2"] / "checkpoint").expert.state_dict()
    from training.expert import load_init

    stage3_fresh = __import__("psi0_ros.policy.mmdit", fromlist=["ActionExpert"]).ActionExpert(policy.config.expert)
    loaded = load_init(stage3_fresh, load_checkpoint(chain["stage2"] / "checkpoint").expert, chain["stage2"])
    assert loaded and all(name.startswith("blocks.") for name in loaded)
    assert torch.equal(stage3_fresh.state_dict()["blocks.0.action_q.weight"], stage2["blocks.0.action_q.weight"])
    assert "action_pos" not in loaded
