"""`psi0 ablate tasks`: Psi0's multi-task comparison on the sim, with per-task LoRA adapters.

Two or more tasks, each a directory of converted episodes, trained three ways with one preset and
one set of overrides (`psi0 train stage3` in child processes, as `psi0 ablate head`):
- per_task: one full fine-tune per task, on that task's episodes only;
- multi_task: one model on every task's episodes together (each episode carries its instruction);
- adapter: one base plus one LoRA adapter per task. The base is the multi_task model: there is
  no stage-2 pre-trained base here, and Psi0's story is a shared base that every task adapts.
  Each adapter trains on its task's episodes only from that base (adapter.method=lora).

The held-out episodes are drawn once per task (training.validation.split_held_out, seeded by the
preset's run.seed, as data.val_episodes draws them) and every training gets the same split: the
job links each task's training episodes into a directory of its own (and all tasks' into one for
the multi_task model) and trains with data.val_episodes=0; the held-out episodes are scored
after training, the same way for every way. Per task and way:
- open-loop error on the task's held-out episodes (psi0_ros.open_loop.open_loop_metrics: arms
  first action and whole chunk, hands, lower-body velocity; the hold-the-state baseline beside);
  the adapter way is scored through a checkpoint with the adapter merged into the base
  (psi0_ros.policy.adapters.merge_adapter: base + adapter within 1e-5);
- trainable parameters (the expert's for a full training, the LoRA pairs' for an adapter);
- disk: what the way stores for the task alone (a full checkpoint's expert weights, or the
  adapter directory) and what all tasks share (the multi_task model, the adapters' base); the
  VLM is frozen in stage 3 and left out;
- training wall time of the child process, the task's own and the shared one;
- with episodes > 0, closed-loop success (psi0_ros.jobs.evaluation.evaluate; the task name is
  the sim task's). The adapter way serves the base with every task's adapter loaded in
  chunk_node (its `adapters` parameter) and `task` set to the task evaluated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psi0_ros.jobs import ablation
from psi0_ros.jobs.ablation_head import run_training, score_open_loop
from psi0_ros.jobs.evaluation import DEFAULT_MAX_EPISODE_S, evaluate

WAYS = ("per_task", "multi_task", "adapter")
WAY_TITLES = {
    "per_task": "full fine-tune per task",
    "multi_task": "one multi-task model",
    "adapter": "base + adapter per task",
}
SPLIT_FILE = "split.json"  # <work>/split.json: every task's training and held-out episodes
# Keys the job sets itself in every training; an override of one would break the comparison.
OWNED_KEYS = ("data.root", "run.output_dir", "data.val_episodes", "model.init")
ADAPTER_ONLY = "adapter."  # adapter keys belong in --adapter-set (the full trainings have none)
TASK_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # a task names directories of the work directory
MARKDOWN_COLUMNS = (
    ("way_title", "way", "{}"),
    ("task", "task", "{}"),
    ("arms_first_rad", "open loop: arms first (rad)", "{:.4f}"),
    ("arms_chunk_rad", "open loop: arms chunk (rad)", "{:.4f}"),
    ("hands_first_rad", "open loop: hands first (rad)", "{:.4f}"),
    ("lower_velocity_first", "open loop: vx, vy first (m/s)", "{:.4f}"),
    ("trainable_parameters", "trainable parameters", "{:,}"),
    ("disk_task_mb", "disk, this task (MB)", "{:.3f}"),
    ("disk_shared_mb", "disk, shared (MB)", "{:.3f}"),
    ("train_task_s", "training, this task (s)", "{:.0f}"),
    ("train_shared_s", "training, shared (s)", "{:.0f}"),
    ("success_rate", "closed-loop success", "{:.2f}"),
)
TOTAL_COLUMNS = (
    ("way_title", "way", "{}"),
    ("disk_total_mb", "disk for all tasks (MB)", "{:.3f}"),
    ("train_total_s", "training for all tasks (s)", "{:.0f}"),
)


@dataclass(frozen=True)
class TaskSplit:
    """One task's episodes: those every way trains on and those every way is scored on."""

    task: str
    root: Path
    train: tuple[Path, ...]
    held_out: tuple[Path, ...]
    instructions: tuple[str, ...]


