"""`psi0 convert BAG... -o DIR`: teleop bags -> one HDF5 file per episode (or a LeRobot v2.1 dataset)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAME = "convert"
HELP = "convert rosbag2 teleop bags (mcap/sqlite3) into aligned HDF5 episodes or a LeRobot v2.1 dataset"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="+", type=Path, help="bag directories, .mcap/.db3 files or directories of bags")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    parser.add_argument("--format", choices=("hdf5", "lerobot"), default="hdf5", help="output format (default hdf5)")
    parser.add_argument("--config", type=Path, help="data config YAML (default: config/record.yaml)")
    parser.add_argument("--fps", type=float, help="control grid rate [Hz] (default from the config: 30)")
    parser.add_argument("--state-rule", choices=("interpolate", "hold"), help="joint_states -> grid rule")
    parser.add_argument("--image-tolerance", type=float, help="nearest frame further than this [s] flags an episode")
    parser.add_argument("--image-format", choices=("jpeg", "raw"), help="HDF5 image storage (default jpeg)")
    parser.add_argument("--jpeg-quality", type=int, help="JPEG quality 1-100 (default 90; 95 for --format lerobot)")
    parser.add_argument("--time-source", choices=("header", "receive"), help="stamps to align on (default header)")
    parser.add_argument("--task", default="", help="instruction for episodes whose bag names none")
    parser.add_argument("-j", "--jobs", type=int, help="parallel worker processes (default: CPU count)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing episode files")
    parser.add_argument("--video-codec", choices=("h264", "av1"), default="h264", help="LeRobot video codec")
    parser.add_argument("--json", type=Path, help="write the summary (one entry per episode) to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from psi0_ros.data.config import load_config
    from psi0_ros.data.convert import convert_bags, export_lerobot

    try:
        config = load_config(args.config).convert
        quality = args.jpeg_quality or (95 if args.format == "lerobot" else None)
        config = config.replace(
            fps=args.fps,
            state_rule=args.state_rule,
            image_tolerance_s=args.image_tolerance,
            image_format=args.image_format,
            jpeg_quality=quality,
            time_source=args.time_source,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"psi0 convert: {err}", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print(f"psi0 convert: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    # Ctrl-C stops the conversion (run_jobs returns what finished); a second one is not needed.
    try:
        if args.format == "lerobot":
            summary = export_lerobot(
                args.bags, args.output, config, args.jobs, args.task, progress, codec=args.video_codec
            )
        else:
            summary = convert_bags(args.bags, args.output, config, args.jobs, args.overwrite, args.task, progress)
    except (FileExistsError, OSError) as err:
        print(f"psi0 convert: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before any episode started (finding and planning the bags)
        print("psi0 convert: interrupted before any episode was converted", file=sys.stderr)
        return 130
    for result in summary.episodes:
        index = "-" if result.episode_index is None else result.episode_index
        line = f"{result.status:<9} {Path(result.bag).name} episode {index}"
        if result.status == "ok":
            line += f": {result.frames} frames -> {result.output}"
            if result.flags:
                line += f" (flags: {'; '.join(result.flags)})"
        elif result.error:
            line += f": {result.error.splitlines()[0]}"
        print(line)
    for name in summary.interrupted:
        print(f"{'stopped':<9} {name}: not converted (interrupted)")
    counts = summary.counts
    print(
        f"{counts['ok']} converted, {counts['error']} failed, {counts['discarded']} discarded, "
        f"{counts['skipped']} skipped; {summary.frames} frames in {summary.seconds:.1f} s"
        + (f"; interrupted: {len(summary.interrupted)} not converted" if summary.interrupted else "")
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    status = 130 if summary.interrupted else 0 if summary.ok else 1  # 130: the shell's code for Ctrl-C
    _exit_past_unclosed_files(status)
    return status


def _exit_past_unclosed_files(status: int) -> None:
    """End the process now when a failed write (disk full, file-size limit) left HDF5 holding a
    file it cannot close: HDF5's own shutdown would retry the write and crash (SIGSEGV)."""
    import os

    from psi0_ros.data.hdf5 import unclosed_files

    if unclosed_files():
        from psi0_ros.data.bag_compression import release_decompressed

        release_decompressed()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
