"""`psi0 eval --checkpoint DIR --task NAME --episodes M --json FILE`: closed-loop success on the sim.

`psi0 eval --open-loop EPISODE_FILE_OR_DIR... --checkpoint DIR --json FILE [--samples K] [--stride N]
[--train-episodes DIR [--train-split]]`: the policy's chunks against recorded episodes
(psi0_ros.open_loop; no ROS, no simulator)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "eval"
HELP = (
    "closed-loop evaluation of a checkpoint through the deploy graph on the simulated G1, "
    "or open-loop against recorded episodes (--open-loop)"
)


def configure(parser: argparse.ArgumentParser) -> None:
    from psi0_ros.jobs.evaluation import DEFAULT_MAX_EPISODE_S
    from psi0_ros.sim.scene import LAYOUTS
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
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="full",
        help="ranges the evaluation layouts are drawn from (as `psi0 sim demos --layout`; default full)",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime", "exported_program"),
        default="torch",
        help="chunk_node's backend (not torch: --checkpoint is a `psi0 export` directory; docs/export.md)",
    )
    parser.add_argument(
        "--composed",
        action="store_true",
        help="run the policy's nodes in the bridge's process (as `psi0 deploy --composed`); by default they run "
        "in a process of their own, as the deploy graph runs them",
    )
    parser.add_argument(
        "--sim-speed",
        type=float,
        default=1.0,
        help="pace the sim's clock at this multiple of real time (default 1); below 1 a diagnostic: every chunk "
        "gets more sim time, as on a faster machine (docs/main_job.md)",
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--work-dir", type=Path, help="per-episode results and traces (default: beside the JSON)")
    parser.add_argument(
        "--trace-episodes",
        type=int,
        default=1,
        help="record world snapshots (trace_<i>.npz: robot, base and objects at ~4 Hz) of the first N episodes "
        "(default: 1, the one a rollout GIF is drawn from)",
    )
    open_loop = parser.add_argument_group("open loop (psi0_ros.open_loop; --task and the closed-loop options unused)")
    open_loop.add_argument(
        "--open-loop",
        nargs="+",
        type=Path,
        metavar="EPISODE_FILE_OR_DIR",
        help="score the policy's chunks against these recorded episodes (HDF5 files or directories of them)",
    )
    open_loop.add_argument("--samples", type=int, default=4, help="chunks drawn per frame (default: 4)")
    open_loop.add_argument("--stride", type=int, default=10, help="score every N-th frame (default: 10)")
    open_loop.add_argument(
        "--train-episodes",
        nargs="+",
        type=Path,
        metavar="EPISODE_FILE_OR_DIR",
        help="training episodes (files or directories) for the nearest-training-frame baseline",
    )
    open_loop.add_argument(
        "--train-split", action="store_true", help="also score the --train-episodes themselves (JSON key 'train')"
    )
    open_loop.add_argument(
        "--split", default="held_out", help="JSON key of the --open-loop episodes' metrics (default: held_out)"
    )
    open_loop.add_argument("--camera", default="", help="camera of the episodes (default: the first)")
    open_loop.add_argument("--device", default="auto", help="torch device (default: cuda when available, else cpu)")


def run(args: argparse.Namespace) -> int:
    if args.open_loop:
        return run_open_loop(args)
    import math

    from psi0_ros.jobs.evaluation import evaluate

    if not (math.isfinite(args.sim_speed) and args.sim_speed > 0):
        print(f"psi0 eval: --sim-speed must be a finite number > 0, got {args.sim_speed}", file=sys.stderr)
        return 2
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
            layout=args.layout,
            trace_episodes=args.trace_episodes,
            node_params={"chunk_node": {"backend": args.backend}, "robot_bridge_node": {"sim.speed": args.sim_speed}},
            policy_process=not args.composed,
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


def run_open_loop(args: argparse.Namespace) -> int:
    import torch

    from psi0_ros.open_loop import open_loop_metrics, read_episodes
    from psi0_ros.policy.interface import Policy

    if args.train_split and args.train_episodes is None:
        print("psi0 eval: --train-split needs --train-episodes", file=sys.stderr)
        return 2
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        episodes = read_episodes(args.open_loop, args.camera)
        train = read_episodes(args.train_episodes, args.camera) if args.train_episodes else None
        policy = Policy.from_checkpoint(args.checkpoint, device=device, load_vlm=True)
        splits = {args.split: open_loop_metrics(policy, episodes, args.samples, args.stride, train)}
        if args.train_split:
            splits["train"] = open_loop_metrics(policy, train, args.samples, args.stride, train)
    except (FileNotFoundError, ValueError) as err:
        print(f"psi0 eval: {err}", file=sys.stderr)
        return 2
    summary = {"checkpoint": str(args.checkpoint), **splits}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    for name, metrics in splits.items():
        print(
            f"psi0 eval --open-loop {name}: {metrics['frames']} frames, arms first/chunk "
            f"{metrics['arms_first_rad']:.3f}/{metrics['arms_chunk_rad']:.3f} rad "
            f"(hold state {metrics['hold_state_arms_first_rad']:.3f}/{metrics['hold_state_arms_chunk_rad']:.3f}), "
            f"hands first {metrics['hands_first_rad']:.3f} rad, lower velocity first "
            f"{metrics['lower_velocity_first']:.3f} m/s"
            + (
                f", first walk ends {metrics['walk_drift_m']:.3f} m (median) from the recording's stop"
                if "walk_drift_m" in metrics
                else ""
            )
        )
    return 0
