"""The Qwen3-VL backbone on a tiny random model: features equal the last decoder layer's output
before the final norm (a manual pass through the layers); padding, dtypes and bad directories."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

from psi0_ros.policy.vlm import (
    WIRE_DTYPES,
    VLMBackbone,
    check_vlm_dir,
    features_from_bytes,
    features_to_bytes,
    patch_embedding_as_matmul,
    write_tiny_vlm,
)


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_vlm(tmp_path_factory.mktemp("vlm") / "qwen3vl-tiny", seed=0)


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(n)]


def _manual_decoder_pass(model: Qwen3VLForConditionalGeneration, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the text decoder layer by layer, written out here: the last layer's output and the final norm."""
    language_model = model.model.language_model
    captured: dict = {}
    handle = language_model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.update(kwargs), with_kwargs=True
    )
    try:
        model.model(**inputs, use_cache=False)  # only to get the embeddings, positions and deepstack inputs
    finally:
        handle.remove()
    hidden = captured["inputs_embeds"]
    positions = captured["position_ids"]
    text_positions = None
    if positions.shape[0] == 4:  # text positions first, then the 3 multimodal rope sections
        text_positions, positions = positions[0], positions[1:]
    batch, length = hidden.shape[:2]
    allowed = (
        torch.tril(torch.ones(length, length, dtype=torch.bool))[None] & inputs["attention_mask"].bool()[:, None, :]
    )
    mask = torch.zeros(batch, 1, length, length).masked_fill(~allowed[:, None], torch.finfo(torch.float32).min)
    rotary = language_model.rotary_emb(hidden, positions)
    deepstack = captured.get("deepstack_visual_embeds") or []
    for index, layer in enumerate(language_model.layers):
        output = layer(hidden, attention_mask=mask, position_ids=text_positions, position_embeddings=rotary)
        hidden = output[0] if isinstance(output, tuple) else output
        if index < len(deepstack) and index < len(language_model.layers) - 1:
            hidden = hidden.clone()
            hidden[captured["visual_pos_masks"]] += deepstack[index]
    return hidden, language_model.norm(hidden)


def test_features_are_the_last_decoder_layer_before_the_final_norm(tiny_vlm_dir):
    """Psi0's feature is hidden_states[-1] under transformers 4.57: the last decoder layer's output,
    pre-norm. Checked against a pass through the decoder layers written out in this test."""
    vlm = VLMBackbone.from_pretrained(tiny_vlm_dir)
    inputs = vlm.prepare(_frames(2), ["Pick up the red cup and place it in the bin", "wave"])
    reference = Qwen3VLForConditionalGeneration.from_pretrained(str(tiny_vlm_dir), attn_implementation="eager").eval()
    assert len(reference.model.language_model.layers) == 2
    with torch.no_grad():
        ours = vlm(inputs)
        pre_norm, post_norm = _manual_decoder_pass(reference, inputs)
    real = ours.mask
    assert ours.hidden.shape == pre_norm.shape and ours.hidden.shape[-1] == 64
    assert torch.allclose(ours.hidden[real], pre_norm[real], atol=1e-5)
    # The post-norm state (transformers 5.x's hidden_states[-1]) is a different input distribution.
    assert not torch.allclose(ours.hidden[real], post_norm[real], atol=1e-2)
    # 80 image tokens per 640x480 frame; the shorter prompt is right-padded and masked
    assert (inputs["input_ids"] == vlm.image_token_id).sum(1).tolist() == [80, 80]
    assert ours.mask[0].all() and not ours.mask[1].all() and ours.mask[1, 0]


