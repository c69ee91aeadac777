"""Export a checkpoint's action expert (ONNX or torch.export) in a precision, with a parity report.

Only the network that one Euler step calls is exported (onnx_expert.ExportableExpert); the Euler
loop and RTC stay in Python (flow.py, sampling.py): the loop is 4-10 calls with a few vector ops
between them, the held prefix is a slice assignment, and guided RTC needs the network's gradient,
which an inference graph does not have. Keeping one sampler for every backend also means an
export cannot drift from the sampling the model was trained for.

Formats and precisions (FORMAT_PRECISIONS; docs/export.md says why the others are refused):
  onnx              fp32, fp16 (graph in fp16), int8 (fp32 graph, onnxruntime dynamic quantisation)
  exported-program  fp32, fp16, bf16 (torch.export program in that dtype)
Every export first writes its format's fp32 graph and checks it against eager PyTorch
(PARITY_TOLERANCE); the requested precision is derived from it or exported beside it, and its
error is reported against the same eager chunks.

An export directory describes itself (DESIGN §6):
  model.onnx (+ model.onnx.data) or model.pt2   the graph (ONNX fp32/fp16 weights in the .data file)
  config.json, normalization.json  copies of the checkpoint's (config.json's "vlm" made absolute)
  export.json   format, precision, graph input/output names and shapes, file hashes, and the
                source checkpoint (path and sha256 of its files)
  parity.json   the export against eager PyTorch on the same observations and noise
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psi0_ros.constants import STATE_DIM
from psi0_ros.policy.checkpoint import CONFIG_FILE, NORMALIZATION_FILE, WEIGHTS_FILE, load_checkpoint
from psi0_ros.policy.config import PolicyConfig
from psi0_ros.policy.interface import ActionPrefix, Observation, Policy, serving_config
from psi0_ros.policy.mmdit import ActionExpert
from psi0_ros.policy.onnx_expert import (
    DEFAULT_MAX_TOKENS,
    EXPORT_FILE,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    INPUT_NAMES,
    MODEL_FILES,
    OUTPUT_NAMES,
    PARITY_FILE,
    ExportableExpert,
    ExportError,
    OnnxExpert,
    example_inputs,
    file_sha256,
    io_shapes,
)
from psi0_ros.policy.transforms import Normalizer, NormStats

FORMATS = ("onnx", "exported-program")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
FORMAT_PRECISIONS = {"onnx": ("fp32", "fp16", "int8"), "exported-program": ("fp32", "fp16", "bf16")}
# Why a format refuses a precision (docs/export.md): the export would be one nobody can check here.
REFUSED = {
    ("onnx", "bf16"): "onnxruntime's CPU provider has no bfloat16 kernels (NOT_IMPLEMENTED: Mul(14)) and, unlike "
    "fp16, no fallback that casts them to float, so its parity cannot be checked; use --format exported-program "
    "--precision bf16, or onnx fp16",
    ("exported-program", "int8"): "int8 is onnxruntime's dynamic quantisation of the ONNX graph; use --format onnx "
    "--precision int8",
}
OPSET = 18  # the dynamo exporter's own opset; converting down breaks its Split nodes
PARITY_TOLERANCE = 1e-4  # fp32 graph vs eager, max |difference| of normalised chunks
ARM_COLUMNS = {"left_arm": slice(14, 21), "right_arm": slice(21, 28)}  # DESIGN §4 action layout, rad
_INPUT_DTYPES = {"prefix_mask": "bool", "vlm_mask": "bool"}


def checkpoint_hashes(directory: Path) -> dict[str, Any]:
    """sha256 of a checkpoint's config, weights and statistics, and one over the three."""
    files = {name: file_sha256(Path(directory) / name) for name in (CONFIG_FILE, WEIGHTS_FILE, NORMALIZATION_FILE)}
    combined = hashlib.sha256("".join(f"{name}:{digest}\n" for name, digest in files.items()).encode())
    return {"sha256": combined.hexdigest(), "files": files}


