"""Real-time chunking: the held prefix (training-time RTC), the soft weights and guidance weight
of inference-time RTC, and smoother junctions between consecutive chunks with either mode."""

from __future__ import annotations

import math

import pytest
import torch

from psi0_ros.policy.config import EXPERT_PRESETS, ExpertConfig, FlowConfig
from psi0_ros.policy.flow import sample_actions, training_step
from psi0_ros.policy.mmdit import ActionExpert, Conditioning
from psi0_ros.policy.rtc import guidance_weight, guided_euler_sample, soft_prefix_weights
from psi0_ros.policy.tiny import randomize_modulation


def test_training_time_prefix_is_held_exactly():
    config = EXPERT_PRESETS["tiny"]
    torch.manual_seed(0)
    expert = randomize_modulation(ActionExpert(config)).eval()
    cond = Conditioning(torch.randn(3, 7, config.vlm_dim), None, torch.randn(3, config.state_dim))
    for delay in (1, 5):
        prefix = torch.rand(3, delay, config.action_dim) * 2 - 1
        chunk = sample_actions(
            expert, cond, FlowConfig(num_steps=5), prefix=prefix, generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(chunk[:, :delay], prefix)
        assert not torch.allclose(chunk[:, delay:], torch.zeros_like(chunk[:, delay:]))
    with pytest.raises(ValueError, match="prefix"):
        sample_actions(expert, cond, FlowConfig(), prefix=torch.zeros(3, config.horizon + 1, config.action_dim))


def test_soft_prefix_weights_follow_the_papers_schedule():
    weights = soft_prefix_weights(horizon=10, delay=2, overlap=6)
    assert weights[:2].tolist() == [1.0, 1.0]
    c = 4 / 5  # c_i = (overlap - i) / (overlap - delay + 1) at i = delay
    assert weights[2].item() == pytest.approx(c * (math.exp(c) - 1) / (math.e - 1), rel=1e-6)
    assert all(weights[i] > weights[i + 1] > 0 for i in range(2, 5))
    assert weights[6:].tolist() == [0.0] * 4
    assert soft_prefix_weights(10, 3, 6, "hard").tolist() == [1.0] * 3 + [0.0] * 7
    linear = soft_prefix_weights(10, 2, 6, "linear")
    assert linear[2:6].tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="delay=7"):
        soft_prefix_weights(10, 7, 6)


def test_guidance_weight_is_clipped_at_beta():
    assert guidance_weight(1.0, 5.0) == 5.0  # pure noise
    assert guidance_weight(0.5, 5.0) == pytest.approx(2.0)  # (0.5 / 0.5) * (0.5 / 0.25)
    assert guidance_weight(0.001, 5.0) == 5.0  # near the data the raw weight explodes
    assert guidance_weight(0.5, 1.5) == 1.5


def _train_ramp_expert() -> tuple[ActionExpert, torch.Tensor]:
    """Smooth task: every chunk is a straight line with random offset and slope per dimension,
    unpredictable from the (constant) observation, so only the prefix says which line."""
    config = ExpertConfig(
        action_dim=2, state_dim=2, vlm_dim=8, hidden=32, num_blocks=2, num_heads=2, head_dim=16, horizon=8,
        proprio_dropout=0.0, obs_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    expert = ActionExpert(config)
    optimizer = torch.optim.AdamW(expert.parameters(), lr=3e-3)
    features = torch.randn(1, 3, 8)
    batch = 128
    cond = Conditioning(features.expand(batch, -1, -1), None, torch.zeros(batch, 2))
    ramp = torch.arange(config.horizon) / config.horizon
    for _ in range(450):
        offset = torch.rand(batch, 1, 2, generator=generator) * 1.2 - 0.6
        slope = torch.rand(batch, 1, 2, generator=generator) * 1.2 - 0.6
        training_step(expert, optimizer, offset + slope * ramp[None, :, None], cond, max_delay=4, generator=generator)
    return expert.eval(), features


def test_rtc_makes_the_junction_between_chunks_smoother(single_thread):
    expert, features = _train_ramp_expert()
    n, executed, delay = 200, 2, 2  # the next chunk starts after 2 executed actions, 2 more run meanwhile
    cond = Conditioning(features.expand(n, -1, -1), None, torch.zeros(n, 2))
    flow = FlowConfig(num_steps=10, max_delay=4)
    generator = torch.Generator().manual_seed(1)
    current = sample_actions(expert, cond, flow, generator=generator)
    switch = executed + delay  # first tick served by the new chunk

    def junction_jerk(new_chunk: torch.Tensor) -> float:
        """|second difference| of the executed trajectory where it switches to the new chunk."""
        return (new_chunk[:, delay] - 2 * current[:, switch - 1] + current[:, switch - 2]).abs().mean().item()

    without = sample_actions(expert, cond, flow, generator=generator)
    held = sample_actions(expert, cond, flow, prefix=current[:, executed:switch], generator=generator)
    noise = torch.randn(current.shape, generator=generator)
    guided = guided_euler_sample(lambda x, s: expert(x, s, cond), noise, current[:, executed:], delay, 10, beta=5.0)

    within = (current[:, 2:] - 2 * current[:, 1:-1] + current[:, :-2]).abs().mean().item()
    assert torch.equal(held[:, :delay], current[:, executed:switch])
    assert junction_jerk(held) < 0.3 * junction_jerk(without), (junction_jerk(held), junction_jerk(without))
    assert junction_jerk(held) < 3 * within + 0.02  # about as smooth as inside a chunk
    assert junction_jerk(guided) < 0.7 * junction_jerk(without), (junction_jerk(guided), junction_jerk(without))
    assert torch.equal(guided[:, :delay], current[:, executed:switch])


def test_guided_sampling_rejects_inconsistent_prefixes():
    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x

    noise = torch.randn(1, 8, 2)
    with pytest.raises(ValueError, match="delay"):
        guided_euler_sample(velocity, noise, torch.zeros(1, 3, 2), delay=4, num_steps=2)
    with pytest.raises(ValueError, match="previous"):
        guided_euler_sample(velocity, noise, torch.zeros(1, 9, 2), delay=1, num_steps=2)
