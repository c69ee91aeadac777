"""Stage 1: autoregressive Qwen3-VL training on egocentric human video, actions as FAST tokens.

Per sample: one EgoDex (or Humanoid Everyday, training/he_hands.py) frame, resized to 270x480
without a crop, and its language description form the prompt (psi0_ros.policy.image_prep's chat format); the answer is
  <|action_start|> <|a_i|>... <|action_end|> <|im_end|>
where the <|a_i|> are the FAST tokens of the frame's 48-D hand action (chunk 1), normalised with
per-dimension 1st/99th percentile bounds to [-1, 1] (Psi0's bounds_q99 on EgoDex statistics).
The loss is the cross-entropy of the answer tokens only; the whole VLM trains, the vision tower
and merger at optim.vision_lr.

The vocabulary gets one token per FAST id plus the start/end tokens; the embeddings (input and
output) are resized to a multiple of model.embed_pad_multiple, new rows initialised at the mean
of the old ones. Products in <output_dir>: vlm/ (a Hugging Face directory that stage 2 loads as
model.vlm) and fast/ (the tokenizer and the action statistics).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from psi0_ros.policy.config import ImageConfig
from psi0_ros.policy.transforms import ArrayStats, compute_stats
from psi0_ros.policy.vlm import check_vlm_dir, read_vision_spec, write_tiny_vlm
from training.config import TINY_VLM, OptimConfig, Stage1Config
from training.egodex import EgoDexSource
from training.engine import DistInfo, Task, barrier
from training.fast import ACTION_END, ACTION_START, FastTokenizer, action_token_strings
from training.he_hands import HEHandSource
from training.robot_actions import RobotActionSource
from training.vlm_inputs import VLMInputBuilder, image_token_id

VLM_OUTPUT = "vlm"
FAST_OUTPUT = "fast"
ACTION_STATS_FILE = "action_stats.json"
IGNORE_INDEX = -100  # label of tokens outside the answer (transformers' cross-entropy ignore index)


def normalize_q99(actions: np.ndarray, stats: ArrayStats) -> np.ndarray:
    """Psi0's bounds_q99: (x - q01) / (q99 - q01) * 2 - 1, clipped; flat dimensions keep their value."""
    low, high = stats.q01, stats.q99
    flat = high == low
    span = np.where(flat, 1.0, high - low)
    scaled = (np.asarray(actions, dtype=np.float64) - low) / span * 2.0 - 1.0
    return np.clip(np.where(flat, actions, scaled), -1.0, 1.0).astype(np.float32)


def add_action_tokens(model: nn.Module, tokenizer: Any, fast: FastTokenizer, pad_multiple: int) -> list[int]:
    """Add <|a_0|>.. and the start/end tokens; resize the embeddings. Returns the ids of the FAST tokens."""
    tokens = action_token_strings(fast.vocab_size)
    tokenizer.add_tokens([*tokens, ACTION_START, ACTION_END], special_tokens=True)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_multiple, mean_resizing=True)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if len(set(ids)) != len(ids):
        raise RuntimeError("action tokens did not get distinct ids")
    return list(ids)


