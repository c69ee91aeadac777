"""The simulated G1 behind robot_bridge_node, with the optional scripted demo.

    ros2 launch psi0_ros sim.launch.py
    ros2 launch psi0_ros sim.launch.py demo:=true scene:=tabletop seed:=3
    ros2 launch psi0_ros sim.launch.py base_mode:=physics     # legs from lower_body_node (AMO)
    ros2 launch psi0_ros sim.launch.py namespace:=robot1      # /robot1/joint_states, ...
    ros2 launch psi0_ros sim.launch.py params_file:=my_sim.yaml   # like `psi0 sim --config`

Parameters come from config/sim.yaml (the same file `psi0 sim` reads; its `/**` key applies in
any namespace) or params_file; the arguments below override a few. String
arguments reach the node as strings (camera_mode:=off is the string 'off', not YAML false). In
kinematic mode the bridge follows psi0/lower_body_command itself; in physics mode it takes
psi0/lower_body_targets, so run lower_body_node alongside.
"""

from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    default_config = PathJoinSubstitution([FindPackageShare("psi0_ros"), "config", "sim.yaml"])
    base_mode = LaunchConfiguration("base_mode")
    kinematic = PythonExpression(["'", base_mode, "' == 'kinematic'"])
    lower_body_input = PythonExpression(["'command' if '", base_mode, "' == 'kinematic' else 'targets'"])
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of every node and topic"),
        DeclareLaunchArgument("params_file", default_value=default_config, description="robot_bridge_node parameters"),
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
            LaunchConfiguration("params_file"),
            {
                "backend": "sim",
                "sim.scene": ParameterValue(LaunchConfiguration("scene"), value_type=str),
                "sim.seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
                "sim.base_mode": ParameterValue(base_mode, value_type=str),
                "sim.camera_mode": ParameterValue(LaunchConfiguration("camera_mode"), value_type=str),
                "lower_body_input": ParameterValue(lower_body_input, value_type=str),
            },
        ],
    )
    demo = Node(
        package="psi0_ros",
        executable="sim_demo_node",
        name="sim_demo_node",
        output="screen",
        parameters=[{"lower_body": ParameterValue(kinematic, value_type=bool)}],
        condition=IfCondition(LaunchConfiguration("demo")),
    )
    nodes = GroupAction([PushRosNamespace(LaunchConfiguration("namespace")), bridge, demo])
    return LaunchDescription([*arguments, nodes])
