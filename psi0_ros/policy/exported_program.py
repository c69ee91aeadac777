"""The action expert as a torch.export program (`psi0 export --format exported-program`).

The same network as the ONNX graph (onnx_expert.ExportableExpert: one Euler step, fixed-shape
prefix and padding handling, float32 inputs and output with the casts to fp16/bf16 inside), traced
by torch.export with the batch and token axes dynamic and saved with torch.export.save as one
model.pt2 (graph and weights). ProgramExpert runs it in PyTorch, with no Python model code: what
ExecuTorch and AOTInductor start from. Like OnnxExpert it is called like ActionExpert and has no
gradient (no guided RTC).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch

from psi0_ros.policy.config import ExpertConfig
from psi0_ros.policy.mmdit import ActionExpert, Conditioning
from psi0_ros.policy.onnx_expert import (
    COMPUTE_DTYPES,
    DEFAULT_MAX_TOKENS,
    INPUT_NAMES,
    MODEL_FILES,
    OUTPUT_NAMES,
    ExportableExpert,
    ExportError,
    check_export,
    check_graph_shapes,
    example_inputs,
    graph_inputs,
    graph_shape,
)

PROGRAM_FILE = MODEL_FILES["exported-program"]


def export_program(
    expert: ActionExpert, path: Path, precision: str = "fp32", max_tokens: int = DEFAULT_MAX_TOKENS
) -> None:
    """Trace one Euler step's network with torch.export (dynamic batch and token count) and save it
    to `path` (.pt2). precision fp16/bf16 computes in that dtype (on a copy: `expert` is unchanged)."""
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"exported-program precision must be one of {tuple(COMPUTE_DTYPES)}, got {precision!r}")
    source = expert.float().cpu().eval()
    module = ExportableExpert(source if precision == "fp32" else copy.deepcopy(source), max_tokens, precision).eval()
    batch = torch.export.Dim("batch", min=1)
    tokens = torch.export.Dim("tokens", min=1, max=max_tokens)
    dynamic = {name: {0: batch} for name in INPUT_NAMES}
    dynamic["vlm_features"] = dynamic["vlm_mask"] = {0: batch, 1: tokens}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(
            module, example_inputs(expert.config, tokens=min(20, max_tokens)), dynamic_shapes=dynamic
        )
    torch.export.save(program, str(path))


def _program_shapes(program: Any) -> dict[str, list[int | str]]:
    """The user inputs' and the output's shapes of a loaded program, dynamic axes named."""

    def named(value: Any) -> list[int | str]:
        return graph_shape(list(value.shape))  # a dynamic axis is a torch.SymInt, not an int

    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    shapes = {
        name: named(placeholders[name].meta["val"])
        for name in program.graph_signature.user_inputs
        if name in placeholders and "val" in placeholders[name].meta
    }
    outputs = [node for node in program.graph.nodes if node.op == "output"][0].args[0]
    if len(outputs) == 1 and "val" in getattr(outputs[0], "meta", {}):
        shapes[OUTPUT_NAMES[0]] = named(outputs[0].meta["val"])
    return shapes


class ProgramExpert:
    """A torch.export program of the expert, run by PyTorch, called like ActionExpert."""

    device = torch.device("cpu")  # where its inputs and outputs live (the program may run on a GPU)
    dtype = torch.float32

    def __init__(self, path: Path, config: ExpertConfig, max_tokens: int = DEFAULT_MAX_TOKENS, device: str = "cpu"):
        """Load one .pt2; ExportError when it is unreadable or its shapes are not `config`'s."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"exported program not found: {path}")
        self.path = path
        self.config = config
        self.max_tokens = max_tokens
        self.precision: str | None = None  # "fp32" | "fp16" | "bf16" when loaded from an export directory
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.load(str(path))
        except Exception as err:  # zipfile, pickle and deserialisation errors alike
            text = str(err).strip()
            raise ExportError(
                f"{path} is not a readable exported program: {text.splitlines()[0] if text else repr(err)}"
            ) from None
        check_graph_shapes(path, _program_shapes(program), config)
        self.run_device = torch.device(device)
        if self.run_device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.run_device)
        self.module = program.module()

    @classmethod
    def from_export(
        cls, directory: Path, config: ExpertConfig, verify_hash: bool = True, device: str = "cpu"
    ) -> ProgramExpert:
        """The program of an exported-program export directory, checked by check_export."""
        directory = Path(directory).expanduser()
        document = check_export(directory, config, verify_hash)
        path = directory / document.get("model", PROGRAM_FILE)
        expert = cls(path, config, int(document.get("max_tokens", DEFAULT_MAX_TOKENS)), device)
        expert.precision = document.get("precision")
        return expert

    def eval(self) -> ProgramExpert:
        return self

    @torch.no_grad()
    def __call__(self, noisy_actions: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Velocity (B, H, A), as ActionExpert.forward (onnx_expert.graph_inputs says which sigma it takes)."""
        inputs = graph_inputs(noisy_actions, sigma, cond, self.max_tokens)
        velocity = self.module(*(inputs[name].to(self.run_device) for name in INPUT_NAMES))
        return velocity.cpu()
