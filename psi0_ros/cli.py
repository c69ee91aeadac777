"""The `psi0` command line: one entry point, one module per subcommand.

Every module in psi0_ros/commands defines NAME, HELP, configure(parser) and run(args) -> int,
so `psi0 --help` lists exactly the subcommands that exist. Subcommand modules import their
heavy dependencies (torch, mujoco, rclpy) inside run(), so `psi0 --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import psi0_ros
import psi0_ros.commands


def _command_modules() -> list[ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(psi0_ros.commands.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"psi0_ros.commands.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="psi0",
        description="Psi0 on a Unitree G1 with Dex3-1 hands (each subcommand has --help).",
    )
    parser.add_argument("--version", action="version", version=f"psi0_ros {psi0_ros.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
