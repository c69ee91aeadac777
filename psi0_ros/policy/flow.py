"""Flow matching for the action expert: the training loss, the Euler sampler, and
training-time real-time chunking (RTC).

Convention (Psi0's, from diffusers' FlowMatchEulerDiscreteScheduler): sigma = 1 is pure noise and
sigma = 0 the data. A training sample is x = (1 - sigma) * x0 + sigma * eps with sigma ~ U(0, 1),
and the network predicts the velocity eps - x0. Sampling integrates dx/dsigma = v from sigma = 1
to 0 with Euler steps.

Training-time RTC: the noise level is per action token. A prefix of d ~ U{0, ..., max_delay - 1}
actions is clean (sigma = 0) and excluded from the loss; at inference the prefix is held at the
actions that will already have run, at every Euler step, so the chunk continues them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from psi0_ros.policy.config import FlowConfig
from psi0_ros.policy.mmdit import ActionExpert, Conditioning

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B,H,A), sigma (B,) | (B,H)) -> v


def sigma_schedule(num_steps: int, sigma_min: float = 1e-3, device: torch.device | str = "cpu") -> torch.Tensor:
    """Noise levels of the Euler sampler, (num_steps + 1,): linspace(1, sigma_min, num_steps), then 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigmas = torch.linspace(1.0, sigma_min, num_steps, dtype=torch.float32, device=device)
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float32, device=device)])


def prefix_token_mask(batch: int, horizon: int, delays: torch.Tensor | int, device: torch.device | str) -> torch.Tensor:
    """(B, H) bool, True on the first delays[b] action tokens of sample b."""
    delays = torch.as_tensor(delays, device=device).reshape(-1).expand(batch)
    return torch.arange(horizon, device=device)[None, :] < delays[:, None]


