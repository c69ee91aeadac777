"""`psi0 record`: record a teleop session into a rosbag2 bag without `ros2 bag` installed.

Writes the format `ros2 bag record` writes (mcap by default) over the topic list of
config/record.yaml, and (unless --bag-only) runs the teleop recorder node in the same process,
like launch/record.launch.py does with `ros2 bag record`. Ctrl-C (or --duration) closes the
bag cleanly; a write failure or lost messages are reported and the exit status is 1. The process
runs on psi0_ros.nodes.runtime.spin_nodes; the bag is closed and reported before teardown.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NAME = "record"
HELP = "record teleop topics into a rosbag2 bag (mcap/sqlite3) with the episode recorder node"
TELEOP_CONFIG = "teleop_recorder.yaml"


def default_bag_name() -> str:
    """rosbag2_YYYY_MM_DD-HH_MM_SS, the name `ros2 bag record` picks."""
    return time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, help="bag directory to create (default: rosbag2_<date-time>)")
    parser.add_argument("--config", type=Path, help="data config YAML (default: config/record.yaml)")
    parser.add_argument("-s", "--storage", choices=("mcap", "sqlite3"), help="storage plugin (default from config)")
    parser.add_argument("--topics", nargs="+", help="record these topics instead of the config's list")
    parser.add_argument("--bag-only", action="store_true", help="do not run the teleop recorder node here")
    parser.add_argument(
        "--recorder-config", type=Path, help=f"teleop recorder parameters (default config/{TELEOP_CONFIG})"
    )
    parser.add_argument("--task", help="task instruction for the teleop recorder node")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")


def recorder_parameters(path: Path | None, task: str | None) -> list:
    """rclpy Parameters for the teleop recorder from its YAML (ros__parameters) plus --task."""
    import yaml
    from rclpy.parameter import Parameter

    from psi0_ros.nodes.teleop_recorder_node import NODE_NAME
    from psi0_ros.robot.params import node_parameters

    if path is None:
        from psi0_ros.paths import config_path

        path = config_path(TELEOP_CONFIG)
    document = yaml.safe_load(Path(path).read_text()) or {}
    values = node_parameters(document, NODE_NAME) or {}
    if task is not None:
        values["task"] = task
    return [Parameter(name, value=value) for name, value in values.items()]


def run(args: argparse.Namespace) -> int:
    from psi0_ros.data.config import load_config
    from psi0_ros.data.recorder import BagRecorder, RecorderError

    try:
        record = load_config(args.config).record
        parameters = [] if args.bag_only else recorder_parameters(args.recorder_config, args.task)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"psi0 record: {err}", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print(f"psi0 record: --duration must be positive, got {args.duration}", file=sys.stderr)
        return 2
    topics = list(args.topics or record.topics)
    output = args.output or Path(default_bag_name())
    recorder = BagRecorder(output, args.storage or record.storage, max_queue_bytes=record.max_queue_bytes)
    try:
        recorder.open()
    except RecorderError as err:
        print(f"psi0 record: {err}", file=sys.stderr)
        return 1

    from psi0_ros.nodes.bag_recorder_node import BagRecorderNode
    from psi0_ros.nodes.runtime import spin_nodes

    bag_node: list[BagRecorderNode] = []

    def make_nodes() -> list:
        bag_node.append(BagRecorderNode(recorder, topics))
        nodes: list = list(bag_node)
        if not args.bag_only:
            from psi0_ros.nodes.teleop_recorder_node import TeleopRecorderNode

            nodes.append(TeleopRecorderNode(parameters))
        started.append(time.monotonic())  # --duration counts from here, not from rclpy's start-up
        return nodes

    started: list[float] = []

    def until() -> str | None:
        if recorder.error is not None:
            return f"write failure: {recorder.error}"
        if args.duration is not None and time.monotonic() - started[0] >= args.duration:
            return f"{args.duration:g} s recorded"
        return None

    def close_and_report(reason: str) -> int:
        """Runs once spinning stopped, before any teardown: the bag and its summary come first."""
        print(f"psi0 record: stopping: {reason}", file=sys.stderr, flush=True)
        error = None
        try:
            recorder.close()
        except RecorderError as err:
            error = str(err)
        missing = bag_node[0].missing_topics if bag_node else list(topics)
        return report(recorder, output, missing, error)

    print(f"psi0 record: recording {len(topics)} topic(s) into {output} ({recorder.storage}); Ctrl-C to stop")
    status = spin_nodes(make_nodes, until=until, after_spin=close_and_report, prog=f"psi0 {NAME}")
    # The bag is closed and its summary printed. Leave now: an executor worker or DDS participant
    # stuck in teardown would otherwise hold the interpreter's exit (seen with Fast DDS).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def report(recorder: Any, output: Path, missing_topics: Sequence[str], error: str | None) -> int:
    """Print what was written, what was lost and what never published; 1 on a failure or loss."""
    stats = recorder.stats
    if error is not None:
        print(f"psi0 record: error: {error}", file=sys.stderr)
    print(f"psi0 record: wrote {stats.total} messages ({stats.bytes_written / 1e6:.1f} MB) to {output}")
    for topic, count in sorted(stats.messages.items()):
        print(f"  {count:8d}  {topic}")
    if missing_topics:
        print(f"psi0 record: warning: no publisher seen on {', '.join(missing_topics)}", file=sys.stderr)
    dropped = {t: n for t, n in stats.dropped.items() if n}
    if dropped:
        print(f"psi0 record: error: messages lost (writer could not keep up or failed): {dropped}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return 1 if error is not None or dropped else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"psi0 {NAME}", description=HELP)
    configure(parser)
    return run(parser.parse_args(argv))


def bag_recorder_main(argv: Sequence[str] | None = None) -> int:
    """`ros2 run psi0_ros bag_recorder_node [psi0 record options]`: `psi0 record --bag-only`."""
    from rclpy.utilities import remove_ros_args

    return main(["--bag-only", *remove_ros_args(list(sys.argv[1:] if argv is None else argv))])
