"""`psi0 bench export`: one action chunk from the exported expert (onnxruntime fp32, int8 and fp16;
the torch.export program in fp32, bf16 and fp16) and from torch.compile, as ratios to eager fp32
PyTorch measured in the same run on the same inputs and noise; the file size of each; and each
reduced precision's error on physical actions from its export's parity report.

For each preset (tiny, and the full ~490M-parameter Psi0 expert) it writes a checkpoint with
random weights (adaLN modulations randomised, so every block takes part; nothing is downloaded),
exports it with `psi0 export`'s own code (each format's fp32 graph once, the other precisions
derived from it), and times chunks of 4 and 8 Euler steps. The backends take turns within each repetition, so a busy
moment on a shared machine hits them alike; the median per backend is reported.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# label -> (format, precision) of the exports beyond onnx fp32/int8 (--exports)
REDUCED_EXPORTS = {
    "ort_fp16": ("onnx", "fp16"),
    "program_fp32": ("exported-program", "fp32"),
    "program_bf16": ("exported-program", "bf16"),
    "program_fp16": ("exported-program", "fp16"),
}
HELP = "chunk latency of the exports (onnxruntime, torch.export; fp32/fp16/bf16/int8) and torch.compile vs eager"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", default="tiny,psi0", help="comma-separated expert presets (default: tiny,psi0)")
    parser.add_argument("--steps", default="4,8", help="comma-separated Euler steps per chunk (default: 4,8)")
    parser.add_argument("--repeats-tiny", type=int, default=10, help="timed chunks per backend, tiny preset")
    parser.add_argument("--repeats-full", type=int, default=2, help="timed chunks per backend, other presets")
    parser.add_argument("--parity-tiny", type=int, default=8, help="parity observations, tiny preset")
    parser.add_argument("--parity-full", type=int, default=2, help="parity observations, other presets")
    parser.add_argument("--obs-tokens", type=int, default=100, help="VLM tokens per observation")
    parser.add_argument(
        "--compile", default="tiny,psi0", help="presets to time with torch.compile ('' for none: reported as skipped)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime CPU threads (0: torch's default)")
    parser.add_argument(
        "--exports",
        default=",".join(REDUCED_EXPORTS),
        help=f"exports beyond ORT fp32/int8 to make and time ('' for none; default: {','.join(REDUCED_EXPORTS)})",
    )


def _log(message: str) -> None:
    print(f"[bench export] {message}", file=sys.stderr, flush=True)


def _compiled(expert: Any, cond: Any, flow: Any, noise: Any) -> tuple[Any, float | None, str | None]:
    """torch.compile(expert) warmed up on one chunk: (module, compile seconds, None) or (None, None, reason)."""
    import torch

    from psi0_ros.policy.flow import sample_actions

    try:
        start = time.perf_counter()
        module = torch.compile(expert)
        sample_actions(module, cond, flow, noise=noise)
        return module, time.perf_counter() - start, None
    except Exception as err:  # the reason is the result: inductor needs a working C++ toolchain
        text = str(err).strip().splitlines()
        return None, None, f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _bench_preset(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from psi0_ros.policy.checkpoint import WEIGHTS_FILE, save_checkpoint
    from psi0_ros.policy.config import FlowConfig, PolicyConfig, expert_preset
    from psi0_ros.policy.export import export_checkpoint
    from psi0_ros.policy.exported_program import PROGRAM_FILE, ProgramExpert
    from psi0_ros.policy.flow import sample_actions
    from psi0_ros.policy.mmdit import ActionExpert, Conditioning
    from psi0_ros.policy.onnx_expert import MODEL_FILE, OnnxExpert
    from psi0_ros.policy.tiny import randomize_modulation, synthetic_stats

    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    tiny = name == "tiny"
    repeats = args.repeats_tiny if tiny else args.repeats_full
    threads = torch.get_num_threads()
    config = PolicyConfig(expert=expert_preset(name), flow=FlowConfig(num_steps=max(steps)))
    torch.manual_seed(0)
    expert = randomize_modulation(ActionExpert(config.expert)).eval()
    checkpoint = save_checkpoint(root / name / "checkpoint", expert, config, synthetic_stats(0))
    _log(f"{name}: {expert.num_parameters() / 1e6:.1f}M parameters; exporting fp32")

    start = time.perf_counter()
    fp32 = export_checkpoint(
        checkpoint, root / name / "fp32", precision="fp32", parity_observations=args.parity_tiny if tiny else 1
    )
    fp32_s = time.perf_counter() - start
    _log(f"{name}: fp32 export + parity {fp32_s:.0f} s; quantising int8")
    start = time.perf_counter()
    int8 = export_checkpoint(
        checkpoint,
        root / name / "int8",
        precision="int8",
        parity_observations=args.parity_tiny if tiny else args.parity_full,
        fp32_graph=root / name / "fp32" / MODEL_FILE,
    )
    int8_s = time.perf_counter() - start
    extra: dict[str, Any] = {}
    extra_s: dict[str, float] = {}
    for label in [e.strip() for e in args.exports.split(",") if e.strip()]:
        if label not in REDUCED_EXPORTS:
            raise ValueError(f"--exports: unknown export {label!r}; expected some of {tuple(REDUCED_EXPORTS)}")
        export_format, precision = REDUCED_EXPORTS[label]
        _log(f"{name}: exporting {label}")
        start = time.perf_counter()
        reuse = {
            "onnx": root / name / "fp32" / MODEL_FILE,
            "exported-program": root / name / "program_fp32" / PROGRAM_FILE,
        }
        extra[label] = export_checkpoint(
            checkpoint,
            root / name / label,
            export_format,
            precision,
            parity_observations=args.parity_tiny if tiny else args.parity_full,
            fp32_graph=reuse[export_format] if label != "program_fp32" and reuse[export_format].is_file() else None,
        )
        extra_s[label] = time.perf_counter() - start

    generator = torch.Generator().manual_seed(1)
    cond = Conditioning(
        torch.randn(1, args.obs_tokens, config.expert.vlm_dim, generator=generator),
        None,
        torch.rand(1, config.expert.state_dim, generator=generator) * 2 - 1,
    )
    noise = torch.randn(1, config.expert.horizon, config.expert.action_dim, generator=generator)
    backends: dict[str, Any] = {
        "eager_fp32": expert,
        "ort_fp32": OnnxExpert(root / name / "fp32" / MODEL_FILE, config.expert, threads=threads),
        "ort_int8": OnnxExpert(root / name / "int8" / MODEL_FILE, config.expert, threads=threads),
    }
    for label in extra:
        if label.startswith("ort_"):
            backends[label] = OnnxExpert(root / name / label / MODEL_FILE, config.expert, threads=threads)
        else:
            backends[label] = ProgramExpert(root / name / label / PROGRAM_FILE, config.expert)
    result: dict[str, Any] = {
        "params": expert.num_parameters(),
        "obs_tokens": args.obs_tokens,
        "repeats": repeats,
        "threads": threads,
        "export_fp32_s": fp32_s,
        "export_int8_s": int8_s,
        "file_bytes": {
            "eager_fp32": (checkpoint / WEIGHTS_FILE).stat().st_size,
            "ort_fp32": fp32["model_bytes"],
            "ort_int8": int8["model_bytes"],
        },
        "int8_file_fraction": int8["model_bytes"] / fp32["model_bytes"],
        "parity": int8["parity"],
        "int8_p99_arm_error_rad": max(v["p99"] for v in int8["parity"]["int8"]["arm_error_rad"].values()),
    }
    for label, document in extra.items():
        precision = REDUCED_EXPORTS[label][1]
        result["file_bytes"][label] = document["model_bytes"]
        result[f"export_{label}_s"] = extra_s[label]
        result[f"{label}_file_fraction"] = document["model_bytes"] / fp32["model_bytes"]
        result[f"{label}_parity"] = document["parity"]
        result[f"{label}_p99_arm_error_rad"] = max(
            v["p99"] for v in document["parity"][precision]["arm_error_rad"].values()
        )
    compile_presets = [p.strip() for p in args.compile.split(",") if p.strip()]
    if name in compile_presets:
        _log(f"{name}: torch.compile")
        module, compile_s, reason = _compiled(expert, cond, FlowConfig(num_steps=min(steps)), noise)
        if module is not None:
            backends["compile"] = module
            result["compile_warmup_s"] = compile_s
            result["file_bytes"]["compile"] = result["file_bytes"]["eager_fp32"]
        else:
            result["compile_skipped"] = reason
    else:
        result["compile_skipped"] = "not requested for this preset (--compile)"

    for count in steps:
        flow = FlowConfig(num_steps=count)
        chunks = {label: sample_actions(b, cond, flow, noise=noise) for label, b in backends.items()}  # warm-up
        samples: dict[str, list[float]] = {label: [] for label in backends}
        _log(f"{name}: timing {count} steps x {repeats} repeats")
        for _ in range(repeats):
            for label, backend in backends.items():
                begin = time.perf_counter()
                sample_actions(backend, cond, flow, noise=noise)
                samples[label].append(time.perf_counter() - begin)
        median = {label: float(np.median(s)) * 1e3 for label, s in samples.items()}
        row: dict[str, Any] = {"chunk_ms_median": median}
        for label in backends:
            if label != "eager_fp32":
                key = "compile_speedup" if label == "compile" else f"{label}_speedup"
                row[key] = median["eager_fp32"] / median[label]
                row[f"{label}_max_abs_vs_eager"] = float((chunks[label] - chunks["eager_fp32"]).abs().max())
        if "compile" not in backends:
            row["compile_speedup"] = None
        result[f"steps_{count}"] = row
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from psi0_ros.bench.policy import expert_presets

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    presets = expert_presets(args.presets)
    results: dict[str, Any] = {"presets": {}}
    with tempfile.TemporaryDirectory(prefix="psi0-bench-export-") as tmp:
        for name in presets:
            results["presets"][name] = _bench_preset(name, args, Path(tmp))
    full = results["presets"].get("psi0")
    steps = max(int(s) for s in args.steps.split(",") if s.strip())
    if full is not None and f"steps_{steps}" in full:
        row = full[f"steps_{steps}"]
        results["psi0_steps"] = steps
        results["ort_int8_speedup"] = row["ort_int8_speedup"]
        results["ort_fp32_speedup"] = row["ort_fp32_speedup"]
        results["compile_speedup"] = row["compile_speedup"]
        results["compile_skipped"] = full.get("compile_skipped")
        results["int8_p99_arm_error_rad"] = full["int8_p99_arm_error_rad"]
        results["int8_file_fraction"] = full["int8_file_fraction"]
        for label in REDUCED_EXPORTS:
            if f"{label}_speedup" in row:
                results[f"{label}_speedup"] = row[f"{label}_speedup"]
                results[f"{label}_p99_arm_error_rad"] = full[f"{label}_p99_arm_error_rad"]
                results[f"{label}_file_fraction"] = full[f"{label}_file_fraction"]
    return results
