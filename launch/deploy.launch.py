"""The deploy graph on a G1 or the sim: camera, VLM, chunk (RTC), AMO, bridge (DESIGN §2).

    ros2 launch psi0_ros deploy.launch.py checkpoint:=/path/to/ckpt instruction:="pick up the can"
    ros2 launch psi0_ros deploy.launch.py backend:=unitree checkpoint:=... camera_source:=/dev/video0
    ros2 launch psi0_ros deploy.launch.py checkpoint:=... rviz:=true namespace:=g1
    ros2 launch psi0_ros deploy.launch.py role:=robot backend:=unitree      # on the G1 (docs/deploy.md)
    ros2 launch psi0_ros deploy.launch.py role:=policy checkpoint:=...      # on the GPU machine
    ros2 launch psi0_ros deploy.launch.py checkpoint:=/path/to/export policy_backend:=onnxruntime
    ros2 launch psi0_ros deploy.launch.py checkpoint:=BASE adapters:=/adapters/can,/adapters/cube

Nodes and parameters come from psi0_ros.deploy_graph and config/deploy.yaml, exactly what
`psi0 deploy` (no launch_ros needed) runs; a graph node that is not installed is an error naming it.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

ARGUMENTS = (
    ("backend", "sim", "sim | unitree"),
    ("checkpoint", "", "policy checkpoint directory (DESIGN §6)"),
    ("instruction", "", "language instruction (or publish /psi0/instruction)"),
    ("rviz", "false", "also start rviz2 with config/psi0.rviz"),
    ("camera_source", "", "camera_node source: device index/path, video file, topic:NAME ('' = backend's)"),
    ("namespace", "", "ROS namespace of every node"),
    ("role", "all", "all (one machine) | robot (bridge, camera: JPEG out, AMO, executor) | policy (VLM, chunk_node)"),
    (
        "policy_backend",
        "torch",
        "chunk_node backend: torch | onnxruntime | exported_program (checkpoint:= a psi0 export dir; docs/export.md)",
    ),
    ("torch_compile", "false", "policy_backend torch: torch.compile the action expert"),
    ("adapters", "", "comma-separated per-task LoRA adapter directories on checkpoint:= (docs/adapters.md)"),
)


def graph_actions(context, *args, **kwargs):
    from psi0_ros.deploy_graph import deploy_nodes
    from psi0_ros.paths import share_dir

    value = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    chunk = {
        "backend": value["policy_backend"],
        "torch_compile": value["torch_compile"].lower() in ("true", "1", "yes"),
    }
    adapters = [d.strip() for d in value["adapters"].split(",") if d.strip()]
    if adapters:
        chunk["adapters"] = adapters
    specs = deploy_nodes(
        value["backend"],
        value["checkpoint"],
        value["instruction"],
        value["camera_source"],
        overrides={"chunk_node": chunk},
        role=value["role"],
    )
    namespace = value["namespace"]
    actions = [
        Node(
            package="psi0_ros",
            executable=spec.name,
            name=spec.name,
            namespace=namespace,
            output="screen",
            parameters=[spec.params],
        )
        for spec in specs
    ]
    if value["rviz"].lower() in ("true", "1", "yes"):
        rviz_config = share_dir() / "config" / "psi0.rviz"
        arguments = ["-d", str(rviz_config)] if rviz_config.is_file() else []
        actions.append(
            Node(package="rviz2", executable="rviz2", name="rviz2", arguments=arguments, namespace=namespace)
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=graph_actions)])
