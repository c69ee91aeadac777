"""The MM-DiT flow-matching action expert (Psi0's System-1).

Two token streams share one attention per block:
  observation stream: Linear(vlm_dim -> hidden) of every VLM token, plus one proprioception token
      (Dropout 0.2, Linear(state_dim -> hidden)), Dropout 0.1, plus fixed sinusoidal positions;
  action stream: MLP(noisy actions) plus learned positions.
Each block has, per stream, its own adaLN-Zero modulation (shift/scale/gate for attention and
FFN) from the timestep embedding, its own Q/K/V and output projections and its own FFN; the
attention is joint over [action tokens; observation tokens], with the VLM padding mask applied to
the observation keys. The last block updates only the action stream. The output layer applies an
adaLN shift/scale and a Linear to action_dim.

This follows Psi0's ActionTransformerModel (src/psi/models/psi0.py) closely enough that its
weights load through checkpoint.reference_to_expert_state_dict; two reference quirks are kept on
purpose and noted where they happen (the output modulation is x * scale + shift without a norm,
and the last block's observation modulation returns scale before shift).

Shapes: B batch, H horizon (actions per chunk), S VLM tokens, A action_dim, D hidden.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from psi0_ros.policy.config import ExpertConfig


class Conditioning(NamedTuple):
    """What the expert is conditioned on (everything but the noisy actions and the noise level)."""

    vlm_features: torch.Tensor  # (B, S, vlm_dim), the VLM's last hidden state
    vlm_mask: torch.Tensor | None  # (B, S) bool, True = real token; None = all real
    state: torch.Tensor  # (B, state_dim), normalised proprioception

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Conditioning:
        mask = None if self.vlm_mask is None else self.vlm_mask.to(device=device, dtype=torch.bool)
        return Conditioning(self.vlm_features.to(device, dtype), mask, self.state.to(device, dtype))

    def repeat(self, n: int) -> Conditioning:
        """Each sample repeated n times along the batch (sampling many chunks for one observation)."""
        mask = None if self.vlm_mask is None else self.vlm_mask.repeat_interleave(n, 0)
        return Conditioning(self.vlm_features.repeat_interleave(n, 0), mask, self.state.repeat_interleave(n, 0))


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fixed transformer positions, (length, dim): even channels sin, odd channels cos."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table.to(dtype)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of t (cos half, then sin half) -> Linear -> SiLU -> Linear.

    t: (...) float, on Psi0's 0..1000 scale. Returns (..., hidden). The frequencies are computed
    in float32 on every call so that a bf16 model still resolves nearby timesteps.
    """

    def __init__(self, freq_dim: int, hidden: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
        angles = t.to(torch.float32)[..., None] * freqs
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU(approximate="tanh"), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MMDiTBlock(nn.Module):
    """One joint-attention block. With last=True only the action stream is updated."""

    def __init__(self, config: ExpertConfig, last: bool):
        super().__init__()
        dim = config.hidden
        self.last = last
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.eps = config.layer_norm_eps
        # adaLN-Zero: shift/scale/gate for attention, then shift/scale/gate for the FFN.
        self.action_modulation = nn.Linear(dim, 6 * dim)
        # The last block only needs the observation keys/values: scale and shift, no gates.
        self.obs_modulation = nn.Linear(dim, (2 if last else 6) * dim)
        self.action_q = nn.Linear(dim, dim)
        self.action_k = nn.Linear(dim, dim)
        self.action_v = nn.Linear(dim, dim)
        self.action_out = nn.Linear(dim, dim)
        self.action_ff = FeedForward(dim, config.ffn_mult)
        self.obs_k = nn.Linear(dim, dim)
        self.obs_v = nn.Linear(dim, dim)
        if not last:
            self.obs_q = nn.Linear(dim, dim)
            self.obs_out = nn.Linear(dim, dim)
            self.obs_ff = FeedForward(dim, config.ffn_mult)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        action: torch.Tensor,  # (B, H, D)
        obs: torch.Tensor,  # (B, S+1, D)
        action_cond: torch.Tensor,  # (B, 1, D) timestep embedding, or (U, D) distinct ones with action_index
        obs_cond: torch.Tensor,  # (B, 1, D) timestep embedding for the observation stream
        attn_mask: torch.Tensor | None,  # (B, 1, 1, H+S+1) bool, True = may attend
        action_index: torch.Tensor | None = None,  # (B, H) long: row of action_cond for each action token
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        horizon = action.shape[1]
        action_mod = self.action_modulation(F.silu(action_cond))
        if action_index is not None:  # per-token levels: modulate the few distinct levels, then gather
            action_mod = action_mod[action_index]
        a_shift, a_scale, a_gate, a_ff_shift, a_ff_scale, a_ff_gate = action_mod.chunk(6, dim=-1)
        action_in = self._norm(action) * (1 + a_scale) + a_shift
        obs_mod = self.obs_modulation(F.silu(obs_cond))
        if self.last:
            o_scale, o_shift = obs_mod.chunk(2, dim=-1)  # reference order (AdaLayerNormContinuous): scale first
        else:
            o_shift, o_scale, o_gate, o_ff_shift, o_ff_scale, o_ff_gate = obs_mod.chunk(6, dim=-1)
        obs_in = self._norm(obs) * (1 + o_scale) + o_shift

        key = torch.cat([self._heads(self.action_k(action_in)), self._heads(self.obs_k(obs_in))], dim=2)
        value = torch.cat([self._heads(self.action_v(action_in)), self._heads(self.obs_v(obs_in))], dim=2)
        if self.last:
            query = self._heads(self.action_q(action_in))
        else:
            query = torch.cat([self._heads(self.action_q(action_in)), self._heads(self.obs_q(obs_in))], dim=2)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)
        attended = attended.transpose(1, 2).flatten(2)  # (B, H[+S+1], D)

        action = action + a_gate * self.action_out(attended[:, :horizon])
        action = action + a_ff_gate * self.action_ff(self._norm(action) * (1 + a_ff_scale) + a_ff_shift)
        if self.last:
            return action, None
        obs = obs + o_gate * self.obs_out(attended[:, horizon:])
        obs = obs + o_ff_gate * self.obs_ff(self._norm(obs) * (1 + o_ff_scale) + o_ff_shift)
        return action, obs


