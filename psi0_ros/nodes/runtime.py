"""The one process runtime of psi0_ros: every node executable, `psi0 sim` and `psi0 record` use it.

spin_nodes() owns rclpy's life in a process (Humble-compatible: init and shutdown in
try/finally, no context manager):

- SIGINT and SIGTERM end the process cleanly, however many arrive: `ros2 launch` sends a second
  SIGINT while it cleans up, and the first one already started the teardown. rclpy's own signal
  handlers are not installed (they raise KeyboardInterrupt in whatever code runs, e.g. a
  destroy_node() halfway through); ours only record the signal, and the spin loop, which wakes
  every `poll_period_s`, sees it.
- A node constructor that fails is reported once ("<ExcType>: message") and the exit status is 1;
  the half-built nodes are cleaned up without a second, chained error.
- A node whose work died (e.g. the bridge's command loop) raises NodeFailure from a callback:
  the process ends with status 1 and that message, never keeps running as a silent shell.
- One SingleThreadedExecutor spins every node of the process. Each node keeps its slow work on a
  thread of its own (the bridge's command loop, the sim camera's renderer, vlm_node's encoder,
  chunk_node's inference worker), so every callback is short, and rclpy's MultiThreadedExecutor,
  which hands each callback to a thread pool, cost more than the callbacks themselves. On 2 cores
  the evaluation graph (three nodes in one process) used 1.5 CPU-s per simulated second and held
  the sim at 0.77-0.92 of real time with it; with this executor 0.9 CPU-s and 1.0, and chunks
  arrive within the trained max delay (39 of 49 clamped in one multi-threaded episode, 0-4 here).
  The demo graph: 0.67-0.78 of real time against 0.97.
- `until` can end spinning (a duration, a recorder's write error) and `after_spin` runs before
  any node or the DDS participant is torn down (a recording is closed there), so a slow or stuck
  middleware teardown can never cost results; after `teardown_grace_s` the process exits anyway.
"""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from psi0_ros.transport import apply_transport_defaults

POLL_PERIOD_S = 0.1  # how often the spin loop looks at signals and `until` (s)
# After spinning stops, destroying the nodes and the DDS participant gets this long; then the
# process exits with the status already decided (a stuck teardown was seen with Fast DDS's TCP
# transport, which FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA uses).
TEARDOWN_GRACE_S = 10.0
EXIT_FAILURE = 1


class NodeFailure(RuntimeError):
    """Raised from a node callback when the node can no longer do its job: the process ends (status 1)."""


class _Stop:
    """The first reason to stop, set from a signal handler, `until` or a failure."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.failed = False
        self.signals = 0

    def set(self, reason: str, failed: bool = False) -> None:
        if self.reason is None:
            self.reason, self.failed = reason, failed


def _install_signal_handlers(stop: _Stop) -> None:
    """SIGINT/SIGTERM -> stop.set(...); later signals are counted, never raised. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        stop.signals += 1
        stop.set(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def _ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _keep_signal_handlers(shutdown: Callable[..., object]) -> dict[str, bool]:
    """uninstall_handlers=False where rclpy's shutdown takes it (Kilted's does)."""
    return {"uninstall_handlers": False} if "uninstall_handlers" in inspect.signature(shutdown).parameters else {}


def _error(prog: str, text: str) -> None:
    print(f"{prog}: error: {text}", file=sys.stderr, flush=True)


def spin_nodes(
    make_nodes: Callable[[], Sequence[object]],
    args: Sequence[str] | None = None,
    *,
    until: Callable[[], str | None] | None = None,
    after_spin: Callable[[str], int | None] | None = None,
    poll_period_s: float = POLL_PERIOD_S,
    teardown_grace_s: float = TEARDOWN_GRACE_S,
    prog: str | None = None,
) -> int:
    """Init rclpy, build the nodes, spin them until a signal, `until` or a failure; tear down.

    make_nodes: runs after rclpy.init(); returns the nodes to spin (all on one executor).
    args: command-line arguments for rclpy.init (ROS arguments such as --ros-args -r __ns:=/a).
    until: called every poll_period_s while spinning; a returned string stops spinning (the reason).
    after_spin: called with the stop reason once spinning stopped (also after a failed start-up),
      before any node is destroyed; an int it returns is the exit status (a failure stays >= 1).
    Returns the exit status: 0 after a signal or `until`, 1 when a node failed to start or raised
    NodeFailure, or what after_spin returned. A second SIGINT/SIGTERM never interrupts teardown,
    and once it returns (the process is ending) SIGINT and SIGTERM are ignored.
    """
    apply_transport_defaults()  # before rclpy.init(): DDS reads it when the participant is made
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    prog = prog or os.path.basename(sys.argv[0]) or "psi0_ros"
    stop = _Stop()
    _install_signal_handlers(stop)
    rclpy.init(args=list(args) if args is not None else None, signal_handler_options=SignalHandlerOptions.NO)
    nodes: Sequence[Any] = ()
    executor = None
    status = EXIT_FAILURE  # until decided: an exception from a callback (a bug) ends the process as a failure
    try:
        try:
            nodes = list(make_nodes())
        except Exception as err:  # one clear line instead of a traceback
            _error(prog, f"could not start: {type(err).__name__}: {err}")
            stop.set("start-up failed", failed=True)
        if stop.reason is None:
            executor = SingleThreadedExecutor()
            for node in nodes:
                executor.add_node(node)
        next_poll = time.monotonic()
        while stop.reason is None:
            try:
                executor.spin_once(timeout_sec=poll_period_s)
            except NodeFailure as err:
                _error(prog, str(err))
                stop.set(f"node failure: {err}", failed=True)
            except ExternalShutdownException:
                stop.set("rclpy shut down")
            # spin_once returns after every callback (hundreds a second): `until` runs on its own period
            if until is not None and stop.reason is None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + poll_period_s
                reason = until()
                if reason:
                    stop.set(reason)
        status = EXIT_FAILURE if stop.failed else 0
        if after_spin is not None:
            returned = after_spin(stop.reason or "")
            if returned is not None:
                status = max(status, returned) if stop.failed else returned
    finally:
        watchdog = threading.Timer(teardown_grace_s, _exit_now, args=(status,))
        watchdog.daemon = True
        watchdog.start()
        try:
            if executor is not None:
                executor.shutdown(timeout_sec=teardown_grace_s / 2)
            for node in nodes:
                node.destroy_node()
            # also destroys half-built nodes a failed constructor left behind; rclpy must not reset
            # SIGINT/SIGTERM to the default action (a second Ctrl-C would then kill the process)
            rclpy.try_shutdown(**_keep_signal_handlers(rclpy.try_shutdown))
        except Exception as err:  # never chain a teardown error onto the real outcome
            _error(prog, f"during shutdown: {type(err).__name__}: {err}")
        finally:
            watchdog.cancel()
            # The process is ending: from here on SIGINT/SIGTERM are ignored. Not a Python handler:
            # interpreter finalisation resets those to the default action, and a second Ctrl-C from
            # `ros2 launch` arriving then would kill the process (-2) after a clean shutdown.
            _ignore_signals()
    return status


def _exit_now(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
