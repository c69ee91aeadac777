"""The library and training/ import without rclpy (a GPU cluster has no ROS 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter whose import system refuses every ROS 2 Python package, as on a
# machine without ROS: then imports every module of psi0_ros (but nodes/ and msg) and training.
_PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys
    BLOCKED = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "rpyutils", "std_msgs", "sensor_msgs",
               "builtin_interfaces", "launch", "launch_ros", "ament_index_python")

    class NoRos(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED or name.startswith("psi0_ros.msg"):
                raise ImportError(f"{name} is not installed (ROS-free probe)")
            return None

    sys.meta_path.insert(0, NoRos())
    sys.path.insert(0, ROOT)
    imported = []
    for top in ("psi0_ros", "training"):
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            if info.name.startswith(("psi0_ros.nodes", "psi0_ros.msg")) or ".psi0_ros_s__" in info.name:
                continue
            importlib.import_module(info.name)
            imported.append(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(len(imported))
    """
)


def test_library_and_training_import_without_ros():
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.replace("ROOT)", repr(str(ROOT)) + ")")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 5  # constants, g1, cli, transport, paths, ...


def test_the_probe_does_catch_a_module_that_needs_rclpy():
    """The guard itself works: importing a node module under the probe fails."""
    probe = _PROBE.replace("ROOT)", repr(str(ROOT)) + ")").replace(
        'for top in ("psi0_ros", "training"):', "import psi0_ros.nodes.qos\nfor top in ():"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "ROS-free probe" in result.stderr
