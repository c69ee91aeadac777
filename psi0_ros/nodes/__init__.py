"""Thin rclpy nodes over the ROS-free library, and the one process runtime (runtime.spin_nodes).

With the commands that start nodes, the only code that imports rclpy (docs/architecture.md).
"""
