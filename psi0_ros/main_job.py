"""The main job (`psi0 demo`, `make run`): demonstrations -> episodes -> stage-3 policy -> closed-loop
evaluation -> report, each step through the real command it names.

Steps (each a `psi0 ...` command run as a child process, its output streamed, so progress shows):
1. demos    `psi0 sim demos --episodes N --out OUT/demos --seed S --task T` (scripted expert, real recorder)
2. convert  `psi0 convert OUT/demos -o OUT/episodes`
3. train    `psi0 train stage3 --preset tiny --set run.output_dir=OUT/train --set data.root=OUT/episodes ...`
4. eval     `psi0 eval --checkpoint OUT/train/checkpoint --task T --episodes M --json OUT/eval_run.json`
5. report   OUT/report.md (+ PNG plots, rollout.gif) and OUT/eval.json (psi0_ros.report)

Steps 1-3 are cached: each writes OUT/<step>/.psi0_cache.json holding a hash of its inputs (its
settings, the key of the step before it, and the source files that decide its output); a run
whose key matches reuses the output, anything else rebuilds it from scratch. Evaluation and the
report always run, so a second `make run` goes straight to deployment and evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = ".psi0_cache.json"
# Sources whose content changes a step's output (hashed into its key, with its settings).
STEP_SOURCES = {
    "demos": ("psi0_ros/sim", "psi0_ros/nodes/sim_expert_node.py", "config/sim.yaml", "config/record.yaml"),
    "convert": ("psi0_ros/data",),
    "train": ("training", "psi0_ros/policy"),
}


@dataclass(frozen=True)
class MainJobConfig:
    out: Path = Path("runs/demo")
    task: str = "can_to_basket"
    demos: int = 10  # scripted demonstrations (layout seeds demo_seed .. demo_seed + demos - 1)
    demo_seed: int = 0
    train_preset: str = "tiny"
    train_steps: int = 1500
    train_batch: int = 32
    eval_episodes: int = 20  # layout seeds 100000 + eval_seed + i: never a demo's
    eval_seed: int = 0
    max_episode_s: float = 25.0  # sim s before an evaluation episode counts as failed
    plot_frames: int = 4  # observations of one demo whose predicted chunk the report plots


def _source_digest(root: Path, entries: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        path = root / entry
        files = sorted(path.rglob("*.py")) + sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(str(file.relative_to(root)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def step_key(step: str, settings: dict[str, Any], upstream: str, root: Path) -> str:
    """Hash of one step's inputs: its settings, the upstream step's key and its source files."""
    text = json.dumps({"step": step, "settings": settings, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256((text + _source_digest(root, STEP_SOURCES.get(step, ()))).encode()).hexdigest()[:16]


def cached(directory: Path, key: str) -> bool:
    marker = directory / CACHE_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == key
    except (OSError, ValueError):
        return False


def mark_cached(directory: Path, key: str, settings: dict[str, Any]) -> None:
    (directory / CACHE_FILE).write_text(json.dumps({"key": key, "settings": settings}, indent=2, default=str) + "\n")


def psi0_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "psi0_ros.cli", *args]


def _run(command: list[str], log: Callable[[str], None], allowed: tuple[int, ...] = (0,)) -> int:
    log("$ psi0 " + " ".join(command[3:]))
    status = subprocess.run(command).returncode
    if status not in allowed:
        raise RuntimeError(f"`psi0 {' '.join(command[3:])}` failed with exit status {status}")
    return status


def run_main_job(config: MainJobConfig, root: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the pipeline; returns OUT/eval.json's content (eval summary + wall_s + cached + steps)."""
    from psi0_ros.report import write_report

    started = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = {"demos": out / "demos", "convert": out / "episodes", "train": out / "train"}
    settings = {
        "demos": {"task": config.task, "episodes": config.demos, "seed": config.demo_seed},
        "convert": {},
        "train": {"preset": config.train_preset, "steps": config.train_steps, "batch": config.train_batch},
    }
    commands = {
        "demos": psi0_command(
            "sim",
            "demos",
            "--episodes",
            str(config.demos),
            "--out",
            str(dirs["demos"]),
            "--seed",
            str(config.demo_seed),
            "--task",
            config.task,
        ),  # fmt: skip
        "convert": psi0_command("convert", str(dirs["demos"]), "-o", str(dirs["convert"])),
        "train": psi0_command(
            "train",
            "stage3",
            "--preset",
            config.train_preset,
            "--set",
            f"run.output_dir={dirs['train']}",
            "--set",
            f"data.root={dirs['convert']}",
            "--set",
            f"run.steps={config.train_steps}",
            "--set",
            f"run.global_batch={config.train_batch}",
            "--set",
            f"run.save_every={config.train_steps}",
            "--set",
            "run.progress=true",
        ),  # fmt: skip
    }
    was_cached: dict[str, bool] = {}
    step_s: dict[str, float] = {}
    key = ""
    names = list(dirs) + ["eval", "report"]
    for number, step in enumerate(dirs, 1):
        key = step_key(step, settings[step], key, root)
        t0 = time.monotonic()
        if cached(dirs[step], key):
            log(f"[{number}/{len(names)}] {step}: cached ({dirs[step]}, key {key})")
            was_cached[step] = True
            continue
        log(f"[{number}/{len(names)}] {step} -> {dirs[step]}")
        shutil.rmtree(dirs[step], ignore_errors=True)
        # a demo that fails its task check is recorded and marked failure; that is data, not an error
        _run(commands[step], log, (0, 1) if step == "demos" else (0,))
        if step == "demos" and not (dirs[step] / "demos.json").is_file():
            raise RuntimeError(f"psi0 sim demos wrote no {dirs[step] / 'demos.json'}")
        mark_cached(dirs[step], key, settings[step])
        was_cached[step] = False
        step_s[step] = time.monotonic() - t0
        log(f"[{number}/{len(names)}] {step}: done in {step_s[step]:.0f} s")

    checkpoint = dirs["train"] / "checkpoint"
    log(f"[4/{len(names)}] eval: {config.eval_episodes} episodes of {config.task} through the deploy graph")
    t0 = time.monotonic()
    eval_run = out / "eval_run.json"
    eval_cmd = psi0_command(
        "eval", "--checkpoint", str(checkpoint), "--task", config.task, "--episodes", str(config.eval_episodes),
        "--seed", str(config.eval_seed), "--max-episode-s", str(config.max_episode_s),
        "--json", str(eval_run), "--work-dir", str(out / "eval_episodes"),
    )  # fmt: skip
    _run(eval_cmd, log, (0, 1))  # 1: some episode had an error; it is in the summary
    step_s["eval"] = time.monotonic() - t0
    summary = json.loads(eval_run.read_text())

    log(f"[5/{len(names)}] report -> {out / 'report.md'}")
    t0 = time.monotonic()
    result = dict(summary)
    result["cached"] = was_cached
    result["step_s"] = step_s
    result["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    artefacts = write_report(
        out, config.task, dirs["demos"], dirs["convert"], dirs["train"], summary, config.plot_frames
    )
    step_s["report"] = time.monotonic() - t0
    result["artefacts"] = artefacts
    result["wall_s"] = time.monotonic() - started
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    _append_wall(out / "report.md", result)
    return result


def _append_wall(report: Path, result: dict[str, Any]) -> None:
    cached_steps = [k for k, v in result["cached"].items() if v] or ["none"]
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result["step_s"].items())
    with report.open("a") as f:
        f.write(
            f"\nWhole command: {result['wall_s']:.0f} s wall (steps: {times}; cached: {', '.join(cached_steps)}).\n"
        )
