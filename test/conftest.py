"""Shared pytest set-up: every test process gets the project's DDS transport defaults and a
ROS domain of its own, so parallel runs on one machine do not hear each other."""

from __future__ import annotations

import os

import pytest

from psi0_ros.transport import apply_transport_defaults

# One domain per test session (0-101 are valid on Linux with the default port mapping).
os.environ.setdefault("ROS_DOMAIN_ID", str(11 + os.getpid() % 80))
os.environ.setdefault("MUJOCO_GL", "egl")
apply_transport_defaults()


@pytest.fixture
def single_thread():
    """Tiny models train faster on one thread, and leave the other core to parallel tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