class Stage1Samples(torch.utils.data.Dataset):
    def __init__(
        self,
        episodes: list[tuple[Any, int]],  # (source, episode index in it), EgoDex and/or HE
        normalized: list[np.ndarray],
        fast: FastTokenizer,
        action_ids: np.ndarray,
        start_id: int,
        end_ids: list[int],
        builder: VLMInputBuilder,
    ):
        self.episodes = episodes
        self.normalized = normalized
        self.fast = fast
        self.action_ids = action_ids
        self.start_id = start_id
        self.end_ids = end_ids
        self.builder = builder
        lengths = np.array([a.shape[0] for a in normalized], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, _seed = key
        episode = int(np.searchsorted(self.starts, index, side="right") - 1)
        frame = int(index - self.starts[episode])
        action = self.normalized[episode][frame][None]  # chunk of 1
        answer = [self.start_id, *self.action_ids[self.fast.encode(action)].tolist(), *self.end_ids]
        source, local = self.episodes[episode]
        image = source.image(local, frame)
        return self.builder.prompt_ids(image, source.episodes[local].instruction, answer)

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.builder.collate(samples)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
        for row, sample in enumerate(samples):
            labels[row, : sample["prompt_length"]] = IGNORE_INDEX  # cross-entropy on the answer only
        batch["labels"] = labels
        return batch


class Stage1Task(Task):
    name = "stage1"

    def __init__(self, config: Stage1Config):
        self.config = config
        self.output_dir = Path(config.run.output_dir)

    def _vlm_path(self, dist: DistInfo) -> Path:
        vlm = self.config.model.vlm
        if vlm == TINY_VLM:
            path = self.output_dir / "tiny_vlm"
            if dist.is_main and not (path / "config.json").is_file():
                state = torch.get_rng_state()
                write_tiny_vlm(path, seed=self.config.run.seed)
                torch.set_rng_state(state)
            barrier(dist)
            return path
        if not vlm:
            raise ValueError("model.vlm is empty: pass --set model.vlm=DIR (Qwen3-VL-2B-Instruct) or model.vlm=tiny")
        return check_vlm_dir(Path(vlm))

    def setup(self, dist: DistInfo) -> None:
        from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

        config = self.config
        data, model_config = config.data, config.model
        sources: list[Any] = []
        if data.egodex:
            sources.append(EgoDexSource(Path(data.egodex), data.frame_stride))
        if data.humanoid_everyday:
            sources.append(HEHandSource(Path(data.humanoid_everyday), data.frame_stride))
        if data.episodes:
            sources.append(RobotActionSource(Path(data.episodes), data.frame_stride))
        if not sources:
            raise ValueError(
                "no stage-1 data: pass --set data.egodex=DIR, data.humanoid_everyday=DIR and/or data.episodes=DIR"
            )
        self.sources = sources
        self.vlm_path = self._vlm_path(dist)
        # Psi0 normalises both datasets with EgoDex's statistics: those saved with the FAST
        # tokenizer this run continues from, else the first source's (EgoDex when it is read).
        saved = Path(model_config.fast_tokenizer) / ACTION_STATS_FILE if model_config.fast_tokenizer else None
        if saved is not None and saved.is_file():
            self.action_stats = ArrayStats.from_dict(json.loads(saved.read_text()))
        else:
            self.action_stats = compute_stats([e.actions for e in sources[0].episodes])
        episodes = [(source, i) for source in sources for i in range(len(source.episodes))]
        normalized = [normalize_q99(source.episodes[i].actions, self.action_stats) for source, i in episodes]
        if model_config.fast_tokenizer:
            self.fast = FastTokenizer.load(Path(model_config.fast_tokenizer))
        else:
            rows = np.concatenate(normalized)
            rng = np.random.default_rng(config.run.seed)
            if rows.shape[0] > model_config.fast_fit_chunks:
                rows = rows[rng.choice(rows.shape[0], model_config.fast_fit_chunks, replace=False)]
            self.fast = FastTokenizer.fit((r[None] for r in rows), model_config.fast_vocab, model_config.fast_scale)
        dtype = torch.float32  # master weights in fp32; bf16 comes from autocast on GPU
        self.model = Qwen3VLForConditionalGeneration.from_pretrained(
            str(self.vlm_path), dtype=dtype, local_files_only=True
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.vlm_path), local_files_only=True)
        action_ids = add_action_tokens(self.model, self.tokenizer, self.fast, model_config.embed_pad_multiple)
        if model_config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.config.use_cache = False
        image_config = ImageConfig(resize=data.image_size, crop=data.image_size)
        spec = read_vision_spec(self.vlm_path, self.model.config.vision_config)
        pad = self.tokenizer.pad_token_id
        builder = VLMInputBuilder(
            self.tokenizer,
            spec,
            image_config,
            int(pad if pad is not None else self.tokenizer.convert_tokens_to_ids("<|endoftext|>")),
            image_token_id(self.tokenizer),
        )
        end_ids = self.tokenizer.convert_tokens_to_ids([ACTION_END, "<|im_end|>"])
        self.samples = Stage1Samples(
            episodes,
            normalized,
            self.fast,
            np.asarray(action_ids, dtype=np.int64),
            int(self.tokenizer.convert_tokens_to_ids(ACTION_START)),
            list(end_ids),
            builder,
        )

    def module(self) -> nn.Module:
        return self.model

    def dataset(self) -> torch.utils.data.Dataset:
        return self.samples

    def collate(self, samples: Sequence[Any]) -> Any:
        return self.samples.collate(samples)

    def param_groups(self, module: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
        vision, rest = [], []
        for name, parameter in module.named_parameters():
            if parameter.requires_grad:
                (vision if ".visual." in f".{name}" else rest).append(parameter)
        groups = [{"params": rest, "lr": optim.lr}]
        if vision:
            groups.append({"params": vision, "lr": optim.vision_lr or optim.lr})
        return groups

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        output = model(**batch, use_cache=False)
        return output.loss

    def export(self, module: nn.Module, output_dir: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
        target = output_dir / VLM_OUTPUT
        module.save_pretrained(str(target), state_dict=state)
        self.tokenizer.save_pretrained(str(target))
        preprocessor = self.vlm_path / "preprocessor_config.json"
        if preprocessor.is_file():
            shutil.copy(preprocessor, target / preprocessor.name)
        fast_dir = self.fast.save(output_dir / FAST_OUTPUT)
        (fast_dir / ACTION_STATS_FILE).write_text(json.dumps(self.action_stats.to_dict(), indent=1))
        return target