def check_format_precision(export_format: str, precision: str) -> None:
    """ValueError naming the choices, or why this format refuses this precision."""
    if export_format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {export_format!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision not in FORMAT_PRECISIONS[export_format]:
        raise ValueError(f"{export_format} does not export {precision}: {REFUSED[(export_format, precision)]}")


def export_graph(
    expert: ActionExpert, path: Path, max_tokens: int = DEFAULT_MAX_TOKENS, precision: str = "fp32"
) -> None:
    """Write the ONNX graph of one Euler step's network (dynamic batch and token count), computing
    in fp32 or fp16 (on a copy of `expert`; float32 inputs and output either way)."""
    source = expert.float().cpu().eval()
    module = ExportableExpert(source if precision == "fp32" else copy.deepcopy(source), max_tokens, precision).eval()
    dynamic_axes = {
        name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
        for name, shape in io_shapes(expert.config).items()
    }
    # The exporter prints its progress and logs that optional torchvision ops are missing; neither
    # concerns this graph.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.ExitStack() as restore,
    ):
        restore.callback(exporter_log.setLevel, level)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example_inputs(expert.config, tokens=min(20, max_tokens)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=True,
            external_data=True,
            verbose=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic quantisation: MatMul/Gemm weights stored as int8 (per tensor), activations
    quantised per call at run time (onnxruntime.quantization.quantize_dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises a pre-processing pass on every call
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def parity_rtc_mode(config: PolicyConfig) -> str:
    """The RTC mode parity runs in: the checkpoint's, except guidance (no gradient in a graph)."""
    if config.rtc.mode != "guidance":
        return config.rtc.mode
    return "training" if config.flow.max_delay > 0 and config.action.representation == "absolute" else "none"


def random_cases(
    config: PolicyConfig, stats: NormStats, count: int, seed: int = 0, tokens: tuple[int, int] = (16, 128)
) -> list[tuple[Observation, ActionPrefix | None]]:
    """Random but valid observations: states and prefix actions inside the training bounds, unit
    normal VLM features of random length with some padding, and on every other case a held RTC
    prefix (when the mode uses one)."""
    rng = np.random.default_rng(seed)
    state_low, state_high = stats.state.min[:STATE_DIM], stats.state.max[:STATE_DIM]
    action_low, action_high = stats.action.min, stats.action.max
    horizon = config.expert.horizon
    uses_prefix = config.rtc.mode in ("training", "guidance") and config.flow.max_delay > 1
    cases = []
    for i in range(count):
        length = int(rng.integers(tokens[0], tokens[1] + 1))
        mask = np.ones(length, dtype=bool)
        if i % 3 == 1:
            mask[-int(rng.integers(1, length // 2 + 1)) :] = False
        observation = Observation(
            state=rng.uniform(state_low, state_high).astype(np.float32),
            vlm_features=rng.normal(size=(length, config.expert.vlm_dim)).astype(np.float32),
            vlm_mask=mask,
        )
        prefix = None
        if uses_prefix and i % 2 == 1:
            actions = rng.uniform(action_low, action_high, (horizon // 2, action_low.shape[0])).astype(np.float32)
            delay = int(rng.integers(1, min(config.flow.max_delay - 1, horizon // 2) + 1))
            prefix = ActionPrefix(actions=actions, delay=delay)
        cases.append((observation, prefix))
    return cases


def recorded_cases(
    config: PolicyConfig, vlm_path: Path | None, episodes: list[Path], count: int
) -> list[tuple[Observation, ActionPrefix | None]]:
    """Observations of recorded episodes (psi0_ros HDF5 files or directories of them): `count`
    frames spread evenly over all their frames, each with its recorded state and the features of
    its image and instruction through the checkpoint's VLM; on every other frame (when the RTC
    mode uses one) a held prefix of the recorded actions that follow it, as the previous chunk's."""
    from psi0_ros.open_loop import read_episodes
    from psi0_ros.policy.vlm import VLMBackbone

    if vlm_path is None:
        raise ExportError("parity on recorded observations needs the checkpoint's VLM; this checkpoint names none")
    recorded = read_episodes(episodes)
    vlm = VLMBackbone.from_pretrained(vlm_path, torch.float32, "cpu", config.image)
    frames = [(episode, t) for episode in recorded for t in range(len(episode.action))]
    horizon = config.expert.horizon
    uses_prefix = config.rtc.mode in ("training", "guidance") and config.flow.max_delay > 1
    cases = []
    for i, k in enumerate(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)):
        episode, t = frames[k]
        features, mask = vlm.encode([episode.image(t)], [episode.instruction]).sample(0)
        observation = Observation(state=episode.state[t], vlm_features=features, vlm_mask=mask)
        following = episode.action[t : t + horizon // 2]
        prefix = None
        if uses_prefix and i % 2 == 1 and len(following) > 1:
            prefix = ActionPrefix(following, delay=1 + (i // 2) % min(config.flow.max_delay - 1, len(following)))
        cases.append((observation, prefix))
    return cases


def _stats(errors: np.ndarray) -> dict[str, float]:
    return {
        "median": float(np.median(errors)),
        "p99": float(np.percentile(errors, 99)),
        "max": float(errors.max()),
    }


def _chunks(policy: Policy, cases: list, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(normalised, physical) chunks, case i sampled from the noise of seed + i."""
    normalized, physical = [], []
    for i, (observation, prefix) in enumerate(cases):
        policy.seed = seed + i
        policy.reset()
        chunk = policy.infer_normalized(observation, prefix)
        normalized.append(chunk)
        physical.append(policy.to_physical(chunk, observation, prefix))
    return normalized, physical


def parity_report(
    reference: Policy, candidates: dict[str, Policy], cases: list, seed: int = 0, noise_spread: bool = True
) -> dict[str, Any]:
    """Each candidate policy against `reference` (eager fp32) on the same cases and noise: max
    |difference| of the normalised chunks, and per arm the |error| of the physical actions (rad)
    over the ticks that are not a held prefix. noise_spread: the same statistics between two
    eager chunks drawn with different noise, the scale an export error should be small against."""
    ref_norm, ref_phys = _chunks(reference, cases, seed)
    skip = [0 if prefix is None else prefix.delay for _, prefix in cases]

    def compare(norm: list[np.ndarray], phys: list[np.ndarray]) -> dict[str, Any]:
        diff_norm = np.concatenate([np.abs(a - b)[s:].ravel() for a, b, s in zip(norm, ref_norm, skip, strict=True)])
        arms = {
            name: _stats(
                np.concatenate([np.abs(a - b)[s:, cols].ravel() for a, b, s in zip(phys, ref_phys, skip, strict=True)])
            )
            for name, cols in ARM_COLUMNS.items()
        }
        return {
            "max_abs_normalized": float(diff_norm.max()),
            "p99_abs_normalized": float(np.percentile(diff_norm, 99)),
            "arm_error_rad": arms,
        }

    report: dict[str, Any] = {
        "observations": len(cases),
        "with_prefix": sum(prefix is not None for _, prefix in cases),
        "tokens": [min(len(o.vlm_features) for o, _ in cases), max(len(o.vlm_features) for o, _ in cases)],
        "euler_steps": reference.config.flow.num_steps,
        "rtc_mode": reference.config.rtc.mode,
        "seed": seed,
    }
    for name, policy in candidates.items():
        report[name] = compare(*_chunks(policy, cases, seed))
    if noise_spread:
        report["noise_spread"] = compare(*_chunks(reference, cases, seed + 10_000))
    return report


def _copy_config(source: Path, target: Path, vlm_path: Path | None) -> None:
    """config.json with its "vlm" entry made absolute (the export does not copy the VLM)."""
    document = json.loads((source / CONFIG_FILE).read_text())
    document["vlm"] = None if vlm_path is None else str(Path(vlm_path).resolve())
    (target / CONFIG_FILE).write_text(json.dumps(document, indent=1) + "\n")
    shutil.copyfile(source / NORMALIZATION_FILE, target / NORMALIZATION_FILE)


def _write_graph(export_format: str, expert: ActionExpert, path: Path, precision: str, max_tokens: int) -> None:
    if export_format == "onnx":
        export_graph(expert, path, max_tokens, precision)
    else:
        from psi0_ros.policy.exported_program import export_program

        export_program(expert, path, precision, max_tokens)


def _open_graph(export_format: str, path: Path, config: PolicyConfig, max_tokens: int, threads: int | None) -> Any:
    if export_format == "onnx":
        return OnnxExpert(path, config.expert, max_tokens, threads)
    from psi0_ros.policy.exported_program import ProgramExpert

    return ProgramExpert(path, config.expert, max_tokens)


_EXPORTERS = {
    "onnx": f"torch.onnx.export (dynamo) torch {torch.__version__}",
    "exported-program": f"torch.export.export + torch.export.save, torch {torch.__version__}",
}
_HOW = {
    "fp32": None,
    "int8": "onnxruntime quantize_dynamic, int8 weights per tensor",
    "fp16": "weights and activations fp16 inside the graph, float32 inputs and output",
    "bf16": "weights and activations bf16 inside the graph, float32 inputs and output",
}


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    export_format: str = "onnx",
    precision: str = "fp32",
    parity_observations: int = 8,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int = 0,
    threads: int | None = None,
    fp32_graph: Path | None = None,
    observations: list[Path] | None = None,
) -> dict[str, Any]:
    """Export `checkpoint`'s action expert into the directory `out` (replaced if it is an older
    export; any other existing non-empty directory is an error). Returns export.json's content,
    with the parity report under "parity". fp32_graph: reuse an fp32 model file of the same format
    exported from the same checkpoint instead of exporting it again (the bench exports once and
    derives the other precisions from it). observations: recorded episodes (files or directories)
    to take the parity observations from (recorded_cases) instead of random ones (random_cases).

    Raises ExportError when the fp32 graph differs from eager by more than PARITY_TOLERANCE (the
    directory is still written, with parity.json saying so)."""
    check_format_precision(export_format, precision)
    if parity_observations < 1:
        raise ValueError(f"parity_observations must be >= 1, got {parity_observations}")
    checkpoint, out = Path(checkpoint).expanduser().resolve(), Path(out).expanduser()
    source = load_checkpoint(checkpoint)
    if out.exists() and any(out.iterdir()) and not (out / EXPORT_FILE).is_file():
        raise ExportError(f"{out} exists and is not an export directory; give an empty or new directory")
    model_file = MODEL_FILES[export_format]
    staging = out.parent / f".{out.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        fp32_path = staging / "fp32" / model_file
        fp32_path.parent.mkdir()
        if fp32_graph is None:
            _write_graph(export_format, source.expert, fp32_path, "fp32", max_tokens)
        else:
            for file in Path(fp32_graph).parent.glob(Path(fp32_graph).name + "*"):
                shutil.copyfile(file, fp32_path.parent / file.name.replace(Path(fp32_graph).name, model_file))
        _copy_config(checkpoint, staging, source.vlm_path)

        config = serving_config(source.config, rtc_mode=parity_rtc_mode(source.config))
        normalizer = Normalizer(source.stats, config.norm.mode, config.norm.normalize_state)
        experts = {"fp32": _open_graph(export_format, fp32_path, config, max_tokens, threads)}
        if precision == "int8":
            quantize_int8(fp32_path, staging / model_file)
        elif precision != "fp32":
            _write_graph(export_format, source.expert, staging / model_file, precision, max_tokens)
        if precision != "fp32":
            experts[precision] = _open_graph(export_format, staging / model_file, config, max_tokens, threads)
        if observations:
            cases = recorded_cases(config, source.vlm_path, list(observations), parity_observations)
        else:
            cases = random_cases(config, source.stats, parity_observations, seed, (16, min(128, max_tokens)))
        reference = Policy(config, source.expert, normalizer, seed=seed)
        candidates = {name: Policy(config, expert, normalizer, seed=seed) for name, expert in experts.items()}
        parity = parity_report(reference, candidates, cases, seed)
        parity["fp32"]["tolerance"] = PARITY_TOLERANCE
        parity["fp32"]["ok"] = parity["fp32"]["max_abs_normalized"] <= PARITY_TOLERANCE
        parity["export_format"] = export_format
        parity["observations_from"] = [str(Path(o).resolve()) for o in observations] if observations else "random"
        del experts, candidates  # close the sessions before their files move

        if precision == "fp32":
            for file in fp32_path.parent.iterdir():
                os.replace(file, staging / file.name)
        shutil.rmtree(fp32_path.parent)
        files = {
            f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
            for f in sorted(staging.iterdir())
            if f.name.startswith(model_file)
        }
        shapes = io_shapes(config.expert)
        document: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "export_format": export_format,
            "precision": precision,
            "model": model_file,
            "files": files,
            "model_bytes": sum(entry["bytes"] for entry in files.values()),
            "inputs": [{"name": n, "dtype": _INPUT_DTYPES.get(n, "float32"), "shape": shapes[n]} for n in INPUT_NAMES],
            "outputs": [{"name": n, "dtype": "float32", "shape": shapes[n]} for n in OUTPUT_NAMES],
            "max_tokens": max_tokens,
            "opset": OPSET if export_format == "onnx" else None,
            "exporter": _EXPORTERS[export_format],
            "quantization": _HOW["int8"] if precision == "int8" else None,
            "compute": _HOW[precision] if precision in ("fp16", "bf16") else None,
            "sampling": "Euler loop and RTC in Python: psi0_ros.policy.flow / sampling (docs/export.md)",
            "source": {"checkpoint": str(checkpoint), **checkpoint_hashes(checkpoint)},
            "parity": PARITY_FILE,
        }
        (staging / PARITY_FILE).write_text(json.dumps(parity, indent=1) + "\n")
        (staging / EXPORT_FILE).write_text(json.dumps(document, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not parity["fp32"]["ok"]:
        raise ExportError(
            f"fp32 parity failed: max |{export_format} - eager| = {parity['fp32']['max_abs_normalized']:.3g} "
            f"> {PARITY_TOLERANCE} on normalised actions (see {out / PARITY_FILE})"
        )
    return {**document, "parity": parity}
