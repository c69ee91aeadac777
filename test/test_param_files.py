"""The shipped node parameter files (config/*.yaml with ros__parameters for one node) load both ways
ROS 2 loads parameter files, for the node in any namespace:

- `ros2 param load --use-wildcard NODE FILE` into a running node: ros2param runs rclpy's
  AsyncParameterClient.load_parameter_file, whose loader (rclpy.parameter.parameter_dict_from_yaml_file)
  matches a section by the node's exact name or `/**`, never by a pattern like `/**/robot_bridge_node`
  (what the files used to say: "Param file does not contain any valid parameters");
- `--params-file FILE` at start-up, where rcl matches the section against the node's full name.

Real rclpy and rcl throughout: the loader itself, nodes of the files' names in a namespace, and real
robot_bridge_node / teleop_recorder processes that the files are loaded into as ros2param does.
"""

from __future__ import annotations

import signal

import pytest
import yaml
from helpers.tiers import require

rclpy = require("rclpy")
require("mujoco")
require("psi0_ros.msg", "the generated messages (make setup)")

from helpers.ros_nodes import ROOT, NodeProcess, ProbeNode  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.parameter import Parameter, parameter_dict_from_yaml_file  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from psi0_ros.robot.params import flatten  # noqa: E402

TIMEOUT = 90.0  # s, for any one condition on a loaded 2-core machine
# Every shipped file that holds one node's parameters, and that node's name.
NODE_FILES = {
    "sim.yaml": "robot_bridge_node",
    "robot_bridge.yaml": "robot_bridge_node",
    "lower_body.yaml": "lower_body_node",
    "teleop_recorder.yaml": "teleop_recorder",
}


def _file_values(name: str) -> dict:
    """The file's parameters, flattened as ROS names them (safety.max_step)."""
    document = yaml.safe_load((ROOT / "config" / name).read_text())
    sections = [v["ros__parameters"] for v in document.values() if isinstance(v, dict) and "ros__parameters" in v]
    assert len(sections) == 1, f"{name}: expected one ros__parameters section, got {len(sections)}"
    return flatten(sections[0])


def test_every_shipped_yaml_with_node_parameters_is_checked_here():
    holding = {p.name for p in (ROOT / "config").glob("*.yaml") if "ros__parameters" in p.read_text()}
    # deploy.yaml is the deploy graph's file (a section per node, read by psi0_ros.deploy_graph,
    # which hands every node a file of its own), not a file a node is started with
    assert holding - {"deploy.yaml"} == set(NODE_FILES)


@pytest.mark.parametrize("name", sorted(NODE_FILES))
@pytest.mark.parametrize("namespace", ["", "/robot1", "/fleet/g1"])
def test_ros2_param_loads_the_file_for_the_node_in_any_namespace(name, namespace):
    node = f"{namespace}/{NODE_FILES[name]}"
    loaded = parameter_dict_from_yaml_file(str(ROOT / "config" / name), use_wildcard=True, target_nodes=[node])
    values = {key: Parameter.from_parameter_msg(msg).value for key, msg in loaded.items()}
    assert values == _file_values(name)


@pytest.mark.parametrize("name", sorted(NODE_FILES))
def test_params_file_applies_to_the_node_in_a_namespace(name):
    """rcl's own parser and matching, for a node of the file's name pushed into a namespace."""
    context = rclpy.Context()
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(ROOT / "config" / name)])
    try:
        node = rclpy.create_node(
            NODE_FILES[name], namespace="/robot1", context=context, automatically_declare_parameters_from_overrides=True
        )
        try:
            expected = _file_values(name)
            got = {key: node.get_parameter(key).value for key in expected if node.has_parameter(key)}
            assert got == expected
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


class Probe(ProbeNode):
    timeout = TIMEOUT

    def __init__(self) -> None:
        super().__init__("param_files_probe")
        self.start()

    def load(self, node: str, name: str) -> list:
        """What `ros2 param load --use-wildcard node config/<name>` does; the per-parameter results."""
        client = AsyncParameterClient(self.node, node)
        assert client.wait_for_services(timeout_sec=TIMEOUT), f"{node}'s parameter services"
        future = client.load_parameter_file(str(ROOT / "config" / name), use_wildcard=True)
        self.wait(future.done, f"{node} to set the parameters of {name}")
        return list(future.result().results)

    def parameters(self, node: str, names: list[str]) -> dict:
        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        assert client.wait_for_service(timeout_sec=TIMEOUT), node
        future = client.call_async(GetParameters.Request(names=names))
        self.wait(future.done, f"{node}'s parameters")
        return {n: _value(v) for n, v in zip(names, future.result().values, strict=True)}


def _value(value) -> object:
    return {1: value.bool_value, 2: value.integer_value, 3: value.double_value, 4: value.string_value}.get(value.type)


@pytest.fixture
def probe():
    p = Probe()
    yield p
    p.close()


def test_ros2_param_load_into_running_nodes_in_a_namespace(probe):
    bridge = NodeProcess(
        "psi0_ros.nodes.robot_bridge_node",
        "-r",
        "__ns:=/pf_ns",
        "--params-file",
        str(ROOT / "config" / "sim.yaml"),
        "-p",
        "sim.camera_mode:='off'",
        "-p",
        "sim.scene:=empty",
    )
    recorder = NodeProcess("psi0_ros.nodes.teleop_recorder_node", "-r", "__ns:=/pf_ns", "-p", "task:=before")
    try:
        node = "/pf_ns/robot_bridge_node"
        probe.wait(lambda: probe.parameters(node, ["control_rate_hz"])["control_rate_hz"] is not None, node)
        # started with --params-file config/sim.yaml in the namespace: the file's values, not the defaults
        assert probe.parameters(node, ["control_rate_hz", "safety.max_step"]) == {
            "control_rate_hz": 250.0,
            "safety.max_step": 0.02,
        }
        results = probe.load(node, "robot_bridge.yaml")
        assert results and all(r.successful for r in results), [r.reason for r in results if not r.successful]
        robot = _file_values("robot_bridge.yaml")
        names = ["control_rate_hz", "safety.max_step", "safety.damp_after_s", "backend"]
        assert probe.parameters(node, names) == {n: robot[n] for n in names}

        # the recorder takes the file's task at run time (it was started with task:=before); its
        # start-up-only parameters refuse any change after start, as the node documents
        node = "/pf_ns/teleop_recorder"
        results = probe.load(node, "teleop_recorder.yaml")
        assert results and results[0].successful, results
        assert all(r.successful or "read-only after start" in r.reason for r in results), results
        assert probe.parameters(node, ["task"]) == {"task": _file_values("teleop_recorder.yaml")["task"]}
        for process in (bridge, recorder):
            assert process.signal(signal.SIGINT) == 0, process.output[-3000:]
    finally:
        bridge.close()
        recorder.close()