def sample_training_sigmas(
    batch: int,
    horizon: int,
    max_delay: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise levels for one training batch.

    Returns sigma (B, H) float32 (one U(0, 1) level per sample, 0 on the RTC prefix) and the
    prefix mask (B, H) bool. With max_delay == 0 there is no prefix.
    """
    sigma = torch.rand(batch, generator=generator, device=device)
    if max_delay > 0:
        delays = torch.randint(0, max_delay, (batch,), generator=generator, device=device)
    else:
        delays = torch.zeros(batch, dtype=torch.long, device=device)
    prefix = prefix_token_mask(batch, horizon, delays, device)
    return torch.where(prefix, torch.zeros((), device=device), sigma[:, None]), prefix


def flow_loss(
    expert: ActionExpert,
    actions: torch.Tensor,  # (B, H, A) normalised targets
    noise: torch.Tensor,  # (B, H, A) standard normal
    sigma: torch.Tensor,  # (B,) noise level per sample, U(0, 1)
    delays: torch.Tensor,  # (B,) long: clean RTC prefix length per sample (0 without RTC)
    weights: torch.Tensor,  # (B, H, A) or broadcastable: 1 where the target counts (real dims, unpadded steps)
    cond: Conditioning,
    per_token_sigma: bool,  # True for a model trained with RTC prefixes (flow.max_delay > 0)
) -> torch.Tensor:
    """The flow-matching loss, scalar float32, with the randomness given (one draw per sample; the
    training data set draws it from each sample's own seed, flow_matching_loss draws it here).

    x = (1 - s) x0 + s eps, target eps - x0, with s = 0 on the clean RTC prefix, which is excluded.
    Reduced as Psi0 does: summed over the chunk (so the gradient does not shrink with longer
    chunks), averaged over the batch and over action dimensions. Padded action dimensions and
    padded steps (weights 0) contribute nothing. The one loss of the action expert: used by
    training (training/expert.py) and Policy.loss.
    """
    batch, horizon, action_dim = actions.shape
    prefix = prefix_token_mask(batch, horizon, delays, actions.device)
    token_sigma = torch.where(prefix, torch.zeros((), device=actions.device), sigma.float()[:, None])
    x0 = actions.float()
    s = token_sigma[:, :, None]
    noisy = (1.0 - s) * x0 + s * noise.float()
    target = noise.float() - x0
    dtype = next(expert.parameters()).dtype
    prediction = expert(noisy.to(dtype), token_sigma if per_token_sigma else sigma.float(), cond)
    mask = (~prefix)[:, :, None].float() * torch.as_tensor(weights, device=actions.device).float().expand(
        batch, horizon, action_dim
    )
    return (((prediction.float() - target) ** 2) * mask).sum(dim=1).mean(dim=0).mean()


def batch_flow_loss(
    expert: ActionExpert, batch: Mapping[str, torch.Tensor], cond: Conditioning, per_token_sigma: bool
) -> torch.Tensor:
    """flow_loss on a training batch: "actions", "noise", "sigma", "delay" and "weights" as the
    training data set cuts them (what Policy.loss and training/expert.py both call)."""
    return flow_loss(
        expert,
        batch["actions"],
        batch["noise"],
        batch["sigma"],
        batch["delay"],
        batch["weights"],
        cond,
        per_token_sigma,
    )


def flow_matching_loss(
    expert: ActionExpert,
    actions: torch.Tensor,  # (B, H, A) normalised target actions
    cond: Conditioning,
    action_mask: torch.Tensor | None = None,  # (B, H, A) or (B, A) or (A,): 1 where the dimension is real
    max_delay: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """flow_loss with the randomness drawn here from `generator`: sigma ~ U(0, 1) and the RTC delay
    d ~ U{0, ..., max_delay - 1} per sample (sample_training_sigmas' order), then the noise."""
    batch, horizon, _ = actions.shape
    sigma = torch.rand(batch, generator=generator, device=actions.device)
    if max_delay > 0:
        delays = torch.randint(0, max_delay, (batch,), generator=generator, device=actions.device)
    else:
        delays = torch.zeros(batch, dtype=torch.long, device=actions.device)
    noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=torch.float32)
    weights = torch.ones((), device=actions.device) if action_mask is None else action_mask
    return flow_loss(expert, actions, noise, sigma, delays, weights, cond, per_token_sigma=max_delay > 0)


@torch.no_grad()
def euler_sample(
    velocity: Velocity,
    noise: torch.Tensor,  # (B, H, A), the starting point at sigma = 1
    num_steps: int,
    sigma_min: float = 1e-3,
    prefix: torch.Tensor | None = None,  # (B, d, A) normalised actions that will already have run
) -> torch.Tensor:
    """Integrate from noise to actions. With a prefix (training-time RTC) its tokens carry sigma 0
    and are held at the given actions before every step and in the result, so the first d
    actions of the chunk equal the prefix exactly."""
    x = noise.clone()
    batch, horizon, _ = x.shape
    sigmas = sigma_schedule(num_steps, sigma_min, x.device)
    held = None
    if prefix is not None and prefix.shape[1] > 0:
        if prefix.shape[0] != batch or prefix.shape[2] != x.shape[2] or prefix.shape[1] > horizon:
            raise ValueError(f"prefix must be ({batch}, d <= {horizon}, {x.shape[2]}), got {tuple(prefix.shape)}")
        held = prefix_token_mask(batch, horizon, prefix.shape[1], x.device)
        prefix = prefix.to(x.dtype)
    for i in range(num_steps):
        level = sigmas[i]
        if held is None:
            sigma = level.expand(batch)
        else:
            x[:, : prefix.shape[1]] = prefix
            sigma = torch.where(held, torch.zeros((), device=x.device), level)
        v = velocity(x, sigma)
        x = x + (sigmas[i + 1] - level).to(x.dtype) * v.to(x.dtype)
    if held is not None:
        x[:, : prefix.shape[1]] = prefix
    return x


def expert_device_dtype(expert: ActionExpert) -> tuple[torch.device, torch.dtype]:
    """Where an expert runs and in which dtype: its parameters' for a torch module; an expert
    served by another runtime (onnx_expert.OnnxExpert) says so with `device` and `dtype`."""
    if isinstance(expert, torch.nn.Module):
        parameter = next(expert.parameters())
        return parameter.device, parameter.dtype
    return torch.device(expert.device), expert.dtype


def sample_actions(
    expert: ActionExpert,
    cond: Conditioning,
    config: FlowConfig,
    prefix: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A chunk of normalised actions (B, H, A) for each conditioning sample (Euler, config.num_steps)."""
    expert_config = expert.config
    device, dtype = expert_device_dtype(expert)
    batch = cond.state.shape[0]
    if noise is None:
        noise = torch.randn(
            (batch, expert_config.horizon, expert_config.action_dim), generator=generator, device=device
        )
    noise = noise.to(device, dtype)
    if prefix is not None:
        prefix = prefix.to(device, dtype)

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return expert(x, sigma.to(torch.float32), cond)

    return euler_sample(velocity, noise, config.num_steps, config.sigma_min, prefix)


def training_step(
    expert: ActionExpert,
    optimizer: torch.optim.Optimizer,
    actions: torch.Tensor,
    cond: Conditioning,
    action_mask: torch.Tensor | None = None,
    max_delay: int = 0,
    max_grad_norm: float | None = 1.0,
    generator: torch.Generator | None = None,
) -> float:
    """One optimiser step on the flow-matching loss; returns the loss. Shared by training/ and tests."""
    expert.train()
    optimizer.zero_grad(set_to_none=True)
    loss = flow_matching_loss(expert, actions, cond, action_mask, max_delay, generator)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(expert.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss.detach())
