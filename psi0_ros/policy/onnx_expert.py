"""The action expert as one exported graph: the network that one Euler step calls, and its runtimes.

ExportableExpert is the graph torch.onnx.export traces: the same submodules and weights as
mmdit.ActionExpert, with the two data-dependent branches of its forward replaced by fixed-shape
equivalents, so one graph serves every call the samplers make:
  - per-token noise levels: a chunk's tokens are either noisy at the step's level or a clean RTC
    prefix at sigma 0 (flow.euler_sample). The graph takes the level per sample (B,) and the
    prefix mask (B, H); it embeds the two levels and picks one per token. This is the
    torch.unique path of ActionExpert.forward with at most two distinct levels per sample; with an
    empty mask it is the per-sample path.
  - the VLM mask is always given (all True = no padding), and the observation positions are a
    fixed table of max_tokens + 1 rows (sliced, not computed from the length).

With a reduced precision (fp16, bf16) the graph computes in that dtype but keeps float32 inputs
and output: the casts are part of the graph, so every runtime is called the same way and the
Euler loop around it stays in float32.

OnnxExpert runs an ONNX graph with onnxruntime behind the same call as ActionExpert
(`expert(noisy_actions, sigma, cond) -> velocity`, plus `config`, `device`, `dtype`), so
flow.sample_actions and the RTC samplers use it unchanged; exported_program.ProgramExpert does the
same for a torch.export program. Neither has a gradient, so guided RTC (which needs one) cannot use
them. load_export opens an export directory of either format.

Graph inputs (B batch and S tokens are dynamic; H, A, V, P from the expert config):
  noisy_actions (B, H, A) float32, sigma (B,) float32, prefix_mask (B, H) bool,
  vlm_features (B, S, V) float32, vlm_mask (B, S) bool, state (B, P) float32
Output: velocity (B, H, A) float32.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from psi0_ros.policy.checkpoint import NORMALIZATION_FILE, Checkpoint, read_config, read_versioned_json
from psi0_ros.policy.config import ExpertConfig
from psi0_ros.policy.mmdit import ActionExpert, Conditioning, sinusoidal_positions
from psi0_ros.policy.transforms import NormStats

EXPORT_FORMAT = "psi0_ros.export"
EXPORT_FORMAT_VERSION = 1
EXPORT_FILE = "export.json"
PARITY_FILE = "parity.json"
MODEL_FILE = "model.onnx"
# export.json "export_format" -> its model file, and the Policy backend that serves it
MODEL_FILES = {"onnx": MODEL_FILE, "exported-program": "model.pt2"}
FORMAT_BACKENDS = {"onnx": "onnxruntime", "exported-program": "exported_program"}
COMPUTE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INPUT_NAMES = ("noisy_actions", "sigma", "prefix_mask", "vlm_features", "vlm_mask", "state")
OUTPUT_NAMES = ("velocity",)
DEFAULT_MAX_TOKENS = 512  # VLM tokens per observation the graph accepts (Psi0: ~80-300)


class ExportError(ValueError):
    """An export directory that cannot be used: corrupt, incomplete or not matching its config."""


def io_shapes(config: ExpertConfig) -> dict[str, list[int | str]]:
    """Every graph input and output's shape, dynamic axes named ("batch", "tokens")."""
    return {
        "noisy_actions": ["batch", config.horizon, config.action_dim],
        "sigma": ["batch"],
        "prefix_mask": ["batch", config.horizon],
        "vlm_features": ["batch", "tokens", config.vlm_dim],
        "vlm_mask": ["batch", "tokens"],
        "state": ["batch", config.state_dim],
        "velocity": ["batch", config.horizon, config.action_dim],
    }


