"""Camera frame -> Qwen3-VL inputs, as Psi0 prepares them, with PIL and numpy only.

Psi0's chain for its egocentric camera (640x480 RGB):
 1. torchvision Resize((240, 320)) with nearest neighbour, then CenterCrop((240, 320));
 2. qwen_vl_utils.fetch_image with image_patch_size 16: "smart resize" both sides to multiples of
    32 (patch 16 x merge 2) within a pixel budget, PIL bicubic -> 256x320;
 3. the Qwen3-VL image processor: the same smart resize against its own pixel budget (a no-op
    for 256x320), rescale to [0, 1], normalise with mean = std = 0.5, and cut into 16x16 patches
    (each repeated over the temporal patch of 2), ordered by 2x2 merge groups.
A 640x480 frame thus becomes 320 patches (grid 1x16x20) and 80 image tokens in the prompt.

The prompt is Qwen3-VL's chat format for one user turn with the image then the instruction,
followed by the assistant header (apply_chat_template(..., add_generation_prompt=True)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

# qwen_vl_utils' pixel budget for images: 4 to 16384 tokens of (patch * merge)^2 pixels.
FETCH_MIN_TOKENS = 4
FETCH_MAX_TOKENS = 16384

IMAGE_PAD_TOKEN = "<|image_pad|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
PROMPT_TEMPLATE = "<|im_start|>user\n{vision}{instruction}<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class VisionSpec:
    """The VLM's patching, from its config.json / preprocessor_config.json (Qwen3-VL defaults)."""

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    min_pixels: int = 65536  # the processor's own budget (preprocessor_config "shortest_edge")
    max_pixels: int = 16777216  # ("longest_edge")

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB frame; ValueError naming what is wrong."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image is too small: {image.shape}")
    return image


def resize_and_center_crop(image: np.ndarray, resize: tuple[int, int], crop: tuple[int, int]) -> np.ndarray:
    """Step 1: nearest-neighbour resize to exactly `resize` (H, W), then centre crop to `crop`."""
    image = as_rgb_uint8(image)
    height, width = resize
    if image.shape[:2] != (height, width):
        image = np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.NEAREST))
    crop_h, crop_w = crop
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop} is larger than the resized image {resize}")
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w])


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen-VL's target size: both sides multiples of `factor`, area within [min_pixels, max_pixels],
    aspect ratio kept as closely as possible."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be below 200, got {height}x{width}")
    new_h = max(factor, round(height / factor) * factor)
    new_w = max(factor, round(width / factor) * factor)
    if new_h * new_w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        new_h = max(factor, math.floor(height / beta / factor) * factor)
        new_w = max(factor, math.floor(width / beta / factor) * factor)
    elif new_h * new_w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        new_h = math.ceil(height * beta / factor) * factor
        new_w = math.ceil(width * beta / factor) * factor
    return new_h, new_w


def _bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), resample=Image.Resampling.BICUBIC))


def fetch_resize(image: np.ndarray, spec: VisionSpec) -> np.ndarray:
    """Step 2 (qwen_vl_utils.fetch_image): smart resize against the token budget, bicubic."""
    image = as_rgb_uint8(image)
    budget = spec.factor**2
    size = smart_resize(*image.shape[:2], spec.factor, FETCH_MIN_TOKENS * budget, FETCH_MAX_TOKENS * budget)
    return _bicubic(image, size)


def patchify(image: np.ndarray, spec: VisionSpec) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Step 3: (H, W, 3) uint8 -> pixel patches (N, 3 * T * p * p) float32 and grid (1, H/p, W/p).

    Patches are ordered merge group by merge group (the vision tower's 2x2 merger expects them
    so); each patch is repeated over the temporal patch (a still image is a 1-frame video).
    """
    image = _bicubic(as_rgb_uint8(image), smart_resize(*image.shape[:2], spec.factor, spec.min_pixels, spec.max_pixels))
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    mean = np.asarray(spec.image_mean, dtype=np.float32)
    std = np.asarray(spec.image_std, dtype=np.float32)
    pixels = ((image.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)  # (C, H, W)
    channels, height, width = pixels.shape
    grid_h, grid_w = height // p, width // p
    patches = pixels.reshape(channels, grid_h // m, m, p, grid_w // m, m, p)
    patches = patches.transpose(1, 4, 2, 5, 0, 3, 6)  # (gh/m, gw/m, m, m, C, p, p)
    patches = np.broadcast_to(patches[:, :, :, :, :, None], patches.shape[:5] + (t, p, p))
    return np.ascontiguousarray(patches.reshape(grid_h * grid_w, channels * t * p * p)), (1, grid_h, grid_w)


def num_image_tokens(grid_thw: tuple[int, int, int], spec: VisionSpec) -> int:
    return int(np.prod(grid_thw)) // spec.merge_size**2


def build_prompt(instruction: str, image_tokens: int) -> str:
    """Qwen3-VL chat text for one image and one instruction, the image pad already expanded."""
    vision = VISION_START_TOKEN + IMAGE_PAD_TOKEN * image_tokens + VISION_END_TOKEN
    return PROMPT_TEMPLATE.format(vision=vision, instruction=instruction)


def prepare_image(
    image: np.ndarray, spec: VisionSpec, resize: tuple[int, int] = (240, 320), crop: tuple[int, int] = (240, 320)
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The whole chain: camera frame -> (pixel patches (N, 1536) float32, grid (1, gh, gw))."""
    return patchify(fetch_resize(resize_and_center_crop(image, resize, crop), spec), spec)
