"""`psi0 bench NAME --json FILE`: run a benchmark from psi0_ros/bench and write its JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import time
from pathlib import Path
from types import ModuleType

import psi0_ros.bench

NAME = "bench"
HELP = "run a benchmark (ratios against a same-run baseline) and write JSON"


def benchmark_modules() -> dict[str, ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(psi0_ros.bench.__path__) if not m.name.startswith("_"))
    return {name: importlib.import_module(f"psi0_ros.bench.{name}") for name in names}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, module in benchmark_modules().items():
        bench_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        bench_parser.add_argument("--json", type=Path, help="write the results to this JSON file")
        module.configure(bench_parser)
        bench_parser.set_defaults(_bench=module.run)


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def run(args: argparse.Namespace) -> int:
    results = args._bench(args)
    document = {"benchmark": args.benchmark, "machine": machine_info(), "results": results}
    if isinstance(results, dict) and "rows" in results:
        document["rows"] = results["rows"]  # table benchmarks (rtc): the rows also at the top level
    text = json.dumps(document, indent=2, sort_keys=False)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0
