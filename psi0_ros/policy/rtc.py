"""Inference-time real-time chunking: guided inpainting (Black, Galliker, Levine 2025, "Real-Time
Execution of Action Chunking Flow Policies"), the second RTC mode next to flow.py's held prefix.

While the robot executes the previous chunk, the next one is sampled so that it agrees with the
actions that will still run from the previous chunk: the first d (the inference delay) fully,
the rest of the overlap with exponentially decaying weight. At every Euler step the velocity is
corrected by a pseudo-inverse guidance term, the vector-Jacobian product of the weighted error
between the previous actions and the predicted clean chunk, with a weight that grows as the noise
falls and is clipped at beta. Psi0's code contains this mode but never serves it; it works with
any flow model, including one trained without training-time RTC.

Noise convention as flow.py: sigma = 1 noise, sigma = 0 data, v = eps - x0, so the predicted
clean chunk is x - sigma * v.
"""

from __future__ import annotations

import math

import torch

from psi0_ros.policy.flow import Velocity, sigma_schedule


def soft_prefix_weights(
    horizon: int, delay: int, overlap: int, schedule: str = "exponential", device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Guidance weights W (horizon,) in [0, 1] (the paper's Eq. 5).

    W_i = 1 for i < delay (frozen: these actions run before the new chunk arrives);
    for delay <= i < overlap, "exponential": c_i (e^c_i - 1) / (e - 1) with
    c_i = (overlap - i) / (overlap - delay + 1), "linear": 1 - (i - delay) / (overlap - delay),
    "hard": 0; W_i = 0 from overlap on (the previous chunk has no actions there).
    """
    if not 0 <= delay <= overlap <= horizon:
        raise ValueError(
            f"need 0 <= delay <= overlap <= horizon, got delay={delay}, overlap={overlap}, horizon={horizon}"
        )
    weights = torch.zeros(horizon, dtype=torch.float32, device=device)
    weights[:delay] = 1.0
    if overlap > delay:
        index = torch.arange(delay, overlap, dtype=torch.float32, device=device)
        if schedule == "exponential":
            c = (overlap - index) / (overlap - delay + 1)
            weights[delay:overlap] = c * torch.expm1(c) / (math.e - 1.0)
        elif schedule == "linear":
            weights[delay:overlap] = 1.0 - (index - delay) / (overlap - delay)
        elif schedule != "hard":
            raise ValueError(f"unknown soft-mask schedule {schedule!r} (exponential, linear, hard)")
    return weights


def guidance_weight(sigma: float, beta: float) -> float:
    """min(beta, (1 - tau) / (tau * r^2)) with tau = 1 - sigma and r^2 = sigma^2 / (sigma^2 + (1 - sigma)^2):
    large at high noise, clipped at beta; beta exactly at sigma = 1 (pure noise)."""
    if sigma >= 1.0:
        return beta
    if sigma <= 0.0:
        return beta
    inv_r2 = (sigma**2 + (1.0 - sigma) ** 2) / sigma**2
    return min(beta, sigma / (1.0 - sigma) * inv_r2)


def guided_euler_sample(
    velocity: Velocity,
    noise: torch.Tensor,  # (B, H, A)
    previous: torch.Tensor,  # (B, L, A): the previous chunk's actions for this chunk's ticks 0..L-1
    delay: int,
    num_steps: int,
    sigma_min: float = 1e-3,
    beta: float = 5.0,
    schedule: str = "exponential",
) -> torch.Tensor:
    """Sample a chunk (B, H, A) guided towards `previous`; its first `delay` actions are then set to
    `previous` (they run from the old chunk anyway, and the message reports them as frozen)."""
    batch, horizon, action_dim = noise.shape
    overlap = previous.shape[1]
    if previous.shape[0] != batch or previous.shape[2] != action_dim or overlap > horizon:
        raise ValueError(f"previous must be ({batch}, L <= {horizon}, {action_dim}), got {tuple(previous.shape)}")
    if not 0 <= delay <= overlap:
        raise ValueError(f"delay must be in [0, {overlap}] (the length of previous), got {delay}")
    target = torch.zeros_like(noise)
    target[:, :overlap] = previous.to(noise.dtype)
    weights = soft_prefix_weights(horizon, delay, overlap, schedule, noise.device).to(noise.dtype)[None, :, None]
    sigmas = sigma_schedule(num_steps, sigma_min, noise.device)
    x = noise.detach().clone()
    for i in range(num_steps):
        level = float(sigmas[i])
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            v = velocity(x_in, torch.full((batch,), level, device=x.device))
            predicted_clean = x_in - level * v
            error = (target - predicted_clean.detach()) * weights
            (correction,) = torch.autograd.grad(predicted_clean, x_in, grad_outputs=error)
        # v points towards the noise, so moving the clean estimate towards the target subtracts.
        v = v.detach() - guidance_weight(level, beta) * correction
        x = x + (float(sigmas[i + 1]) - level) * v
    x[:, :delay] = previous[:, :delay].to(x.dtype)
    return x.detach()
