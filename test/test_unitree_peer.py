"""The unitree backend against a robot-side peer on the robot's DDS (cyclonedds 0.10.2, Python 3.10).

The peer (test/peers/g1_peer.py) runs in another interpreter, the environment scripts/setup.sh
prepares (.venv-unitree-peer), with unitree_hg types as unitree_sdk2_python declares them. The
backend side (test/peers/backend_side.py) runs in a child process too: with this interpreter (the
project's cyclonedds) and with the peer's (psi0_ros's own types under cyclonedds 0.10.2). Each
exchange checks that the backend reads the peer's LowState_ and both HandState_, that the peer gets
LowCmd_ (CRC, mode_machine) and HandCmd_, and that the peer is still running afterwards and exits 0.
Where the peer environment is missing, these tests skip and say why.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.dds_ports import free_domain

pytest.importorskip("cyclonedds")

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "test" / "peers"
PEER_ENV = ROOT / ".venv-unitree-peer"
MODE_MACHINE = 5
# What g1_peer.py reports: body motor i at 0.01 (i + 1) rad, left hand motor i at 0.1 (i + 1), right at -0.1 (i + 1).
BODY_Q = [0.01 * (i + 1) for i in range(29)]
HAND_Q = {"left": [0.1 * (i + 1) for i in range(7)], "right": [-0.1 * (i + 1) for i in range(7)]}


def _peer_python() -> tuple[str | None, str]:
    """(the robot-side interpreter, or None, and why not)."""
    python = os.environ.get("PSI0_UNITREE_PEER_PYTHON") or str(PEER_ENV / "bin" / "python")
    if not Path(python).is_file():
        return None, (
            f"no robot-side peer environment ({python}): scripts/setup.sh makes it (Python 3.10 + cyclonedds "
            "0.10.2) where a Python 3.10 interpreter exists"
        )
    probe = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('cyclonedds'))"],
        capture_output=True,
        text=True,
    )
    found = probe.stdout.strip()
    if probe.returncode != 0 or not found.startswith("0.10."):
        return None, f"the peer environment {python} has no cyclonedds 0.10.x ({found or probe.stderr.strip()[-200:]})"
    return python, ""


@pytest.fixture(scope="module")
def peer_python() -> str:
    python, why = _peer_python()
    if python is None:
        pytest.skip(why)
    return python


class JsonLines:
    """A child process that prints JSON lines and stops when its stdin closes."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=ROOT
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        self.latest: dict = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def wait(self, condition, what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.latest = self.lines.get(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if condition(self.latest):
                return self.latest
        raise AssertionError(
            f"no {what}; exit code {self.process.poll()}, last line {json.dumps(self.latest)[:800]}, "
            f"stderr: {self.log.read_text()[-1500:]}"
        )

    def finish(self, timeout: float = 30.0) -> int:
        """Close stdin and wait for the exit code."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._stderr.close()


def _domain(offset: int) -> int:
    # apart from the ROS tests' 11-90 and test_unitree's 150-219; ports no socket holds now
    return free_domain(91, 50, os.getpid() + offset)


def _exchange(backend_python: str, dds: str, peer_python: str, tmp_path: Path, domain: int) -> dict:
    """Peer and backend side on `domain`: checks the whole exchange; returns the backend's start line."""
    peer = JsonLines([peer_python, str(PEERS / "g1_peer.py"), str(domain), str(MODE_MACHINE)], tmp_path / "peer.log")
    side = None
    try:
        ready = peer.wait(lambda r: r.get("ready"), "ready line from the peer")
        assert ready["cyclonedds"].startswith("0.10."), ready
        side = JsonLines([backend_python, str(PEERS / "backend_side.py"), str(domain), dds], tmp_path / "side.log")
        started = side.wait(lambda r: "started" in r or "error" in r, "start line from the backend side")
        assert started.get("started"), started
        state = side.wait(lambda r: "state" in r or "error" in r, "the peer's state in the backend", timeout=60.0)
        assert "state" in state, state
        assert np.allclose(state["state"]["body_q"], BODY_Q, atol=1e-6)
        for hand in ("left", "right"):
            assert np.allclose(state["state"]["hands"][hand], HAND_Q[hand], atol=1e-6), hand
        assert state["state"]["accel"][2] == pytest.approx(9.81, abs=1e-5)
        assert state["stats"]["mode_machine"] == MODE_MACHINE and state["stats"]["lowstate_crc_errors"] == 0
        seen = peer.wait(
            lambda r: r.get("lowcmd", 0) >= 20 and min(r["hand_cmds"].values()) >= 20,
            "LowCmd_ and HandCmd_ at the peer",
        )
        assert seen["crc_ok"] == seen["mode_machine_ok"] == seen["lowcmd"], seen
        assert side.finish() == 0, side.log.read_text()[-1500:]
        side = None
        assert peer.process.poll() is None, f"the peer died: exit code {peer.process.poll()}"
        after = peer.wait(lambda r: "lowcmd" in r, "a report from the peer after the backend left")
        assert after["lowcmd"] >= seen["lowcmd"]
        assert peer.finish() == 0, f"peer exit code {peer.process.returncode}: {peer.log.read_text()[-1500:]}"
        assert "Traceback" not in peer.log.read_text()
        return started
    finally:
        if side is not None:
            side.finish()
        if peer.process.poll() is None:
            peer.finish()


@pytest.mark.parametrize("backend_env", ["project", "robot"])
def test_the_default_dds_path_talks_to_a_robot_side_peer_which_survives(backend_env, peer_python, tmp_path):
    """The default unitree.dds, with the project's cyclonedds and with the robot's 0.10.2: state in,
    commands out, the peer alive afterwards; the own types announce Unitree's type information and
    keep their fast CDR equal to cyclonedds's encoder under both."""
    backend_python = sys.executable if backend_env == "project" else peer_python
    started = _exchange(
        backend_python, "default", peer_python, tmp_path, _domain(0 if backend_env == "project" else 17)
    )
    if backend_env == "robot":
        assert started["cyclonedds"].startswith("0.10.") and started["python"].startswith("3.10.")
    assert started["type_info_equal"] == {name: True for name in ("LowCmd_", "LowState_", "HandCmd_", "HandState_")}
    assert started["fast_cdr_equal"] is True


def test_the_sdk_path_under_the_robots_cyclonedds(peer_python, tmp_path):
    """unitree.dds='sdk' is not refused under cyclonedds 0.10.x; it needs unitree_sdk2py, which is not on
    PyPI: without it the start fails with the instruction, with it the exchange must work."""
    has_sdk = subprocess.run([peer_python, "-c", "import unitree_sdk2py"], capture_output=True).returncode == 0
    if has_sdk:
        _exchange(peer_python, "sdk", peer_python, tmp_path, _domain(31))
        return
    side = JsonLines([peer_python, str(PEERS / "backend_side.py"), str(_domain(31)), "sdk"], tmp_path / "side.log")
    line = side.wait(lambda r: "error" in r or "started" in r, "the start line")
    assert side.finish() == 1
    assert "needs unitree_sdk2py, which is not installed" in line["error"] and "refused" not in line["error"]
    assert "Traceback" not in side.log.read_text()
    pytest.skip(
        "unitree_sdk2py is not installed in the peer environment (it is not on PyPI): only its clear start error was checked"
    )


def test_the_peer_leaving_is_taken_quietly(peer_python, tmp_path):
    """When the robot-side process goes away its writers' last notices carry no data: the backend
    skips them (no exception in a DDS thread) and reports the state as stale (the safety layer holds)."""
    domain = _domain(43)
    peer = JsonLines([peer_python, str(PEERS / "g1_peer.py"), str(domain), str(MODE_MACHINE)], tmp_path / "peer.log")
    side = None
    try:
        peer.wait(lambda r: r.get("ready"), "ready line from the peer")
        side = JsonLines(
            [sys.executable, str(PEERS / "backend_side.py"), str(domain), "default"], tmp_path / "side.log"
        )
        state = side.wait(lambda r: "state" in r or "error" in r, "the peer's state in the backend")
        assert "state" in state, state
        assert peer.finish() == 0
        stale = side.wait(lambda r: "stale" in r, "a stale state after the peer left")
        assert stale["stats"]["lowstate_stale"] >= 1
        assert side.finish() == 0
        side = None
        assert "Traceback" not in (tmp_path / "side.log").read_text(), (tmp_path / "side.log").read_text()[-1500:]
    finally:
        if side is not None:
            side.finish()
        if peer.process.poll() is None:
            peer.finish()
