"""`psi0 demo`: the main job (`make run`): demos -> convert -> stage-3 training -> eval -> report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "demo"
HELP = "the main job: expert demos, convert, train a small Psi0, closed-loop eval on the sim, report"


def configure(parser: argparse.ArgumentParser) -> None:
    from psi0_ros.jobs.main_job import MainJobConfig
    from psi0_ros.sim.scene import LAYOUTS

    d = MainJobConfig()
    parser.add_argument("--out", type=Path, default=d.out, help=f"output directory (default: {d.out})")
    parser.add_argument("--task", default=d.task, help=f"sim task (default: {d.task})")
    parser.add_argument("--demos", type=int, default=d.demos, help=f"expert demonstrations (default: {d.demos})")
    parser.add_argument("--demo-seed", type=int, default=d.demo_seed, help="first demo layout seed")
    parser.add_argument("--train-steps", type=int, default=d.train_steps, help=f"default: {d.train_steps}")
    parser.add_argument("--train-batch", type=int, default=d.train_batch, help=f"default: {d.train_batch}")
    parser.add_argument("--eval-episodes", type=int, default=d.eval_episodes, help=f"default: {d.eval_episodes}")
    parser.add_argument("--eval-seed", type=int, default=d.eval_seed, help="eval layout seeds: 100000 + SEED + i")
    parser.add_argument("--max-episode-s", type=float, default=d.max_episode_s, help="sim s per eval episode")
    parser.add_argument("--plot-frames", type=int, default=d.plot_frames, help="predicted chunks in the plot")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default=d.layout, help=f"object layout ranges (default: {d.layout})"
    )
    parser.add_argument(
        "--val-demos", type=int, default=d.val_demos, help=f"demos held out of training (default: {d.val_demos})"
    )
    parser.add_argument(
        "--seen-episodes",
        type=int,
        default=d.seen_episodes,
        help=f"also evaluate on this many training demos' own layouts (default: {d.seen_episodes}; 0: skip)",
    )
    parser.add_argument("--train-preset", default=d.train_preset, help=f"stage-3 preset (default: {d.train_preset})")


def run(args: argparse.Namespace) -> int:
    import psi0_ros
    from psi0_ros.jobs.main_job import MainJobConfig, run_main_job

    config = MainJobConfig(
        out=args.out,
        task=args.task,
        demos=args.demos,
        demo_seed=args.demo_seed,
        train_steps=args.train_steps,
        train_batch=args.train_batch,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        max_episode_s=args.max_episode_s,
        plot_frames=args.plot_frames,
        layout=args.layout,
        val_demos=args.val_demos,
        seen_episodes=args.seen_episodes,
        train_preset=args.train_preset,
    )
    try:
        result = run_main_job(config, Path(psi0_ros.__file__).resolve().parents[1])
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        print(f"psi0 demo: {err}", file=sys.stderr)
        return 1
    cached = [k for k, v in result["cached"].items() if v] or ["none"]
    seen = result.get("seen")
    seen_text = "" if not seen else f", {result['seen_success_rate']:.2f} over {len(seen['episodes'])} demo layouts"
    print(
        f"psi0 demo: success rate {result['success_rate']:.2f} over {len(result['episodes'])} new layouts{seen_text}, "
        f"real-time factor {result['realtime_factor']:.2f}, {result['wall_s']:.0f} s in all (cached: "
        f"{', '.join(cached)}); report: {args.out / 'report.md'}, {args.out / 'eval.json'}"
    )
    return 0
