"""Start-up and shut-down shared by every psi0_ros node process (Humble-compatible rclpy)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from psi0_ros.transport import apply_transport_defaults


def spin_nodes(make_nodes: Callable[[], Sequence[object]], args: Sequence[str] | None = None) -> int:
    """Init rclpy, build the nodes, spin them on one multi-threaded executor until Ctrl-C.

    make_nodes runs after rclpy.init(); nodes are destroyed and rclpy shut down on every path
    (try/finally rather than rclpy's context manager, which Humble lacks).
    """
    apply_transport_defaults()  # before rclpy.init(): DDS reads it when the participant is made
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=list(args) if args is not None else None)
    nodes: Sequence[object] = ()
    try:
        nodes = make_nodes()
        executor = MultiThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    finally:
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