class ExportableExpert(nn.Module):
    """ActionExpert.forward in a form with no data-dependent shapes (module docstring)."""

    def __init__(self, expert: ActionExpert, max_tokens: int = DEFAULT_MAX_TOKENS, precision: str = "fp32"):
        """precision: fp32 | fp16 | bf16, the dtype the network computes in (weights cast to it);
        the inputs and the output stay float32."""
        super().__init__()
        if precision not in COMPUTE_DTYPES:
            raise ValueError(f"precision must be one of {tuple(COMPUTE_DTYPES)}, got {precision!r}")
        self.expert = expert
        self.max_tokens = max_tokens
        self.compute_dtype = COMPUTE_DTYPES[precision]
        table = sinusoidal_positions(max_tokens + 1, expert.config.hidden, torch.device("cpu"), torch.float32)
        self.register_buffer("obs_positions", table, persistent=False)
        self.to(self.compute_dtype)

    def forward(
        self,
        noisy_actions: torch.Tensor,  # (B, H, A)
        sigma: torch.Tensor,  # (B,) noise level of the noisy tokens
        prefix_mask: torch.Tensor,  # (B, H) bool, True = clean RTC prefix token (sigma 0)
        vlm_features: torch.Tensor,  # (B, S, V)
        vlm_mask: torch.Tensor,  # (B, S) bool, True = real token
        state: torch.Tensor,  # (B, P) normalised
    ) -> torch.Tensor:
        expert, config = self.expert, self.expert.config
        if self.compute_dtype != torch.float32:  # an fp32 graph has no casts at all
            noisy_actions, sigma = noisy_actions.to(self.compute_dtype), sigma.to(self.compute_dtype)
            vlm_features, state = vlm_features.to(self.compute_dtype), state.to(self.compute_dtype)
        batch, horizon, _ = noisy_actions.shape
        level = expert.time_embed(sigma * config.timestep_scale)  # (B, D)
        clean = expert.time_embed(torch.zeros_like(sigma[:1]))  # (1, D): sigma 0
        action_cond = torch.cat([level, clean], dim=0)  # (B + 1, D): row B is the clean level
        rows = torch.arange(batch, device=sigma.device)[:, None].expand(batch, horizon)
        action_index = torch.where(prefix_mask, torch.full_like(rows, batch), rows)  # (B, H)
        obs_cond = level[:, None]  # the observation stream follows the last (always noisy) action token

        obs = torch.cat([expert.obs_in(vlm_features), expert.proprio_in(state)[:, None]], dim=1)
        obs = obs + self.obs_positions[: obs.shape[1]]
        action = expert.action_in(noisy_actions) + expert.action_pos
        keep = torch.cat([torch.ones_like(prefix_mask), vlm_mask, torch.ones_like(vlm_mask[:, :1])], dim=1)
        attn_mask = keep[:, None, None, :]
        for block in expert.blocks:
            action, obs = block(action, obs, action_cond, obs_cond, attn_mask, action_index)
        shift, scale = expert.final_modulation(F.silu(action_cond))[action_index].chunk(2, dim=-1)
        velocity = expert.final_out(action * scale + shift)  # Psi0's output modulation (mmdit.py)
        return velocity if self.compute_dtype == torch.float32 else velocity.float()


def example_inputs(config: ExpertConfig, batch: int = 2, tokens: int = 20) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with. Batch 2, not 1: the exporter would specialise a size-1 axis."""
    generator = torch.Generator().manual_seed(0)
    prefix_mask = torch.zeros(batch, config.horizon, dtype=torch.bool)
    prefix_mask[:, :2] = True
    vlm_mask = torch.ones(batch, tokens, dtype=torch.bool)
    vlm_mask[0, -3:] = False
    return (
        torch.randn(batch, config.horizon, config.action_dim, generator=generator),
        torch.rand(batch, generator=generator),
        prefix_mask,
        torch.randn(batch, tokens, config.vlm_dim, generator=generator),
        vlm_mask,
        torch.randn(batch, config.state_dim, generator=generator),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export(directory: Path) -> dict[str, Any]:
    """export.json of an export directory, checked for format; FileNotFoundError / ExportError."""
    directory = Path(directory).expanduser()
    path = directory / EXPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an export directory: no {EXPORT_FILE} (make one with psi0 export)")
    return read_versioned_json(path, EXPORT_FORMAT, EXPORT_FORMAT_VERSION, ExportError)


def graph_shape(shape: Any) -> list[int | str]:
    """A graph value's shape with its dynamic axes named as io_shapes names them."""
    return [d if isinstance(d, int) else "batch" if i == 0 else "tokens" for i, d in enumerate(shape)]


