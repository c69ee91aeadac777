"""The MM-DiT action expert: size and layout of the published model, masking, streams, dtypes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from psi0_ros.policy.config import EXPERT_PRESETS, ExpertConfig, PolicyConfig, expert_preset
from psi0_ros.policy.mmdit import ActionExpert, Conditioning, count_parameters
from psi0_ros.policy.tiny import randomize_modulation

TINY = EXPERT_PRESETS["tiny"]


def _expert(config: ExpertConfig = TINY, seed: int = 0) -> ActionExpert:
    torch.manual_seed(seed)
    return randomize_modulation(ActionExpert(config), seed=seed).eval()


def _inputs(config: ExpertConfig = TINY, batch: int = 2, tokens: int = 9, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    cond = Conditioning(
        torch.randn(batch, tokens, config.vlm_dim, generator=g), None, torch.randn(batch, config.state_dim, generator=g)
    )
    x = torch.randn(batch, config.horizon, config.action_dim, generator=g)
    return x, torch.rand(batch, generator=g), cond


def test_default_expert_is_psi0s_490m_parameter_model():
    config = ExpertConfig()
    assert (config.num_blocks, config.hidden, config.num_heads, config.head_dim) == (6, 1536, 24, 64)
    assert (config.action_dim, config.state_dim, config.vlm_dim, config.time_freq_dim) == (36, 36, 2048, 256)
    params = count_parameters(config)
    assert abs(params - 490e6) / 490e6 < 0.03, params
    with torch.device("meta"):
        expert = ActionExpert(config)
    block = expert.blocks[0]
    assert block.action_ff.net[0].out_features == 4 * 1536 and block.obs_ff.net[0].out_features == 4 * 1536
    assert isinstance(block.action_ff.net[1], torch.nn.GELU) and block.action_ff.net[1].approximate == "tanh"
    assert expert.proprio_in[1].in_features == 36 and expert.proprio_in[0].p == pytest.approx(0.2)
    assert expert.obs_in.in_features == 2048 and tuple(expert.action_pos.shape) == (30, 1536)
    # The last block keeps only what the action stream needs: observation keys/values, no update.
    last = expert.blocks[-1]
    assert not hasattr(last, "obs_out") and not hasattr(last, "obs_ff") and not hasattr(last, "obs_q")
    assert last.obs_modulation.out_features == 2 * 1536 and block.obs_modulation.out_features == 6 * 1536


def test_fresh_expert_starts_adaln_zero():
    expert = ActionExpert(TINY)
    for block in expert.blocks:
        assert not block.action_modulation.weight.any() and not block.obs_modulation.weight.any()
    # ...so every block is the identity and the observation cannot influence the output yet.
    x, sigma, cond = _inputs()
    other = Conditioning(torch.randn_like(cond.vlm_features), None, cond.state)
    with torch.no_grad():
        assert torch.allclose(expert(x, sigma, cond), expert(x, sigma, other))


def test_padding_mask_hides_padded_tokens_only():
    expert = _expert()
    x, sigma, cond = _inputs(tokens=9)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    garbage = cond.vlm_features.clone()
    garbage[1, 6:] = 1e3 * torch.randn(3, TINY.vlm_dim)
    real_change = cond.vlm_features.clone()
    real_change[1, 2] += 1.0
    with torch.no_grad():
        reference = expert(x, sigma, Conditioning(cond.vlm_features, mask, cond.state))
        padded = expert(x, sigma, Conditioning(garbage, mask, cond.state))
        changed = expert(x, sigma, Conditioning(real_change, mask, cond.state))
        unmasked = expert(x, sigma, Conditioning(garbage, None, cond.state))
    assert torch.allclose(reference, padded, atol=1e-5)
    assert not torch.allclose(reference[1], changed[1], atol=1e-4)
    assert torch.equal(reference[0], changed[0])  # samples stay independent
    assert not torch.allclose(reference[1], unmasked[1], atol=1e-3)  # the mask is what hid them


def test_state_and_noise_level_condition_the_output():
    expert = _expert()
    x, sigma, cond = _inputs()
    with torch.no_grad():
        base = expert(x, sigma, cond)
        other_state = expert(x, sigma, Conditioning(cond.vlm_features, None, cond.state + 1.0))
        other_sigma = expert(x, 1.0 - sigma, cond)
    assert not torch.allclose(base, other_state, atol=1e-4)
    assert not torch.allclose(base, other_sigma, atol=1e-4)


def test_uniform_per_token_noise_level_equals_per_sample_level():
    expert = _expert()
    x, sigma, cond = _inputs()
    with torch.no_grad():
        per_sample = expert(x, sigma, cond)
        per_token = expert(x, sigma[:, None].expand(-1, TINY.horizon), cond)
    assert torch.allclose(per_sample, per_token, atol=1e-5)


def test_bfloat16_on_cpu_is_close_to_float32():
    expert = _expert()
    x, sigma, cond = _inputs()
    with torch.no_grad():
        full = expert(x, sigma, cond)
        half = expert.to(torch.bfloat16)(x.bfloat16(), sigma, cond.to("cpu", torch.bfloat16))
    assert half.dtype == torch.bfloat16
    error = (half.float() - full).abs().max() / full.abs().max()
    assert error < 0.05, float(error)


@pytest.mark.gpu
def test_bfloat16_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    expert = _expert()
    x, sigma, cond = _inputs()
    with torch.no_grad():
        cpu = expert(x, sigma, cond)
        gpu = expert.to("cuda", torch.bfloat16)(x.cuda().bfloat16(), sigma.cuda(), cond.to("cuda", torch.bfloat16))
    assert (gpu.float().cpu() - cpu).abs().max() / cpu.abs().max() < 0.05


def test_bad_inputs_are_clear_errors():
    expert = _expert()
    x, sigma, cond = _inputs()
    with pytest.raises(ValueError, match="noisy_actions"):
        expert(x[:, :-1], sigma, cond)
    with pytest.raises(ValueError, match="sigma"):
        expert(x, sigma[:1], cond)
    with pytest.raises(ValueError, match="vlm_features"):
        expert(x, sigma, Conditioning(cond.vlm_features[..., :-1], None, cond.state))
    with pytest.raises(ValueError, match="state"):
        expert(x, sigma, Conditioning(cond.vlm_features, None, cond.state[:, :32]))
    with pytest.raises(ValueError, match="vlm_mask"):
        expert(x, sigma, Conditioning(cond.vlm_features, torch.ones(2, 3, dtype=torch.bool), cond.state))


def test_config_errors_quote_the_bad_value():
    with pytest.raises(ValueError, match="24 \\* 60 != 1536"):
        ExpertConfig(head_dim=60)
    with pytest.raises(ValueError, match="-1"):
        dataclasses.replace(TINY, horizon=-1)
    with pytest.raises(KeyError, match="nope"):
        expert_preset("nope")
    with pytest.raises(ValueError, match="max_delay"):
        PolicyConfig.from_dict({"expert": {"horizon": 4}, "flow": {"max_delay": 8}})
