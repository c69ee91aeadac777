"""The deploy node graph as data (ROS-free): which nodes run and with which parameters.

One source for launch/deploy.launch.py and `psi0 deploy`: both call deploy_nodes() with the
same arguments and config/deploy.yaml, so the launch file and the launch_ros-free command run
the same graph. The bridge's parameters start from config/sim.yaml (backend sim) or
config/robot_bridge.yaml (backend unitree), overlaid by deploy.yaml's robot_bridge_node section.

Every node of GRAPH_NODES is part of psi0_ros: a node whose module is missing (a broken install)
is an error naming it, never a graph that silently runs without it. The class of each node is
named in psi0_ros.nodes.graph (a table of imports), which composes the graph in one process.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from psi0_ros.constants import TOPIC_IMAGE, relative_topic
from psi0_ros.robot.params import flatten, node_parameters

BACKENDS = ("sim", "unitree")
GRAPH_NODES = (
    "robot_bridge_node",
    "camera_node",
    "vlm_node",
    "chunk_node",
    "lower_body_node",
    "viz_node",
    "chunk_executor_node",
)
# Two machines (docs/deploy.md): the robot's computer runs what touches the robot and its clock;
# the GPU machine runs the models. "all" is the one-machine graph (no executor).
ROLES = ("all", "robot", "policy")
ROBOT_SIDE = frozenset({"robot_bridge_node", "camera_node", "lower_body_node", "chunk_executor_node"})
# The camera image crosses the link as JPEG (camera_node's <image topic>/compressed, ~20x fewer
# bytes than rgb8); on one machine vlm_node takes the raw Image (shared memory, nothing to decode).
IMAGE_TRANSPORT = {"all": "raw", "robot": "compressed", "policy": "compressed"}


@dataclass
class NodeSpec:
    name: str  # node name = executable name = module psi0_ros.nodes.<name>
    params: dict[str, Any] = field(default_factory=dict)  # flat (dotted) parameter names

    @property
    def module(self) -> str:
        return f"psi0_ros.nodes.{self.name}"


def nest(params: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted names -> nested dicts (the form ROS 2 parameter files use)."""
    tree: dict[str, Any] = {}
    for name, value in params.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def read_sections(path: Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """{node name: flat ros__parameters} of a ROS 2 parameter file, for each of `names`.

    A node's parameters are resolved as rcl resolves them for that node (robot.params.node_parameters:
    `/**`, then `/**/<node>`, then `<node>`), so config/sim.yaml's `/**` section applies
    as it does under `--params-file`."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    for key, section in document.items():
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ValueError(f"{path}: section {key!r} has no ros__parameters")
    return {name: flatten(node_parameters(document, name) or {}) for name in names}


def require_module(spec: NodeSpec) -> None:
    """Raise ModuleNotFoundError naming the node when its module (its executable) is missing."""
    if importlib.util.find_spec(spec.module) is None:
        raise ModuleNotFoundError(
            f"deploy graph node {spec.name!r} is missing: no module {spec.module} (is psi0_ros fully installed?)",
            name=spec.module,
        )


def deploy_nodes(
    backend: str = "sim",
    checkpoint: str = "",
    instruction: str = "",
    camera_source: str = "",
    config: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    sim_time: bool = False,
    role: str = "all",
) -> list[NodeSpec]:
    """The nodes of the deploy graph with their complete parameter sets.

    camera_source: "" keeps the backend's camera (the sim renders one; on the robot
    camera_node's configured source), otherwise a device index/path, a video file or
    topic:<name> for camera_node. sim_time (sim backend only): the bridge publishes the sim's
    time on /clock and every node runs on it (use_sim_time), so control ticks are ticks of
    simulated time however fast the CPU runs the sim. overrides: {node: {param: value}} applied last.
    role: "all" (one machine), "robot" (bridge, camera, AMO, chunk_executor_node) or "policy"
    (vlm_node, chunk_node with publish_commands false, viz_node). With two machines the image
    crosses as JPEG (IMAGE_TRANSPORT): camera_node publishes <image topic>/compressed and vlm_node
    subscribes it; with the sim's own camera camera_node compresses the bridge's frames."""
    from psi0_ros.paths import config_path

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    sections = read_sections(config or config_path("deploy.yaml"), GRAPH_NODES)
    base = "sim.yaml" if backend == "sim" else "robot_bridge.yaml"
    bridge = read_sections(config_path(base), ("robot_bridge_node",))["robot_bridge_node"]
    bridge.update(sections["robot_bridge_node"])
    bridge["backend"] = backend
    kinematic = backend == "sim" and bridge.get("sim.base_mode", "kinematic") == "kinematic"
    bridge["lower_body_input"] = "command" if kinematic else "targets"

    nodes = [NodeSpec("robot_bridge_node", bridge)]
    transport = IMAGE_TRANSPORT[role]
    camera = dict(sections["camera_node"])
    if transport == "compressed":
        camera["publish_compressed"] = True
    if camera_source:
        camera["source"] = camera_source
        if backend == "sim":
            bridge["sim.camera_mode"] = "off"  # one publisher of the camera topic
    elif backend == "sim" and transport == "compressed":
        # The sim bridge renders the head camera; camera_node, in its own process, compresses
        # those frames (raw stays on the robot's machine) rather than the bridge encoding JPEG on
        # the process that steps the physics and runs the command loop.
        camera.update(source=f"topic:{relative_topic(TOPIC_IMAGE)}", publish_raw=False)
        camera["width"] = bridge.get("sim.camera_width", camera.get("width"))
        camera["height"] = bridge.get("sim.camera_height", camera.get("height"))
    if backend == "unitree" or camera_source or transport == "compressed":
        nodes.append(NodeSpec("camera_node", camera))
    vlm = dict(sections["vlm_node"])
    vlm["image_transport"] = transport
    chunk = dict(sections["chunk_node"])
    if checkpoint:
        vlm["checkpoint"] = chunk["checkpoint"] = checkpoint
    if instruction:
        vlm["instruction"] = instruction
    nodes += [NodeSpec("vlm_node", vlm), NodeSpec("chunk_node", chunk)]
    if not kinematic:  # physics sim or robot: AMO turns the 8-D command into leg targets
        nodes.append(NodeSpec("lower_body_node", dict(sections["lower_body_node"])))
    nodes.append(NodeSpec("viz_node", dict(sections["viz_node"])))
    if role != "all":  # chunks cross the link; the robot's executor runs them on the robot's ticks
        chunk["publish_commands"] = False
        nodes.append(NodeSpec("chunk_executor_node", dict(sections["chunk_executor_node"])))
        nodes = [spec for spec in nodes if (spec.name in ROBOT_SIDE) == (role == "robot")]
    if sim_time:
        if backend != "sim":
            raise ValueError(f"sim_time needs the sim backend; {backend!r} runs on the wall clock")
        bridge["publish_clock"] = True
        for spec in nodes:
            spec.params["use_sim_time"] = True
    for spec in nodes:
        require_module(spec)
        spec.params.update((overrides or {}).get(spec.name, {}))
    return nodes


def params_file_document(spec: NodeSpec) -> dict[str, Any]:
    """A ROS 2 parameter file for one node process (matches the node in any namespace)."""
    return {"/**": {"ros__parameters": nest(spec.params)}}
