"""Policy.infer(observation, prefix=None) -> chunk: physical units, prefixes, errors, safety."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from psi0_ros.policy.config import RTCConfig
from psi0_ros.policy.interface import ActionPrefix, Observation, Policy, PolicyError
from psi0_ros.policy.mmdit import ActionExpert
from psi0_ros.policy.tiny import randomize_modulation, synthetic_stats, tiny_policy_config
from psi0_ros.policy.transforms import Normalizer


def _policy(mode: str = "training", seed: int = 0) -> Policy:
    config = tiny_policy_config(mode=mode)
    torch.manual_seed(0)
    expert = randomize_modulation(ActionExpert(config.expert))
    return Policy(config, expert, Normalizer(synthetic_stats(), config.norm.mode), seed=seed)


def _observation(seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        state=rng.uniform(-0.5, 0.5, 32).astype(np.float32), vlm_features=rng.normal(size=(10, 64)).astype(np.float32)
    )


def test_chunk_is_physical_within_bounds_and_reproducible():
    policy = _policy()
    chunk = policy.infer(_observation())
    stats = policy.normalizer.stats.action
    assert chunk.shape == (16, 36) and chunk.dtype == np.float32
    assert (chunk >= stats.min.astype(np.float32) - 1e-6).all() and (chunk <= stats.max.astype(np.float32) + 1e-6).all()
    assert not np.array_equal(chunk, policy.infer(_observation()))  # fresh noise per call
    policy.reset()
    assert np.array_equal(chunk, policy.infer(_observation()))  # same seed after reset
    assert not np.allclose(chunk, policy.infer(_observation(seed=1)))


@pytest.mark.parametrize("mode", ["training", "guidance"])
def test_prefix_actions_start_the_chunk(mode):
    policy = _policy(mode)
    previous = policy.infer(_observation())
    prefix = ActionPrefix(actions=previous[6:], delay=3)
    chunk = policy.infer(_observation(seed=2), prefix)
    assert np.array_equal(chunk[:3], previous[6:9])
    ignored = _policy("none")
    ignored_chunk = ignored.infer(_observation(seed=2), prefix)
    ignored.reset()
    assert np.array_equal(ignored_chunk, ignored.infer(_observation(seed=2)))


def test_bad_prefixes_are_clear_errors():
    policy = _policy("training")
    actions = np.zeros((10, 36), np.float32)
    with pytest.raises(ValueError, match="beyond what the model was trained for"):
        policy.infer(_observation(), ActionPrefix(actions, delay=8))
    with pytest.raises(ValueError, match="delay must be in"):
        policy.infer(_observation(), ActionPrefix(actions[:2], delay=3))
    with pytest.raises(ValueError, match="prefix actions"):
        policy.infer(_observation(), ActionPrefix(np.zeros((4, 35), np.float32), delay=1))
    with pytest.raises(ValueError, match="non-finite"):
        policy.infer(_observation(), ActionPrefix(np.full((4, 36), np.nan, np.float32), delay=1))


def test_bad_observations_are_clear_errors():
    policy = _policy()
    good = _observation()
    with pytest.raises(ValueError, match="vlm_features must be"):
        policy.infer(dataclasses.replace(good, vlm_features=np.zeros((10, 63), np.float32)))
    with pytest.raises(ValueError, match="non-finite"):
        policy.infer(dataclasses.replace(good, vlm_features=np.full((10, 64), np.inf, np.float32)))
    with pytest.raises(ValueError, match="vlm_mask"):
        policy.infer(dataclasses.replace(good, vlm_mask=np.zeros(10, bool)))
    with pytest.raises(ValueError, match="state"):
        policy.infer(dataclasses.replace(good, state=np.zeros(30, np.float32)))
    with pytest.raises(ValueError, match="image and an instruction"):
        policy.infer(Observation(state=good.state))
    with pytest.raises(RuntimeError, match="without its VLM"):
        policy.infer(Observation(state=good.state, image=np.zeros((480, 640, 3), np.uint8), instruction="x"))


def test_non_finite_model_output_never_reaches_the_caller():
    policy = _policy()
    with torch.no_grad():
        policy.expert.final_out.bias[0] = float("nan")
    with pytest.raises(PolicyError, match="non-finite"):
        policy.infer(_observation())


def test_rtc_mode_training_needs_a_model_trained_with_prefixes():
    from psi0_ros.policy.sampling import check_policy_config  # the config-vs-sampler checks live there

    with pytest.raises(ValueError, match="max_delay"):
        check_policy_config(
            dataclasses.replace(tiny_policy_config(), flow=dataclasses.replace(tiny_policy_config().flow, max_delay=0))
        )
    assert RTCConfig(mode="guidance").guidance_beta == 5.0


def test_a_new_rtc_mode_is_one_registered_class():
    from psi0_ros.policy import sampling

    assert sampling.rtc_modes()[:3] == ("none", "training", "guidance")
    with pytest.raises(ValueError, match="unknown RTC mode 'mine'.*'guidance'"):
        sampling.rtc_sampler("mine")
    with pytest.raises(ValueError, match="RTCConfig.mode must be one of"):
        sampling.check_policy_config(tiny_policy_config(mode="mine"))
    seen: list[tuple[object, int]] = []

    class ShiftedNoise:  # a mode that returns the noise shifted by the prefix's first action
        mode = "mine"
        uses_prefix = True

        def check_config(self, config):
            if config.flow.num_steps != 4:
                raise ValueError("mine needs flow.num_steps=4")

        def check_delay(self, delay, config):
            if delay > 2:
                raise ValueError("mine freezes at most 2 actions")

        def sample(self, expert, cond, noise, previous, delay, config):
            seen.append((None if previous is None else tuple(previous.shape), delay))
            return noise * 0.0 if previous is None else noise * 0.0 + previous[:, :1]

    sampling.register_sampler(ShiftedNoise)
    try:
        with pytest.raises(ValueError, match="already registered"):
            sampling.register_sampler(type("Other", (ShiftedNoise,), {}))
        with pytest.raises(ValueError, match="num_steps=4"):
            sampling.check_policy_config(
                dataclasses.replace(
                    tiny_policy_config(mode="mine"), flow=dataclasses.replace(tiny_policy_config().flow, num_steps=5)
                )
            )
        policy = _policy("mine")
        zero = policy.infer(_observation())
        assert seen == [(None, 0)]
        assert np.allclose(zero, policy.normalizer.denormalize_actions(np.zeros((16, 36), np.float32)))
        previous = np.tile(zero[:1] * 0.5, (5, 1))
        chunk = policy.infer(_observation(), ActionPrefix(actions=previous, delay=2))
        assert seen[-1] == ((1, 5, 36), 2)
        assert np.array_equal(chunk[:2], previous[:2])  # the frozen ticks are the prefix's own actions
        with pytest.raises(ValueError, match="at most 2"):
            policy.infer(_observation(), ActionPrefix(actions=previous, delay=3))
    finally:
        sampling.RTC_SAMPLERS.pop("mine")
    with pytest.raises(ValueError, match="unknown RTC mode"):
        sampling.rtc_sampler("mine")


def test_noise_scale_defaults_to_flow_matching_as_trained_and_narrows_the_samples():
    from psi0_ros.policy.config import FlowConfig, PolicyConfig

    assert FlowConfig().noise_scale == 1.0
    # a checkpoint written before the field existed reads as 1 (its config.json has no such key)
    old = tiny_policy_config().to_dict()
    del old["flow"]["noise_scale"]
    assert PolicyConfig.from_dict(old).flow.noise_scale == 1.0

    def samples(scale: float | None, n: int = 6) -> np.ndarray:
        policy = _policy()
        if scale is not None:
            policy.config = dataclasses.replace(
                policy.config, flow=dataclasses.replace(policy.config.flow, noise_scale=scale)
            )
        policy.reset()
        return np.stack([policy.infer_normalized(_observation()) for _ in range(n)])

    as_trained = samples(None)
    assert np.array_equal(as_trained, samples(1.0))  # scale 1 is bit-identical to the default
    spread = {s: float(np.abs(x - x.mean(axis=0)).mean()) for s, x in ((1.0, as_trained), (0.5, samples(0.5)))}
    assert spread[0.5] < 0.75 * spread[1.0], spread
    deterministic = samples(0.0)
    assert np.allclose(deterministic, deterministic[0], atol=1e-6)  # no noise: the same chunk every call
    with pytest.raises(ValueError, match="noise_scale"):
        FlowConfig(noise_scale=1.5)
