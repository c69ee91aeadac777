"""Shared pytest set-up: DDS transport settings and a ROS domain per test session, so parallel
runs on one machine do not hear each other."""

from __future__ import annotations

import os
import signal

import pytest

from psi0_ros.transport import apply_transport_defaults

# One domain per test session (0-101 are valid on Linux with the default port mapping).
os.environ.setdefault("ROS_DOMAIN_ID", str(11 + os.getpid() % 80))
os.environ.setdefault("MUJOCO_GL", "egl")
# The suite runs on Fast DDS's default transports (UDP + shared memory). Its TCP-based LARGE_DATA
# mode, psi0's default for users, now and then stalled discovery or teardown between the many
# short-lived processes of these tests on a 2-core machine; test_messages.py exercises LARGE_DATA
# itself with 2 MiB messages. Set FASTDDS_BUILTIN_TRANSPORTS to run everything on another mode.
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT")
apply_transport_defaults()
# A test run started in the background of a non-interactive shell (`make test &`, a CI runner's
# job) inherits SIGINT ignored, and so would every process a test starts: Python then installs no
# KeyboardInterrupt handler and the Ctrl-C tests (psi0 convert, psi0 deploy's escalation) would
# see their child ignore the signal. With a handler here, children start with the default
# disposition, as a program run from a terminal does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def single_thread():
    """Tiny models train faster on one thread, and leave the other core to parallel tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
