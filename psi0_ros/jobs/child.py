"""Child processes of the jobs: one episode per process, and the main job's `psi0` steps.

rclpy's context initialises once per process, and a fresh DDS participant per episode keeps one
episode's teardown from touching the next, so every episode of `psi0 sim demos` and `psi0 eval`
runs in a fresh interpreter: run_episode(entry, kwargs, result_file, ...) starts
`python -m psi0_ros.jobs.child`, which calls entry(**kwargs) (JSON-able keyword arguments) and
writes the dict it returns to result_file as JSON, then leaves with os._exit, so a DDS
participant stuck in teardown cannot hold the process. Background(entry, ...) starts the same
child beside the caller, until its stop(). The entry is passed as the function
itself and found again in the child by its module and name: the import graph shows who runs what.

run_module(module, args) is the plain form, `python -m <module> ARGS` with the output streamed:
the main job runs each `psi0` step with it.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


def run_module(module: ModuleType, args: Sequence[str], timeout_s: float | None = None) -> int | str:
    """`python -m <module> ARGS` with this interpreter, its output streamed; its exit status, or
    "timeout" when it ran past timeout_s (then it is killed)."""
    command = [sys.executable, "-m", module.__name__, *args]
    try:
        return subprocess.run(command, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def _call(entry: Callable[..., dict[str, Any]], kwargs: dict[str, Any], result_file: Path) -> str:
    """The child's argument for entry(**kwargs) with its result in result_file (removed first)."""
    module = sys.modules.get(entry.__module__)
    if module is None or getattr(module, entry.__qualname__, None) is not entry:
        raise ValueError(f"{entry!r} is not a module-level function: a child process cannot find it")
    result_file = Path(result_file)
    result_file.unlink(missing_ok=True)
    call = {"module": entry.__module__, "function": entry.__qualname__, "kwargs": kwargs, "result": str(result_file)}
    return json.dumps(call)


def _result(result_file: Path, status: int | str, waited: float, identity: dict[str, Any]) -> dict[str, Any]:
    if not Path(result_file).is_file():
        error = f"episode process ended ({status}) without a result after {waited:.0f} s"
        return {**identity, "success": None, "error": error}
    return json.loads(Path(result_file).read_text())


def run_episode(
    entry: Callable[..., dict[str, Any]],
    kwargs: dict[str, Any],
    result_file: Path,
    timeout_s: float,
    identity: dict[str, Any],
) -> dict[str, Any]:
    """entry(**kwargs) in a child process; returns the dict it returned.

    A child that leaves no result (it crashed, or ran past timeout_s) gives identity (what names
    the episode: seed, task, ...) with success None and an error saying how the process ended."""
    call = _call(entry, kwargs, result_file)
    started = time.monotonic()
    status = run_module(sys.modules[__name__], [call], timeout_s)
    return _result(result_file, status, time.monotonic() - started, identity)


class Background:
    """entry(**kwargs) in a child process that runs beside the caller until stop(): a node group
    of an episode that must not share the caller's interpreter (psi0_ros.jobs.evaluation runs the
    policy's nodes so). stop() sends SIGTERM (the node runtime's clean stop) and returns the dict
    entry returned, or identity with an error when the child left none."""

    def __init__(self, entry: Callable[..., dict[str, Any]], kwargs: dict[str, Any], result_file: Path) -> None:
        self.result_file = Path(result_file)
        self.process = subprocess.Popen([sys.executable, "-m", __name__, _call(entry, kwargs, self.result_file)])
        self.started = time.monotonic()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float, identity: dict[str, Any]) -> dict[str, Any]:
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            status: int | str = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = "timeout"
        return _result(self.result_file, status, time.monotonic() - self.started, identity)


def main(argv: Sequence[str] | None = None) -> None:
    """The child: one JSON argument {module, function, kwargs, result}; exit status 0 when the
    result has no error, else 1."""
    call = json.loads(list(sys.argv[1:] if argv is None else argv)[0])
    entry = getattr(importlib.import_module(call["module"]), call["function"])
    result = entry(**call["kwargs"])
    Path(call["result"]).write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if result.get("error") is None else 1)


if __name__ == "__main__":
    main()
