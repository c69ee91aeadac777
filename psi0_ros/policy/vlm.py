"""System-2: the Qwen3-VL backbone, image + instruction -> its last decoder layer's output.

Wraps transformers' Qwen3VLForConditionalGeneration. The feature is the output of the language
model's LAST DECODER LAYER, BEFORE the final RMSNorm: Psi0 takes `hidden_states[-1]` under the
transformers 4.57 it pins (src/psi/models/psi0.py), where that tensor is the recorded output of the
last decoder layer; transformers 5.x made `hidden_states[-1]` the normed state. So the output is
taken explicitly, with a forward hook on the last decoder layer, the same under either version;
the final norm and the LM head are not used. Inputs are prepared by image_prep.py (no torchvision, no qwen_vl_utils).

Loads a local Hugging Face-format directory (Qwen3-VL-2B-Instruct, or Psi0's stage-1 checkpoint,
whose vocabulary is larger); nothing is downloaded. write_tiny_vlm() builds a random tiny model
with a byte-level tokenizer in such a directory, for tests and benchmarks.
"""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from psi0_ros.policy.config import ImageConfig
from psi0_ros.policy.image_prep import (
    IMAGE_PAD_TOKEN,
    VISION_END_TOKEN,
    VISION_START_TOKEN,
    VisionSpec,
    build_prompt,
    num_image_tokens,
    prepare_image,
)

QWEN3VL_MODEL_TYPE = "qwen3_vl"
_TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
# Special tokens of Qwen's chat format that the prompt uses (image_prep.build_prompt).
_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    VISION_START_TOKEN,
    VISION_END_TOKEN,
    IMAGE_PAD_TOKEN,
    "<|video_pad|>",
)


@dataclass
class VLMOutput:
    """The VLM feature of a batch: what vlm_node publishes as VLMFeatures."""

    hidden: torch.Tensor  # (B, S, hidden) last decoder layer's output (pre-norm) over image + text tokens
    mask: torch.Tensor  # (B, S) bool, True = real token (False = right padding)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample without its padding: features (S_i, hidden) float32 and mask (S_i,) bool."""
        keep = self.mask[index].cpu().numpy().astype(bool)
        return self.hidden[index].float().cpu().numpy()[keep], keep[keep]


# VLMFeatures.dtype values (DESIGN §3) -> torch dtypes; the features travel as raw little-endian bytes.
WIRE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def features_to_bytes(features: torch.Tensor | np.ndarray, dtype: str = "bfloat16") -> bytes:
    """(S, D) features -> the raw bytes of VLMFeatures.data in `dtype` ("float32", "float16", "bfloat16")."""
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"feature dtype must be one of {sorted(WIRE_DTYPES)}, got {dtype!r}")
    tensor = torch.as_tensor(features).detach().to("cpu", WIRE_DTYPES[dtype]).contiguous()
    if tensor.ndim != 2:
        raise ValueError(f"features must be (S, D), got shape {tuple(tensor.shape)}")
    return tensor.view(torch.uint8).numpy().tobytes()


def features_from_bytes(data: bytes, num_tokens: int, feature_dim: int, dtype: str) -> np.ndarray:
    """VLMFeatures.data -> (num_tokens, feature_dim) float32, or ValueError naming the mismatch."""
    if dtype not in WIRE_DTYPES:
        raise ValueError(f"feature dtype must be one of {sorted(WIRE_DTYPES)}, got {dtype!r}")
    itemsize = torch.empty((), dtype=WIRE_DTYPES[dtype]).element_size()
    expected = num_tokens * feature_dim * itemsize
    if len(data) != expected or num_tokens <= 0 or feature_dim <= 0:
        raise ValueError(
            f"feature data has {len(data)} bytes, expected {num_tokens} x {feature_dim} x {itemsize} ({dtype}) = {expected}"
        )
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return raw.view(WIRE_DTYPES[dtype]).reshape(num_tokens, feature_dim).to(torch.float32).numpy()