def check_graph_shapes(path: Path, graph: dict[str, list[int | str]], config: ExpertConfig) -> None:
    """ExportError naming every input/output whose shape in the graph is not `config`'s."""
    expected = io_shapes(config)
    wrong = [f"{k} {graph.get(k)} (config: {v})" for k, v in expected.items() if graph.get(k) != v]
    if wrong:
        raise ExportError(f"{path} does not match the expert config: " + "; ".join(wrong))


def check_export(directory: Path, config: ExpertConfig, verify_hash: bool = True) -> dict[str, Any]:
    """export.json of `directory`, checked against `config` (the export's own config.json, or a
    checkpoint's to check that the export belongs to it) and against its model files' sizes and
    sha256; FileNotFoundError / ExportError naming what differs."""
    directory = Path(directory).expanduser()
    document = read_export(directory)
    expected = io_shapes(config)
    declared = {entry["name"]: entry["shape"] for entry in document.get("inputs", []) + document.get("outputs", [])}
    wrong = [f"{k} {declared.get(k)} (config: {v})" for k, v in expected.items() if declared.get(k) != v]
    if wrong:
        raise ExportError(f"export {directory} does not match the expert config: " + "; ".join(wrong))
    for name, entry in document.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"export {directory} is incomplete: no {name}")
        if verify_hash and (path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]):
            raise ExportError(f"{path} is corrupt or was replaced: its size or sha256 differs from {EXPORT_FILE}")
    return document


def graph_inputs(
    noisy_actions: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, max_tokens: int
) -> dict[str, torch.Tensor]:
    """ActionExpert's call (noisy_actions (B, H, A), sigma (B,) or (B, H), cond) as the graph's
    inputs (INPUT_NAMES), float32 / bool on the CPU. Per-token levels must be one level per sample
    plus 0 on a clean prefix (what flow.euler_sample gives); ValueError otherwise."""
    batch, horizon, _ = noisy_actions.shape
    sigma = sigma.detach().float().cpu()
    if sigma.ndim == 1:
        level = sigma
        prefix_mask = torch.zeros(batch, horizon, dtype=torch.bool)
    else:
        level = sigma.max(dim=1).values
        prefix_mask = sigma < level[:, None]
        if not bool(((sigma == level[:, None]) | (prefix_mask & (sigma == 0))).all()):
            raise ValueError("the exported expert takes one noise level per sample plus a clean (sigma 0) prefix")
    features, mask, state = cond
    if features.shape[1] > max_tokens:
        raise ValueError(f"the export takes at most {max_tokens} VLM tokens, got {features.shape[1]}")
    if mask is None:
        mask = torch.ones(features.shape[:2], dtype=torch.bool)
    return {
        "noisy_actions": noisy_actions.detach().float().cpu(),
        "sigma": level,
        "prefix_mask": prefix_mask,
        "vlm_features": features.detach().float().cpu(),
        "vlm_mask": mask.to(torch.bool).cpu(),
        "state": state.detach().float().cpu(),
    }


