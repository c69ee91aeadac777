"""Export a checkpoint's action expert to ONNX (fp32, or int8 weights) with a parity report.

Only the network that one Euler step calls is exported (onnx_expert.ExportableExpert); the Euler
loop and RTC stay in Python (flow.py, sampling.py): the loop is 4-10 calls with a few vector ops
between them, the held prefix is a slice assignment, and guided RTC needs the network's gradient,
which an inference graph does not have. Keeping one sampler for every backend also means an
export cannot drift from the sampling the model was trained for.

An export directory describes itself (DESIGN §6):
  model.onnx (+ model.onnx.data)  the graph; fp32 weights live in the external .data file
  config.json, normalization.json  copies of the checkpoint's (config.json's "vlm" made absolute)
  export.json   format, precision, graph input/output names and shapes, file hashes, and the
                source checkpoint (path and sha256 of its files)
  parity.json   the export against eager PyTorch on the same observations and noise
"""

from __future__ import annotations

import contextlib
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
    MODEL_FILE,
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

FORMATS = ("onnx",)
PRECISIONS = ("fp32", "int8")
OPSET = 18  # the dynamo exporter's own opset; converting down breaks its Split nodes
PARITY_TOLERANCE = 1e-4  # fp32 graph vs eager, max |difference| of normalised chunks
ARM_COLUMNS = {"left_arm": slice(14, 21), "right_arm": slice(21, 28)}  # DESIGN §4 action layout, rad
_INPUT_DTYPES = {"prefix_mask": "bool", "vlm_mask": "bool"}


def checkpoint_hashes(directory: Path) -> dict[str, Any]:
    """sha256 of a checkpoint's config, weights and statistics, and one over the three."""
    files = {name: file_sha256(Path(directory) / name) for name in (CONFIG_FILE, WEIGHTS_FILE, NORMALIZATION_FILE)}
    combined = hashlib.sha256("".join(f"{name}:{digest}\n" for name, digest in files.items()).encode())
    return {"sha256": combined.hexdigest(), "files": files}


def export_graph(expert: ActionExpert, path: Path, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
    """Write the fp32 graph of one Euler step's network (dynamic batch and token count)."""
    module = ExportableExpert(expert.float().cpu().eval(), max_tokens).eval()
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
) -> dict[str, Any]:
    """Export `checkpoint`'s action expert into the directory `out` (replaced if it is an older
    export; any other existing non-empty directory is an error). Returns export.json's content,
    with the parity report under "parity". fp32_graph: reuse an fp32 model.onnx exported from the
    same checkpoint instead of exporting again (the bench exports once and quantises that).

    Raises ExportError when the fp32 graph differs from eager by more than PARITY_TOLERANCE (the
    directory is still written, with parity.json saying so)."""
    if export_format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {export_format!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if parity_observations < 1:
        raise ValueError(f"parity_observations must be >= 1, got {parity_observations}")
    checkpoint, out = Path(checkpoint).expanduser().resolve(), Path(out).expanduser()
    source = load_checkpoint(checkpoint)
    if out.exists() and any(out.iterdir()) and not (out / EXPORT_FILE).is_file():
        raise ExportError(f"{out} exists and is not an export directory; give an empty or new directory")
    staging = out.parent / f".{out.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        fp32_path = staging / "fp32" / MODEL_FILE
        fp32_path.parent.mkdir()
        if fp32_graph is None:
            export_graph(source.expert, fp32_path, max_tokens)
        else:
            for file in Path(fp32_graph).parent.glob(Path(fp32_graph).name + "*"):
                shutil.copyfile(file, fp32_path.parent / file.name.replace(Path(fp32_graph).name, MODEL_FILE))
        _copy_config(checkpoint, staging, source.vlm_path)

        config = serving_config(source.config, rtc_mode=parity_rtc_mode(source.config))
        normalizer = Normalizer(source.stats, config.norm.mode, config.norm.normalize_state)
        experts = {"fp32": OnnxExpert(fp32_path, config.expert, max_tokens, threads)}
        if precision == "int8":
            quantize_int8(fp32_path, staging / MODEL_FILE)
            experts["int8"] = OnnxExpert(staging / MODEL_FILE, config.expert, max_tokens, threads)
        cases = random_cases(config, source.stats, parity_observations, seed, (16, min(128, max_tokens)))
        reference = Policy(config, source.expert, normalizer, seed=seed)
        candidates = {name: Policy(config, expert, normalizer, seed=seed) for name, expert in experts.items()}
        parity = parity_report(reference, candidates, cases, seed)
        parity["fp32"]["tolerance"] = PARITY_TOLERANCE
        parity["fp32"]["ok"] = parity["fp32"]["max_abs_normalized"] <= PARITY_TOLERANCE
        del experts, candidates  # close the sessions before their files move

        if precision == "fp32":
            for file in fp32_path.parent.iterdir():
                os.replace(file, staging / file.name)
        shutil.rmtree(fp32_path.parent)
        files = {
            f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
            for f in sorted(staging.iterdir())
            if f.name.startswith(MODEL_FILE)
        }
        shapes = io_shapes(config.expert)
        document: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "export_format": export_format,
            "precision": precision,
            "model": MODEL_FILE,
            "files": files,
            "model_bytes": sum(entry["bytes"] for entry in files.values()),
            "inputs": [{"name": n, "dtype": _INPUT_DTYPES.get(n, "float32"), "shape": shapes[n]} for n in INPUT_NAMES],
            "outputs": [{"name": n, "dtype": "float32", "shape": shapes[n]} for n in OUTPUT_NAMES],
            "max_tokens": max_tokens,
            "opset": OPSET,
            "exporter": f"torch.onnx.export (dynamo) torch {torch.__version__}",
            "quantization": "onnxruntime quantize_dynamic, int8 weights per tensor" if precision == "int8" else None,
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
            f"fp32 parity failed: max |ONNX - eager| = {parity['fp32']['max_abs_normalized']:.3g} "
            f"> {PARITY_TOLERANCE} on normalised actions (see {out / PARITY_FILE})"
        )
    return {**document, "parity": parity}