def check_vlm_dir(path: Path) -> Path:
    """A usable Qwen3-VL directory, or FileNotFoundError / ValueError naming the path and what is missing."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"VLM directory not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"VLM directory {path} is incomplete: no config.json")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except json.JSONDecodeError as err:
        raise ValueError(f"VLM config {config_file} is not valid JSON: {err}") from None
    if model_type != QWEN3VL_MODEL_TYPE:
        raise ValueError(f"VLM directory {path} holds model_type {model_type!r}, expected {QWEN3VL_MODEL_TYPE!r}")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if not shards or missing:
            raise FileNotFoundError(f"VLM directory {path} is incomplete: weight shards missing: {missing or 'all'}")
    elif not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"VLM directory {path} is incomplete: no model.safetensors (or index)")
    if not any(all((path / f).is_file() for f in files) for files in _TOKENIZER_FILE_SETS):
        raise FileNotFoundError(f"VLM directory {path} is incomplete: no tokenizer.json (or vocab.json + merges.txt)")
    return path


def read_vision_spec(path: Path, vision_config: object) -> VisionSpec:
    """Patching of this VLM: preprocessor_config.json where present, else the model's vision config."""
    spec = VisionSpec(
        patch_size=int(vision_config.patch_size),
        merge_size=int(vision_config.spatial_merge_size),
        temporal_patch_size=int(vision_config.temporal_patch_size),
    )
    preprocessor = Path(path) / "preprocessor_config.json"
    if not preprocessor.is_file():
        return spec
    data = json.loads(preprocessor.read_text())
    size = data.get("size") or {}
    return VisionSpec(
        patch_size=int(data.get("patch_size", spec.patch_size)),
        merge_size=int(data.get("merge_size", spec.merge_size)),
        temporal_patch_size=int(data.get("temporal_patch_size", spec.temporal_patch_size)),
        image_mean=tuple(data.get("image_mean", spec.image_mean)),
        image_std=tuple(data.get("image_std", spec.image_std)),
        min_pixels=int(size.get("shortest_edge", data.get("min_pixels", spec.min_pixels))),
        max_pixels=int(size.get("longest_edge", data.get("max_pixels", spec.max_pixels))),
    )


def patch_embedding_as_matmul(model: nn.Module) -> bool:
    """Run the vision tower's patch embedding as one matrix product instead of its Conv3d.

    The Conv3d's kernel equals its stride and the whole input patch (channels x temporal x 16 x 16),
    so each output is the dot product of one flattened patch with one flattened filter: the same
    numbers as F.linear with the weight viewed (out, C*T*P*P), in the order the patches are laid
    out. The parameters and the state dict are unchanged; on CPU the convolution's forward and
    backward cost ~10x the matrix product (the largest single cost of training the tiny VLM end to
    end). Returns False, changing nothing, for a model without that layer."""
    embed = getattr(getattr(getattr(model, "model", None), "visual", None), "patch_embed", None)
    proj = getattr(embed, "proj", None)
    if not isinstance(proj, nn.Conv3d) or tuple(proj.kernel_size) != tuple(proj.stride) or proj.groups != 1:
        return False
    if any(p != 0 for p in proj.padding) or any(d != 1 for d in proj.dilation):
        return False

    # Bound to the layer (not a closure over it), so a deep copy of the model computes with its own weights.
    embed.forward = types.MethodType(_patch_embedding_matmul, embed)
    return True


