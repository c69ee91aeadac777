"""`psi0 ablate rtc`: the scheduler modes under injected inference latency, closed loop on the sim.

One checkpoint, one task, the same evaluation layouts (psi0_ros.jobs.evaluation.eval_seed) in
every cell of modes x latencies; each cell is psi0_ros.jobs.evaluation.evaluate() through the
deploy graph with chunk_node's `mode` and `inference_latency_ms` set (the latency passes on the
node's clock, sim time here, so the scheduler sees it as on a robot). Per cell (definitions in
docs/ablations.md and psi0_ros.jobs.ablation_metrics): success rate, mean sim time to success,
missed / held ticks and delay-clamped chunks per episode (the scheduler's counters), junction jump
and ratio, jerk, and collisions per episode (psi0_ros.sim.collisions). The document is written as
JSON, a Markdown table and a plot of success and jerk against latency per mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.control.scheduler import SCHEDULER_MODES
from psi0_ros.jobs.evaluation import DEFAULT_MAX_EPISODE_S, evaluate

DEFAULT_MODES = tuple(SCHEDULER_MODES)  # rtc, rtc_guidance, sync, naive_async, temporal_ensemble
DEFAULT_LATENCIES_MS = (0.0, 100.0, 200.0, 300.0)
MARKDOWN_COLUMNS = (
    ("mode", "mode", "{}"),
    ("latency_ms", "latency (ms)", "{:g}"),
    ("success_rate", "success", "{:.2f}"),
    ("mean_time_to_success_s", "time to success (s)", "{:.1f}"),
    ("missed_ticks", "missed ticks/ep", "{:.1f}"),
    ("held_ticks", "held ticks/ep", "{:.1f}"),
    ("delay_clamped", "delay-clamped chunks/ep", "{:.1f}"),
    ("junction_jump_rad", "junction jump (rad)", "{:.4f}"),
    ("junction_ratio", "junction ratio", "{:.2f}"),
    ("jerk_rad_s3", "jerk (rad/s³)", "{:.1f}"),
    ("collisions", "collisions/ep", "{:.2f}"),
    ("inference_p50_ms", "inference p50 (ms)", "{:.0f}"),
    ("errors", "errors", "{}"),
)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(kept)) if kept else None


def cell_summary(mode: str, latency_ms: float, summary: dict[str, Any]) -> dict[str, Any]:
    """One table row from evaluate()'s summary of a cell: means per episode that ran."""
    episodes = summary["episodes"]
    ran = [e for e in episodes if "sim_time_s" in e]
    successes = [e for e in episodes if e.get("success")]

    def counter(name: str) -> float | None:
        return _mean([e.get("scheduler_counters", {}).get(name, 0) for e in ran]) if ran else None

    def motion(name: str) -> list[float | None]:
        return [e.get("motion", {}).get(name) for e in ran]

    return {
        "mode": mode,
        "latency_ms": float(latency_ms),
        "episodes": len(episodes),
        "success_rate": summary["success_rate"],
        "mean_time_to_success_s": _mean([e["sim_time_s"] for e in successes if "sim_time_s" in e]),
        "missed_ticks": counter("missed"),
        "held_ticks": counter("held"),
        "delay_clamped": counter("delay_clamped"),
        "chunks": counter("chunks"),
        "junction_jump_rad": _mean(motion("junction_jump_rad")),
        "junction_jump_max_rad": max([v for v in motion("junction_jump_max_rad") if v is not None], default=None),
        "junction_ratio": _mean(motion("junction_ratio")),
        "jerk_rad_s3": _mean(motion("jerk_rad_s3")),
        "collisions": _mean([e.get("collisions", {}).get("total") for e in ran]),
        "table_contacts": _mean([e.get("collisions", {}).get("table_contacts") for e in ran]),
        "objects_knocked_over": sum(len(e.get("collisions", {}).get("knocked_over", [])) for e in ran),
        "objects_off_table": sum(len(e.get("collisions", {}).get("off_table", [])) for e in ran),
        "inference_p50_ms": _mean([e.get("inference_p50_ms") for e in ran]),
        "realtime_factor": summary["realtime_factor"],
        "errors": summary["errors"],
    }


def ablate_rtc(
    checkpoint: Path,
    task: str,
    modes: Sequence[str] = DEFAULT_MODES,
    latencies_ms: Sequence[float] = DEFAULT_LATENCIES_MS,
    episodes: int = 10,
    seed: int = 0,
    work_dir: Path | None = None,
    max_episode_s: float = DEFAULT_MAX_EPISODE_S,
    layout: str = "full",
    chunk_params: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every (mode, latency) cell on the same layouts; returns the document (module docstring).
    chunk_params: further chunk_node parameters for every cell (e.g. min_execution_horizon)."""
    bad = [m for m in modes if m not in SCHEDULER_MODES]
    if bad or not modes:
        raise ValueError(f"unknown scheduler modes {bad or list(modes)}; expected some of {list(SCHEDULER_MODES)}")
    if not latencies_ms or any(not (float(v) >= 0) for v in latencies_ms):
        raise ValueError(f"latencies must be >= 0 ms, got {list(latencies_ms)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    checkpoint = Path(checkpoint)
    work = Path(work_dir) if work_dir is not None else checkpoint.parent / "ablate_rtc"
    cells = []
    for mode in modes:
        for latency in latencies_ms:
            log(f"psi0 ablate rtc: {mode} at {float(latency):g} ms")
            params = {**(chunk_params or {}), "mode": mode, "inference_latency_ms": float(latency)}
            summary = evaluate(
                checkpoint,
                task,
                episodes,
                seed,
                work / f"{mode}_{float(latency):g}ms",
                max_episode_s,
                trace_episodes=0,
                log=log,
                layout=layout,
                node_params={"chunk_node": params},
            )
            cell = cell_summary(mode, float(latency), summary)
            cell["layout_seeds"] = summary["layout_seeds"]
            cells.append(cell)
    return {
        "checkpoint": str(checkpoint),
        "task": task,
        "modes": list(modes),
        "latencies_ms": [float(v) for v in latencies_ms],
        "episodes": episodes,
        "seed": seed,
        "layout": layout,
        "max_episode_s": max_episode_s,
        "chunk_params": dict(chunk_params or {}),
        "cells": cells,
    }


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]] = MARKDOWN_COLUMNS) -> str:
    """Rows as a Markdown table of (key, title, format) columns (— for a figure an episode set
    could not give): the rtc cells by default, the heads of `psi0 ablate head` with its columns."""
    lines = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        values = ["—" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in columns]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot_cells(cells: Sequence[dict[str, Any]], out: Path, title: str = "") -> Path:
    """Success rate and jerk against injected latency, one line per mode (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(c["mode"] for c in cells))
    figure, (success, jerk) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in modes:
        rows = sorted((c for c in cells if c["mode"] == mode), key=lambda c: c["latency_ms"])
        latency = [c["latency_ms"] for c in rows]
        success.plot(latency, [c["success_rate"] for c in rows], "o-", label=mode)
        jerk.plot(latency, [np.nan if c["jerk_rad_s3"] is None else c["jerk_rad_s3"] for c in rows], "o-", label=mode)
    success.set_ylim(-0.05, 1.05)
    success.set_ylabel("success rate")
    jerk.set_ylabel("jerk of the arm targets (rad/s³, RMS)")
    for axis in (success, jerk):
        axis.set_xlabel("injected inference latency (ms)")
        axis.grid(alpha=0.3)
    success.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
