"""`psi0 bench train`: training throughput at a tiny stage-3 preset, and what the VLM feature cache saves.

Generated episodes (training.synthetic) are trained on twice in the same run with the tiny
stage-3 preset: once with the memory-mapped VLM feature cache (the default when the VLM is
frozen and augmentation is off) and once running the VLM every step. Reported, over the steps
after --warmup: samples_per_s and data_wait_fraction (time waiting for the DataLoader / step time)
with the cache; feature_cache_speedup = step time without the cache / step time with it; the
cache's build time and size, and after how many steps building it has paid for itself.

The training code lives in the top-level `training` package; it is imported inside run().
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

HELP = "training samples/s and data-wait fraction at a tiny preset; speed-up from the VLM feature cache"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=4, help="generated episodes")
    parser.add_argument("--frames", type=int, default=60, help="frames per episode")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the averages")
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed afterwards)")


def _steady(rows: list[dict[str, float]], warmup: int) -> dict[str, float]:
    rows = rows[warmup:] or rows
    step_s = [1.0 / row["samples_per_s"] for row in rows]  # s per sample
    wait = [row["data_wait_fraction"] / row["samples_per_s"] for row in rows]  # waiting s per sample
    per_sample = sum(step_s) / len(step_s)
    return {"s_per_sample": per_sample, "data_wait_fraction": sum(wait) / sum(step_s)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    synthetic = importlib.import_module("training.synthetic")
    entry = importlib.import_module("training.run")
    engine = importlib.import_module("training.engine")
    work = args.dir or Path(tempfile.mkdtemp(prefix="psi0-bench-train-"))
    try:
        data = work / "episodes"
        shutil.rmtree(work / "cached", ignore_errors=True)
        shutil.rmtree(work / "live", ignore_errors=True)
        if not data.is_dir():
            synthetic.write_episodes(data, episodes=args.episodes, frames=args.frames)
        common = [
            f"data.root={data}",
            f"run.steps={args.steps}",
            f"run.global_batch={args.batch}",
            f"run.num_workers={args.workers}",
            "run.save_every=1000000",
            "run.tensorboard=false",
        ]
        started = time.perf_counter()
        cached_config = entry.build_config("stage3", "tiny", [f"run.output_dir={work / 'cached'}", *common])
        entry.run_stage(cached_config)
        cached_total = time.perf_counter() - started
        cached = _steady(engine.read_metrics(work / "cached"), args.warmup)
        cache_dir = work / "cached" / "feature_cache"
        cache_bytes = sum(p.stat().st_size for p in cache_dir.iterdir())
        started = time.perf_counter()
        live_config = entry.build_config(
            "stage3", "tiny", [f"run.output_dir={work / 'live'}", "data.feature_cache=false", *common]
        )
        entry.run_stage(live_config)
        live_total = time.perf_counter() - started
        live = _steady(engine.read_metrics(work / "live"), args.warmup)
        # Building the cache is one VLM pass over every frame: the difference of the two runs'
        # set-up times (everything but the steps) estimates it.
        steps = args.steps
        cached_steps_s = cached["s_per_sample"] * args.batch * steps
        live_steps_s = live["s_per_sample"] * args.batch * steps
        build_s = max(0.0, (cached_total - cached_steps_s) - (live_total - live_steps_s))
        saved_per_step = (live["s_per_sample"] - cached["s_per_sample"]) * args.batch
        return {
            "preset": "stage3/tiny",
            "global_batch": args.batch,
            "num_workers": args.workers,
            "samples_per_s": 1.0 / cached["s_per_sample"],
            "data_wait_fraction": cached["data_wait_fraction"],
            "samples_per_s_without_cache": 1.0 / live["s_per_sample"],
            "data_wait_fraction_without_cache": live["data_wait_fraction"],
            "feature_cache_speedup": live["s_per_sample"] / cached["s_per_sample"],
            "feature_cache_build_s": build_s,
            "feature_cache_bytes": cache_bytes,
            "feature_cache_frames": args.episodes * args.frames,
            "feature_cache_break_even_steps": build_s / saved_per_step if saved_per_step > 0 else None,
        }
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
