"""A naive DiT action expert: the ablation baseline beside the MM-DiT (ExpertConfig.arch "dit").

One token sequence, [action tokens; VLM tokens; proprioception token], under plain
self-attention, every token through the same weights: one adaLN-Zero modulation, one Q/K/V and
output projection and one FFN per block (as GR00T N1.6's action head treats its tokens, where
Psi0's MM-DiT keeps a separate set of weights per stream). Everything else is the MM-DiT's: the
same input projections and positions (mmdit.ActionExpert), the same width, depth, heads, FFN,
timestep embedding, VLM padding mask and per-token noise levels (training-time RTC), the same
flow-matching loss and sampler. The output is the action tokens after a final adaLN (LayerNorm,
then (1 + scale) and shift) and a Linear to action_dim. With shared weights it has about half
the MM-DiT's block parameters (count_parameters says exactly).

Shapes: B batch, H horizon, S VLM tokens, A action_dim, D hidden.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from psi0_ros.policy.config import ExpertConfig
from psi0_ros.policy.mmdit import (
    Conditioning,
    FeedForward,
    TimestepEmbedding,
    check_expert_inputs,
    sinusoidal_positions,
)


class DiTBlock(nn.Module):
    """Self-attention over all tokens, then an FFN, each under adaLN-Zero modulation."""

    def __init__(self, config: ExpertConfig):
        super().__init__()
        dim = config.hidden
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.eps = config.layer_norm_eps
        self.modulation = nn.Linear(dim, 6 * dim)  # shift/scale/gate for attention, then for the FFN
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = FeedForward(dim, config.ffn_mult)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps)

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D) all tokens
        cond: torch.Tensor,  # (B, 1, D) or (B, L, D): the timestep embedding of each token
        attn_mask: torch.Tensor | None,  # (B, 1, 1, L) bool, True = may attend
    ) -> torch.Tensor:
        batch, length, dim = x.shape
        shift, scale, gate, ff_shift, ff_scale, ff_gate = self.modulation(F.silu(cond)).chunk(6, dim=-1)
        q, k, v = self.qkv(self._norm(x) * (1 + scale) + shift).chunk(3, dim=-1)
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(x.shape)
        x = x + gate * self.out(attended)
        return x + ff_gate * self.ff(self._norm(x) * (1 + ff_scale) + ff_shift)


class DiTActionExpert(nn.Module):
    """Predicts the flow-matching velocity (noise - actions), as mmdit.ActionExpert does."""

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
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.num_blocks)])
        self.final_modulation = nn.Linear(dim, 2 * dim)
        self.final_out = nn.Linear(dim, config.action_dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch's default Linear init, Xavier action positions, adaLN-Zero blocks (as the MM-DiT)."""
        if self.action_pos.is_meta:
            return
        nn.init.xavier_uniform_(self.action_pos)
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)

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

        obs = torch.cat([self.obs_in(features), self.proprio_in(state)[:, None]], dim=1)  # (B, S+1, D)
        obs = self.obs_dropout(obs)
        obs = obs + sinusoidal_positions(obs.shape[1], config.hidden, obs.device, obs.dtype)
        action = self.action_in(noisy_actions) + self.action_pos
        tokens = torch.cat([action, obs], dim=1)  # (B, H+S+1, D)

        if sigma.ndim == 1:  # one level for every token of a sample
            token_cond = action_cond = self.time_embed(sigma * config.timestep_scale)[:, None]
        else:  # per action token; the observation tokens follow the last (always noisy) action token
            levels, index = torch.unique(sigma, return_inverse=True)
            embedded = self.time_embed(levels * config.timestep_scale)  # (U, D)
            action_cond = embedded[index]  # (B, H, D)
            obs_cond = action_cond[:, -1:].expand(batch, obs.shape[1], -1)
            token_cond = torch.cat([action_cond, obs_cond], dim=1)

        attn_mask = None
        if mask is not None and not bool(mask.all()):
            keep = torch.ones(batch, tokens.shape[1], dtype=torch.bool, device=tokens.device)
            keep[:, horizon : horizon + mask.shape[1]] = mask
            attn_mask = keep[:, None, None, :]

        for block in self.blocks:
            tokens = block(tokens, token_cond, attn_mask)

        shift, scale = self.final_modulation(F.silu(action_cond)).chunk(2, dim=-1)
        action = F.layer_norm(tokens[:, :horizon], (config.hidden,), eps=config.layer_norm_eps)
        return self.final_out(action * (1 + scale) + shift)
