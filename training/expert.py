"""Stages 2 and 3: the MM-DiT action expert on VLM features, with flow matching.

Stage 2 (post-training, shared/RECIPE.md): the expert from scratch with the VLM frozen, chunks of
16 delta actions a[t+1] - a[t] over hands + arms (psi0_ros.policy.transforms.actions_to_deltas;
the 8 lower-body dims masked out), q99 bounds, the state (absolute joints) not normalised, no RTC.
Stage 3 (fine-tuning): chunks of 30 absolute 36-D actions, min/max bounds, normalised state,
training-time RTC (a clean prefix of 0..max_delay-1 actions, excluded from the loss), colour
jitter; initialised from the stage-2 checkpoint (only the transformer blocks when the chunk
length differs); the VLM frozen unless model.train_vlm.

Each sample draws its own flow-matching noise level, noise and RTC delay from its own seed
(engine.GlobalBatchSampler), so the loss of a global batch does not depend on how many processes
share it. The chunk at the end of an episode is padded with the last action and the padded steps
are left out of the loss.

The product is a psi0_ros policy checkpoint (DESIGN §6, psi0_ros.policy.checkpoint): what
chunk_node loads.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from psi0_ros.constants import ACTION_DIM
from psi0_ros.policy.checkpoint import load_checkpoint, save_checkpoint
from psi0_ros.policy.config import FlowConfig, ImageConfig, NormConfig, PolicyConfig, RTCConfig, expert_preset
from psi0_ros.policy.flow import prefix_token_mask
from psi0_ros.policy.mmdit import ActionExpert, Conditioning
from psi0_ros.policy.transforms import (
    DELTA_ACTION_MASK,
    Normalizer,
    NormStats,
    actions_to_deltas,
    compute_stats,
)
from psi0_ros.policy.vlm import VLMBackbone, check_vlm_dir, write_tiny_vlm
from training.config import TINY_VLM, ExpertStageConfig
from training.engine import DistInfo, Task, barrier
from training.feature_cache import FeatureCache, file_signature, fingerprint
from training.readers import EpisodeSource, open_source
from training.vlm_inputs import VLMInputBuilder, color_jitter

CHECKPOINT_DIR = "checkpoint"  # <output_dir>/checkpoint: the policy checkpoint a stage writes
CACHE_DIR = "feature_cache"
TINY_VLM_DIR = "tiny_vlm"
TRAINED_VLM_DIR = "vlm"
CACHE_BUILD_BATCH = 8


def flow_loss(
    expert: ActionExpert,
    actions: torch.Tensor,  # (B, H, A) normalised targets
    noise: torch.Tensor,  # (B, H, A) standard normal
    sigma: torch.Tensor,  # (B,) noise level per sample, U(0, 1)
    delays: torch.Tensor,  # (B,) long: clean RTC prefix length per sample (0 without RTC)
    weights: torch.Tensor,  # (B, H, A) 1 where the target counts (real dims, unpadded steps)
    cond: Conditioning,
    per_token_sigma: bool,
) -> torch.Tensor:
    """psi0_ros.policy.flow.flow_matching_loss with the randomness given (one draw per sample):
    x = (1 - s) x0 + s eps, target eps - x0, squared error summed over the chunk, averaged over
    batch and dims; the clean prefix (s = 0) is excluded."""
    batch, horizon, _ = actions.shape
    prefix = prefix_token_mask(batch, horizon, delays, actions.device)
    token_sigma = torch.where(prefix, torch.zeros((), device=actions.device), sigma[:, None])
    x0 = actions.float()
    s = token_sigma[:, :, None]
    noisy = (1.0 - s) * x0 + s * noise.float()
    target = noise.float() - x0
    prediction = expert(noisy, token_sigma if per_token_sigma else sigma, cond)
    mask = (~prefix)[:, :, None].float() * weights.float()
    return (((prediction.float() - target) ** 2) * mask).sum(dim=1).mean(dim=0).mean()


class ExpertTrainModule(nn.Module):
    """Expert (+ the VLM, frozen unless train_vlm): batch -> flow-matching loss."""

    def __init__(self, expert: ActionExpert, vlm: VLMBackbone | None, train_vlm: bool, per_token_sigma: bool):
        super().__init__()
        self.expert = expert
        self.vlm = vlm
        self.train_vlm = train_vlm
        self.per_token_sigma = per_token_sigma
        if vlm is not None and not train_vlm:
            vlm.requires_grad_(False)

    def train(self, mode: bool = True) -> ExpertTrainModule:
        super().train(mode)
        if self.vlm is not None and not self.train_vlm:
            self.vlm.eval()  # a frozen VLM stays in inference mode
        return self

    def features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if "features" in batch:
            return batch["features"], batch["feature_mask"]
        if self.vlm is None:
            raise RuntimeError("batch has no cached features and the module has no VLM")
        with torch.set_grad_enabled(self.train_vlm and torch.is_grad_enabled()):
            output = self.vlm(batch["vlm"])
        return output.hidden, output.mask

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        hidden, mask = self.features(batch)
        dtype = next(self.expert.parameters()).dtype
        cond = Conditioning(hidden.to(dtype), mask.bool(), batch["state"].to(dtype))
        return flow_loss(
            self.expert,
            batch["actions"],
            batch["noise"],
            batch["sigma"],
            batch["delay"],
            batch["weights"],
            cond,
            self.per_token_sigma,
        )


class ExpertSamples(torch.utils.data.Dataset):
    """One sample per frame of every episode: dataset[(index, seed)] -> dict of arrays."""

    def __init__(
        self,
        source: EpisodeSource,
        normalizer: Normalizer,
        horizon: int,
        action_mode: str,
        max_delay: int,
        builder: VLMInputBuilder,
        jitter: bool,
        cache: FeatureCache | None = None,
    ):
        self.source = source
        self.normalizer = normalizer
        self.horizon = horizon
        self.action_mode = action_mode
        self.max_delay = max_delay
        self.builder = builder
        self.jitter = jitter
        self.cache = cache
        lengths = np.array([e.length for e in source.entries], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        episode = int(np.searchsorted(self.starts, index, side="right") - 1)
        return episode, int(index - self.starts[episode])

    def targets(self, episode: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised action chunk (H, 36) and its loss weights (H, 36)."""
        entry = self.source.entries[episode]
        extra = 1 if self.action_mode == "delta" else 0
        steps = frame + np.arange(self.horizon + extra)
        chunk = entry.action[np.minimum(steps, entry.length - 1)]
        if self.action_mode == "delta":
            chunk = actions_to_deltas(chunk)
            valid = steps[1:] < entry.length
            dims = DELTA_ACTION_MASK
        else:
            valid = steps < entry.length
            dims = np.ones(ACTION_DIM, dtype=bool)
        weights = (valid[:, None] & dims[None, :]).astype(np.float32)
        return self.normalizer.normalize_actions(chunk), weights

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        episode, frame = self.locate(index)
        entry = self.source.entries[episode]
        rng = np.random.default_rng(seed)
        actions, weights = self.targets(episode, frame)
        sample: dict[str, Any] = {
            "state": torch.from_numpy(self.normalizer.normalize_state(entry.state[frame])),
            "actions": torch.from_numpy(actions),
            "weights": torch.from_numpy(weights),
            "sigma": torch.tensor(rng.random(), dtype=torch.float32),
            "delay": torch.tensor(int(rng.integers(0, self.max_delay)) if self.max_delay else 0),
            "noise": torch.from_numpy(rng.standard_normal((self.horizon, ACTION_DIM)).astype(np.float32)),
        }
        if self.cache is not None:
            sample["features"] = torch.from_numpy(self.cache[index])
        else:
            image = self.source.image(episode, frame)
            if self.jitter:
                image = color_jitter(image, rng)
            sample["vlm"] = self.builder.prompt_ids(image, entry.instruction)
        return sample

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = {
            k: torch.stack([s[k] for s in samples]) for k in ("state", "actions", "weights", "sigma", "delay", "noise")
        }
        if "features" in samples[0]:
            length = max(s["features"].shape[0] for s in samples)
            dim = samples[0]["features"].shape[1]
            features = torch.zeros((len(samples), length, dim), dtype=torch.float32)
            mask = torch.zeros((len(samples), length), dtype=torch.bool)
            for row, s in enumerate(samples):
                features[row, : s["features"].shape[0]] = s["features"]
                mask[row, : s["features"].shape[0]] = True
            batch["features"], batch["feature_mask"] = features, mask
        else:
            batch["vlm"] = self.builder.collate([s["vlm"] for s in samples])
        return batch