def execution_providers(device: str, available: list[str]) -> list[Any]:
    """onnxruntime execution providers for a device: "cpu" -> CPU; "cuda" / "cuda:N" -> TensorRT
    where this onnxruntime has it, then CUDA, then the CPU for any node the two leave. ExportError
    (naming what is installed) when the CUDA provider is missing or the device is neither."""
    kind, _, index = str(device).partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind != "cuda" or (index and not index.isdigit()):
        raise ExportError(f"onnxruntime device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if "CUDAExecutionProvider" not in available:
        raise ExportError(
            f"device {device!r} needs onnxruntime's CUDAExecutionProvider (the onnxruntime-gpu package); "
            f"this onnxruntime has {available}"
        )
    options = {"device_id": int(index or 0)}
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    return [(name, options) for name in gpu if name in available] + ["CPUExecutionProvider"]


class OnnxExpert:
    """An exported expert run by onnxruntime (on the CPU, or a CUDA GPU), called like ActionExpert."""

    device = torch.device("cpu")  # where its inputs and outputs live (onnxruntime copies them to a GPU)
    dtype = torch.float32

    def __init__(
        self,
        path: Path,
        config: ExpertConfig,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        threads: int | None = None,
        device: str = "cpu",
    ):
        """Open one .onnx graph; ExportError when it is unreadable or its shapes are not `config`'s."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        self.path = path
        self.config = config
        self.max_tokens = max_tokens
        self.precision: str | None = None  # "fp32" | "fp16" | "int8" when loaded from an export directory
        providers = execution_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
            text = str(err).strip()
            raise ExportError(
                f"{path} is not a readable ONNX model: {text.splitlines()[0] if text else err!r}"
            ) from None
        self.providers: list[str] = self.session.get_providers()
        graph = {v.name: graph_shape(v.shape) for v in self.session.get_inputs() + self.session.get_outputs()}
        check_graph_shapes(path, graph, config)

    @classmethod
    def from_export(
        cls,
        directory: Path,
        config: ExpertConfig,
        threads: int | None = None,
        verify_hash: bool = True,
        device: str = "cpu",
    ) -> OnnxExpert:
        """The graph of an ONNX export directory, checked by check_export."""
        directory = Path(directory).expanduser()
        document = check_export(directory, config, verify_hash)
        path = directory / document.get("model", MODEL_FILE)
        expert = cls(path, config, int(document.get("max_tokens", DEFAULT_MAX_TOKENS)), threads, device)
        expert.precision = document.get("precision")
        return expert

    def eval(self) -> OnnxExpert:
        return self

    def __call__(self, noisy_actions: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Velocity (B, H, A), as ActionExpert.forward (graph_inputs says which sigma it takes)."""
        feeds = {k: v.numpy() for k, v in graph_inputs(noisy_actions, sigma, cond, self.max_tokens).items()}
        (velocity,) = self.session.run(list(OUTPUT_NAMES), feeds)
        return torch.from_numpy(velocity)


def load_export(
    directory: Path, backend: str | None = None, device: str = "cpu", threads: int | None = None
) -> Checkpoint:
    """An export directory as a Checkpoint (its copied config.json and normalization.json, the
    exported expert in place of the torch one); what Policy.from_checkpoint loads for the backends
    "onnxruntime" (an ONNX export) and "exported_program" (a torch.export program). backend: the
    one the caller serves with (None: the export's own); ExportError when the export is of the
    other format. threads: onnxruntime's intra-op threads (None: its default)."""
    directory = Path(directory).expanduser()
    document = read_export(directory)
    export_format = document.get("export_format")
    if export_format not in FORMAT_BACKENDS:
        raise ExportError(f"export {directory} has an unknown export_format {export_format!r}")
    if backend is not None and FORMAT_BACKENDS[export_format] != backend:
        raise ExportError(
            f"export {directory} is {export_format}: serve it with backend "
            f"{FORMAT_BACKENDS[export_format]!r}, not {backend!r}"
        )
    config, vlm_path = read_config(directory)
    stats = NormStats.load(directory / NORMALIZATION_FILE)
    if export_format == "onnx":
        expert: Any = OnnxExpert.from_export(directory, config.expert, threads, device=device)
    else:
        from psi0_ros.policy.exported_program import ProgramExpert

        expert = ProgramExpert.from_export(directory, config.expert, device=device)
    return Checkpoint(config, expert, stats, vlm_path)  # type: ignore[arg-type]  # duck-typed expert
