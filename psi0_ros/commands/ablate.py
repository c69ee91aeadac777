"""`psi0 ablate rtc|head`: Psi0's ablations, reproduced on the simulated G1 (docs/ablations.md).

`psi0 ablate rtc --checkpoint C --task T --modes rtc,sync,... --latency-ms 0,100,200,300
--episodes M --json F`: every scheduler mode at every injected inference latency, closed loop
through the deploy graph on the same layouts (psi0_ros.jobs.ablation); F, F with .md (a Markdown
table) and F with .png (success and jerk against latency).

`psi0 ablate head --demos DIR --json F` (or --checkpoints MMDIT DIT): the MM-DiT action expert
against a naive DiT of the same width and depth, trained on the same demos with the same recipe
(psi0_ros.jobs.ablation_head): parameters, open-loop error, inference time and closed-loop success.

`psi0 ablate tasks --demos TASK=DIR TASK=DIR ... --json F`: one full fine-tune per task, one
multi-task model, and one base plus a LoRA adapter per task, on the same held-out split
(psi0_ros.jobs.ablation_tasks): open-loop error, trainable parameters, disk, training time and
closed-loop success per task.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "ablate"
HELP = (
    "Psi0's ablations on the sim: scheduler modes under inference latency (rtc), MM-DiT vs naive DiT (head), "
    "per-task vs multi-task vs adapters (tasks)"
)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _param(text: str) -> tuple[str, object]:
    """NAME=VALUE for chunk_node, the value parsed as YAML would (4 -> int, 1.5 -> float, true -> bool)."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), yaml.safe_load(value)


def _closed_loop(parser: argparse.ArgumentParser, episodes: int, episodes_help: str, layout: str) -> None:
    """The evaluation's options: episodes, layouts and the episode limit."""
    from psi0_ros.jobs.evaluation import DEFAULT_MAX_EPISODE_S
    from psi0_ros.sim.scene import LAYOUTS

    parser.add_argument("--episodes", type=int, default=episodes, help=f"{episodes_help} (default: {episodes})")
    parser.add_argument("--seed", type=int, default=0, help="first eval layout seed is 100000 + SEED (default: 0)")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default=layout, help=f"evaluation layout ranges (default: {layout})"
    )
    parser.add_argument(
        "--max-episode-s",
        type=float,
        default=DEFAULT_MAX_EPISODE_S,
        help=f"sim seconds before an episode counts as failed (default: {DEFAULT_MAX_EPISODE_S:g})",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    from psi0_ros.sim.tasks import DEFAULT_TASK

    parser.add_argument("--task", default=DEFAULT_TASK, help=f"task of psi0_ros.sim.tasks (default: {DEFAULT_TASK})")
    _closed_loop(parser, 10, "closed-loop episodes per cell", "full")
    parser.add_argument("--json", type=Path, required=True, help="write the results here (and .md / .png beside it)")
    parser.add_argument("--work-dir", type=Path, help="per-episode results (default: beside the JSON)")


def configure(parser: argparse.ArgumentParser) -> None:
    from psi0_ros.jobs.ablation import DEFAULT_LATENCIES_MS, DEFAULT_MODES

    sub = parser.add_subparsers(dest="ablation", metavar="ABLATION", required=True)
    rtc = sub.add_parser("rtc", help="scheduler modes x injected inference latency, closed loop on the sim")
    rtc.add_argument("--checkpoint", required=True, type=Path, help="policy checkpoint directory (DESIGN §6)")
    rtc.add_argument(
        "--modes",
        type=_names,
        default=list(DEFAULT_MODES),
        help=f"comma-separated scheduler modes (default: {','.join(DEFAULT_MODES)})",
    )
    rtc.add_argument(
        "--latency-ms",
        type=_floats,
        default=list(DEFAULT_LATENCIES_MS),
        help="comma-separated injected inference latencies [ms] (default: 0,100,200,300)",
    )
    rtc.add_argument(
        "--chunk-param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a chunk_node parameter for every cell (repeatable), e.g. min_execution_horizon=8",
    )
    _common(rtc)
    rtc.set_defaults(_ablate=run_rtc)

    head = sub.add_parser("head", help="MM-DiT vs naive DiT action head: parameters, open loop, timing, success")
    source = head.add_mutually_exclusive_group(required=True)
    source.add_argument("--demos", type=Path, help="episode directory both heads train on (psi0 train stage3)")
    source.add_argument(
        "--checkpoints", nargs=2, type=Path, metavar=("MMDIT", "DIT"), help="two trained checkpoints instead"
    )
    head.add_argument("--held-out", type=Path, help="episodes for the open-loop error (default: the demos)")
    head.add_argument(
        "--preset", default="tiny", help="training preset of `psi0 train stage3` for both heads (default: tiny)"
    )
    head.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        action="extend",  # --set A --set B keeps both
        default=[],
        metavar="KEY=VALUE",
        help="training overrides for both heads (e.g. run.steps=2000 model.expert_preset=small)",
    )
    head.add_argument("--timing-repeats", type=int, default=20, help="timed chunks per head (default: 20)")
    _common(head)
    head.set_defaults(_ablate=run_head)

    tasks = sub.add_parser(
        "tasks", help="full fine-tune per task vs one multi-task model vs base + LoRA adapter per task"
    )
    tasks.add_argument(
        "--demos",
        nargs="+",
        action="extend",
        required=True,
        metavar="TASK=DIR",
        help="two or more tasks' episode directories",
    )
    tasks.add_argument(
        "--preset", default="sim", help="training preset of `psi0 train stage3` for every way (default: sim)"
    )
    tasks.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="training overrides for every training (repeatable), e.g. run.steps=2000",
    )
    tasks.add_argument(
        "--adapter-set",
        dest="adapter_overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="further overrides for the adapter trainings only, e.g. adapter.rank=8 optim.lr=1e-2",
    )
    tasks.add_argument("--val-episodes", type=int, default=2, help="held-out episodes per task, every way (default: 2)")
    _closed_loop(tasks, 0, "closed-loop episodes per task and way, the task names being sim tasks (0: none)", "lab")
    tasks.add_argument("--json", type=Path, required=True, help="write the results here (and .md beside it)")
    tasks.add_argument(
        "--work-dir", type=Path, help="trainings and their data (default: beside the JSON; must be empty)"
    )
    tasks.set_defaults(_ablate=run_tasks)