def parse_demos(items: Sequence[str]) -> dict[str, Path]:
    """TASK=EPISODES_DIR arguments -> {task: directory}; ValueError / FileNotFoundError naming the
    bad argument."""
    demos: dict[str, Path] = {}
    for item in items:
        task, sep, directory = item.partition("=")
        task = task.strip()
        if not sep or not TASK_NAME.fullmatch(task) or not directory:
            raise ValueError(f"--demos takes TASK=EPISODES_DIR (TASK of letters, digits, _ . -), got {item!r}")
        if task in demos:
            raise ValueError(f"--demos names task {task!r} twice")
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"--demos {item}: no episode directory {directory}")
        demos[task] = Path(directory)
    if len(demos) < 2:
        raise ValueError(f"--demos needs two or more tasks (TASK=EPISODES_DIR ...), got {sorted(demos) or 'none'}")
    return demos


def check_overrides(overrides: Sequence[str], adapter_overrides: Sequence[str]) -> None:
    """Refuse overrides of what the job sets itself, and adapter keys outside --adapter-set."""
    for where, items in (("--set", overrides), ("--adapter-set", adapter_overrides)):
        for item in items:
            key = item.partition("=")[0].strip()
            if key in OWNED_KEYS:
                raise ValueError(f"{where} {item}: the job sets {key} itself (the split comes from --val-episodes)")
            if where == "--set" and key.startswith(ADAPTER_ONLY):
                raise ValueError(f"--set {item}: adapter settings go in --adapter-set (the full trainings have none)")
            if where == "--adapter-set" and key == "model.vlm":
                raise ValueError(f"--adapter-set {item}: an adapter trains on its base's VLM")


def split_tasks(demos: dict[str, Path], val_episodes: int, seed: int) -> dict[str, TaskSplit]:
    """Hold out val_episodes of each task, drawn as data.val_episodes draws them (failures left
    out first, as in training)."""
    from training.readers import open_source
    from training.validation import split_held_out

    if val_episodes < 1:
        raise ValueError(f"--val-episodes must be >= 1 (the open-loop error is scored on them), got {val_episodes}")
    splits: dict[str, TaskSplit] = {}
    for task, root in demos.items():
        try:
            source = open_source("episodes", str(root))
            train, held_out = split_held_out(source, val_episodes, seed)
        except ValueError as err:
            raise ValueError(f"task {task} ({root}): {err}") from None
        instructions = tuple(sorted({e.instruction for e in source.entries}))
        splits[task] = TaskSplit(
            task,
            root,
            tuple(e.source for e in train.entries),
            tuple(e.source for e in held_out.entries),
            instructions,
        )
    seen: dict[str, str] = {}
    for split in splits.values():
        for instruction in split.instructions:
            if instruction in seen:
                raise ValueError(
                    f"tasks {seen[instruction]} and {split.task} share the instruction {instruction!r}: "
                    "one multi-task model could not tell them apart"
                )
            seen[instruction] = split.task
    return splits


