"""`psi0 bench policy`: action-chunk latency of the MM-DiT expert, and how close it runs to the
machine's matmul throughput.

For each preset (a tiny one and the full ~490M-parameter Psi0 expert) it samples chunks with the
Euler sampler on random VLM features of a typical length (80 image + ~20 text tokens) and reports
p50/p99 latency, the FLOPs of one chunk (counted by torch's FlopCounterMode over one network
evaluation, times the number of Euler steps) and achieved FLOP/s over the FLOP/s of a plain large
matmul measured in the same run. Also: the latency with a training-time RTC prefix and with
guided (inference-time) RTC, and optionally the VLM (tiny random, or a real local directory).
Where CUDA is present, every preset is measured again in bf16 on the GPU.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

HELP = "action-chunk latency of the Psi0 action expert (tiny and full) and FLOP/s against a plain matmul"
PARAMS_REFERENCE = 490e6  # Psi0's action expert, as published


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", default="tiny,psi0", help="comma-separated expert presets (default: tiny,psi0)")
    parser.add_argument("--repeats-tiny", type=int, default=20, help="timed chunks for the tiny preset")
    parser.add_argument("--repeats-full", type=int, default=3, help="timed chunks for any other preset (slow on CPU)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed chunks before timing")
    parser.add_argument("--steps", type=int, default=10, help="Euler steps per chunk (Psi0: 8-10)")
    parser.add_argument("--obs-tokens", type=int, default=100, help="VLM tokens per observation")
    parser.add_argument("--rtc-delay", type=int, default=4, help="prefix length for the RTC timings (0: skip)")
    parser.add_argument("--guided-full", action="store_true", help="also time guided RTC on the full preset")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n baseline matmul")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--vlm-dir", default=None, help="also time a real local Qwen3-VL directory")
    parser.add_argument("--no-vlm", action="store_true", help="skip the tiny-VLM timing")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA bf16 pass even where a GPU exists")


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(samples_s) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def _time(fn: Any, repeats: int, warmup: int, device: Any) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return samples


def matmul_flops_per_s(n: int, device: Any, dtype: Any, repeats: int = 5) -> float:
    """Best-of-repeats FLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = min(_time(lambda: torch.mm(a, b), repeats, 1, device))
    return 2.0 * n**3 / best