class _FrameInputs(torch.utils.data.Dataset):
    """Every frame's VLM inputs without augmentation (to fill the feature cache)."""

    def __init__(self, samples: ExpertSamples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, dict[str, Any]]:
        episode, frame = self.samples.locate(index)
        entry = self.samples.source.entries[episode]
        return index, self.samples.builder.prompt_ids(self.samples.source.image(episode, frame), entry.instruction)

    def collate(self, items: Sequence[tuple[int, dict[str, Any]]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return torch.tensor([i for i, _ in items]), self.samples.builder.collate([x for _, x in items])


def compute_norm_stats(source: EpisodeSource, action_mode: str) -> NormStats:
    """Statistics of the training targets: absolute actions, or per-step deltas (stage 2)."""
    if action_mode == "delta":
        actions = [actions_to_deltas(e.action) for e in source.entries if e.length > 1]
    else:
        actions = [e.action for e in source.entries]
    return NormStats(action=compute_stats(actions), state=compute_stats([e.state for e in source.entries]))


class ExpertTask(Task):
    def __init__(self, config: ExpertStageConfig):
        self.config = config
        self.name = f"stage{config.stage}"
        self.output_dir = Path(config.run.output_dir)
        self.cache_used = False

    # --- setup ---------------------------------------------------------------------------------
    def _vlm_path(self, dist: DistInfo, init_vlm: Path | None, vlm_dim: int) -> Path:
        model = self.config.model
        if model.vlm == TINY_VLM:
            path = self.output_dir / TINY_VLM_DIR
            if dist.is_main and not (path / "config.json").is_file():
                state = torch.get_rng_state()
                write_tiny_vlm(path, seed=self.config.run.seed, hidden_size=vlm_dim)
                torch.set_rng_state(state)
            barrier(dist)
            return path
        if model.vlm:
            return check_vlm_dir(Path(model.vlm))
        if init_vlm is not None:
            return check_vlm_dir(init_vlm)
        raise ValueError("no VLM: set model.vlm=DIR (the stage-1 output), or model.init to a checkpoint that names one")

    def setup(self, dist: DistInfo) -> None:
        config = self.config
        model, data, run = config.model, config.data, config.run
        self.dist = dist
        init = load_checkpoint(Path(model.init)) if model.init else None
        preset = expert_preset(model.expert_preset, horizon=data.horizon)
        self.vlm_path = self._vlm_path(dist, init.vlm_path if init else None, preset.vlm_dim)
        vlm_dtype = torch.bfloat16 if dist.device.type == "cuda" and not model.train_vlm else torch.float32
        self.vlm = VLMBackbone.from_pretrained(self.vlm_path, vlm_dtype, dist.device, ImageConfig())
        overrides: dict[str, Any] = {"horizon": data.horizon, "vlm_dim": self.vlm.hidden_size}
        if model.proprio_dropout is not None:
            overrides["proprio_dropout"] = model.proprio_dropout
        if model.obs_dropout is not None:
            overrides["obs_dropout"] = model.obs_dropout
        expert_config = dataclasses.replace(preset, **overrides)
        self.policy_config = PolicyConfig(
            expert=expert_config,
            flow=FlowConfig(num_steps=model.num_steps, max_delay=model.max_delay),
            rtc=RTCConfig(mode="training" if model.max_delay > 0 else "none"),
            norm=NormConfig(mode=model.norm_mode, normalize_state=model.normalize_state),
            image=ImageConfig(),
        )
        torch.manual_seed(run.seed)
        self.expert = ActionExpert(expert_config)
        self.loaded_from_init: list[str] = []
        if init is not None:
            self.loaded_from_init = load_init(self.expert, init.expert, Path(model.init))
        self.source = open_source(data.format, data.root, data.camera, data.include_failures)
        skipped = self.source.skipped
        if skipped:
            print(
                f"psi0 train: left out {len(skipped)} episodes marked failure "
                f"({', '.join(p.name for p in skipped[:5])}{', ...' if len(skipped) > 5 else ''})",
                flush=True,
            )
        self.stats = compute_norm_stats(self.source, data.action_mode)
        normalizer = Normalizer(self.stats, model.norm_mode, model.normalize_state)
        builder = VLMInputBuilder.from_backbone(self.vlm)
        self.samples = ExpertSamples(
            self.source, normalizer, data.horizon, data.action_mode, model.max_delay, builder, data.color_jitter
        )
        if data.feature_cache and not model.train_vlm and not data.color_jitter:
            self.samples.cache = self.feature_cache(dist)
            self.cache_used = True
        self._module = ExpertTrainModule(self.expert, self.vlm, model.train_vlm, model.max_delay > 0)

    def cache_fingerprint(self) -> str:
        files = [self.vlm_path / "config.json"] + sorted(self.vlm_path.glob("*.safetensors"))
        return fingerprint(
            {
                "vlm": file_signature(files),
                "data": file_signature([e.source for e in self.source.entries]),
                "format": self.config.data.format,
                "camera": self.config.data.camera,
                "image": dataclasses.asdict(self.vlm.image_config),
                "dtype": self.config.data.cache_dtype,
                "vlm_dtype": str(self.vlm.dtype),
            }
        )

    def feature_cache(self, dist: DistInfo) -> FeatureCache:
        directory = self.output_dir / CACHE_DIR
        key = self.cache_fingerprint()
        if dist.is_main and FeatureCache.open(directory, key, len(self.samples)) is None:
            frames = _FrameInputs(self.samples)
            loader = torch.utils.data.DataLoader(
                frames,
                batch_size=CACHE_BUILD_BATCH,
                collate_fn=frames.collate,
                num_workers=self.config.run.num_workers,
            )

            def encode(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
                output = self.vlm(batch)
                return output.hidden, output.mask

            FeatureCache.build(directory, loader, encode, len(self.samples), self.config.data.cache_dtype, key)
        barrier(dist)
        cache = FeatureCache.open(directory, key, len(self.samples))
        if cache is None:
            raise RuntimeError(f"feature cache {directory} is missing or stale after building it")
        return cache

    # --- Task interface ------------------------------------------------------------------------
    def module(self) -> nn.Module:
        return self._module

    def dataset(self) -> torch.utils.data.Dataset:
        return self.samples

    def collate(self, samples: Sequence[Any]) -> Any:
        return self.samples.collate(samples)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return model(batch)

    def export(self, module: nn.Module, output_dir: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        trained: ExpertTrainModule = module
        state = state if state is not None else trained.state_dict()
        vlm_path = self.vlm_path
        if self.config.model.train_vlm:
            vlm_path = output_dir / TRAINED_VLM_DIR
            vlm_state = {k[len("vlm.model.") :]: v for k, v in state.items() if k.startswith("vlm.model.")}
            trained.vlm.model.save_pretrained(str(vlm_path), state_dict=vlm_state)
            trained.vlm.tokenizer.save_pretrained(str(vlm_path))
            preprocessor = self.vlm_path / "preprocessor_config.json"
            if preprocessor.is_file():
                shutil.copy(preprocessor, vlm_path / preprocessor.name)
        expert = ActionExpert(self.policy_config.expert)
        expert_state = {k[len("expert.") :]: v for k, v in state.items() if k.startswith("expert.")}
        expert.load_state_dict({k: v.detach().float().cpu() for k, v in expert_state.items()})
        return save_checkpoint(
            output_dir / CHECKPOINT_DIR,
            expert,
            self.policy_config,
            self.stats,
            vlm_path=vlm_path,
            copy_vlm=self.config.model.copy_vlm,
        )


def load_init(expert: ActionExpert, source: ActionExpert, path: Path) -> list[str]:
    """Initialise from a previous stage: every weight when the shapes agree (same chunk length),
    else only the transformer blocks (Psi0 stage 3 from stage 2). Returns the names loaded."""
    theirs = source.state_dict()
    ours = expert.state_dict()
    same_horizon = source.config.horizon == expert.config.horizon
    names = sorted(ours) if same_horizon else sorted(k for k in ours if k.startswith("blocks."))
    wrong = [
        f"{k}: {tuple(theirs[k].shape) if k in theirs else 'missing'} vs {tuple(ours[k].shape)}"
        for k in names
        if k not in theirs or theirs[k].shape != ours[k].shape
    ]
    if wrong:
        raise ValueError(f"init checkpoint {path} does not fit the expert being trained: {wrong[:6]}")
    expert.load_state_dict({**ours, **{k: theirs[k].to(ours[k].dtype) for k in names}})
    return names
