"""`psi0 doctor`: what this machine can run (ROS 2, messages, torch, MuJoCo, GPU, DDS transport).

`psi0 doctor --hands` instead moves the Dex3-1 fingers of a G1 one motor at a time, left hand then
right, through the unitree backend (HandCmd_ only; no LowCmd_, the body is left alone), printing
which joint each motor should be, so an operator can confirm the wire order (g1.DEX3_WIRE_ORDER, or
the per-hand override given with --left/--right-hand-wire-order, as the robot bridge's
unitree.*_hand_wire_order parameters).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
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
    ("cyclonedds", "DDS to the G1 (own unitree_hg types)", "unitree backend"),
    ("unitree_sdk2py", "Unitree SDK (optional)", "unitree backend with unitree.dds=sdk"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    hands = parser.add_argument_group("--hands: move one Dex3-1 finger motor at a time on the robot")
    hands.add_argument("--hands", action="store_true", help="run the finger-order check instead of the report")
    hands.add_argument("--dds", choices=("cyclonedds", "sdk"), default="cyclonedds", help="unitree DDS path")
    hands.add_argument("--network-interface", default="", help="DDS interface to the robot, e.g. eth0")
    hands.add_argument("--domain-id", type=int, default=0, help="DDS domain of the robot (Unitree uses 0)")
    hands.add_argument("--move-s", type=float, default=1.5, help="seconds per motor: out to mid-range and back")
    for side in ("left", "right"):
        hands.add_argument(
            f"--{side}-hand-wire-order",
            nargs=7,
            metavar="FINGER",
            help=f"{side} hand motor order 0-6 to check instead of the default (finger names, e.g. thumb_0)",
        )
    hands.add_argument("--ask", action="store_true", help="ask the operator after each motor whether it matched")


def _probe(module_name: str) -> tuple[bool, str]:
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        return False, f"{type(err).__name__}: {err}".splitlines()[0][:120]
    version = getattr(module, "__version__", None)
    if version is None and "." not in module_name:
        try:
            version = importlib.metadata.version(module_name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return True, str(version or "ok")


def _unitree_dds_paths() -> dict[str, str | None]:
    """Each unitree.dds path -> why it cannot talk to the robot from here (None: it can)."""
    from psi0_ros.robot.unitree_backend import DDS_PATHS, dds_path_problem

    paths = {path: dds_path_problem(path) for path in DDS_PATHS}
    if paths["sdk"] is None and importlib.util.find_spec("unitree_sdk2py") is None:
        paths["sdk"] = "needs unitree_sdk2py (from source: github.com/unitreerobotics/unitree_sdk2_python)"
    return paths


HAND_CHECK_RATE_HZ = 50.0  # HandCmd_ rate while moving a finger
HAND_CHECK_TIMEOUT_S = 10.0  # wait this long for the hands' first HandState_


def _hand_targets(moving: str, fraction: float) -> object:
    """Joint targets over ALL_JOINTS: every hand joint at its default, `moving` `fraction` of the way
    from its default to halfway towards its farther limit."""
    import numpy as np

    from psi0_ros import g1

    q = np.clip(g1.table("default"), g1.table("lower"), g1.table("upper"))
    spec = g1.JOINT_SPECS[moving]
    index = g1.JOINT_INDEX[moving]
    farther = spec.lower if q[index] - spec.lower > spec.upper - q[index] else spec.upper
    q[index] += fraction * 0.5 * (farther - q[index])
    return q


def check_hands(backend: object, move_s: float, ask: bool = False) -> dict[str, list[str]]:
    """Move each hand motor in turn (left then right, motors 0-6) and back; returns the joint names
    in the order they were moved, per side (with the operator's answers when `ask`)."""
    import numpy as np

    from psi0_ros import g1
    from psi0_ros.control.command import JointCommand
    from psi0_ros.robot.unitree_codec import HAND_SIDES

    deadline = time.monotonic() + HAND_CHECK_TIMEOUT_S
    while not backend.hands_ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no HandState_ from both hands within {HAND_CHECK_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    kp, kd = g1.table("kp"), g1.table("kd")
    steps = max(2, int(move_s * HAND_CHECK_RATE_HZ / 2))
    moved: dict[str, list[str]] = {}
    for side in HAND_SIDES:
        slots = backend.config.hand_slots(side)
        moved[side] = []
        for motor, slot in enumerate(slots):
            name = g1.ALL_JOINTS[slot]
            print(f"{side} hand motor {motor}: should move {name}", flush=True)
            ramp = np.concatenate([np.linspace(0.0, 1.0, steps), np.linspace(1.0, 0.0, steps)])
            for fraction in ramp:
                backend.write_hands(JointCommand.position(_hand_targets(name, float(fraction)), kp, kd))
                time.sleep(1.0 / HAND_CHECK_RATE_HZ)
            answer = ""
            if ask:
                answer = input("  did exactly that finger joint move? [y/n] ").strip().lower()
            moved[side].append(name if not answer or answer.startswith("y") else f"{name}: operator said no")
    return moved


def _run_hands(args: argparse.Namespace) -> int:
    from psi0_ros import g1
    from psi0_ros.robot.unitree_backend import UnitreeBackend, UnitreeConfig

    orders = {
        f"{side}_hand_wire_order": tuple(getattr(args, f"{side}_hand_wire_order") or g1.DEX3_WIRE_ORDER)
        for side in ("left", "right")
    }
    config = UnitreeConfig(
        dds=args.dds, network_interface=args.network_interface, domain_id=args.domain_id, hands=True, **orders
    )
    backend = UnitreeBackend(config)
    try:
        backend.start()
        moved = check_hands(backend, args.move_s, args.ask)
    except RuntimeError as err:  # a refused DDS path, a missing package, hands that never report
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    bad = [entry for names in moved.values() for entry in names if "operator said no" in entry]
    if args.json:
        args.json.write_text(json.dumps({"hands": moved, "mismatches": bad}, indent=2) + "\n")
    if bad:
        print(f"order mismatches: {bad}; set unitree.left/right_hand_wire_order for this robot")
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "hands", False):
        return _run_hands(args)
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
    report["unitree_dds"] = _unitree_dds_paths()
    for path, problem in report["unitree_dds"].items():  # type: ignore[union-attr]
        print(f"  unitree.dds={path}: {problem or 'ok'}")
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