def _bench_preset(name: str, args: argparse.Namespace, device: Any, dtype: Any) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from psi0_ros.policy.config import FlowConfig, expert_preset
    from psi0_ros.policy.flow import sample_actions
    from psi0_ros.policy.mmdit import ActionExpert, Conditioning
    from psi0_ros.policy.rtc import guided_euler_sample

    config = expert_preset(name)
    torch.manual_seed(0)
    expert = ActionExpert(config).to(device=device, dtype=dtype).eval()
    cond = Conditioning(torch.randn(1, args.obs_tokens, config.vlm_dim), None, torch.randn(1, config.state_dim)).to(
        device, dtype
    )
    flow = FlowConfig(num_steps=args.steps, max_delay=min(8, config.horizon))
    repeats = args.repeats_tiny if name == "tiny" else args.repeats_full
    generator = torch.Generator(device=device).manual_seed(0)

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        expert(
            torch.randn(1, config.horizon, config.action_dim, device=device, dtype=dtype),
            torch.rand(1, device=device),
            cond,
        )
    flops_per_chunk = counter.get_total_flops() * args.steps

    latency = _percentiles(
        _time(lambda: sample_actions(expert, cond, flow, generator=generator), repeats, args.warmup, device)
    )
    result: dict[str, Any] = {
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "params": expert.num_parameters(),
        "horizon": config.horizon,
        "euler_steps": args.steps,
        "obs_tokens": args.obs_tokens,
        "repeats": repeats,
        "chunk_ms_p50": latency["p50"],
        "chunk_ms_p99": latency["p99"],
        "flops_per_chunk": flops_per_chunk,
        "achieved_flops_per_s": flops_per_chunk / (latency["p50"] / 1e3),
    }
    delay = min(args.rtc_delay, flow.max_delay - 1)
    if delay > 0:
        prefix = torch.zeros(1, delay, config.action_dim, device=device, dtype=dtype)
        timed = _time(
            lambda: sample_actions(expert, cond, flow, prefix=prefix, generator=generator), repeats, 0, device
        )
        result["rtc_training_ms_p50"] = _percentiles(timed)["p50"]
        if name == "tiny" or args.guided_full:
            previous = torch.zeros(1, config.horizon // 2, config.action_dim, device=device, dtype=dtype)
            noise = torch.randn(1, config.horizon, config.action_dim, device=device, dtype=dtype)

            def guided() -> None:
                guided_euler_sample(lambda x, s: expert(x, s, cond), noise, previous, delay, args.steps)

            result["rtc_guidance_ms_p50"] = _percentiles(_time(guided, repeats, 0, device))["p50"]
            result["rtc_guidance_over_plain"] = result["rtc_guidance_ms_p50"] / result["chunk_ms_p50"]
    return result


def _bench_vlm(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from psi0_ros.policy.vlm import VLMBackbone, write_tiny_vlm

    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {} if args.no_vlm else {"tiny_random": write_tiny_vlm(Path(tmp) / "vlm")}
        if args.vlm_dir:
            sources["local"] = Path(args.vlm_dir)
        for label, path in sources.items():
            vlm = VLMBackbone.from_pretrained(path, torch.float32)
            repeats = args.repeats_tiny if label == "tiny_random" else args.repeats_full
            prep = _time(lambda v=vlm: v.prepare([frame], ["pick up the red cup"]), repeats, args.warmup, "cpu")
            inputs = vlm.prepare([frame], ["pick up the red cup"])
            with torch.no_grad():
                encode = _time(lambda v=vlm, i=inputs: v(i), repeats, args.warmup, "cpu")
            results[label] = {
                "path": str(path) if label == "local" else None,
                "tokens": int(inputs["input_ids"].shape[1]),
                "prepare_ms_p50": _percentiles(prep)["p50"],
                "encode_ms_p50": _percentiles(encode)["p50"],
                "encode_ms_p99": _percentiles(encode)["p99"],
            }
    return results


def expert_presets(text: str) -> list[str]:
    """A comma-separated --presets value as expert preset names; an unknown one ends the bench."""
    from psi0_ros.policy.config import EXPERT_PRESETS

    presets = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in presets if p not in EXPERT_PRESETS]
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; known: {sorted(EXPERT_PRESETS)}")
    return presets


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from psi0_ros.policy.config import EXPERT_PRESETS
    from psi0_ros.policy.mmdit import count_parameters

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    presets = expert_presets(args.presets)
    params = count_parameters(EXPERT_PRESETS["psi0"])
    results: dict[str, Any] = {
        "params_action_expert": params,
        "params_action_expert_over_490M": params / PARAMS_REFERENCE,
    }
    passes = [("cpu", torch.device("cpu"), torch.float32, args.matmul_size)]
    if torch.cuda.is_available() and not args.no_cuda:
        passes.append(("cuda_bf16", torch.device("cuda"), torch.bfloat16, max(args.matmul_size, 8192)))
    for label, device, dtype, n in passes:
        # The baseline is measured before and after every preset and the best is used: on a shared
        # machine a single measurement can land in a busy moment and flatter the ratio.
        matmul = [matmul_flops_per_s(n, device, dtype)]
        measured = {}
        for name in presets:
            measured[name] = _bench_preset(name, args, device, dtype)
            matmul.append(matmul_flops_per_s(n, device, dtype))
        best = max(matmul)
        for result in measured.values():
            result["achieved_over_matmul"] = result["achieved_flops_per_s"] / best
        section = {
            "matmul": {"n": n, "device": str(device), "dtype": str(dtype).replace("torch.", ""), "flops_per_s": best},
            "matmul_samples_flops_per_s": matmul,
            "presets": measured,
        }
        if label == "cpu":
            results.update(section)
        else:
            results[label] = {"device_name": torch.cuda.get_device_name(0), **section}
    if not args.no_vlm or args.vlm_dir:
        results["vlm"] = _bench_vlm(args)
    return results
