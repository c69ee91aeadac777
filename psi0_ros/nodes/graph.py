"""The deploy graph's node classes, named one by one: what composes psi0_ros.deploy_graph's
NodeSpecs into nodes in one process (`psi0 deploy --composed`, an evaluation episode).

psi0_ros.deploy_graph (ROS-free) says which nodes run and with which parameters; this table says
which class each one is. A node of the graph that is missing here, or whose module is missing, is
an error that names it (test_deploy_units checks the table against deploy_graph.GRAPH_NODES).
"""

from __future__ import annotations

from collections.abc import Sequence

from rclpy.node import Node
from rclpy.parameter import Parameter

from psi0_ros.deploy_graph import NodeSpec
from psi0_ros.nodes.camera_node import CameraNode
from psi0_ros.nodes.chunk_executor_node import ChunkExecutorNode
from psi0_ros.nodes.chunk_node import ChunkNode
from psi0_ros.nodes.lower_body_node import LowerBodyNode
from psi0_ros.nodes.robot_bridge_node import RobotBridgeNode
from psi0_ros.nodes.viz_node import VizNode
from psi0_ros.nodes.vlm_node import VLMNode

NODE_CLASSES: dict[str, type[Node]] = {
    "robot_bridge_node": RobotBridgeNode,
    "camera_node": CameraNode,
    "vlm_node": VLMNode,
    "chunk_node": ChunkNode,
    "lower_body_node": LowerBodyNode,
    "viz_node": VizNode,
    "chunk_executor_node": ChunkExecutorNode,
}


def node_class(name: str) -> type[Node]:
    """The class of the deploy graph's node `name`."""
    try:
        return NODE_CLASSES[name]
    except KeyError:
        raise ValueError(f"no node class for deploy graph node {name!r}; known: {sorted(NODE_CLASSES)}") from None


def make_node(spec: NodeSpec, namespace: str | None = None) -> Node:
    """One node of the graph, constructed with its spec's parameters."""
    overrides = [Parameter(name, value=value) for name, value in spec.params.items()]
    return node_class(spec.name)(parameter_overrides=overrides, namespace=namespace)


def make_nodes(specs: Sequence[NodeSpec], namespace: str | None = None) -> list[Node]:
    """The graph's nodes, constructed in the order of `specs`."""
    return [make_node(spec, namespace) for spec in specs]