def _patch_embedding_matmul(embed: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    weight = embed.proj.weight
    flat = hidden_states.reshape(-1, weight[0].numel()).to(weight.dtype)
    return nn.functional.linear(flat, weight.reshape(weight.shape[0], -1), embed.proj.bias)


class VLMBackbone(nn.Module):
    """Qwen3-VL as a feature extractor. encode(images, instructions) -> VLMOutput."""

    def __init__(self, model: nn.Module, tokenizer: object, spec: VisionSpec, image_config: ImageConfig | None = None):
        super().__init__()
        self.model = model  # Qwen3VLForConditionalGeneration
        self.tokenizer = tokenizer
        self.spec = spec
        self.image_config = image_config or ImageConfig()
        config = model.config
        self.image_token_id = int(config.image_token_id)
        if tokenizer.convert_tokens_to_ids(IMAGE_PAD_TOKEN) != self.image_token_id:
            raise ValueError(
                f"tokenizer maps {IMAGE_PAD_TOKEN} to {tokenizer.convert_tokens_to_ids(IMAGE_PAD_TOKEN)}, "
                f"the model expects {self.image_token_id}"
            )
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        patch_embedding_as_matmul(model)

    @classmethod
    def from_pretrained(
        cls,
        path: Path,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        image_config: ImageConfig | None = None,
    ) -> VLMBackbone:
        from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration

        path = check_vlm_dir(path)
        model = Qwen3VLForConditionalGeneration.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        backbone = cls(model, tokenizer, read_vision_spec(path, model.config.vision_config), image_config)
        return backbone.to(device).eval()

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(self, images: Sequence[np.ndarray], instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        """Model inputs for a batch of (H, W, 3) uint8 RGB frames and instructions, right-padded."""
        if len(images) != len(instructions) or not images:
            raise ValueError(
                f"need one instruction per image, got {len(images)} images, {len(instructions)} instructions"
            )
        patches, grids, token_ids = [], [], []
        for image, instruction in zip(images, instructions, strict=True):
            if not isinstance(instruction, str):
                raise ValueError(f"instruction must be a string, got {type(instruction).__name__}")
            if self.image_config.lowercase_instruction:
                instruction = instruction.lower()
            pixels, grid = prepare_image(image, self.spec, self.image_config.resize, self.image_config.crop)
            patches.append(pixels)
            grids.append(grid)
            prompt = build_prompt(instruction, num_image_tokens(grid, self.spec))
            token_ids.append(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        length = max(len(ids) for ids in token_ids)
        input_ids = torch.full((len(token_ids), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(token_ids), length), dtype=torch.long)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32),
            "pixel_values": torch.from_numpy(np.concatenate(patches, axis=0)),
            "image_grid_thw": torch.tensor(grids, dtype=torch.long),
        }

    def last_decoder_layer(self) -> nn.Module:
        """The language model's last decoder layer, whose output is the feature."""
        language_model = getattr(self.model.model, "language_model", None)
        layers = getattr(language_model, "layers", None)
        if layers is None or len(layers) == 0:
            raise RuntimeError("this Qwen3-VL model has no language_model.layers; cannot take the decoder output")
        return layers[-1]

    def forward(self, inputs: dict[str, torch.Tensor]) -> VLMOutput:
        """The last decoder layer's output (B, S, hidden), pre-norm, in the model's dtype, and the token mask."""
        device = self.device
        batch = {k: v.to(device) for k, v in inputs.items()}
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        captured: list[torch.Tensor] = []

        def keep_output(module: nn.Module, args: object, output: object) -> None:
            # A decoder layer returns the hidden states, or a tuple starting with them (older versions).
            captured.append(output[0] if isinstance(output, tuple) else output)

        handle = self.last_decoder_layer().register_forward_hook(keep_output)
        try:
            self.model.model(**batch, use_cache=False)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"the last decoder layer ran {len(captured)} times in one forward pass, expected once")
        return VLMOutput(hidden=captured[0], mask=batch["attention_mask"].bool())

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray], instructions: Sequence[str]) -> VLMOutput:
        return self(self.prepare(images, instructions))


def tiny_qwen3vl_config(vocab_size: int = 320, hidden_size: int = 64, num_layers: int = 2) -> object:
    """A random-weight-sized Qwen3-VL config for tests: patch 16, merge 2, like the real model."""
    from transformers import Qwen3VLConfig

    specials = {token: 256 + i for i, token in enumerate(_SPECIAL_TOKENS)}
    return Qwen3VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": hidden_size // 4,
            "max_position_embeddings": 2048,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=specials[IMAGE_PAD_TOKEN],
        video_token_id=specials["<|video_pad|>"],
        vision_start_token_id=specials[VISION_START_TOKEN],
        vision_end_token_id=specials[VISION_END_TOKEN],
        tie_word_embeddings=True,
    )


def tiny_tokenizer() -> object:
    """Byte-level tokenizer (256 byte tokens, no merges) with Qwen's chat special tokens at 256+."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(_SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def write_tiny_vlm(
    directory: Path,
    seed: int = 0,
    hidden_size: int = 64,
    dtype: torch.dtype = torch.float32,
    image_scale: float = 1.0,
) -> Path:
    """Save a random tiny Qwen3-VL, its tokenizer and a preprocessor config as a local HF directory.

    image_scale multiplies the output layers of the vision merger (and its deepstack mergers), so
    the image tokens' features are that much larger. At random init (std 0.02 everywhere) image
    features have rms ~0.03 and vary across object layouts by ~0.01, against the action expert's
    sinusoidal positions of rms ~0.71 added to them; a trained VLM's features are large. 30 gives
    rms ~0.8 and ~0.26 across layouts (docs/main_job.md). 1 keeps the plain random model."""
    if not image_scale > 0:
        raise ValueError(f"image_scale must be > 0, got {image_scale!r}")
    from transformers import Qwen3VLForConditionalGeneration

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(tiny_qwen3vl_config(hidden_size=hidden_size)).to(dtype).eval()
    if image_scale != 1.0:
        with torch.no_grad():
            for merger in (model.model.visual.merger, *model.model.visual.deepstack_merger_list):
                merger.linear_fc2.weight.mul_(image_scale)
    model.save_pretrained(str(directory))
    tiny_tokenizer().save_pretrained(str(directory))
    spec = VisionSpec()
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "patch_size": spec.patch_size,
                "merge_size": spec.merge_size,
                "temporal_patch_size": spec.temporal_patch_size,
                "image_mean": list(spec.image_mean),
                "image_std": list(spec.image_std),
                "size": {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
            },
            indent=1,
        )
    )
    return directory