def link_episodes(files: Sequence[Path], directory: Path, prefix: str = "") -> Path:
    """A directory of symbolic links to episode files (data.root takes one directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in files:
        (directory / f"{prefix}{path.name}").symlink_to(Path(path).resolve())
    return directory


def write_split_file(path: Path, splits: dict[str, TaskSplit], seed: int) -> None:
    document = {
        "seed": seed,
        "tasks": {
            s.task: {"root": str(s.root), "train": [str(p) for p in s.train], "held_out": [str(p) for p in s.held_out]}
            for s in splits.values()
        },
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def train_run(args: Sequence[str], log: Callable[[str], None]) -> float:
    """`psi0 train stage3 ARGS` in a child process, logged; its wall time in seconds."""
    log(f"psi0 ablate tasks: psi0 {' '.join(args)}")
    return run_training(args)


def training_args(preset: str, data: Path, out: Path, overrides: Sequence[str], *extra: str) -> list[str]:
    """The stage-3 command line: the user's overrides, then the job's own settings (last wins)."""
    args = ["train", "stage3", "--preset", preset]
    for override in [*overrides, *extra, f"data.root={data}", f"run.output_dir={out}", "data.val_episodes=0"]:
        args += ["--set", override]
    return args


def last_metrics(output_dir: Path) -> dict[str, float]:
    """The last logged step of a training (loss, elapsed_s of its loop)."""
    from training.engine import read_metrics

    rows = [r for r in read_metrics(output_dir) if "loss" in r]
    return rows[-1] if rows else {}


def file_mb(path: Path) -> float:
    return Path(path).stat().st_size / 1e6


def open_loop(checkpoint: Path, episodes: Sequence[Any]) -> dict[str, Any]:
    """Expert parameters and the open-loop summary of a checkpoint on held-out episodes."""
    from psi0_ros.policy.interface import Policy

    parameters, summary = score_open_loop(Policy.from_checkpoint(checkpoint, device="cpu", load_vlm=True), episodes)
    return {"expert_parameters": parameters, "open_loop": summary}


def row(way: str, task: str, scored: dict[str, Any], **values: Any) -> dict[str, Any]:
    summary = scored["open_loop"]
    return {
        "way": way,
        "way_title": WAY_TITLES[way],
        "task": task,
        "arms_first_rad": summary.get("arms_first_rad"),
        "arms_chunk_rad": summary.get("arms_chunk_rad"),
        "hands_first_rad": summary.get("hands_first_rad"),
        "lower_velocity_first": summary.get("lower_velocity_first"),
        "hold_state_arms_first_rad": summary.get("hold_state_arms_first_rad"),
        "open_loop": summary,
        "success_rate": None,
        "errors": 0,
        **values,
    }


def ablate_tasks(
    demos: dict[str, Path],
    work: Path,
    preset: str = "sim",
    overrides: Sequence[str] = (),
    adapter_overrides: Sequence[str] = (),
    val_episodes: int = 2,
    episodes: int = 0,
    seed: int = 0,
    max_episode_s: float = DEFAULT_MAX_EPISODE_S,
    layout: str = "lab",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the three ways and measure them (module docstring); returns the document."""
    from psi0_ros.open_loop import read_episodes
    from psi0_ros.policy.adapters import adapter_sizes, merge_adapter, read_adapter
    from psi0_ros.policy.checkpoint import WEIGHTS_FILE
    from training.run import build_config

    if len(demos) < 2:
        raise ValueError(f"needs two or more tasks, got {sorted(demos)}")
    if episodes < 0:
        raise ValueError(f"episodes must be >= 0, got {episodes}")
    if episodes:
        from psi0_ros.sim.tasks import get_task

        for task in demos:
            get_task(task)  # closed loop needs sim tasks: a bad name fails before any training
    check_overrides(overrides, adapter_overrides)
    try:  # a bad preset or override fails here, before any training
        config = build_config("stage3", preset, list(overrides))
        build_config(
            "stage3", preset, [*overrides, "model.init=BASE", "model.vlm=", *adapter_overrides, "adapter.method=lora"]
        )
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    work = Path(work)
    if work.exists() and any(work.iterdir()):
        raise ValueError(
            f"work directory {work} is not empty (a training there would resume): remove it or pass another"
        )
    splits = split_tasks(demos, val_episodes, config.run.seed)
    work.mkdir(parents=True, exist_ok=True)
    write_split_file(work / SPLIT_FILE, splits, config.run.seed)
    for split in splits.values():
        link_episodes(split.train, work / "data" / "per_task" / split.task)
        link_episodes(split.train, work / "data" / "multi_task", prefix=f"{split.task}__")

    # 1. one full fine-tune per task; 2. one multi-task model; 3. adapters on the multi-task model
    per_task_s = {
        t: train_run(training_args(preset, work / "data" / "per_task" / t, work / "per_task" / t, overrides), log)
        for t in splits
    }
    multi_s = train_run(training_args(preset, work / "data" / "multi_task", work / "multi_task", overrides), log)
    base = work / "multi_task" / "checkpoint"
    # model.init before any adapter key: a LoRA run without a base is refused as it is set
    adapter_sets = [*overrides, f"model.init={base}", "model.vlm=", *adapter_overrides]
    adapter_s = {
        t: train_run(
            training_args(
                preset,
                work / "data" / "per_task" / t,
                work / "adapter" / t,
                adapter_sets,
                "adapter.method=lora",
                f"adapter.task={t}",
            ),
            log,
        )
        for t in splits
    }

    rows = []
    base_mb = file_mb(base / WEIGHTS_FILE)
    adapters = [work / "adapter" / t / "adapter" for t in splits]
    for task, split in splits.items():
        held_out = read_episodes(split.held_out)
        checkpoint = work / "per_task" / task / "checkpoint"
        scored = open_loop(checkpoint, held_out)
        rows.append(
            row(
                "per_task",
                task,
                scored,
                checkpoint=str(checkpoint),
                trainable_parameters=scored["expert_parameters"],
                disk_task_mb=file_mb(checkpoint / WEIGHTS_FILE),
                disk_shared_mb=None,
                train_task_s=per_task_s[task],
                train_shared_s=None,
                final=last_metrics(work / "per_task" / task),
            )
        )
        scored = open_loop(base, held_out)
        rows.append(
            row(
                "multi_task",
                task,
                scored,
                checkpoint=str(base),
                trainable_parameters=scored["expert_parameters"],
                disk_task_mb=None,
                disk_shared_mb=base_mb,
                train_task_s=None,
                train_shared_s=multi_s,
                final=last_metrics(work / "multi_task"),
            )
        )
        adapter = work / "adapter" / task / "adapter"
        merged = merge_adapter(base, adapter, work / "adapter" / task / "merged")
        scored = open_loop(merged, held_out)
        rows.append(
            row(
                "adapter",
                task,
                scored,
                checkpoint=str(base),
                adapter=str(adapter),
                merged=str(merged),  # what the open-loop error was scored through
                trainable_parameters=read_adapter(adapter).trainable_parameters,
                disk_task_mb=adapter_sizes(adapter)["directory_bytes"] / 1e6,
                disk_shared_mb=base_mb,
                train_task_s=adapter_s[task],
                train_shared_s=multi_s,
                final=last_metrics(work / "adapter" / task),
            )
        )
        log(
            "psi0 ablate tasks: "
            + ", ".join(f"{r['way']} {r['arms_first_rad']:.4f} rad" for r in rows[-3:])
            + f" (arms first, {task} held out)"
        )
        if episodes:
            for r in rows[-3:]:
                params = {"chunk_node": {"adapters": [str(a) for a in adapters], "task": task}}
                summary = evaluate(
                    Path(r["checkpoint"]),
                    task,
                    episodes,
                    seed,
                    work / "eval" / f"{r['way']}_{task}",
                    max_episode_s,
                    trace_episodes=0,
                    log=log,
                    layout=layout,
                    node_params=params if r["way"] == "adapter" else None,
                )
                r.update(
                    success_rate=summary["success_rate"], errors=summary["errors"], layout_seeds=summary["layout_seeds"]
                )
    totals = [
        {
            "way": "per_task",
            "way_title": WAY_TITLES["per_task"],
            "disk_total_mb": sum(r["disk_task_mb"] for r in rows if r["way"] == "per_task"),
            "train_total_s": sum(per_task_s.values()),
        },
        {
            "way": "multi_task",
            "way_title": WAY_TITLES["multi_task"],
            "disk_total_mb": base_mb,
            "train_total_s": multi_s,
        },
        {
            "way": "adapter",
            "way_title": WAY_TITLES["adapter"],
            "disk_total_mb": base_mb + sum(r["disk_task_mb"] for r in rows if r["way"] == "adapter"),
            "train_total_s": multi_s + sum(adapter_s.values()),
        },
    ]
    return {
        "tasks": {t: {"root": str(s.root), "instructions": list(s.instructions)} for t, s in splits.items()},
        "split": {
            "seed": config.run.seed,
            "val_episodes": val_episodes,
            "file": str(work / SPLIT_FILE),
            "held_out": {t: [str(p) for p in s.held_out] for t, s in splits.items()},
            "train_episodes": {t: len(s.train) for t, s in splits.items()},
        },
        "preset": preset,
        "overrides": list(overrides),
        "adapter_overrides": list(adapter_overrides),
        "steps": config.run.steps,
        "episodes": episodes,
        "seed": seed,
        "layout": layout,
        "max_episode_s": max_episode_s,
        "closed_loop_adapter_serving": "base checkpoint + chunk_node adapters (every task's), task = the evaluated one",
        "rows": rows,
        "totals": totals,
    }


def markdown_tables(document: dict[str, Any]) -> str:
    """The per-(way, task) table and the per-way totals."""
    return (
        ablation.markdown_table(document["rows"], MARKDOWN_COLUMNS)
        + "\n"
        + ablation.markdown_table(document["totals"], TOTAL_COLUMNS)
    )
