"""Teleop recording: teleop_recorder_node plus `ros2 bag record` (mcap) over config/record.yaml.

    ros2 launch psi0_ros record.launch.py [bag:=DIR] [task:="pick up the cup"] [storage:=mcap]
        [namespace:=robot1] [params_file:=my_teleop_recorder.yaml]

The topic list and storage come from config/record.yaml (the same file `psi0 record` reads), the
recorder node's parameters from config/teleop_recorder.yaml (or params_file). Stop with Ctrl-C:
ros2 bag closes the bag. If `ros2 bag` is missing or exits by itself, the whole launch ends and
says why. ros2 bag runs with psi0_ros's DDS transport settings (docs/transport.md), so it hears
the large image messages the way the nodes send them. Without ROS 2's rosbag2 (or launch),
`psi0 record` does the same in one process. The helpers above generate_launch_description()
need no ROS and are tested on their own.
"""

from __future__ import annotations

import os
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


def bag_record_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The DDS transport variables `ros2 bag record` gets: psi0_ros's defaults
    (psi0_ros.transport.TRANSPORT_DEFAULTS) where the caller's environment does not set them."""
    from psi0_ros.transport import apply_transport_defaults

    return apply_transport_defaults(dict(os.environ if environ is None else environ))


def bag_exit_reason(returncode: int | None) -> str:
    """Why the launch ends when ros2 bag exits by itself."""
    if returncode == 127:
        return (
            "`ros2 bag` is not installed (install ros-<distro>-ros2bag and rosbag2-storage-mcap, or use `psi0 record`)"
        )
    return f"`ros2 bag record` exited with code {returncode}; nothing more is being recorded"


def recorder_parameters(parameters_file: Path, task: str) -> list:
    """teleop_recorder_node parameters: its YAML, and the task when one is given on the command line."""
    parameters: list = [str(parameters_file)]
    if task:
        parameters.append({"task": task})
    return parameters


def _launch_setup(context, *args, **kwargs) -> list:
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import EmitEvent, ExecuteProcess, LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch_ros.actions import Node

    share = Path(get_package_share_directory(PACKAGE))
    record = read_record_config(share / "config" / "record.yaml")
    values = context.launch_configurations
    params_file = values.get("params_file") or str(share / "config" / "teleop_recorder.yaml")
    # ros2 bag through `sh -c 'exec "$0" "$@"'`: when `ros2` is not on PATH the shell exits 127 (launch
    # itself would only log the failed start and keep running), and OnProcessExit ends the launch.
    bag_command = [
        "sh",
        "-c",
        'exec "$0" "$@"',
        *bag_record_command(record, values.get("bag", ""), values.get("storage", "")),
    ]
    bag = ExecuteProcess(
        cmd=bag_command,
        output="screen",
        additional_env=bag_record_environment(),
        sigterm_timeout="10",  # give rosbag2 time to write metadata.yaml after SIGINT
    )

    def on_bag_exit(event, context) -> list:
        if context.is_shutdown:
            return []  # Ctrl-C: ros2 bag closed the bag as asked
        reason = bag_exit_reason(event.returncode)
        return [LogInfo(msg=f"record.launch.py: {reason}"), EmitEvent(event=Shutdown(reason=reason))]

    return [
        Node(
            package=PACKAGE,
            executable="teleop_recorder_node",
            name=RECORDER_NODE,
            namespace=values.get("namespace", ""),
            output="screen",
            parameters=recorder_parameters(Path(params_file), values.get("task", "")),
        ),
        bag,
        RegisterEventHandler(OnProcessExit(target_action=bag, on_exit=on_bag_exit)),
    ]


def generate_launch_description():
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", default_value="", description="bag directory (default: rosbag2_<date-time>)"),
            DeclareLaunchArgument("task", default_value="", description="task instruction of the first episode"),
            DeclareLaunchArgument("storage", default_value="", description="mcap or sqlite3 (default: record.yaml)"),
            DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of the recorder node"),
            DeclareLaunchArgument(
                "params_file", default_value="", description="teleop_recorder parameters (default: the package's)"
            ),
            OpaqueFunction(function=_launch_setup),
        ]
    )
