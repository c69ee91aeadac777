"""The main job (`psi0 demo`, `make run`): demonstrations -> episodes -> stage-3 policy -> closed-loop
evaluation -> report, each step through the real command it names.

Steps (each a `psi0 ...` command run as a child process, its output streamed, so progress shows):
1. demos    `psi0 sim demos --episodes N --out OUT/demos --seed S --task T` (scripted expert, real recorder)
2. convert  `psi0 convert OUT/demos -o OUT/episodes`
3. train    `psi0 train stage3 --preset tiny --set run.output_dir=OUT/train --set data.root=OUT/episodes ...`
4. eval     `psi0 eval --checkpoint OUT/train/checkpoint --task T --episodes M --json OUT/eval_run.json`
5. report   OUT/report.md (+ PNG plots, rollout.gif) and OUT/eval.json (psi0_ros.jobs.report)

Steps 1-3 are cached: each writes OUT/<step>/.psi0_cache.json holding a hash of its inputs (its
settings, the key of the step before it, and the source files that decide its output: what its
command imports and the config files that code names, psi0_ros.jobs.cache); a run whose key
matches reuses the output, anything else rebuilds it from scratch. Evaluation and the report
always run, so a second `make run` goes straight to deployment and evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from psi0_ros import cli
from psi0_ros.commands import convert as convert_command
from psi0_ros.commands import sim as sim_command
from psi0_ros.commands import train as train_command
from psi0_ros.jobs import cache, child

CACHE_FILE = ".psi0_cache.json"
# The modules each cached step's command runs: what they import (transitively) and the config
# files that code names are the step's sources, hashed into its key with its settings.
STEP_ENTRIES: dict[str, tuple[ModuleType, ...]] = {
    "demos": (cli, sim_command),
    "convert": (cli, convert_command),
    "train": (cli, train_command),
}


@dataclass(frozen=True)
class MainJobConfig:
    out: Path = Path("runs/demo")
    task: str = "can_to_basket"
    layout: str = "lab"  # object layout ranges of demos and evaluation (psi0_ros.sim.scene.LAYOUTS)
    demos: int = 30  # scripted demonstrations (layout seeds demo_seed .. demo_seed + demos - 1)
    demo_seed: int = 0
    val_demos: int = 2  # of those, held out of training (whole episodes): the open-loop held-out split
    train_preset: str = "sim"
    train_steps: int = 6000
    train_batch: int = 32
    eval_episodes: int = 20  # layout seeds 100000 + eval_seed + i: never a demo's
    seen_episodes: int = 10  # also evaluated on this many training demos' own layouts (0: skip)
    eval_seed: int = 0
    max_episode_s: float = 20.0  # sim s before an evaluation episode counts as failed (the expert takes ~16)
    plot_frames: int = 4  # observations of one demo whose predicted chunk the report plots
    open_loop_stride: int = 15  # every n-th frame of each episode is scored open loop
    open_loop_samples: int = 4  # chunks drawn per scored frame (bias vs sampling spread)

    def __post_init__(self) -> None:
        if self.demos < 1:
            raise ValueError(f"demos must be >= 1, got {self.demos}")
        if not 0 <= self.val_demos < self.demos:
            raise ValueError(f"val_demos must be in [0, demos={self.demos}), got {self.val_demos}")
        if self.seen_episodes < 0 or self.eval_episodes < 1:
            raise ValueError(
                f"seen_episodes must be >= 0 and eval_episodes >= 1, got {self.seen_episodes}, {self.eval_episodes}"
            )


def step_sources(step: str, root: Path) -> list[Path]:
    """The files (relative to root) whose content decides `step`'s output."""
    return cache.step_sources([m.__name__ for m in STEP_ENTRIES.get(step, ())], root)


def step_key(step: str, settings: dict[str, Any], upstream: str, root: Path) -> str:
    """Hash of one step's inputs: its settings, the upstream step's key and its source files."""
    text = json.dumps({"step": step, "settings": settings, "upstream": upstream}, sort_keys=True, default=str)
    sources = cache.source_digest([m.__name__ for m in STEP_ENTRIES.get(step, ())], root)
    return hashlib.sha256((text + sources).encode()).hexdigest()[:16]


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


def _run(args: list[str], log: Callable[[str], None], allowed: tuple[int, ...] = (0,)) -> int | str:
    """`psi0 ARGS` as a child process (its output streamed); its exit status, which must be allowed."""
    log("$ psi0 " + " ".join(args))
    status = child.run_module(cli, args)
    if status not in allowed:
        raise RuntimeError(f"`psi0 {' '.join(args)}` failed with exit status {status}")
    return status


