"""Camera frame -> Qwen3-VL pixel patches, checked against transformers' own image processor."""

from __future__ import annotations

import numpy as np
import pytest
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from psi0_ros.policy.image_prep import (
    IMAGE_PAD_TOKEN,
    VisionSpec,
    build_prompt,
    fetch_resize,
    num_image_tokens,
    patchify,
    prepare_image,
    resize_and_center_crop,
    smart_resize,
)

SPEC = VisionSpec()


def _frame(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _hf_processor() -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=list(SPEC.image_mean),
        image_std=list(SPEC.image_std),
        size={"shortest_edge": SPEC.min_pixels, "longest_edge": SPEC.max_pixels},
    )


def test_camera_frame_becomes_240x320_by_nearest_neighbour():
    frame = _frame()
    small = resize_and_center_crop(frame, (240, 320), (240, 320))
    assert small.shape == (240, 320, 3) and small.dtype == np.uint8
    # A 2x nearest-neighbour downscale samples one pixel of every 2x2 block (PIL: the centre one).
    assert np.array_equal(small, frame[1::2, 1::2])
    cropped = resize_and_center_crop(frame, (240, 320), (200, 300))
    assert np.array_equal(cropped, small[20:220, 10:310])


def test_smart_resize_matches_qwen_rules():
    assert smart_resize(240, 320, 32, 4 * 32 * 32, 16384 * 32 * 32) == (256, 320)
    assert smart_resize(480, 640, 32, 4096, 16777216) == (480, 640)
    assert smart_resize(20, 20, 32, 4096, 16777216) == (64, 64)  # scaled up to the minimum budget
    height, width = smart_resize(4000, 6000, 32, 4096, 1024 * 1024)
    assert height * width <= 1024 * 1024 and height % 32 == 0 and width % 32 == 0
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 3000, 32, 4096, 16777216)


@pytest.mark.parametrize("shape", [(256, 320), (100, 150)])
def test_patches_equal_transformers_qwen2vl_image_processor(shape):
    image = _frame(*shape, seed=1)
    ours, grid = patchify(image, SPEC)
    theirs = _hf_processor()(images=[image], return_tensors="np")
    assert tuple(theirs["image_grid_thw"][0]) == grid
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs["pixel_values"])


def test_psi0_frame_is_80_image_tokens():
    pixels, grid = prepare_image(_frame(), SPEC)
    assert grid == (1, 16, 20) and pixels.shape == (320, 3 * 2 * 16 * 16)
    assert num_image_tokens(grid, SPEC) == 80
    assert fetch_resize(resize_and_center_crop(_frame(), (240, 320), (240, 320)), SPEC).shape == (256, 320, 3)
    prompt = build_prompt("pick up the cup", 80)
    assert prompt.count(IMAGE_PAD_TOKEN) == 80
    assert prompt.startswith("<|im_start|>user\n<|vision_start|>")
    assert prompt.endswith("<|vision_end|>pick up the cup<|im_end|>\n<|im_start|>assistant\n")


def test_bad_frames_are_clear_errors():
    with pytest.raises(ValueError, match="uint8"):
        prepare_image(_frame().astype(np.float32), SPEC)
    with pytest.raises(ValueError, match="RGB"):
        prepare_image(_frame()[..., :1], SPEC)
    with pytest.raises(ValueError, match="larger"):
        resize_and_center_crop(_frame(), (240, 320), (260, 320))
