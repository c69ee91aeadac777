"""`psi0 doctor`: what this machine can run (ROS 2, messages, torch, MuJoCo, GPU, DDS transport)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
from pathlib import Path

NAME = "doctor"
HELP = "check the environment: ROS 2 and messages, torch/CUDA, MuJoCo rendering, DDS transport"

# (import name, what it is for, needed by)
_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("numpy", "arrays", "everything"),
    ("torch", "policy and training", "policy, training"),
    ("transformers", "Qwen3-VL backbone", "policy, training"),
    ("rclpy", "ROS 2 client library", "nodes"),
    ("psi0_ros.msg", "generated psi0_ros messages", "nodes, recording"),
    ("rosbags", "reading rosbag2 without ROS", "convert"),
    ("h5py", "episode files", "convert, training"),
    ("mujoco", "simulated G1", "sim"),
    ("cyclonedds", "unitree_hg wire types", "unitree backend tests"),
    ("unitree_sdk2py", "Unitree SDK (robot only)", "unitree backend on the robot"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")


def _probe(module_name: str) -> tuple[bool, str]:
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        return False, f"{type(err).__name__}: {err}".splitlines()[0][:120]
    return True, str(getattr(module, "__version__", "ok"))


def run(args: argparse.Namespace) -> int:
    from psi0_ros.transport import TRANSPORT_DEFAULTS

    report: dict[str, object] = {"python": platform.python_version(), "modules": {}}
    print(f"python {report['python']} ({platform.machine()})")
    for module_name, what, needed_by in _CHECKS:
        ok, detail = _probe(module_name)
        report["modules"][module_name] = {"ok": ok, "detail": detail}  # type: ignore[index]
        mark = "ok " if ok else "-- "
        print(f"  {mark} {module_name:<16} {detail:<40} {what} (needed by {needed_by})")
    try:
        import torch

        cuda = torch.cuda.is_available()
        report["cuda"] = torch.cuda.get_device_name(0) if cuda else None
    except ImportError:
        report["cuda"] = None
    print(f"  cuda: {report['cuda'] or 'not available'}")
    env = {key: os.environ.get(key) for key in (*TRANSPORT_DEFAULTS, "ROS_DOMAIN_ID", "ROS_DISTRO", "MUJOCO_GL")}
    report["environment"] = env
    for key, value in env.items():
        default = TRANSPORT_DEFAULTS.get(key)
        note = f" (psi0 nodes default to {default})" if default and value is None else ""
        print(f"  {key}={value if value is not None else '(unset)'}{note}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    core_ok = all(report["modules"][m]["ok"] for m in ("numpy", "torch"))  # type: ignore[index]
    return 0 if core_ok else 1
