"""Qwen3-VL inputs built in DataLoader workers, colour jitter, and batching them.

The preparation is psi0_ros.policy.image_prep's (the same chain vlm_node runs): resize + centre
crop, smart resize, patches; the prompt is its chat format. Doing it per sample in the workers
keeps the training process free for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from psi0_ros.policy.config import ImageConfig
from psi0_ros.policy.image_prep import IMAGE_PAD_TOKEN, VisionSpec, build_prompt, num_image_tokens, prepare_image

# Psi0 stage 3 (torchvision ColorJitter): brightness 0.2, contrast 0.8-1.2, saturation 0.8-1.2, hue 0.05.
JITTER_BRIGHTNESS = 0.2
JITTER_CONTRAST = (0.8, 1.2)
JITTER_SATURATION = (0.8, 1.2)
JITTER_HUE = 0.05


def color_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 -> jittered copy; the four adjustments in a random order, as torchvision."""
    picture = Image.fromarray(image)
    factors = {
        "brightness": rng.uniform(1 - JITTER_BRIGHTNESS, 1 + JITTER_BRIGHTNESS),
        "contrast": rng.uniform(*JITTER_CONTRAST),
        "saturation": rng.uniform(*JITTER_SATURATION),
        "hue": rng.uniform(-JITTER_HUE, JITTER_HUE),
    }
    for name in rng.permutation(list(factors)):
        value = factors[name]
        if name == "brightness":
            picture = ImageEnhance.Brightness(picture).enhance(value)
        elif name == "contrast":
            picture = ImageEnhance.Contrast(picture).enhance(value)
        elif name == "saturation":
            picture = ImageEnhance.Color(picture).enhance(value)
        else:  # rotate the hue channel by value turns
            hsv = np.asarray(picture.convert("HSV")).copy()
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(value * 255))) % 256
            picture = Image.fromarray(hsv, mode="HSV").convert("RGB")
    return np.asarray(picture)


@dataclass
class VLMInputBuilder:
    """Everything a worker needs to turn (image, instruction) into Qwen3-VL inputs."""

    tokenizer: Any  # a transformers fast tokenizer (pickles into workers)
    spec: VisionSpec
    image_config: ImageConfig
    pad_token_id: int
    image_token_id: int

    @classmethod
    def from_backbone(cls, backbone: Any) -> VLMInputBuilder:
        return cls(
            backbone.tokenizer, backbone.spec, backbone.image_config, backbone.pad_token_id, backbone.image_token_id
        )

    def prompt_ids(self, image: np.ndarray, instruction: str, answer_ids: Sequence[int] = ()) -> dict[str, Any]:
        """One sample: pixel patches (N, C*T*p*p) float32, grid (3,), token ids (L,) incl. the answer."""
        if self.image_config.lowercase_instruction:
            instruction = instruction.lower()
        pixels, grid = prepare_image(image, self.spec, self.image_config.resize, self.image_config.crop)
        prompt = build_prompt(instruction, num_image_tokens(grid, self.spec))
        ids = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        prompt_length = len(ids)
        ids.extend(int(i) for i in answer_ids)
        return {
            "pixel_values": torch.from_numpy(pixels),
            "image_grid_thw": torch.tensor(grid, dtype=torch.long),
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "prompt_length": prompt_length,
        }

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-padded batch in the form VLMBackbone.forward takes (as VLMBackbone.prepare makes it)."""
        length = max(int(s["input_ids"].shape[0]) for s in samples)
        input_ids = torch.full((len(samples), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        for row, sample in enumerate(samples):
            n = int(sample["input_ids"].shape[0])
            input_ids[row, :n] = sample["input_ids"]
            attention_mask[row, :n] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32),
            "pixel_values": torch.cat([s["pixel_values"] for s in samples], dim=0),
            "image_grid_thw": torch.stack([s["image_grid_thw"] for s in samples]),
        }


def image_token_id(tokenizer: Any) -> int:
    return int(tokenizer.convert_tokens_to_ids(IMAGE_PAD_TOKEN))
