"""The policy contract (DESIGN §6): what a checkpoint's numbers mean is written by training from the
stage's recipe and read back by serving, so the two cannot disagree.

A tiny stage 2 and a tiny stage 3 train for a few steps; each checkpoint must declare its stage's
recipe (representation, normalisation, state normalisation, RTC mode, max delay), and Policy.infer
must return absolute targets: for the delta checkpoint, the hands + arms integrated from the current
state with the lower body held, never the raw per-step deltas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from psi0_ros.layout import ACTION_LOWER_BODY, ACTION_UPPER_BODY, STATE_DIM, held_lower_body
from psi0_ros.policy.config import STAGE_RECIPES
from training import synthetic
from training.run import build_config, run_stage

FEW_STEPS = ("run.steps=3", "run.global_batch=4", "run.log_every=1", "run.save_every=3")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("contract")
    he = synthetic.write_humanoid_everyday(root / "he", episodes=2, frames=20)
    episodes = root / "episodes"
    synthetic.write_episodes(episodes, episodes=2, frames=20)
    out = {2: root / "stage2", 3: root / "stage3"}
    run_stage(build_config("stage2", "tiny", [f"run.output_dir={out[2]}", f"data.root={he}", *FEW_STEPS]))
    run_stage(build_config("stage3", "tiny", [f"run.output_dir={out[3]}", f"data.root={episodes}", *FEW_STEPS]))
    return {stage: directory / "checkpoint" for stage, directory in out.items()}


def _observation(policy, seed: int = 0):
    from psi0_ros.policy.interface import Observation

    rng = np.random.default_rng(seed)
    state = np.zeros(STATE_DIM, np.float32)
    state[ACTION_UPPER_BODY] = rng.uniform(0.3, 0.8, 28)  # far from zero: deltas alone would not reach it
    state[28:32] = (0.05, -0.02, 0.1, 0.72)  # torso roll/pitch/yaw, height: the commanded values
    features = rng.standard_normal((6, policy.config.expert.vlm_dim)).astype(np.float32)
    return Observation(state=state, vlm_features=features)


@pytest.mark.parametrize("stage", [2, 3])
def test_each_checkpoint_declares_its_stage_recipe(checkpoints, stage):
    from psi0_ros.policy.checkpoint import read_config

    config, _ = read_config(checkpoints[stage])
    recipe = STAGE_RECIPES[stage]
    declared = (
        config.action.representation,
        config.norm.mode,
        config.norm.normalize_state,
        config.rtc.mode,
        config.flow.max_delay,
    )
    expected = {2: ("delta", "q99", False, "none", 0), 3: ("absolute", "bounds", True, "training", 8)}[stage]
    assert declared == expected
    assert declared == (
        recipe.representation,
        recipe.norm_mode,
        recipe.normalize_state,
        recipe.rtc_mode,
        recipe.max_delay,
    )


def test_the_delta_checkpoint_serves_absolute_targets_integrated_from_the_state(checkpoints):
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.interface import Policy

    # Training and the config agree: the statistics are of deltas (the lower body is never a delta).
    stats = load_checkpoint(checkpoints[2]).stats.action
    assert not stats.min[ACTION_LOWER_BODY].any() and not stats.max[ACTION_LOWER_BODY].any()

    policy = Policy.from_checkpoint(checkpoints[2], load_vlm=False, seed=3)
    observation = _observation(policy)
    deltas = policy.normalizer.denormalize_actions(policy.infer_normalized(observation))
    policy.reset()
    chunk = policy.infer(observation)
    assert chunk.shape == (16, 36)
    state = observation.state
    # First row: the state's hands + arms plus one delta; then one delta per step.
    np.testing.assert_allclose(chunk[0, ACTION_UPPER_BODY], state[ACTION_UPPER_BODY] + deltas[0, :28], atol=1e-5)
    np.testing.assert_allclose(np.diff(chunk[:, :28], axis=0), deltas[1:, :28], atol=1e-5)
    assert np.abs(chunk[0, :28] - state[:28]).max() <= np.abs(deltas[0, :28]).max() + 1e-5  # close to the state
    assert np.abs(chunk[0, :28] - deltas[0, :28]).min() > 0.25  # never the raw deltas as joint targets
    # The lower body is held: the state's torso, no walking.
    np.testing.assert_array_equal(chunk[:, ACTION_LOWER_BODY], np.tile(held_lower_body(state), (16, 1)))


def test_the_absolute_checkpoint_serves_targets_and_continues_a_prefix(checkpoints):
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.interface import ActionPrefix, Policy

    policy = Policy.from_checkpoint(checkpoints[3], load_vlm=False, seed=3)
    observation = _observation(policy)
    chunk = policy.infer(observation)
    stats = load_checkpoint(checkpoints[3]).stats.action
    assert chunk.shape == (30, 36)
    assert (chunk >= stats.min - 1e-5).all() and (chunk <= stats.max + 1e-5).all()  # absolute, in the data's range
    following = policy.infer(observation, ActionPrefix(actions=chunk[15:], delay=3))
    np.testing.assert_array_equal(following[:3], chunk[15:18])


def test_serving_overrides_are_explicit_and_checked(checkpoints):
    from psi0_ros.policy.interface import Policy

    guided = Policy.from_checkpoint(checkpoints[3], load_vlm=False, rtc_mode="guidance", num_steps=2, guidance_beta=2.0)
    assert (guided.config.rtc.mode, guided.config.flow.num_steps, guided.config.rtc.guidance_beta) == (
        "guidance",
        2,
        2.0,
    )
    assert guided.config.action.representation == "absolute" and guided.config.flow.max_delay == 8
    with pytest.raises(ValueError, match="unknown RTC mode 'rtc'|RTCConfig.mode must be one of"):
        Policy.from_checkpoint(checkpoints[3], load_vlm=False, rtc_mode="rtc")
    with pytest.raises(ValueError, match="prefix of absolute actions cannot steer"):
        Policy.from_checkpoint(checkpoints[2], load_vlm=False, rtc_mode="guidance")
    with pytest.raises(ValueError, match="max_delay"):
        Policy.from_checkpoint(checkpoints[2], load_vlm=False, rtc_mode="training")


def test_training_overrides_of_the_recipe_are_checked_against_it():
    config = build_config("stage3", "tiny", ["model.max_delay=0"])
    assert config.recipe().rtc_mode == "none" and config.model.max_delay == 0
    with pytest.raises(ValueError, match="needs absolute actions"):
        build_config("stage2", "tiny", ["model.max_delay=4"])
    printed = build_config("stage2", "tiny")
    assert (printed.data.action_mode, printed.model.norm_mode, printed.model.normalize_state) == ("delta", "q99", False)


def test_training_and_the_policy_share_one_loss_and_one_transform_list():
    import dataclasses

    import torch

    from psi0_ros.policy.config import expert_preset, stage_recipe
    from psi0_ros.policy.interface import Policy, uses_token_sigma
    from psi0_ros.policy.mmdit import ActionExpert, Conditioning
    from psi0_ros.policy.tiny import randomize_modulation, synthetic_stats
    from psi0_ros.policy.transforms import Normalizer, Sample
    from training.expert import ExpertTrainModule

    for stage in (2, 3):
        config = stage_recipe(stage, dataclasses.replace(expert_preset("tiny"), proprio_dropout=0.0, obs_dropout=0.0))
        torch.manual_seed(stage)
        expert = randomize_modulation(ActionExpert(config.expert), seed=stage)
        stats = synthetic_stats(stage)
        policy = Policy(config, expert, Normalizer(stats, config.norm.mode, config.norm.normalize_state))
        generator = torch.Generator().manual_seed(stage)
        batch = {
            "features": torch.randn(3, 5, 64, generator=generator),
            "feature_mask": torch.ones(3, 5, dtype=torch.bool),
            "state": torch.randn(3, 36, generator=generator),
            "actions": torch.rand(3, 16, 36, generator=generator) * 2 - 1,
            "weights": torch.ones(3, 16, 36),
            "noise": torch.randn(3, 16, 36, generator=generator),
            "sigma": torch.rand(3, generator=generator),
            "delay": torch.tensor([0, 2, 5]) if config.flow.max_delay else torch.zeros(3, dtype=torch.long),
        }
        module = ExpertTrainModule(expert, None, False, uses_token_sigma(config)).eval()
        cond = Conditioning(batch["features"], batch["feature_mask"], batch["state"])
        with torch.no_grad():
            assert torch.equal(module(batch), policy.loss(batch, cond))
        # The list training cuts targets with is the one serving inverts: a chunk's targets,
        # turned back from the state it starts at, are the chunk (within the statistics' bounds).
        rng = np.random.default_rng(stage)
        rows = 16 + policy.transforms.extra_rows
        absolute = np.clip(rng.normal(0, 0.05, (rows, 36)).cumsum(0), -0.2, 0.2).astype(np.float32)
        state = np.zeros(36, np.float32)
        state[:28] = absolute[0, :28]
        targets = policy.transforms.forward(Sample(state=state, actions=absolute))
        served = policy.transforms.inverse(dataclasses.replace(targets, lower_body=absolute[-16:, 28:][0]))
        expected = absolute[-16:].copy()
        if config.action.representation == "delta":
            expected[:, 28:] = absolute[-16:, 28:][0]  # the lower body is held, not predicted
        np.testing.assert_allclose(served.actions, expected, atol=1e-5)