def check_expert_inputs(
    config: ExpertConfig, noisy_actions: torch.Tensor, sigma: torch.Tensor, cond: Conditioning
) -> None:
    """The shapes an action expert's forward takes (either architecture); a ValueError naming the first wrong one."""
    batch, horizon, action_dim = noisy_actions.shape
    if horizon != config.horizon or action_dim != config.action_dim:
        raise ValueError(
            f"noisy_actions must be (B, {config.horizon}, {config.action_dim}), got {tuple(noisy_actions.shape)}"
        )
    if sigma.shape not in ((batch,), (batch, horizon)):
        raise ValueError(f"sigma must be ({batch},) or ({batch}, {horizon}), got {tuple(sigma.shape)}")
    features, mask, state = cond
    if features.ndim != 3 or features.shape[0] != batch or features.shape[2] != config.vlm_dim:
        raise ValueError(f"vlm_features must be ({batch}, S, {config.vlm_dim}), got {tuple(features.shape)}")
    if state.shape != (batch, config.state_dim):
        raise ValueError(f"state must be ({batch}, {config.state_dim}), got {tuple(state.shape)}")
    if mask is not None and mask.shape != features.shape[:2]:
        raise ValueError(f"vlm_mask must be {tuple(features.shape[:2])}, got {tuple(mask.shape)}")


class ActionExpert(nn.Module):
    """Predicts the flow-matching velocity (noise - actions) of a chunk of normalised actions."""

    def __init__(self, config: ExpertConfig):
        super().__init__()
        self.config = config
        dim = config.hidden
        self.time_embed = TimestepEmbedding(config.time_freq_dim, dim)
        self.obs_in = nn.Linear(config.vlm_dim, dim)
        self.proprio_in = nn.Sequential(nn.Dropout(config.proprio_dropout), nn.Linear(config.state_dim, dim))
        self.obs_dropout = nn.Dropout(config.obs_dropout)
        self.action_in = nn.Sequential(
            nn.Linear(config.action_dim, config.action_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(config.action_dim, dim),
        )
        self.action_pos = nn.Parameter(torch.empty(config.horizon, dim))
        self.blocks = nn.ModuleList(
            [MMDiTBlock(config, last=i == config.num_blocks - 1) for i in range(config.num_blocks)]
        )
        self.final_modulation = nn.Linear(dim, 2 * dim)
        self.final_out = nn.Linear(dim, config.action_dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch's default Linear init, Xavier action positions (as Psi0), and adaLN-Zero: every
        modulation starts at zero so each block starts as the identity."""
        if self.action_pos.is_meta:
            return
        nn.init.xavier_uniform_(self.action_pos)
        for block in self.blocks:
            for layer in (block.action_modulation, block.obs_modulation):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        noisy_actions: torch.Tensor,  # (B, H, A) normalised actions mixed with noise
        sigma: torch.Tensor,  # (B,) one noise level per sample, or (B, H) one per action token
        cond: Conditioning,
    ) -> torch.Tensor:
        """Velocity (B, H, A). Per-token sigma is training-time RTC: a clean prefix has sigma 0."""
        config = self.config
        batch, horizon, _ = noisy_actions.shape
        check_expert_inputs(config, noisy_actions, sigma, cond)
        features, mask, state = cond

        action_index = None
        if sigma.ndim == 1:  # one noise level per sample
            action_cond = obs_cond = self.time_embed(sigma * config.timestep_scale)[:, None]
        else:  # per token (training-time RTC): only a few distinct levels, embedded once each
            levels, action_index = torch.unique(sigma, return_inverse=True)
            action_cond = self.time_embed(levels * config.timestep_scale)  # (U, D)
            # The observation stream follows the last (always noisy) action token, as Psi0.
            obs_cond = action_cond[action_index[:, -1]][:, None]

        obs = torch.cat([self.obs_in(features), self.proprio_in(state)[:, None]], dim=1)  # (B, S+1, D)
        obs = self.obs_dropout(obs)
        obs = obs + sinusoidal_positions(obs.shape[1], config.hidden, obs.device, obs.dtype)
        action = self.action_in(noisy_actions) + self.action_pos

        attn_mask = None
        if mask is not None and not bool(mask.all()):
            keep = torch.ones(batch, horizon + obs.shape[1], dtype=torch.bool, device=obs.device)
            keep[:, horizon : horizon + mask.shape[1]] = mask
            attn_mask = keep[:, None, None, :]

        for block in self.blocks:
            action, obs = block(action, obs, action_cond, obs_cond, attn_mask, action_index)

        final_mod = self.final_modulation(F.silu(action_cond))
        shift, scale = (final_mod if action_index is None else final_mod[action_index]).chunk(2, dim=-1)
        # Psi0's output layer modulates without a norm and without the usual (1 + scale); kept so
        # that its released weights mean the same thing here.
        return self.final_out(action * scale + shift)


def count_parameters(config: ExpertConfig) -> int:
    """Parameters of an expert with this config, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return ActionExpert(config).num_parameters()
