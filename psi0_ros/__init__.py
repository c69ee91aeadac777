"""psi0_ros: the Psi0 humanoid foundation model as a ROS 2 stack.

The library modules (policy, control, data, sim) import without rclpy; only psi0_ros.nodes
needs ROS 2. The generated message code (psi0_ros.msg) may live in another directory on
sys.path than the hand-written sources (a development venv installs only the generated code),
so this package spans every psi0_ros directory on the path.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
