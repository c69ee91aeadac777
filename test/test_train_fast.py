"""FAST action tokenizer: the DCT is scipy's, the round trip stays within its stated bound, a
fitted tokenizer saves and loads, and the VLM vocabulary grows by the action tokens."""

from __future__ import annotations

import numpy as np
import pytest

from training.fast import FastTokenizer, dct, idct, round_trip_bound


def _smooth_chunks(count: int, horizon: int, dim: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[:, None]
    chunks = []
    for _ in range(count):
        chunk = rng.uniform(-0.6, 0.6, dim) * np.sin(
            2 * np.pi * rng.uniform(0.2, 1.0, dim) * t + rng.uniform(0, 6, dim)
        )
        chunks.append(np.clip(chunk + rng.normal(0, 0.02, chunk.shape), -1, 1))
    return chunks


def test_dct_is_scipys_orthonormal_dct_ii_and_inverts():
    scipy_fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(1).normal(size=(12, 5))
    np.testing.assert_allclose(dct(x), scipy_fft.dct(x, axis=0, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(idct(dct(x)), x, atol=1e-12)


@pytest.mark.parametrize(("horizon", "dim"), [(1, 48), (16, 7)])
def test_round_trip_within_the_stated_bound(horizon, dim, tmp_path):
    chunks = _smooth_chunks(300, horizon, dim)
    tokenizer = FastTokenizer.fit(chunks[:200], vocab_size=2048, scale=100.0)
    assert tokenizer.vocab_size <= 2048
    bound = round_trip_bound(horizon, 100.0)
    assert bound == pytest.approx(0.5 * np.sqrt(horizon) / 100)
    errors, lengths = [], []
    for chunk in chunks[:200]:
        ids = tokenizer.encode(chunk)
        lengths.append(len(ids))
        errors.append(np.abs(tokenizer.decode(ids) - chunk).max())
    assert max(errors) <= bound
    assert max(errors) > 0  # rounding really happens: the bound is not vacuous
    if horizon > 1:  # BPE compresses the smooth chunks' coefficient stream
        assert np.mean(lengths) < horizon * dim
    loaded = FastTokenizer.load(tokenizer.save(tmp_path / "fast"))
    assert loaded.spec == tokenizer.spec
    for chunk in chunks[200:220]:  # unseen chunks encode identically after loading
        assert loaded.encode(chunk) == tokenizer.encode(chunk)


def test_bad_inputs_are_clear_errors(tmp_path):
    tokenizer = FastTokenizer.fit(_smooth_chunks(50, 4, 3), vocab_size=512, scale=10.0)
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        tokenizer.encode(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        tokenizer.encode(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="outside"):
        tokenizer.decode([tokenizer.vocab_size + 5])
    with pytest.raises(ValueError, match="smaller than the range"):
        FastTokenizer.fit(_smooth_chunks(20, 4, 3), vocab_size=8, scale=1000.0)
    with pytest.raises(FileNotFoundError, match="fast_config.json"):
        FastTokenizer.load(tmp_path)


def test_action_tokens_extend_the_vlm_vocabulary(tmp_path):
    import torch
    from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

    from psi0_ros.policy.vlm import write_tiny_vlm
    from training.fast import ACTION_END, ACTION_START
    from training.stage1 import add_action_tokens

    path = write_tiny_vlm(tmp_path / "vlm")
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(path), local_files_only=True)
    text_tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    old = model.get_input_embeddings().weight.detach().clone()
    fast = FastTokenizer.fit(_smooth_chunks(100, 1, 48), vocab_size=2048, scale=100.0)
    ids = add_action_tokens(model, text_tokenizer, fast, pad_multiple=64)
    new = model.get_input_embeddings().weight.detach()
    assert len(ids) == fast.vocab_size and new.shape[0] % 64 == 0 and new.shape[0] >= len(text_tokenizer)
    assert torch.equal(new[: old.shape[0]], old)
    torch.testing.assert_close(new[ids].mean(0), old.mean(0), atol=0.02, rtol=0)  # rows drawn around the old mean
    pieces = text_tokenizer.convert_ids_to_tokens(ids[:3])
    assert pieces == ["<|a_0|>", "<|a_1|>", "<|a_2|>"]
    encoded = text_tokenizer(f"{ACTION_START}<|a_1|><|a_0|>{ACTION_END}", add_special_tokens=False)["input_ids"]
    assert encoded[1:3] == [ids[1], ids[0]] and len(encoded) == 4
