"""Tiny, random, fully local policy checkpoints: for tests of the policy and of the nodes that
serve it, and for benchmarks. Nothing here is downloaded; the weights are random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from psi0_ros.constants import ACTION_DIM, STATE_DIM, STATE_PADDED_DIM
from psi0_ros.policy.checkpoint import save_checkpoint
from psi0_ros.policy.config import PolicyConfig, expert_preset
from psi0_ros.policy.mmdit import ActionExpert
from psi0_ros.policy.transforms import NormStats, compute_stats
from psi0_ros.policy.vlm import write_tiny_vlm


def synthetic_stats(seed: int = 0, frames: int = 200) -> NormStats:
    """Statistics of random actions (about +-1 rad / m/s) and states (the padding stays zero)."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, (frames, ACTION_DIM)) * rng.uniform(0.2, 1.5, ACTION_DIM)
    states = np.zeros((frames, STATE_PADDED_DIM))
    states[:, :STATE_DIM] = rng.uniform(-1.0, 1.0, (frames, STATE_DIM))
    return NormStats(action=compute_stats([actions]), state=compute_stats([states]))


def tiny_policy_config(**rtc: object) -> PolicyConfig:
    """The "tiny" expert preset (vlm_dim 64, matching write_tiny_vlm) with 4 Euler steps."""
    from psi0_ros.policy.config import FlowConfig, RTCConfig

    return PolicyConfig(expert=expert_preset("tiny"), flow=FlowConfig(num_steps=4), rtc=RTCConfig(**rtc))


def randomize_modulation(expert: ActionExpert, std: float = 0.2, seed: int = 0) -> ActionExpert:
    """Give the adaLN modulations random weights. A fresh expert starts adaLN-Zero (every block the
    identity), so its output would not depend on the observation; tests of wiring need it to."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in expert.blocks:
            for layer in (block.action_modulation, block.obs_modulation):
                layer.weight.copy_(
                    torch.randn(layer.weight.shape, generator=generator) * std / layer.weight.shape[1] ** 0.5
                )
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * std)
    return expert


def write_tiny_checkpoint(
    directory: Path, seed: int = 0, with_vlm: bool = True, config: PolicyConfig | None = None
) -> Path:
    """A complete checkpoint directory (config.json, model.safetensors, normalization.json, vlm/)."""
    directory = Path(directory)
    config = config or tiny_policy_config()
    torch.manual_seed(seed)
    expert = randomize_modulation(ActionExpert(config.expert), seed=seed)
    vlm_path = (
        write_tiny_vlm(directory / ".vlm-src", seed=seed, hidden_size=config.expert.vlm_dim) if with_vlm else None
    )
    save_checkpoint(directory, expert, config, synthetic_stats(seed), vlm_path=vlm_path, copy_vlm=True)
    if vlm_path is not None:
        import shutil

        shutil.rmtree(vlm_path)
    return directory
