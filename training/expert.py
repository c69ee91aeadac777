"""Stages 2 and 3: the MM-DiT action expert on VLM features, with flow matching.

What a stage's checkpoint means is its recipe, psi0_ros.policy.config.STAGE_RECIPES (with the
config's explicit overrides): ExpertTask.setup derives the checkpoint's PolicyConfig from it, and
the training targets go through that config's own transform list (transforms.make_transforms),
the one Policy.infer inverts when serving.

Stage 2 (post-training, shared/RECIPE.md): the expert from scratch with the VLM frozen, chunks of
16 delta actions a[t+1] - a[t] over hands + arms (psi0_ros.layout.actions_to_deltas; the 8
lower-body dims masked out), q99 bounds, the state (absolute joints) not normalised, no RTC.
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

from psi0_ros.control.amo import STAND_SPEED
from psi0_ros.layout import ACTION_DIM, VELOCITY_DIMS, actions_to_deltas
from psi0_ros.policy.checkpoint import build_expert, load_checkpoint, save_checkpoint
from psi0_ros.policy.config import ImageConfig, expert_preset
from psi0_ros.policy.flow import batch_flow_loss
from psi0_ros.policy.interface import uses_token_sigma
from psi0_ros.policy.mmdit import ActionExpert, Conditioning
from psi0_ros.policy.sampling import check_policy_config
from psi0_ros.policy.transforms import Normalizer, NormStats, Sample, action_transforms, compute_stats
from psi0_ros.policy.vlm import VLMBackbone, check_vlm_dir, write_tiny_vlm
from training.config import TINY_VLM, ExpertStageConfig
from training.engine import DistInfo, Task, barrier
from training.feature_cache import FeatureCache, file_signature, fingerprint
from training.readers import EpisodeSource, open_source
from training.validation import SPLIT_FILE, HeldOutValidation, split_held_out, write_split
from training.vlm_inputs import VLMInputBuilder, color_jitter

CHECKPOINT_DIR = "checkpoint"  # <output_dir>/checkpoint: the policy checkpoint a stage writes
CACHE_DIR = "feature_cache"
TINY_VLM_DIR = "tiny_vlm"
TRAINED_VLM_DIR = "vlm"
CACHE_BUILD_BATCH = 8


class ExpertTrainModule(nn.Module):
    """Expert (+ the VLM, frozen unless train_vlm): batch -> the policy's flow-matching loss
    (psi0_ros.policy.flow.flow_loss, the one Policy.loss uses), the randomness given per sample."""

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
        return batch_flow_loss(self.expert, batch, cond, self.per_token_sigma)


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
        velocity_weight: float = 1.0,
    ):
        self.source = source
        self.normalizer = normalizer
        self.horizon = horizon
        self.action_mode = action_mode
        # The transform list of the checkpoint's PolicyConfig (pad, delta/absolute, normalise).
        self.transforms = action_transforms(action_mode, normalizer)
        self.max_delay = max_delay
        self.builder = builder
        self.jitter = jitter
        self.cache = cache
        self.velocity_weight = float(velocity_weight)  # loss weight of vx, vy, vyaw (ExpertData)
        lengths = np.array([e.length for e in source.entries], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        episode = int(np.searchsorted(self.starts, index, side="right") - 1)
        return episode, int(index - self.starts[episode])

    def targets(self, episode: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised action chunk (H, 36) and its loss weights (H, 36)."""
        sample = self.sample(episode, frame)
        return sample.actions, sample.weights()

    def sample(self, episode: int, frame: int) -> Sample:
        """The frame's state and action chunk through the transform list (model space)."""
        entry = self.source.entries[episode]
        steps = frame + np.arange(self.horizon + self.transforms.extra_rows)  # a delta chunk needs H + 1
        chunk = entry.action[np.minimum(steps, entry.length - 1)]  # an episode end repeats its last action
        return self.transforms.forward(Sample(state=entry.state[frame], actions=chunk, valid=steps < entry.length))

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        episode, frame = self.locate(index)
        entry = self.source.entries[episode]
        rng = np.random.default_rng(seed)
        transformed = self.sample(episode, frame)
        sample: dict[str, Any] = {
            "state": torch.from_numpy(transformed.state),
            "actions": torch.from_numpy(transformed.actions),
            "weights": torch.from_numpy(self._weights(transformed)),
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

    def walking(self) -> np.ndarray:
        """(len(self),) bool: the frame's action chunk commands the base to move (a vx, vy or vyaw
        row at or above the lower body's stand speed, as the robot's walking controller reads it)."""
        flags = []
        for entry in self.source.entries:
            velocity = np.asarray(entry.action[:, list(VELOCITY_DIMS)], np.float64)
            moving = (np.abs(velocity) >= STAND_SPEED).any(axis=1)
            # any moving row among the chunk's rows [frame, frame + horizon) (past the end the chunk
            # repeats the last row, which is inside that span already)
            counted = np.concatenate([[0], np.cumsum(moving)])
            frame = np.arange(entry.length)
            flags.append(counted[np.minimum(frame + self.horizon, entry.length)] > counted[frame])
        return np.concatenate(flags) if flags else np.zeros(0, bool)

    def _weights(self, sample: Sample) -> np.ndarray:
        weights = sample.weights()
        if self.velocity_weight != 1.0:
            weights[:, list(VELOCITY_DIMS)] *= self.velocity_weight
        return weights

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
                write_tiny_vlm(
                    path, seed=self.config.run.seed, hidden_size=vlm_dim, image_scale=model.tiny_vlm_image_scale
                )
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
        overrides: dict[str, Any] = {
            "horizon": data.horizon,
            "vlm_dim": self.vlm.hidden_size,
            "arch": model.expert_arch,
        }
        if model.proprio_dropout is not None:
            overrides["proprio_dropout"] = model.proprio_dropout
        if model.obs_dropout is not None:
            overrides["obs_dropout"] = model.obs_dropout
        expert_config = dataclasses.replace(preset, **overrides)
        # What the checkpoint's numbers mean comes from the stage's recipe, nowhere else (DESIGN §6).
        self.policy_config = config.recipe().policy_config(expert_config, model.num_steps, ImageConfig())
        check_policy_config(self.policy_config)
        torch.manual_seed(run.seed)
        self.expert = build_expert(expert_config)
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
        self.source, held_out = split_held_out(self.source, data.val_episodes, run.seed)  # before the stats
        self.validation = None if held_out is None else HeldOutValidation(self, held_out)
        if dist.is_main:
            write_split(self.output_dir / SPLIT_FILE, self.source, held_out)
        representation, norm = self.policy_config.action.representation, self.policy_config.norm
        self.stats = compute_norm_stats(self.source, representation)
        normalizer = Normalizer(self.stats, norm.mode, norm.normalize_state)
        builder = VLMInputBuilder.from_backbone(self.vlm)
        max_delay = self.policy_config.flow.max_delay
        self.samples = ExpertSamples(
            self.source,
            normalizer,
            data.horizon,
            representation,
            max_delay,
            builder,
            data.color_jitter,
            velocity_weight=data.velocity_loss_weight,
        )
        if data.feature_cache and not model.train_vlm and not data.color_jitter:
            self.samples.cache = self.feature_cache(dist)
            self.cache_used = True
        self._module = ExpertTrainModule(self.expert, self.vlm, model.train_vlm, uses_token_sigma(self.policy_config))

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

    def sample_weights(self) -> np.ndarray | None:
        weight = float(self.config.data.walk_sample_weight)
        if weight == 1.0:
            return None
        walking = self.samples.walking()
        weights = np.where(walking, weight, 1.0)
        if self.dist.is_main:
            share = float(weights[walking].sum() / weights.sum())
            print(
                f"psi0 train: {int(walking.sum())} of {len(walking)} frames command the base to move; "
                f"drawn x{weight:g}, they make up {share:.0%} of the batches",
                flush=True,
            )
        return weights

    def collate(self, samples: Sequence[Any]) -> Any:
        return self.samples.collate(samples)

    def validate(self, module: nn.Module, step: int) -> dict[str, float]:
        """Held-out loss and open-loop errors (training/validation.py); {} without val_episodes."""
        return {} if self.validation is None else self.validation.run(module, self.dist.device)

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
        expert = build_expert(self.policy_config.expert)
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