def test_patch_embedding_as_a_matrix_product_matches_transformers_conv3d(tiny_vlm_dir):
    """The backbone runs the vision patch embedding as one matmul: the same outputs and weight
    gradients as transformers' own Conv3d layer, and a deep copy computes with its own weights."""
    import copy

    plain = Qwen3VLForConditionalGeneration.from_pretrained(str(tiny_vlm_dir)).eval()
    conv = plain.model.visual.patch_embed
    vlm = VLMBackbone.from_pretrained(tiny_vlm_dir)
    embed = vlm.model.model.visual.patch_embed
    assert isinstance(embed.proj, torch.nn.Conv3d) and embed.forward.__func__ is not type(embed).forward
    pixels = vlm.prepare(_frames(2), ["wave", "wave"])["pixel_values"]
    ours, theirs = embed(pixels), conv(pixels)
    assert ours.shape == theirs.shape == (pixels.shape[0], embed.embed_dim)
    assert torch.allclose(ours, theirs, atol=1e-5)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    assert torch.allclose(embed.proj.weight.grad, conv.proj.weight.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(embed.proj.bias.grad, conv.proj.bias.grad, rtol=1e-4, atol=1e-4)
    twin = copy.deepcopy(vlm).model.model.visual.patch_embed
    with torch.no_grad():
        twin.proj.weight.mul_(2.0)
        assert torch.allclose(embed(pixels), ours)  # the original keeps its weights
        assert not torch.allclose(twin(pixels), ours, atol=1e-3)
    assert patch_embedding_as_matmul(torch.nn.Linear(2, 2)) is False  # no vision tower: nothing changes


def test_padding_in_a_batch_does_not_change_a_samples_features(tiny_vlm_dir):
    vlm = VLMBackbone.from_pretrained(tiny_vlm_dir)
    frames = _frames(2)
    batch = vlm.encode(frames, ["a much longer instruction than the other one", "wave"])
    alone = vlm.encode(frames[1:], ["wave"])
    features, mask = batch.sample(1)
    assert mask.all() and features.shape == alone.sample(0)[0].shape
    assert np.allclose(features, alone.sample(0)[0], atol=1e-5)


def test_instruction_is_lowercased_as_psi0_does(tiny_vlm_dir):
    vlm = VLMBackbone.from_pretrained(tiny_vlm_dir)
    frame = _frames(1)
    assert torch.equal(vlm.prepare(frame, ["Wave"])["input_ids"], vlm.prepare(frame, ["wave"])["input_ids"])


def test_bfloat16_features_are_close_to_float32(tiny_vlm_dir):
    frames, text = _frames(1), ["pick up the cup"]
    full = VLMBackbone.from_pretrained(tiny_vlm_dir, torch.float32).encode(frames, text).hidden
    half = VLMBackbone.from_pretrained(tiny_vlm_dir, torch.bfloat16).encode(frames, text).hidden
    assert half.dtype == torch.bfloat16
    cosine = torch.nn.functional.cosine_similarity(half.float(), full, dim=-1)
    assert cosine.min() > 0.98, float(cosine.min())


def test_missing_or_incomplete_directories_are_named(tiny_vlm_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found: .*nowhere"):
        VLMBackbone.from_pretrained(tmp_path / "nowhere")

    def broken(remove: str, name: str = "") -> Path:
        target = tmp_path / f"without-{remove}{name}"
        shutil.copytree(tiny_vlm_dir, target)
        (target / remove).unlink()
        return target

    with pytest.raises(FileNotFoundError, match="config.json"):
        check_vlm_dir(broken("config.json"))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        check_vlm_dir(broken("model.safetensors"))
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        check_vlm_dir(broken("tokenizer.json"))
    sharded = broken("model.safetensors", "-sharded")
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002"):
        check_vlm_dir(sharded)
    other = tmp_path / "other-model"
    shutil.copytree(tiny_vlm_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="'llama'"):
        check_vlm_dir(other)


def test_bad_inputs_are_clear_errors(tiny_vlm_dir):
    vlm = VLMBackbone.from_pretrained(tiny_vlm_dir)
    with pytest.raises(ValueError, match="one instruction per image"):
        vlm.prepare(_frames(2), ["only one"])
    with pytest.raises(ValueError, match="uint8"):
        vlm.prepare([np.zeros((480, 640, 3), np.float32)], ["x"])


@pytest.mark.weights
def test_real_qwen3vl_2b_gives_2048_wide_features():
    """Set PSI0_QWEN3VL_DIR to a local Qwen3-VL-2B-Instruct (or stage-1) directory to run this."""
    path = os.environ.get("PSI0_QWEN3VL_DIR")
    if not path:
        pytest.skip("needs real Qwen3-VL weights (PSI0_QWEN3VL_DIR)")
    vlm = VLMBackbone.from_pretrained(Path(path), torch.bfloat16)
    features, mask = vlm.encode(_frames(1), ["pick up the red cup"]).sample(0)
    assert features.shape[1] == 2048 and mask.all()
    assert 80 < features.shape[0] < 300 and np.isfinite(features).all()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_features_travel_as_raw_bytes(dtype):
    features = torch.randn(7, 64)
    data = features_to_bytes(features, dtype)
    back = features_from_bytes(data, 7, 64, dtype)
    assert back.shape == (7, 64) and back.dtype == np.float32
    assert np.allclose(back, features.numpy(), rtol=1e-2, atol=1e-2)
    assert np.array_equal(back, features.to(WIRE_DTYPES[dtype]).float().numpy())  # exact after the cast
    with pytest.raises(ValueError, match="expected 8 x 64"):
        features_from_bytes(data, 8, 64, dtype)
    with pytest.raises(ValueError, match="float64"):
        features_to_bytes(features, "float64")
