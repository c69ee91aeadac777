"""`psi0 eval --checkpoint DIR --task NAME --episodes M --json FILE`: closed-loop success on the sim."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "eval"
HELP = "closed-loop evaluation of a checkpoint through the deploy graph on the simulated G1"


def configure(parser: argparse.ArgumentParser) -> None:
    from psi0_ros.evaluation import DEFAULT_MAX_EPISODE_S
    from psi0_ros.sim.tasks import DEFAULT_TASK

    parser.add_argument("--checkpoint", required=True, type=Path, help="policy checkpoint directory (DESIGN §6)")
    parser.add_argument("--task", default=DEFAULT_TASK, help=f"task of psi0_ros.sim.tasks (default: {DEFAULT_TASK})")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="first eval layout seed is 100000 + SEED (default: 0)")
    parser.add_argument(
        "--max-episode-s",
        type=float,
        default=DEFAULT_MAX_EPISODE_S,
        help=f"sim seconds before an episode counts as failed (default: {DEFAULT_MAX_EPISODE_S:g})",
    )
    parser.add_argument(
        "--layout-seeds",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        help="comma-separated layout seeds to evaluate instead (e.g. 0,1,2: the layouts of `psi0 sim demos "
        "--seed 0`, to separate execution from generalisation); --episodes is then ignored",
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--work-dir", type=Path, help="per-episode results and traces (default: beside the JSON)")


def run(args: argparse.Namespace) -> int:
    from psi0_ros.evaluation import evaluate

    work = args.work_dir or (args.json.parent / f"{args.json.stem}_episodes" if args.json else None)
    try:
        summary = evaluate(
            args.checkpoint,
            args.task,
            args.episodes,
            args.seed,
            work,
            args.max_episode_s,
            layout_seeds=args.layout_seeds,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"psi0 eval: {err}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"psi0 eval: {args.task} success rate {summary['success_rate']:.2f} over {len(summary['episodes'])} episodes, "
        f"mean {summary['mean_episode_s']:.1f} s simulated, real-time factor {summary['realtime_factor']:.2f}, "
        f"{summary['errors']} errors"
    )
    return 1 if summary["errors"] else 0
