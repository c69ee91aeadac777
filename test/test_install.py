"""What scripts/setup.sh installs into the venv: node executables and the ament index entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import psi0_ros.nodes

NODES_DIR = Path(psi0_ros.nodes.__file__).parent
PREFIX = Path(sys.prefix)
LIB_DIR = PREFIX / "lib" / "psi0_ros"

pytestmark = pytest.mark.skipif(
    not (PREFIX / "share" / "ament_index").is_dir(), reason="not a venv built by scripts/setup.sh (no ament index)"
)


def _node_names() -> list[str]:
    return sorted(p.stem for p in NODES_DIR.glob("*_node.py"))


def test_every_node_module_has_an_installed_executable():
    names = _node_names()
    assert "robot_bridge_node" in names and "teleop_recorder_node" in names
    for name in names:
        executable = LIB_DIR / name
        assert executable.is_file() and os.access(executable, os.X_OK), f"{executable} missing: re-run setup"
        # bag_recorder_node is `psi0 record --bag-only` (CMakeLists.txt): nodes never import commands
        expected = "psi0_ros.commands.record import bag_recorder_main" if name == "bag_recorder_node" else name
        assert f"psi0_ros.nodes.{expected}" in executable.read_text() or expected in executable.read_text()


def test_package_is_in_the_ament_index_with_its_message_definitions():
    assert (PREFIX / "share" / "ament_index" / "resource_index" / "packages" / "psi0_ros").is_file()
    installed = {p.name for p in (PREFIX / "share" / "psi0_ros" / "msg").glob("*.msg")}
    assert installed == {p.name for p in (Path(__file__).resolve().parents[1] / "msg").glob("*.msg")}


def test_an_installed_node_starts_outside_the_checkout(tmp_path):
    """Run from another directory with nothing sourced: the executable finds its package and messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT_", "PYTHONPATH"))}
    process = subprocess.Popen(
        [str(LIB_DIR / "teleop_recorder_node"), "--ros-args", "-r", "__node:=install_probe"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert "install_probe" in line and "ready" in line, line
