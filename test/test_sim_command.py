"""`psi0 sim` end to end (a real ROS graph in one process), its summary, and launch/sim.launch.py."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.tiers import require

require("rclpy")
require("mujoco")

ROOT = Path(__file__).resolve().parents[1]


def test_psi0_sim_with_the_demo_reports_what_happened(tmp_path):
    out = tmp_path / "summary.json"
    command = [
        sys.executable,
        "-m",
        "psi0_ros.cli",
        "sim",
        "--duration",
        "6",
        "--demo",
        "--seed",
        "2",
        "--json",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert "psi0 sim summary" in result.stdout and "real-time factor" in result.stdout
    assert summary["loop_error"] is None and not summary["interrupted"]
    assert summary["sim_time_s"] > 1.0 and summary["wall_s"] >= 5.0
    assert summary["realtime_factor"] == pytest.approx(summary["sim_time_s"] / summary["wall_s"])
    published = summary["published"]
    for topic in ("/joint_states", "/imu/data", "/camera/ego/image_raw", "/camera/ego/camera_info", "/diagnostics"):
        assert published.get(topic, 0) > 0, topic
    assert summary["camera_frames_rendered"] >= published["/camera/ego/image_raw"]
    received = summary["received"]
    # Everything the demo published went through the bridge's subscriptions (DDS may still hold the last few).
    for topic in ("/psi0/upper_body_command", "/psi0/lower_body_command"):
        assert 0 < received[topic] <= summary["demo_published"][topic], topic
        assert received[topic] > 0.5 * summary["demo_published"][topic], topic
    assert summary["safety_mode"] == "active"
    assert summary["interventions"]["rejected_nonfinite"] == 0 and summary["interventions"]["watchdog_damps"] == 0
    assert summary["task"] == "can_to_basket" and summary["task_success"] is False


def test_psi0_sim_rejects_a_bad_task_before_starting():
    result = subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", "sim", "--duration", "1", "--task", "juggle"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode != 0 and "unknown task 'juggle'" in result.stderr


def test_sim_launch_file_compiles_and_names_what_exists():
    source = (ROOT / "launch" / "sim.launch.py").read_text()
    tree = ast.parse(source)
    compile(tree, "sim.launch.py", "exec")
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for executable in ("robot_bridge_node", "sim_demo_node"):
        assert executable in strings and (ROOT / "psi0_ros" / "nodes" / f"{executable}.py").is_file()
    assert "sim.yaml" in strings and (ROOT / "config" / "sim.yaml").is_file()
    from psi0_ros.robot.params import DEFAULTS

    for name in ("sim.scene", "sim.seed", "sim.base_mode", "sim.camera_mode", "lower_body_input", "backend"):
        assert name in strings and name in DEFAULTS


def test_config_files_hold_only_known_parameters():
    from psi0_ros.robot.params import bridge_setup, load_yaml

    sim = bridge_setup(load_yaml(ROOT / "config" / "sim.yaml"))
    robot = bridge_setup(load_yaml(ROOT / "config" / "robot_bridge.yaml"))
    assert sim.backend_name == "sim" and sim.bridge_config.lower_body_input == "command"
    assert robot.backend_name == "unitree" and robot.bridge_config.lower_body_input == "targets"
    assert robot.bridge_config.safety.auto_resume is False  # a robot never leaves DAMP by itself
    assert 250.0 <= robot.bridge_config.rate_hz <= 500.0
    with pytest.raises(ValueError, match="unknown robot_bridge_node parameters"):
        bridge_setup({"safety.max_stepp": 0.1})
    with pytest.raises(ValueError, match="control_rate_hz"):
        bridge_setup({"control_rate_hz": "fast"})
