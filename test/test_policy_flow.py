"""Flow matching: the noise schedule, the masked loss, and why flow matching (a bimodal task)."""

from __future__ import annotations

import torch

from psi0_ros.policy.config import ExpertConfig, FlowConfig
from psi0_ros.policy.flow import (
    flow_matching_loss,
    sample_actions,
    sample_training_sigmas,
    sigma_schedule,
    training_step,
)
from psi0_ros.policy.mmdit import ActionExpert, Conditioning

# A very small expert over 2-D actions: enough to learn a two-mode distribution in seconds.
SMALL = ExpertConfig(
    action_dim=2,
    state_dim=2,
    vlm_dim=8,
    hidden=32,
    num_blocks=2,
    num_heads=2,
    head_dim=16,
    horizon=4,
    proprio_dropout=0.0,
    obs_dropout=0.0,
)


def test_sigma_schedule_is_psi0s_inference_schedule():
    # diffusers FlowMatchEulerDiscreteScheduler(1000).set_timesteps(10): sigmas 1.0 ... 0.001, then 0.
    sigmas = sigma_schedule(10)
    expected = [1.0, 0.889, 0.778, 0.667, 0.556, 0.445, 0.334, 0.223, 0.112, 0.001, 0.0]
    assert torch.allclose(sigmas, torch.tensor(expected), atol=1e-6)


def test_training_sigmas_have_a_clean_prefix_of_random_length():
    g = torch.Generator().manual_seed(0)
    sigma, prefix = sample_training_sigmas(4000, 10, max_delay=8, generator=g)
    delays = prefix.sum(1)
    assert set(delays.tolist()) == set(range(8))  # d ~ U{0..7}, never 8
    assert (sigma[prefix] == 0).all() and (sigma[~prefix] > 0).all()
    assert ((sigma[~prefix].reshape(-1)) <= 1).all()
    # one noise level per sample outside the prefix
    last = sigma[:, -1:]
    assert torch.equal(torch.where(prefix, last, sigma), last.expand(-1, 10))
    no_rtc_sigma, no_prefix = sample_training_sigmas(100, 10, max_delay=0, generator=g)
    assert not no_prefix.any() and (no_rtc_sigma > 0).all()


def test_loss_ignores_masked_action_dimensions():
    torch.manual_seed(0)
    expert = ActionExpert(SMALL).eval()
    cond = Conditioning(torch.randn(3, 5, 8), None, torch.randn(3, 2))
    actions = torch.randn(3, 4, 2)
    mask = torch.tensor([1.0, 0.0])  # the second action dimension is padding

    def loss(with_mask: torch.Tensor | None) -> torch.Tensor:
        return flow_matching_loss(expert, actions, cond, with_mask, generator=torch.Generator().manual_seed(1))

    before_masked, before_full = loss(mask), loss(None)
    with torch.no_grad():  # change only what the expert predicts for the padded dimension
        expert.final_out.weight[1] += 1.0
        expert.final_out.bias[1] += 1.0
    assert torch.equal(loss(mask), before_masked)
    assert not torch.allclose(loss(None), before_full)


def test_loss_is_psi0s_reduction_without_the_rtc_prefix():
    torch.manual_seed(0)
    expert = ActionExpert(SMALL).eval()
    cond = Conditioning(torch.randn(64, 5, 8), None, torch.randn(64, 2))
    actions = torch.randn(64, 4, 2)
    mask = torch.tensor([1.0, 0.5])
    loss = flow_matching_loss(expert, actions, cond, mask, max_delay=3, generator=torch.Generator().manual_seed(2))

    g = torch.Generator().manual_seed(2)  # the same draws, by hand
    sigma, prefix = sample_training_sigmas(64, 4, 3, g)
    noise = torch.randn(actions.shape, generator=g)
    noisy = (1 - sigma[..., None]) * actions + sigma[..., None] * noise
    with torch.no_grad():
        prediction = expert(noisy, sigma, cond)
    squared = (prediction - (noise - actions)) ** 2 * mask * (~prefix)[..., None]
    expected = squared.sum(1).mean(0).mean()  # sum over the chunk, mean over batch and dimensions
    assert prefix.any() and not prefix.all()
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_flow_matching_samples_both_modes_of_a_bimodal_task(single_thread):
    """Half the demonstrations go +0.6, half -0.6, for the same observation. Regression would
    average them to 0 (between the modes); a flow model must sample near both, rarely between."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    expert = ActionExpert(SMALL)
    optimizer = torch.optim.AdamW(expert.parameters(), lr=3e-3)
    batch = 128
    features = torch.randn(1, 3, 8)
    cond = Conditioning(features.expand(batch, -1, -1), None, torch.zeros(batch, 2))
    losses = []
    for _ in range(400):
        sign = torch.randint(0, 2, (batch, 1, 1), generator=generator) * 2.0 - 1.0
        actions = 0.6 * sign + 0.05 * torch.randn(batch, 4, 2, generator=generator)
        losses.append(training_step(expert, optimizer, actions, cond, generator=generator))
    assert sum(losses[-50:]) / 50 < 0.5 * sum(losses[:10]) / 10

    expert.eval()
    n = 400
    samples = sample_actions(
        expert,
        Conditioning(features.expand(n, -1, -1), None, torch.zeros(n, 2)),
        FlowConfig(num_steps=10),
        generator=generator,
    )
    chunk_mean = samples.mean(dim=(1, 2))
    positive = (chunk_mean > 0.3).float().mean().item()
    negative = (chunk_mean < -0.3).float().mean().item()
    between = (chunk_mean.abs() < 0.2).float().mean().item()
    assert positive > 0.2 and negative > 0.2, (positive, negative)
    assert between < 0.1, between
    # each sampled chunk commits to one mode as a whole
    assert (samples.std(dim=(1, 2)) < 0.25).float().mean() > 0.9