def configure_outputs(path: Path) -> tuple[Path, Path, Path]:
    return path, path.with_suffix(".md"), path.with_suffix(".png")


def run(args: argparse.Namespace) -> int:
    return args._ablate(args)


def run_rtc(args: argparse.Namespace) -> int:
    from psi0_ros.jobs.ablation import ablate_rtc, markdown_table, plot_cells

    json_path, md_path, png_path = configure_outputs(args.json)
    work = args.work_dir or json_path.parent / f"{json_path.stem}_cells"
    if not (args.checkpoint / "config.json").is_file():
        print(f"psi0 ablate rtc: no checkpoint at {args.checkpoint} (config.json missing)", file=sys.stderr)
        return 2
    try:
        document = ablate_rtc(
            args.checkpoint,
            args.task,
            args.modes,
            args.latency_ms,
            args.episodes,
            args.seed,
            work,
            args.max_episode_s,
            args.layout,
            dict(args.chunk_param),
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"psi0 ablate rtc: {err}", file=sys.stderr)
        return 2
    heading = (
        f"{document['task']}\n\ncheckpoint `{document['checkpoint']}`, {document['episodes']} "
        f"episodes per cell on the same layouts (seeds {document['cells'][0]['layout_seeds']})"
    )
    _write("rtc", document, json_path, md_path, heading, markdown_table(document["cells"]))
    plot_cells(document["cells"], png_path, f"{document['task']}: {Path(document['checkpoint']).name}")
    print(f"psi0 ablate rtc: wrote {json_path}, {md_path.name}, {png_path.name}")
    return 1 if any(c["errors"] for c in document["cells"]) else 0


def run_head(args: argparse.Namespace) -> int:
    from psi0_ros.jobs.ablation_head import ablate_head, markdown_table

    json_path, md_path, _ = configure_outputs(args.json)
    work = args.work_dir or json_path.parent / f"{json_path.stem}_heads"
    try:
        document = ablate_head(
            work,
            args.task,
            demos=args.demos,
            checkpoints=args.checkpoints,
            held_out=args.held_out,
            preset=args.preset,
            overrides=args.overrides,
            episodes=args.episodes,
            seed=args.seed,
            max_episode_s=args.max_episode_s,
            layout=args.layout,
            timing_repeats=args.timing_repeats,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"psi0 ablate head: {err}", file=sys.stderr)
        return 2
    _write("head", document, json_path, md_path, document["task"], markdown_table(document["heads"]))
    print(f"psi0 ablate head: wrote {json_path}, {md_path.name}")
    return 1 if any(h.get("errors") for h in document["heads"]) else 0


def _write(name: str, document: dict, json_path: Path, md_path: Path, heading: str, table: str) -> None:
    """The machine into the document, then F (JSON) and F.md (heading, table); the table printed."""
    from psi0_ros.commands.bench import machine_info

    document["machine"] = machine_info()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path.write_text(f"# psi0 ablate {name}: {heading}\n\n{table}")
    print(table, end="")


def tasks_command(args: argparse.Namespace) -> str:
    """The `psi0 ablate tasks` command line that reproduces a run (defaults spelled out)."""
    import shlex

    words = ["psi0", "ablate", "tasks", "--demos", *args.demos, "--preset", args.preset]
    for option, values in (("--set", args.overrides), ("--adapter-set", args.adapter_overrides)):
        for value in values:
            words += [option, value]
    words += ["--val-episodes", str(args.val_episodes), "--episodes", str(args.episodes)]
    if args.episodes:
        words += ["--seed", str(args.seed), "--layout", args.layout, "--max-episode-s", f"{args.max_episode_s:g}"]
    words += ["--json", str(args.json)]
    if args.work_dir is not None:
        words += ["--work-dir", str(args.work_dir)]
    return " ".join(shlex.quote(w) for w in words)


def run_tasks(args: argparse.Namespace) -> int:
    from psi0_ros.jobs.ablation_tasks import ablate_tasks, markdown_tables, parse_demos

    json_path, md_path, _ = configure_outputs(args.json)
    work = args.work_dir or json_path.parent / f"{json_path.stem}_runs"
    try:
        document = ablate_tasks(
            parse_demos(args.demos),
            work,
            preset=args.preset,
            overrides=args.overrides,
            adapter_overrides=args.adapter_overrides,
            val_episodes=args.val_episodes,
            episodes=args.episodes,
            seed=args.seed,
            max_episode_s=args.max_episode_s,
            layout=args.layout,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"psi0 ablate tasks: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a training failed: its own output says why
        print(f"psi0 ablate tasks: {err}", file=sys.stderr)
        return 1
    document["command"] = tasks_command(args)
    heading = f"{', '.join(document['tasks'])}\n\n`{document['command']}`"
    _write("tasks", document, json_path, md_path, heading, markdown_tables(document))
    print(f"psi0 ablate tasks: wrote {json_path}, {md_path.name}")
    return 1 if any(r.get("errors") for r in document["rows"]) else 0
