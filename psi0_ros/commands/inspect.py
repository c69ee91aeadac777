"""`psi0 inspect FILE|DIR...`: summary and validation of episode files, LeRobot datasets and bags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "inspect"
HELP = "summarise and validate HDF5 episodes, LeRobot datasets or bags; exit status 1 when invalid"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, help="episode .hdf5 files, directories, datasets or bags")
    parser.add_argument("--decode-all", action="store_true", help="decode every JPEG frame (default: a sample)")
    parser.add_argument("--json", type=Path, help="write the reports to this JSON file")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only invalid entries and the total")


def _describe(summary: dict) -> str:
    parts = []
    for key in ("frames", "duration_s", "rate_hz", "task", "outcome", "total_episodes", "total_frames"):
        if summary.get(key) not in (None, ""):
            parts.append(f"{key}={summary[key]!r}" if key == "task" else f"{key}={summary[key]}")
    if "cameras" in summary:
        parts.append(
            "cameras=" + ",".join(f"{c}:{i.get('encoding')}{i.get('shape', '')}" for c, i in summary["cameras"].items())
        )
    if "topics" in summary:
        parts.append(f"topics={len(summary['topics'])}, episodes={len(summary.get('episodes', []))}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    from psi0_ros.data.validate import inspect_paths

    reports = inspect_paths(args.paths, decode_all=args.decode_all)
    invalid = [r for r in reports if not r.valid]
    for report in reports:
        if args.quiet and report.valid:
            continue
        print(f"{'OK     ' if report.valid else 'INVALID'} {report.kind:<8} {report.path}  {_describe(report.summary)}")
        for error in report.errors:
            print(f"    error: {error}")
        for warning in report.warnings:
            print(f"    warning: {warning}")
    print(f"{len(reports) - len(invalid)} valid, {len(invalid)} invalid")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in reports], indent=2, default=str) + "\n")
    return 1 if invalid or not reports else 0
