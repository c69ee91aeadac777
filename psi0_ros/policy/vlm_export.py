"""The VLM's vision + text path to ONNX: what was tried, why it does not export, and the one check
vlm_node makes of its `backend` parameter.

export_vlm_feature() exports the path that produces the VLM feature (VLMBackbone.forward: the
vision tower, the image tokens scattered into the prompt, the language model up to its last
decoder layer) for one prepared frame with torch.onnx.export's dynamo exporter. With the
transformers this project pins (5.23, Qwen3-VL) it fails in the first of the exporter's steps,
torch.export, inside the vision tower: its attention splits the patches per image with
`torch.split(..., (cu_seqlens[1:] - cu_seqlens[:-1]).tolist())` (modeling_qwen3_vl.py,
Qwen3VLVisionAttention), cu_seqlens being computed from image_grid_thw, so the split sizes are
data-dependent and torch.export stops with GuardOnDataDependentSymNode. The same happens with
image_grid_thw made a constant inside the graph and the MRoPE position ids given as an input.
The TorchScript tracer (dynamo=False) does write a graph, but it bakes in what the model computes
in Python from the traced prompt (the MRoPE positions: a loop over the token ids), and that graph
fails in onnxruntime on its own example input (an Add that broadcasts 3 by the prompt length).
docs/export.md has the details and what would make it export.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

VLM_BACKENDS = ("torch",)
VLM_ONNX_BLOCKER = (
    "the VLM does not export to ONNX: torch.export stops in Qwen3-VL's vision attention, whose "
    "torch.split(..., cu_seqlens.tolist()) sizes depend on image_grid_thw (GuardOnDataDependentSymNode; "
    "docs/export.md); vlm_node runs the VLM in torch (backend 'torch'), chunk_node can serve an export"
)


def check_vlm_backend(backend: str) -> None:
    """ValueError for any vlm_node backend but torch, naming why onnxruntime is not one."""
    if backend == "onnxruntime":
        raise ValueError(f"vlm_node: backend 'onnxruntime' is not available: {VLM_ONNX_BLOCKER}")
    if backend not in VLM_BACKENDS:
        raise ValueError(f"vlm_node: backend must be one of {VLM_BACKENDS}, got {backend!r}")


class FeaturePath(torch.nn.Module):
    """VLMBackbone.forward for one prepared frame as a module of tensors: (input_ids,
    attention_mask, pixel_values) -> the last decoder layer's output (1, S, hidden)."""

    def __init__(self, vlm: torch.nn.Module, image_grid_thw: torch.Tensor):
        super().__init__()
        self.vlm = vlm
        self.register_buffer("image_grid_thw", image_grid_thw, persistent=False)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.vlm.image_token_id).to(torch.int32),
            "pixel_values": pixel_values,
            "image_grid_thw": self.image_grid_thw,
        }
        return self.vlm(inputs).hidden


def export_vlm_feature(vlm: torch.nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> None:
    """Try to export the feature path for one prepared frame (VLMBackbone.prepare) to `path`, with
    the prompt length dynamic. Raises what the exporter raises (module docstring)."""
    module = FeaturePath(vlm, inputs["image_grid_thw"]).eval()
    sequence = torch.export.Dim("sequence", min=2, max=4096)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]),
            str(path),
            input_names=["input_ids", "attention_mask", "pixel_values"],
            output_names=["features"],
            dynamic_shapes={"input_ids": {1: sequence}, "attention_mask": {1: sequence}, "pixel_values": None},
            dynamo=True,
            external_data=True,
        )
