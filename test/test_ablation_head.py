"""The naive DiT action head beside the MM-DiT: its forward pass and configuration, and
`psi0 ablate head` training both heads a few steps on demos made here and measuring them
(parameters, open-loop error, inference time; the closed loop is left out: episodes 0)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from psi0_ros.policy.checkpoint import build_expert
from psi0_ros.policy.config import ExpertConfig, expert_preset
from psi0_ros.policy.dit import DiTActionExpert
from psi0_ros.policy.mmdit import ActionExpert, Conditioning

TINY_DIT = dataclasses.replace(expert_preset("tiny"), arch="dit", proprio_dropout=0.0, obs_dropout=0.0)


def _inputs(batch: int = 2, tokens: int = 5, seed: int = 0) -> tuple[torch.Tensor, Conditioning]:
    g = torch.Generator().manual_seed(seed)
    actions = torch.randn(batch, TINY_DIT.horizon, TINY_DIT.action_dim, generator=g)
    features = torch.randn(batch, tokens, TINY_DIT.vlm_dim, generator=g)
    state = torch.randn(batch, TINY_DIT.state_dim, generator=g)
    return actions, Conditioning(features, torch.ones(batch, tokens, dtype=torch.bool), state)


def _randomized(expert: DiTActionExpert) -> DiTActionExpert:
    """adaLN-Zero starts every block as the identity: give the modulations weights."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in expert.blocks:
            block.modulation.weight.copy_(torch.randn(block.modulation.weight.shape, generator=g) * 0.05)
            block.modulation.bias.copy_(torch.randn(block.modulation.bias.shape, generator=g) * 0.2)
    return expert.eval()


def test_the_config_selects_the_head_and_the_mmdit_stays_the_default():
    assert ExpertConfig().arch == "mmdit"
    assert isinstance(build_expert(expert_preset("tiny")), ActionExpert)
    assert isinstance(build_expert(TINY_DIT), DiTActionExpert)
    with pytest.raises(ValueError, match="ExpertConfig.arch must be one of"):
        ExpertConfig(arch="unet")


def test_dit_forward_single_stream_shapes_masks_and_token_levels():
    expert = _randomized(DiTActionExpert(TINY_DIT))
    actions, cond = _inputs()
    sigma = torch.full((2,), 0.7)
    out = expert(actions, sigma, cond)
    assert out.shape == actions.shape and torch.isfinite(out).all()
    # a padded VLM token is never attended to: changing it changes nothing
    mask = cond.vlm_mask.clone()
    mask[:, -1] = False
    masked = Conditioning(cond.vlm_features, mask, cond.state)
    changed = cond.vlm_features.clone()
    changed[:, -1] += 10.0
    assert torch.allclose(
        expert(actions, sigma, masked), expert(actions, sigma, Conditioning(changed, mask, cond.state)), atol=1e-6
    )
    # one level for every token is the same as that level per token
    per_token = expert(actions, sigma[:, None].expand(2, TINY_DIT.horizon), cond)
    assert torch.allclose(out, per_token, atol=1e-5)
    # the observation matters (every token shares the one attention)
    other = Conditioning(cond.vlm_features + 1.0, cond.vlm_mask, cond.state)
    assert not torch.allclose(out, expert(actions, sigma, other), atol=1e-4)
    with pytest.raises(ValueError, match="noisy_actions must be"):
        expert(actions[:, :3], sigma, cond)


def test_same_width_and_depth_about_half_the_block_parameters():
    config = expert_preset("psi0")
    dit = dataclasses.replace(config, arch="dit")
    with torch.device("meta"):
        mmdit_params = ActionExpert(config).num_parameters()
        dit_params = DiTActionExpert(dit).num_parameters()
    assert 0.4 * mmdit_params < dit_params < 0.7 * mmdit_params, (mmdit_params, dit_params)


def test_ablate_head_trains_both_heads_on_the_same_demos(tmp_path):
    from psi0_ros.cli import main
    from training import synthetic

    demos = tmp_path / "episodes"
    synthetic.write_episodes(demos, episodes=2, frames=30)
    out = tmp_path / "head.json"
    status = main(
        ["ablate", "head", "--demos", str(demos), "--set", "run.steps=4", "--episodes", "0"]
        + ["--timing-repeats", "2", "--json", str(out)]
    )
    assert status == 0
    document = json.loads(out.read_text())
    heads = {h["arch"]: h for h in document["heads"]}
    assert set(heads) == {"mmdit", "dit"}
    assert heads["dit"]["parameters"] < heads["mmdit"]["parameters"]
    for head in heads.values():
        assert head["arms_first_rad"] > 0 and head["inference_ms"] > 0
        assert head["success_rate"] is None  # no closed loop asked for
    assert "| dit |" in out.with_suffix(".md").read_text()
    written = json.loads((tmp_path / "head_heads" / "dit" / "checkpoint" / "config.json").read_text())
    assert written["policy"]["expert"]["arch"] == "dit"


def test_ablate_head_refuses_bad_input(tmp_path, capsys):
    from psi0_ros.cli import main

    out = tmp_path / "head.json"
    assert main(["ablate", "head", "--demos", str(tmp_path / "none"), "--json", str(out)]) == 2
    assert "no demo directory" in capsys.readouterr().err
    assert not out.exists()