def run_main_job(config: MainJobConfig, root: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the pipeline; returns OUT/eval.json's content (eval summary + wall_s + cached + steps)."""
    from psi0_ros.jobs.report import write_report

    started = time.monotonic()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = {"demos": out / "demos", "convert": out / "episodes", "train": out / "train"}
    settings = {
        "demos": {"task": config.task, "episodes": config.demos, "seed": config.demo_seed, "layout": config.layout},
        "convert": {},
        "train": {
            "preset": config.train_preset,
            "steps": config.train_steps,
            "batch": config.train_batch,
            "val_episodes": config.val_demos,
        },
    }
    commands = {
        "demos": [
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
            "--layout",
            config.layout,
        ],
        "convert": ["convert", str(dirs["demos"]), "-o", str(dirs["convert"])],
        "train": [
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
            f"data.val_episodes={config.val_demos}",
            "--set",
            f"run.eval_every={max(1, config.train_steps // 10)}",
            "--set",
            "run.progress=true",
        ],
    }
    was_cached: dict[str, bool] = {}
    step_s: dict[str, float] = {}
    key = ""
    names = list(dirs) + ["open loop", "eval", "report"]
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
    split = json.loads((dirs["train"] / "split.json").read_text())
    log(f"[4/{len(names)}] open loop: the policy's chunks against recorded actions (train and held-out demos)")
    t0 = time.monotonic()
    open_loop_json = out / "open_loop.json"
    held_out = split["held_out"] or split["train"]  # no held-out demo: score the training ones twice
    _run(
        ["eval", "--open-loop", *held_out, "--train-episodes", *split["train"], "--train-split"]
        + ["--checkpoint", str(checkpoint), "--json", str(open_loop_json)]
        + ["--stride", str(config.open_loop_stride), "--samples", str(config.open_loop_samples)],
        log,
    )
    open_loop = json.loads(open_loop_json.read_text())
    step_s["open_loop"] = time.monotonic() - t0

    log(f"[5/{len(names)}] eval: {config.task} through the deploy graph on new and on the demos' own layouts")
    t0 = time.monotonic()
    common = ["--checkpoint", str(checkpoint), "--task", config.task, "--layout", config.layout]
    common += ["--max-episode-s", str(config.max_episode_s)]
    eval_run = out / "eval_run.json"
    eval_cmd = [
        "eval", *common, "--episodes", str(config.eval_episodes), "--seed", str(config.eval_seed),
        "--json", str(eval_run), "--work-dir", str(out / "eval_episodes"),
    ]  # fmt: skip
    _run(eval_cmd, log, (0, 1))  # 1: some episode had an error; it is in the summary
    summary = json.loads(eval_run.read_text())
    seen = None
    seen_seeds = seen_layout_seeds(split["train"], config.seen_episodes)
    if seen_seeds:
        seen_run = out / "eval_seen.json"
        seen_cmd = ["eval", *common, "--layout-seeds", ",".join(str(s) for s in seen_seeds)]
        seen_cmd += ["--json", str(seen_run), "--work-dir", str(out / "eval_seen_episodes")]
        _run(seen_cmd, log, (0, 1))
        seen = json.loads(seen_run.read_text())
    step_s["eval"] = time.monotonic() - t0

    log(f"[6/{len(names)}] report -> {out / 'report.md'}")
    t0 = time.monotonic()
    result = dict(summary)
    result["seen_success_rate"] = None if seen is None else seen["success_rate"]
    result["seen"] = seen
    result["open_loop"] = {k: v for k, v in open_loop.items() if k in ("train", "held_out")}
    result["held_out_episodes"] = split["held_out"]
    result["cached"] = was_cached
    result["step_s"] = step_s
    result["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}
    artefacts = write_report(
        out, config.task, dirs["demos"], dirs["convert"], dirs["train"], summary, config.plot_frames, seen, open_loop
    )
    step_s["report"] = time.monotonic() - t0
    result["artefacts"] = artefacts
    result["wall_s"] = time.monotonic() - started
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    _append_wall(out / "report.md", result)
    return result


def seen_layout_seeds(train_episodes: list[str], count: int) -> list[int]:
    """Layout seeds of the first `count` training episodes (from their bag-derived file names,
    demo_<episode>_seed_<seed>_...): evaluating on them tells execution from generalisation."""
    seeds = []
    for name in train_episodes:
        match = re.search(r"_seed_(\d+)", Path(name).name)
        if match and int(match.group(1)) not in seeds:
            seeds.append(int(match.group(1)))
    return seeds[:count]


def _append_wall(report: Path, result: dict[str, Any]) -> None:
    cached_steps = [k for k, v in result["cached"].items() if v] or ["none"]
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result["step_s"].items())
    with report.open("a") as f:
        f.write(
            f"\nWhole command: {result['wall_s']:.0f} s wall (steps: {times}; cached: {', '.join(cached_steps)}).\n"
        )
