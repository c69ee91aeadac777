"""Held-out validation of the action expert (stages 2 and 3).

`data.val_episodes` episodes are held out of training, by episode (a seeded draw from run.seed),
and leave out of the normalisation statistics too. Every `run.eval_every` steps and at the end,
the engine calls ExpertTask.validate, which scores a strided subset of the held-out frames (at
most MAX_VAL_FRAMES) two ways:

- val_loss: the training's own flow-matching loss (Task.loss on a batch cut the way training cuts
  it), with each frame's noise, noise level and RTC delay fixed by its seed, so successive
  evaluations are comparable; no dropout, no colour jitter;
- open loop (psi0_ros.open_loop): the expert's sampled chunk from each frame's recorded state and
  image against the recorded actions: val_arms_first_rad, val_arms_chunk_rad, val_hands_first_rad,
  val_lower_velocity_first (m/s), and the hold-the-state baseline val_hold_state_arms_first_rad,
  the number the first-action error has to beat. The noise restarts from run.seed every time.

With the VLM frozen, each held-out frame's features are computed once and kept in memory; with
model.train_vlm they are recomputed through the training VLM at every evaluation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from psi0_ros.open_loop import OpenLoopScores, expert_chunk
from training.readers import EpisodeSource

if TYPE_CHECKING:
    from training.expert import ExpertSamples, ExpertTask

MAX_VAL_FRAMES = 128  # held-out frames scored per evaluation (a strided subset): seconds on a GPU
VAL_BATCH = 16  # frames per validation forward pass
SPLIT_STREAM = 101  # seeds the held-out draw: np.random.default_rng([run.seed, SPLIT_STREAM])
NOISE_STREAM = 102  # seeds each validation frame's noise: SeedSequence([run.seed, NOISE_STREAM, i])
VAL_METRICS = (  # open-loop summary keys logged as val_<key>
    "arms_first_rad",
    "arms_chunk_rad",
    "hands_first_rad",
    "lower_velocity_first",
    "hold_state_arms_first_rad",
)


class SubsetSource(EpisodeSource):
    """Some episodes of another source (same images, same entries)."""

    def __init__(self, parent: EpisodeSource, indices: Sequence[int]):
        super().__init__()
        self.parent = parent
        self.indices = [int(i) for i in indices]
        self.kind = parent.kind
        self.entries = [parent.entries[i] for i in self.indices]
        self.skipped = parent.skipped

    def image(self, episode: int, frame: int) -> np.ndarray:
        return self.parent.image(self.indices[episode], frame)


SPLIT_FILE = "split.json"  # <output_dir>/split.json: which episodes trained and which were held out


def write_split(path: Path, train: EpisodeSource, held_out: EpisodeSource | None) -> None:
    """{"train": [episode sources], "held_out": [...]}: what an open-loop evaluation of the
    checkpoint scores as seen and as held-out data (sources are files for psi0_ros episodes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    split = {
        "train": [str(e.source) for e in train.entries],
        "held_out": [] if held_out is None else [str(e.source) for e in held_out.entries],
    }
    path.write_text(json.dumps(split, indent=2) + "\n")


def split_held_out(source: EpisodeSource, count: int, seed: int) -> tuple[EpisodeSource, EpisodeSource | None]:
    """(training episodes, held-out episodes or None when count is 0): `count` whole episodes drawn
    with run.seed, so a resumed run holds out the same ones."""
    if count == 0:
        return source, None
    total = len(source.entries)
    if count >= total:
        raise ValueError(
            f"data.val_episodes ({count}) must be fewer than the {total} episodes of the dataset "
            f"({total} episodes leave {total - count} to train on)"
        )
    held = sorted(int(i) for i in np.random.default_rng([seed, SPLIT_STREAM]).choice(total, count, replace=False))
    kept = [i for i in range(total) if i not in held]
    return SubsetSource(source, kept), SubsetSource(source, held)


def strided_frames(lengths: Sequence[int], limit: int = MAX_VAL_FRAMES) -> list[tuple[int, int]]:
    """(episode, frame) pairs every `stride` frames, stride the smallest that keeps at most limit."""
    stride = max(1, math.ceil(sum(lengths) / limit))
    pairs = [(e, f) for e, length in enumerate(lengths) for f in range(0, length, stride)]
    return pairs[:limit]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class HeldOutValidation:
    """The held-out frames of an ExpertTask and what validate() computes on them."""

    def __init__(self, task: ExpertTask, held_out: EpisodeSource):
        self.task = task
        self.held_out = held_out
        self.frames = strided_frames([e.length for e in held_out.entries])
        names = ", ".join(e.source.name for e in held_out.entries[:5])
        print(
            f"psi0 train: held out {len(held_out.entries)} episodes for validation ({names}"
            f"{', ...' if len(held_out.entries) > 5 else ''}), {len(self.frames)} frames scored",
            flush=True,
        )
        self._samples: ExpertSamples | None = None
        self._items: list[dict[str, Any]] = []

    def _vlm(self, module: nn.Module) -> Any:
        vlm = getattr(module, "vlm", None)
        return self.task.vlm if vlm is None else vlm

    def _prepare(self, module: nn.Module, device: torch.device) -> None:
        """Cut each frame's sample once (fixed seeds); with a frozen VLM, encode it once."""
        from training.expert import ExpertSamples

        task, config = self.task, self.task.config
        train_samples = task.samples
        self._samples = ExpertSamples(  # cut as the training samples are, without colour jitter
            self.held_out,
            train_samples.normalizer,
            train_samples.horizon,
            train_samples.action_mode,
            train_samples.max_delay,
            train_samples.builder,
            jitter=False,
        )
        starts = self._samples.starts
        seeds = [
            int(np.random.SeedSequence([config.run.seed, NOISE_STREAM, i]).generate_state(1)[0])
            for i in range(len(self.frames))
        ]
        self._items = [
            self._samples[(int(starts[episode] + frame), seed)]
            for (episode, frame), seed in zip(self.frames, seeds, strict=True)
        ]
        if not config.model.train_vlm:
            for first in range(0, len(self._items), VAL_BATCH):
                self._encode(self._items[first : first + VAL_BATCH], module, device, keep=True)

    def _encode(
        self, items: list[dict[str, Any]], module: nn.Module, device: torch.device, keep: bool
    ) -> list[torch.Tensor]:
        """VLM features (S_i, hidden) of each item's prompt; keep: store them in the items (float16)."""
        if "features" in items[0]:
            return [item["features"] for item in items]
        output = self._vlm(module)(_to_device(self._samples.builder.collate([i["vlm"] for i in items]), device))
        features = [torch.from_numpy(output.sample(row)[0]) for row in range(len(items))]
        if keep:
            for item, feature in zip(items, features, strict=True):
                item["features"] = feature.to(torch.float16)
                del item["vlm"]
        return features

    @torch.no_grad()
    def run(self, module: nn.Module, device: torch.device) -> dict[str, float]:
        """The val_* metrics (module in eval mode; the engine sets it)."""
        from psi0_ros.policy.interface import Observation, Policy

        if self._samples is None:
            self._prepare(module, device)
        task = self.task
        total, count = 0.0, 0
        policy = Policy(task.policy_config, task.expert, self._samples.normalizer, seed=task.config.run.seed)
        scores = OpenLoopScores()
        horizon = self._samples.horizon
        for first in range(0, len(self._items), VAL_BATCH):
            items = self._items[first : first + VAL_BATCH]
            features = self._encode(items, module, device, keep=False)
            batch = [dict(item, features=f) for item, f in zip(items, features, strict=True)]
            batch = [{k: v for k, v in item.items() if k != "vlm"} for item in batch]
            loss = task.loss(module, _to_device(self._samples.collate(batch), device))
            total += float(loss) * len(items)
            count += len(items)
            for (episode, frame), feature in zip(self.frames[first : first + VAL_BATCH], features, strict=True):
                entry = self.held_out.entries[episode]
                observation = Observation(state=entry.state[frame], vlm_features=feature.float().numpy())
                chunk = policy.infer(observation)
                scores.add_frame(chunk[None], expert_chunk(entry.action, frame, horizon), state=entry.state[frame])
        summary = scores.summary()
        row = {"val_loss": total / count}
        row.update({f"val_{key}": float(summary[key]) for key in VAL_METRICS if key in summary})
        return row
