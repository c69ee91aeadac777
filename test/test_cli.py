"""The `psi0` command line."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import psi0_ros.commands
from psi0_ros.cli import build_parser, main


def test_help_lists_exactly_the_subcommands_that_exist():
    modules = {m.name for m in pkgutil.iter_modules(psi0_ros.commands.__path__) if not m.name.startswith("_")}
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(subparsers.choices) == modules
    help_text = subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in modules:
        assert name in help_text


def test_every_subcommand_has_help():
    for name in build_parser()._actions[-1].choices:
        result = subprocess.run([sys.executable, "-m", "psi0_ros.cli", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0, (name, result.stderr)
        assert "usage: psi0 " + name in result.stdout


def test_unknown_subcommand_fails_with_usage(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_doctor_reports_messages_and_rclpy(tmp_path):
    out = tmp_path / "doctor.json"
    assert main(["doctor", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["modules"]["psi0_ros.msg"]["ok"] is True
    assert report["modules"]["rclpy"]["ok"] is True
    assert report["environment"]["FASTDDS_BUILTIN_TRANSPORTS"] == os.environ["FASTDDS_BUILTIN_TRANSPORTS"]
