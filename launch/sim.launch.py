"""The simulated G1 behind robot_bridge_node, with the optional scripted demo.

    ros2 launch psi0_ros sim.launch.py
    ros2 launch psi0_ros sim.launch.py demo:=true scene:=tabletop seed:=3
    ros2 launch psi0_ros sim.launch.py base_mode:=physics     # legs from lower_body_node (AMO)

Parameters come from config/sim.yaml (the same file `psi0 sim` reads); the arguments below
override a few. In kinematic mode the bridge follows /psi0/lower_body_command itself; in physics
mode it takes /psi0/lower_body_targets, so run lower_body_node alongside.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("psi0_ros"), "config", "sim.yaml"])
    base_mode = LaunchConfiguration("base_mode")
    kinematic = PythonExpression(["'", base_mode, "' == 'kinematic'"])
    lower_body_input = PythonExpression(["'command' if '", base_mode, "' == 'kinematic' else 'targets'"])
    arguments = [
        DeclareLaunchArgument("demo", default_value="false", description="also run sim_demo_node"),
        DeclareLaunchArgument("scene", default_value="tabletop", description="tabletop | empty"),
        DeclareLaunchArgument("seed", default_value="0", description="object layout seed"),
        DeclareLaunchArgument("base_mode", default_value="kinematic", description="kinematic | physics"),
        DeclareLaunchArgument("camera_mode", default_value="thread", description="thread | sync | off"),
    ]
    bridge = Node(
        package="psi0_ros",
        executable="robot_bridge_node",
        name="robot_bridge_node",
        output="screen",
        parameters=[
            config,
            {
                "backend": "sim",
                "sim.scene": LaunchConfiguration("scene"),
                "sim.seed": LaunchConfiguration("seed"),
                "sim.base_mode": base_mode,
                "sim.camera_mode": LaunchConfiguration("camera_mode"),
                "lower_body_input": lower_body_input,
            },
        ],
    )
    demo = Node(
        package="psi0_ros",
        executable="sim_demo_node",
        name="sim_demo_node",
        output="screen",
        parameters=[{"lower_body": kinematic}],
        condition=IfCondition(LaunchConfiguration("demo")),
    )
    return LaunchDescription([*arguments, bridge, demo])
