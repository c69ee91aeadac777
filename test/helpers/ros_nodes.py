"""The test's side of a real ROS graph: a probe rclpy node spun on its own thread, node executables
started as processes with their parameters, and waits that poll a condition until a deadline.

Import it after the test module has checked that rclpy is there (helpers.tiers.require or
pytest.importorskip): it imports rclpy itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor

from psi0_ros import g1
from psi0_ros.nodes.qos import CONTROL

ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], object],
    what: str,
    timeout: float,
    not_yet: tuple[type[BaseException], ...] = (),
    details: Callable[[], object] | None = None,
) -> None:
    """Poll `condition` every 0.05 s until it is true; fail after `timeout` seconds naming `what`.

    An exception of a type in `not_yet` counts as "not yet" (a message that has not arrived);
    `details` adds what it returns, unless None, to the failure message."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except not_yet:
            pass
        if time.monotonic() > deadline:
            extra = None if details is None else details()
            suffix = "" if extra is None else f"; diagnostics: {extra}"
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{suffix}")
        time.sleep(0.05)


class ProbeNode:
    """An rclpy node in its own context, spun on a daemon thread once start() is called.

    Subclasses make their publishers, subscriptions and timers after __init__ and call start();
    watch() keeps the newest message of a topic and counts them. `timeout`, `not_yet` and
    details() set what wait() uses."""

    timeout = 90.0  # s, for any one condition on a loaded 2-core machine
    not_yet: tuple[type[BaseException], ...] = ()

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.lock = threading.Lock()
        self.latest: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.closing = threading.Event()
        self._spinner = threading.Thread(target=self._spin, daemon=True)

    def start(self) -> None:
        self._spinner.start()

    def _spin(self) -> None:
        while not self.closing.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def watch(self, msg_type: type, topic: str, qos=CONTROL, keep: Callable[[object], None] | None = None) -> None:
        """Subscribe `topic`: its newest message for get(), its number for count(); `keep` is
        called with each message under the lock."""

        def store(msg) -> None:
            with self.lock:
                self.latest[topic] = msg
                self.counts[topic] = self.counts.get(topic, 0) + 1
                if keep is not None:
                    keep(msg)

        self.node.create_subscription(msg_type, topic, store, qos)

    def get(self, topic: str):
        with self.lock:
            return self.latest.get(topic)

    def count(self, topic: str) -> int:
        with self.lock:
            return self.counts.get(topic, 0)

    def details(self) -> object | None:
        """What a timed-out wait() reports besides what it waited for (None: nothing)."""
        return None

    def wait(self, condition: Callable[[], object], what: str, timeout: float | None = None) -> None:
        wait_for(condition, what, self.timeout if timeout is None else timeout, self.not_yet, self.details)

    def close(self) -> None:
        self.closing.set()
        if self._spinner.is_alive():
            self._spinner.join()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def upper_body_targets(**targets: float) -> np.ndarray:
    """All 28 upper-body joints at their defaults, but for `targets` (joint name: position)."""
    values = g1.table("default", g1.UPPER_BODY_JOINTS).copy()
    for name, value in targets.items():
        values[g1.UPPER_BODY_JOINTS.index(name)] = value
    return values


def ros_parameters(overrides: Mapping[str, str], params_file: Path | None = None) -> list[str]:
    """--ros-args arguments: the parameters file, then each override as `-p name:=value`."""
    args = [] if params_file is None else ["--params-file", str(params_file)]
    for name, value in overrides.items():
        args += ["-p", f"{name}:={value}"]
    return args


class NodeProcess:
    """`python -m module --ros-args *ros_args` in its own process, run from the checkout.

    Its output (stdout and stderr) goes to `log` when given, else to a pipe read on a thread;
    `output` is what it printed so far either way."""

    def __init__(self, module: str, *ros_args: str, log: Path | None = None, timeout: float = 90.0) -> None:
        command = [sys.executable, "-m", module]
        if ros_args:
            command += ["--ros-args", *ros_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.log = log
        self.timeout = timeout
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        if log is not None:
            with open(log, "w") as out:
                self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        else:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        if self.log is not None:
            return Path(self.log).read_text(errors="replace")
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout: float | None = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never printed {text!r} (exit {self.proc.poll()}):\n{self.output[-3000:]}")
            time.sleep(0.1)

    def signal(self, *signums: int, gap_s: float = 0.05) -> int:
        """Send the signals (gap_s apart), wait for the exit; returns the exit status."""
        for signum in signums:
            if self.proc.poll() is None:
                self.proc.send_signal(signum)
            time.sleep(gap_s)
        return self.wait()

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; killed and failed if it does not exit within `timeout` seconds."""
        timeout = self.timeout if timeout is None else timeout
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not exit within {timeout} s:\n{self.output[-3000:]}") from None
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """Clean-up: SIGINT, killed if still running after `timeout` seconds. Prints the end of its
        output when it did not exit as SIGINT asks. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode not in (0, -signal.SIGINT):
            print(self.output[-4000:])
        return self.proc.returncode

    def close(self) -> None:
        """Kill it if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
