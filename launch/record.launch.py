"""Teleop recording: teleop_recorder_node plus `ros2 bag record` (mcap) over config/record.yaml.

    ros2 launch psi0_ros record.launch.py [bag:=DIR] [task:="pick up the cup"] [storage:=mcap]

The topic list and storage come from config/record.yaml (the same file `psi0 record` reads), the
recorder node's parameters from config/teleop_recorder.yaml. Stop with Ctrl-C: ros2 bag closes
the bag. Without ROS 2's rosbag2 (or launch), `psi0 record` does the same in one process.
The helpers above generate_launch_description() need no ROS and are tested on their own.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PACKAGE = "psi0_ros"
RECORDER_NODE = "teleop_recorder"


def read_record_config(path: Path) -> dict:
    """The `record:` section of config/record.yaml: topics and storage."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    record = document.get("record") or {}
    if not record.get("topics"):
        raise ValueError(f"{path}: record.topics is empty")
    return record


def bag_record_command(record: dict, output: str = "", storage: str = "") -> list[str]:
    """`ros2 bag record` over the configured topics (an existing output directory is refused by ros2 bag)."""
    command = ["ros2", "bag", "record", "--storage", storage or record.get("storage", "mcap")]
    if output:
        command += ["--output", output]
    return command + list(record["topics"])


def recorder_parameters(parameters_file: Path, task: str) -> list:
    """teleop_recorder_node parameters: its YAML, and the task when one is given on the command line."""
    parameters: list = [str(parameters_file)]
    if task:
        parameters.append({"task": task})
    return parameters


def _launch_setup(context, *args, **kwargs) -> list:
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import ExecuteProcess
    from launch_ros.actions import Node

    share = Path(get_package_share_directory(PACKAGE))
    record = read_record_config(share / "config" / "record.yaml")
    values = context.launch_configurations
    return [
        Node(
            package=PACKAGE,
            executable="teleop_recorder_node",
            name=RECORDER_NODE,
            output="screen",
            parameters=recorder_parameters(share / "config" / "teleop_recorder.yaml", values.get("task", "")),
        ),
        ExecuteProcess(
            cmd=bag_record_command(record, values.get("bag", ""), values.get("storage", "")),
            output="screen",
            sigterm_timeout="10",  # give rosbag2 time to write metadata.yaml after SIGINT
        ),
    ]


def generate_launch_description():
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", default_value="", description="bag directory (default: rosbag2_<date-time>)"),
            DeclareLaunchArgument("task", default_value="", description="task instruction of the first episode"),
            DeclareLaunchArgument("storage", default_value="", description="mcap or sqlite3 (default: record.yaml)"),
            OpaqueFunction(function=_launch_setup),
        ]
    )
