"""`psi0 deploy`: the deploy node graph without launch_ros (DESIGN §7).

Same nodes and parameters as launch/deploy.launch.py (psi0_ros.deploy_graph, config/deploy.yaml).
By default one process per node (`python -m psi0_ros.nodes.<node> --ros-args --params-file ...`);
--composed runs them all in this process on one executor (psi0_ros.nodes.runtime). Ctrl-C (one SIGINT, or
two as launch sends) ends every node: the first is forwarded to each node process, a second
one (or --grace seconds without exit) escalates to SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

NAME = "deploy"
HELP = "run the deploy node graph (camera, VLM, chunk/RTC, AMO, bridge) without launch_ros"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("sim", "unitree"), default="sim", help="robot backend (default: sim)")
    parser.add_argument(
        "--checkpoint", default="", help="policy checkpoint directory (DESIGN §6; not for --role robot)"
    )
    parser.add_argument(
        "--role",
        choices=("all", "robot", "policy"),
        default="all",
        help="all: one machine; robot: bridge, camera, AMO, chunk executor; policy: VLM, chunk_node (docs/deploy.md)",
    )
    parser.add_argument("--instruction", default="", help="language instruction (or publish /psi0/instruction)")
    parser.add_argument("--camera-source", default="", help="camera_node source: device, video file, topic:NAME")
    parser.add_argument("--namespace", default="", help="ROS namespace of every node")
    parser.add_argument("--config", type=Path, help="node parameter file (default: config/deploy.yaml)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NODE:NAME=VALUE",
        help="override one parameter (value parsed as YAML), e.g. chunk_node:mode=rtc_guidance",
    )
    parser.add_argument("--composed", action="store_true", help="all nodes in this one process")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="seconds to run (default: Ctrl-C)")
    parser.add_argument("--grace", type=float, default=10.0, metavar="S", help="seconds nodes get to exit on Ctrl-C")
    parser.add_argument("--dry-run", action="store_true", help="print the nodes and parameters, start nothing")


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        node, sep, rest = item.partition(":")
        name, eq, value = rest.partition("=")
        if not sep or not eq or not node or not name:
            raise SystemExit(f"psi0 deploy: --param must be NODE:NAME=VALUE, got {item!r}")
        overrides.setdefault(node, {})[name] = yaml.safe_load(value)
    return overrides


def run(args: argparse.Namespace) -> int:
    from psi0_ros.deploy_graph import deploy_nodes

    checkpoint = Path(args.checkpoint).expanduser()
    if args.role != "robot" and not (checkpoint / "config.json").is_file():
        raise SystemExit(f"psi0 deploy: no checkpoint at {checkpoint} (config.json missing; --checkpoint DIR)")
    nodes = deploy_nodes(
        args.backend,
        str(checkpoint.resolve()) if args.checkpoint else "",
        args.instruction,
        args.camera_source,
        args.config,
        parse_overrides(args.param),
        role=args.role,
    )
    print(f"psi0 deploy: {', '.join(n.name for n in nodes)} ({'one process' if args.composed else 'a process each'})")
    if args.dry_run:
        for spec in nodes:
            print(f"  {spec.name}: {spec.params}")
        return 0
    if args.composed:
        return _run_composed(nodes, args)
    return _run_processes(nodes, args)


def _run_composed(nodes: list[Any], args: argparse.Namespace) -> int:
    from psi0_ros.nodes.graph import make_nodes as make_graph_nodes
    from psi0_ros.nodes.runtime import spin_nodes

    def make_nodes() -> list[Any]:
        made = make_graph_nodes(nodes, args.namespace or None)
        if args.duration:  # counted from the moment every node is up
            signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
            signal.setitimer(signal.ITIMER_REAL, args.duration)
        return made

    return spin_nodes(make_nodes)


def _run_processes(nodes: list[Any], args: argparse.Namespace) -> int:
    from psi0_ros.deploy_graph import params_file_document

    directory = Path(tempfile.mkdtemp(prefix="psi0_deploy_"))
    processes: list[tuple[str, subprocess.Popen]] = []
    interrupts = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_term = signal.signal(signal.SIGTERM, on_sigint)
    try:
        for spec in nodes:
            params = directory / f"{spec.name}.yaml"
            params.write_text(yaml.safe_dump(params_file_document(spec)))
            command = [sys.executable, "-m", spec.module, "--ros-args", "--params-file", str(params)]
            if args.namespace:
                command += ["-r", f"__ns:={args.namespace if args.namespace.startswith('/') else '/' + args.namespace}"]
            # Own process group: a terminal's Ctrl-C reaches this process only, which forwards it once.
            processes.append((spec.name, subprocess.Popen(command, start_new_session=True)))
        deadline = None if args.duration is None else time.monotonic() + args.duration
        failed: dict[str, int] = {}
        while interrupts == 0 and (deadline is None or time.monotonic() < deadline):
            for name, process in processes:
                if process.poll() is not None and name not in failed:
                    # As launch does: the others run on (a restarted node rejoins the graph).
                    failed[name] = process.returncode
                    print(f"psi0 deploy: {name} exited with code {process.returncode}", file=sys.stderr)
            if len(failed) == len(processes):
                break
            time.sleep(0.1)
        _stop_all(processes, args.grace, lambda: interrupts)
        codes = {name: p.returncode for name, p in processes}
        print(f"psi0 deploy: stopped; exit codes {codes}", flush=True)
        return 1 if any(code != 0 for code in failed.values()) else 0
    finally:
        _stop_all(processes, 0.0, lambda: 2)
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _stop_all(processes: list[tuple[str, subprocess.Popen]], grace_s: float, interrupts: Any) -> None:
    """SIGINT each live node; a second Ctrl-C or grace_s without exit -> SIGTERM; then SIGKILL."""
    live = [p for _, p in processes if p.poll() is None]
    for process in live:
        process.send_signal(signal.SIGINT)
    start_count = interrupts()
    deadline = time.monotonic() + grace_s
    while any(p.poll() is None for p in live) and time.monotonic() < deadline and interrupts() <= start_count:
        time.sleep(0.05)
    for process in live:
        if process.poll() is None:
            process.terminate()
    for process in live:
        try:
            process.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
