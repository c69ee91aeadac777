"""launch/*.launch.py under the real launch system (launch.LaunchService), in real processes.

Where launch and launch_ros are installed (any ROS 2 machine; here they have no wheels, so these
tests skip and say why): the launch file runs in a driver process, like `ros2 launch`, against an
ament prefix made from this checkout (its launch/, config/ and node executables), and the test
watches the graph from outside:
- sim.launch.py in a namespace: nodes up, topics flowing under the namespace, launch arguments
  applied with their types (camera_mode:=off stays the string 'off'), the parameter file applied
  in the namespace, and one SIGINT ends every process cleanly (status 0);
- record.launch.py: when `ros2 bag` is missing or exits at once, the launch ends with the reason;
  ros2 bag gets psi0_ros's DDS transport settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.tiers import require

for _module in ("launch", "launch_ros"):
    try:
        __import__(_module)
    except ImportError as _err:
        pytest.skip(
            f"{_module} is not installed ({_err}); ROS 2 installs it, PyPI has no wheel (see the module docstring)",
            allow_module_level=True,
        )

rclpy = require("rclpy")
require("mujoco")
require("psi0_ros.msg", "the generated messages (make setup)")

from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120.0  # s, for any one condition on a loaded 2-core machine

_DRIVER = textwrap.dedent(
    """
    import sys
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path, *pairs = sys.argv[1:]
    arguments = [tuple(pair.split(":=", 1)) for pair in pairs]
    service = LaunchService()
    service.include_launch_description(
        LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments)])
    )
    sys.exit(service.run())
    """
)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """An ament prefix holding psi0_ros as this checkout has it (what CMakeLists.txt installs)."""
    root = tmp_path_factory.mktemp("ament_prefix")
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "psi0_ros").write_text("")
    share = root / "share" / "psi0_ros"
    share.mkdir(parents=True)
    for name in ("launch", "config", "package.xml"):
        (share / name).symlink_to(ROOT / name)
    lib = root / "lib" / "psi0_ros"
    lib.mkdir(parents=True)
    for path in sorted((ROOT / "psi0_ros" / "nodes").glob("*_node.py")):
        module, function = f"psi0_ros.nodes.{path.stem}", "main"
        if path.stem == "bag_recorder_node":  # as CMakeLists.txt maps it
            module, function = "psi0_ros.commands.record", "bag_recorder_main"
        script = lib / path.stem
        template = (ROOT / "scripts" / "entry_point.py.in").read_text()
        for key, value in {
            "Python3_EXECUTABLE": sys.executable,
            "PSI0_ENTRY_MODULE": module,
            "PSI0_ENTRY_FUNCTION": function,
            "PSI0_ENTRY_KIND": "node",
        }.items():
            template = template.replace(f"@{key}@", value)
        script.write_text(template)
        script.chmod(0o755)
    return root


def _launch(prefix: Path, launch_file: str, *arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    environ = dict(os.environ if env is None else env)
    environ["AMENT_PREFIX_PATH"] = os.pathsep.join(filter(None, [str(prefix), environ.get("AMENT_PREFIX_PATH", "")]))
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH", "")]))
    environ["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(ROOT / "launch" / launch_file), *arguments],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str]:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"launch did not end within {timeout} s:\n{out[-4000:]}") from None
    return process.returncode, out


class Probe:
    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("psi0_launch_probe", context=self.context)
        self.counts: dict[str, int] = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def watch(self, msg_type: type, topic: str) -> None:
        def count(_msg, topic=topic) -> None:
            self.counts[topic] = self.counts.get(topic, 0) + 1

        self.node.create_subscription(msg_type, topic, count, 10)

    def spin_until(self, condition, what: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if process.poll() is not None:
                raise AssertionError(f"launch ended early while waiting for {what}:\n{process.stdout.read()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def parameters(self, node: str, names: list[str], process: subprocess.Popen) -> list:
        client = self.node.create_client(GetParameters, f"{node}/get_parameters")
        self.spin_until(client.service_is_ready, f"{node}/get_parameters", process)
        future = client.call_async(GetParameters.Request(names=names))
        self.spin_until(future.done, f"{node} parameters", process)
        return [
            {1: v.bool_value, 2: v.integer_value, 3: v.double_value, 4: v.string_value}.get(v.type)
            for v in future.result().values
        ]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def test_sim_launch_in_a_namespace_runs_applies_parameters_and_ends_on_sigint(prefix):
    ns = "/launch_sim"
    process = _launch(
        prefix, "sim.launch.py", "namespace:=launch_sim", "demo:=true", "camera_mode:=off", "seed:=3", "scene:=empty"
    )
    probe = Probe()
    try:
        probe.watch(JointState, f"{ns}/joint_states")
        probe.watch(JointState, f"{ns}/psi0/upper_body_command")
        probe.spin_until(lambda: probe.counts.get(f"{ns}/joint_states", 0) > 10, "namespaced joint states", process)
        probe.spin_until(
            lambda: probe.counts.get(f"{ns}/psi0/upper_body_command", 0) > 10, "the demo's commands", process
        )
        values = probe.parameters(
            f"{ns}/robot_bridge_node", ["sim.camera_mode", "sim.seed", "sim.scene", "control_rate_hz"], process
        )
        assert values == ["off", 3, "empty", 250.0]  # strings stay strings; sim.yaml applies in the namespace
        assert probe.parameters(f"{ns}/sim_demo_node", ["lower_body"], process) == [True]
    finally:
        probe.close()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    code, out = _finish(process)
    assert code == 0, out[-4000:]
    assert out.count("process has finished cleanly") == 2, out[-4000:]
    for bad in ("process has died", "Traceback", "KeyboardInterrupt"):
        assert bad not in out, out[-4000:]


def test_record_launch_ends_with_the_reason_when_ros2_bag_is_missing(prefix, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = str(tmp_path)  # no `ros2` here; `sh` is found by launch through /bin/sh
    (tmp_path / "sh").symlink_to("/bin/sh")
    process = _launch(prefix, "record.launch.py", f"bag:={tmp_path / 'bag'}", env=env)
    code, out = _finish(process)
    assert "`ros2 bag` is not installed" in out, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert code == 0, out[-4000:]


def test_record_launch_ends_when_ros2_bag_exits_and_gives_it_the_transport(prefix, tmp_path):
    seen = tmp_path / "seen.txt"
    fake = tmp_path / "ros2"
    fake.write_text(f'#!/bin/sh\necho "$FASTDDS_BUILTIN_TRANSPORTS $RMW_IMPLEMENTATION $*" > {seen}\nexit 3\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "FASTDDS_BUILTIN_TRANSPORTS"}
    env["PATH"] = os.pathsep.join([str(tmp_path), env.get("PATH", "")])
    process = _launch(prefix, "record.launch.py", "storage:=sqlite3", env=env)
    code, out = _finish(process)
    assert "`ros2 bag record` exited with code 3" in out, out[-4000:]
    transport, rmw, *command = seen.read_text().split()
    assert (transport, rmw) == ("LARGE_DATA", "rmw_fastrtps_cpp")
    assert command[:4] == ["bag", "record", "--storage", "sqlite3"] and "/psi0/episode_events" in command
    assert code == 0 and "Traceback" not in out, out[-4000:]
