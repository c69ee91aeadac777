"""psi0_ros: the Psi0 humanoid foundation model as a ROS 2 stack.

The library (policy, control, data, sim, robot, bench and the top-level modules) imports without
rclpy. rclpy is imported by psi0_ros.nodes (the nodes and the process runtime) and, when they
run, by the commands that start nodes (`psi0 sim`, `psi0 record`); docs/architecture.md has the
layers and the import rule (checked by test/test_layering.py). The generated message code (psi0_ros.msg) may live in another directory on
sys.path than the hand-written sources (a development venv installs only the generated code),
so this package spans every psi0_ros directory on the path.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
