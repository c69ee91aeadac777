"""`psi0 bench link`: the two-machine deployment across a real network boundary.

The policy side (chunk_node, publish_commands false, a tiny random checkpoint, its ROS clock off
by --offsets seconds) and the robot side (chunk_executor_node and psi0_ros.nodes.link_peers'
kinematic robot, which stands in for the bridge and the camera + VLM) run in two network
namespaces made here, each joined by a veth pair to this namespace, where a user-space layer-2
relay (L2Relay) forwards every Ethernet frame between them with a one-way delay, jitter, loss and
duplication. DDS discovers across the veth interfaces (UDPv4 only: no shared memory, no
loopback). Needs root (ip netns); `--network loopback` runs both sides on this host's loopback
without a relay (clock offsets only).

Per cell (delay_ms, loss, offset_s), over the run after the first chunk landed:
  missed_ticks         control ticks the executor ran no planned action (nothing, or a hold)
  late_chunks          chunks the executor dropped as late (every row already in the past)
  prefix_mismatch_rad  largest |what the executor ran - the frozen prefix row| over every chunk
  overrun_chunks       chunks that landed after their frozen prefix ran out (d too small)
  delay_ticks_max      the largest landing delay the executor measured (ticks)
Default grid: delays 0/20/50/100 ms, loss 0/1/5 %, offsets 0/+2/-2 s (36 cells, --seconds each).

image_bytes_per_s (before the grid; `--only-image-bytes`: nothing else): what the camera image puts
on the link at 30 Hz, raw rgb8 Image against camera_node's JPEG CompressedImage (quality 90), as
the serialised messages' sizes, for the sim's head-camera render or an image file (`--image`) at
640x480 and 320x240 (the sim's configured size).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HELP = "two machines over DDS through netns + a delay/loss relay: missed ticks, late chunks, prefix mismatch"

RATE_HZ = 30.0
POLICY_IP, ROBOT_IP = "10.213.0.1", "10.213.0.2"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delays-ms", type=float, nargs="+", default=[0.0, 20.0, 50.0, 100.0])
    parser.add_argument("--losses", type=float, nargs="+", default=[0.0, 0.01, 0.05], help="frame loss ratios")
    parser.add_argument("--offsets-s", type=float, nargs="+", default=[0.0, 2.0, -2.0], help="policy clock offsets")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="uniform extra one-way delay in [0, jitter]")
    parser.add_argument("--duplicate", type=float, default=0.0, help="ratio of frames sent twice")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per cell")
    parser.add_argument("--network", choices=("netns", "loopback"), default="netns")
    parser.add_argument("--image", type=Path, help="image_bytes_per_s of this image file (default: the sim's render)")
    parser.add_argument("--only-image-bytes", action="store_true", help="measure image_bytes_per_s only, no cells")


# --- the camera image on the link ---------------------------------------------------------------
CAMERA_RATE_HZ = 30.0  # camera_node's rate_hz (config/deploy.yaml)
JPEG_QUALITY = 90  # camera_node's jpeg_quality (config/deploy.yaml)
IMAGE_SIZES = ((640, 480), (320, 240))  # px: the D435's stream; the sim's configured head camera


def image_bytes_per_s(
    rgb: np.ndarray, rate_hz: float = CAMERA_RATE_HZ, jpeg_quality: int = JPEG_QUALITY
) -> dict[str, Any]:
    """Bytes per second of one camera stream on the link, raw against compressed.

    rgb (H, W, 3) uint8 becomes the two messages camera_node publishes (an rgb8 Image and its JPEG
    CompressedImage, same header); each is serialised with rclpy (CDR: the payload DDS sends,
    without the RTPS headers of its fragments) and multiplied by rate_hz [Hz]."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    from psi0_ros.constants import FRAME_HEAD_CAMERA
    from psi0_ros.data.jpeg import encode_jpeg
    from psi0_ros.image import rgb_to_image_fields

    raw = Image(**rgb_to_image_fields(rgb))
    compressed = CompressedImage(format="jpeg", data=encode_jpeg(rgb, jpeg_quality))
    for msg in (raw, compressed):
        msg.header.frame_id = FRAME_HEAD_CAMERA
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 123_456_789
    sizes = {"raw": len(serialize_message(raw)), "compressed": len(serialize_message(compressed))}
    return {
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "rate_hz": rate_hz,
        "jpeg_quality": jpeg_quality,
        "message_bytes": sizes,
        "image_bytes_per_s": {name: size * rate_hz for name, size in sizes.items()},
        "ratio": sizes["raw"] / sizes["compressed"],
    }


def link_image_frames(image: Path | None = None) -> tuple[str, list[np.ndarray]]:
    """(what the frames are, one frame per IMAGE_SIZES): the image file fitted to each size, or the
    sim's head camera (its default scene after 50 steps) rendered at each size."""
    if image is not None:
        from PIL import Image

        from psi0_ros.camera import fit_frame

        with Image.open(image) as opened:
            rgb = np.asarray(opened.convert("RGB"))
        return str(image), [fit_frame(rgb, w, h) for w, h in IMAGE_SIZES]
    import psi0_ros.sim  # noqa: F401  (sets MUJOCO_GL=egl before mujoco loads)
    from psi0_ros.sim.camera import HeadCamera
    from psi0_ros.sim.simulator import G1Sim

    sim = G1Sim()
    sim.step(50)
    frames = []
    for width, height in IMAGE_SIZES:
        camera = HeadCamera(sim.model, width, height)
        try:
            frames.append(camera.render(sim.snapshot()))
        finally:
            camera.close()
    return "sim head camera (default scene)", frames


def image_link_report(image: Path | None = None) -> dict[str, Any]:
    """image_bytes_per_s at 640x480 plus a row per size. Without an image file, a sim render that
    cannot be made (no OpenGL context) is reported as `error`, and the link cells still run."""
    try:
        source, frames = link_image_frames(image)
    except Exception as err:  # the decoders and the renderer raise several types
        if image is not None:
            raise
        return {"error": f"no sim frame to measure: {err}"}
    rows = [image_bytes_per_s(rgb) for rgb in frames]
    return {"frame": source, "image_bytes_per_s": rows[0]["image_bytes_per_s"], "sizes": rows}


# --- metrics (ROS-free: plain dicts recorded by link_peers' robot) --------------------------------
def link_metrics(record: Mapping[str, Any], rate_hz: float = RATE_HZ) -> dict[str, Any]:
    """What the executor ran against what the chunks assumed.

    record: upper {tick: 28 values}, lower {tick: 8 values} (the executor's commands), states
    {tick: ExecutorState.state}, chunks {id: (start_tick, prefix_length, rows)}, landed {id: the
    executor's landing tick}, executor {diagnostic key: value}."""
    upper, lower, states = record["upper"], record["lower"], record["states"]
    chunks, landed = record["chunks"], record["landed"]
    executor = record.get("executor", {})
    result: dict[str, Any] = {
        "chunks": len(chunks),
        "late_chunks": int(executor.get("chunk_late", 0)),
        "chunks_before_start": int(executor.get("chunks_before_start", 0)),
    }
    ids = sorted(i for i in chunks if i in landed)
    if len(ids) < 2:
        result.update(missed_ticks=None, prefix_mismatch_rad=None, overrun_chunks=None, delay_ticks_max=None)
        return result
    # From the first landing (or the first chunk's start: one requested at rest starts at its
    # predicted landing, and may land before it) to the last chunk's start.
    first, last = max(landed[ids[0]], chunks[ids[0]][0]), chunks[ids[-1]][0]
    missed = [t for t in range(first, last) if t not in upper or states.get(t, 0) != 0]
    mismatch, checked, overruns, delays = 0.0, 0, 0, []
    for chunk_id in ids:
        start, prefix, rows = chunks[chunk_id]
        delays.append(landed[chunk_id] - start)
        if prefix > 0 and landed[chunk_id] - start > prefix:
            overruns += 1
        for i in range(prefix):
            tick = start + i
            if tick in upper and tick in lower:
                ran = np.concatenate([np.asarray(upper[tick]), np.asarray(lower[tick])])
                mismatch = max(mismatch, float(np.max(np.abs(ran - np.asarray(rows[i])))))
                checked += 1
    result.update(
        window_ticks=last - first,
        missed_ticks=len(missed),
        missed_at=[t - first for t in missed[:20]],  # ticks after the first landing
        prefix_mismatch_rad=mismatch,
        prefix_rows_checked=checked,
        overrun_chunks=overruns,
        delay_ticks_max=max(delays),
        delay_ticks_median=float(np.median(delays)),
    )
    return result


def load_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The robot peer's raw record (link_peers robot --keep-record) as JSON gives it back: int keys."""
    return {
        "upper": {int(k): np.asarray(v, dtype=float) for k, v in raw["upper"].items()},
        "lower": {int(k): np.asarray(v, dtype=float) for k, v in raw["lower"].items()},
        "states": {int(k): int(v) for k, v in raw["states"].items()},
        "reports": {int(k): tuple(int(x) for x in v) for k, v in raw["reports"].items()},
        "chunks": {int(k): (int(v[0]), int(v[1]), np.asarray(v[2], dtype=float)) for k, v in raw["chunks"].items()},
        "chunk_stamps": {int(k): int(v) for k, v in raw["chunk_stamps"].items()},
        "landed": {int(k): int(v) for k, v in raw["landed"].items()},
        "bridge": [tuple(row) for row in raw["bridge"]],
        "executor": dict(raw.get("executor", {})),  # its newest diagnostics (strings)
    }


RUNNING, HOLDING, STOPPED = 0, 1, 2  # ExecutorState.state


def running_chunk(record: Mapping[str, Any], tick: int, since: int | None = None) -> int | None:
    """The chunk the executor's command at `tick` came from: the newest chunk that had landed by
    then (its landing tick is the first tick it can serve) and covers the tick. since: only chunks
    that landed at or after this tick (one executor run). A report's chunk id is the newest landing,
    which may be a chunk that starts later than the tick, so it is not used for this."""
    chunks, landed = record["chunks"], record["landed"]
    serving = [
        chunk_id
        for chunk_id, land in landed.items()
        if chunk_id in chunks
        and land <= tick
        and (since is None or land >= since)
        and chunks[chunk_id][0] <= tick < chunks[chunk_id][0] + len(chunks[chunk_id][2])
    ]
    return max(serving, default=None)


def command_steps(upper: Mapping[int, np.ndarray]) -> dict[int, float]:
    """Per commanded tick, the largest change of the 28 upper-body targets from the command before
    it [rad]; after a silence (ticks without a command) that is the step at resumption."""
    ticks = sorted(upper)
    return {t: float(np.max(np.abs(upper[t] - upper[p]))) for p, t in zip(ticks, ticks[1:], strict=False)}


def fault_summary(record: Mapping[str, Any], fault_tick: int) -> dict[str, Any]:
    """How the executor's commands went through a fault that began at fault_tick (robot ticks).

    normal_step_max / _median: steps between consecutive planned actions before the fault [rad];
    then the planned actions left in the queue, hold_ticks of a safe hold (hold_step_max: its
    largest step, 0 when it holds the last pose), stopped_ticks without a command, and the first
    planned action after that (resume_tick, resume_chunk, resume_step: its step from the held pose;
    after_resume_step_max over the 30 ticks from there)."""
    upper, states = record["upper"], record["states"]
    steps = command_steps(upper)
    normal = [
        step
        for tick, step in steps.items()
        if tick < fault_tick and states.get(tick) == RUNNING and states.get(tick - 1) == RUNNING
    ]
    after = sorted(t for t in states if t >= fault_tick)
    first_hold = next((t for t in after if states[t] != RUNNING), None)
    summary: dict[str, Any] = {
        "normal_step_max": max(normal, default=None),
        "normal_step_median": float(np.median(normal)) if normal else None,
        "first_hold_tick": first_hold,
    }
    if first_hold is None:
        return summary
    resume = next((t for t in after if t > first_hold and states[t] == RUNNING and t in upper), None)
    window = [t for t in after if first_hold <= t < (resume if resume is not None else after[-1] + 1)]
    held = [t for t in window if states[t] == HOLDING]
    summary.update(
        hold_ticks=len(held),
        hold_step_max=max((steps[t] for t in held if t in steps), default=0.0),
        stopped_ticks=sum(1 for t in window if states[t] == STOPPED),
        commands_while_stopped=sum(1 for t in window if states[t] == STOPPED and t in upper),
        resume_tick=resume,
    )
    if resume is not None:
        summary.update(
            resume_chunk=running_chunk(record, resume, since=first_hold),
            resume_step=steps.get(resume),
            after_resume_step_max=max((steps[t] for t in range(resume, resume + 30) if t in steps), default=None),
        )
    return summary


# --- the link: two namespaces and a layer-2 relay ----------------------------------------------------
class L2Relay:
    """Forwards Ethernet frames between two interfaces of this namespace (AF_PACKET), each after
    delay_s + U(0, jitter_s), dropping `loss` of them and sending `duplicate` of them twice.
    `down` drops everything (the link is cut). Needs root."""

    def __init__(
        self, a: str, b: str, delay_s: float, jitter_s: float = 0.0, loss: float = 0.0, duplicate: float = 0.0
    ) -> None:
        self.delay_s, self.jitter_s, self.loss, self.duplicate = delay_s, jitter_s, loss, duplicate
        self.down = False
        self.counters = {"forwarded": 0, "lost": 0, "duplicated": 0, "errors": 0}
        self._random = random.Random(0)
        self._sockets = []
        for name in (a, b):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
            sock.bind((name, 0))
            sock.setblocking(False)
            self._sockets.append(sock)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="psi0-link-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._thread.join(timeout=5.0)
        for sock in self._sockets:
            sock.close()

    @staticmethod
    def _without_udp_checksum(frame: bytes) -> bytes:
        # A veth hands over UDP packets with the checksum left to the hardware (not filled in);
        # forwarded as they are, the other end drops them. IPv4 allows checksum 0 (none).
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            return frame
        if int.from_bytes(frame[20:22], "big") & 0x3FFF:  # a fragment: its checksum is in the first one
            return frame
        offset = 14 + (frame[14] & 0x0F) * 4
        return frame[: offset + 6] + b"\x00\x00" + frame[offset + 8 :]

    def _loop(self) -> None:
        pending: list[tuple[float, int, int, bytes]] = []  # due, sequence, output socket index, frame
        sequence = 0
        while not self._stop:
            timeout = 0.05 if not pending else max(0.0, min(0.05, pending[0][0] - time.monotonic()))
            readable, _, _ = select.select(self._sockets, [], [], timeout)
            now = time.monotonic()
            for index, sock in enumerate(self._sockets):
                if sock not in readable:
                    continue
                while True:
                    try:
                        frame, address = sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if address[2] == socket.PACKET_OUTGOING:
                        continue  # what this relay itself sent
                    if self.down or self._random.random() < self.loss:
                        self.counters["lost"] += 1
                        continue
                    frame = self._without_udp_checksum(frame)
                    copies = 2 if self._random.random() < self.duplicate else 1
                    self.counters["duplicated"] += copies - 1
                    for _ in range(copies):
                        due = now + self.delay_s + self._random.uniform(0.0, self.jitter_s)
                        heapq.heappush(pending, (due, sequence, 1 - index, frame))
                        sequence += 1
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, out, frame = heapq.heappop(pending)
                try:
                    self._sockets[out].send(frame)
                    self.counters["forwarded"] += 1
                except OSError:
                    self.counters["errors"] += 1


def netns_available() -> str:
    """'' when network namespaces can be made here; otherwise why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    name = f"psi0probe{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns add` failed: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@contextmanager
def two_machines(tag: str) -> Iterator[tuple[str, str, str, str]]:
    """Namespaces (policy, robot) joined through this namespace's veth ends (a, b); removed after."""
    policy, robot = f"psi0pol{tag}", f"psi0rob{tag}"
    a, b = f"psi0a{tag}"[:15], f"psi0b{tag}"[:15]
    try:
        for ns, outer, inner, ip in ((policy, a, "eth0", POLICY_IP), (robot, b, "eth0", ROBOT_IP)):
            _ip("netns", "add", ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", f"{outer}i")
            _ip("link", "set", f"{outer}i", "netns", ns)
            _ip("-n", ns, "link", "set", f"{outer}i", "name", inner)
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up", "multicast", "on")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", inner)
            _ip("link", "set", outer, "up")
        yield policy, robot, a, b
    finally:
        for outer in (a, b):
            subprocess.run(["ip", "link", "del", outer], capture_output=True)
        for ns in (policy, robot):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --- one cell -----------------------------------------------------------------------------------
def _node(namespace: str | None, module: str, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    with open(log, "a") as out:  # a restarted process appends to its log
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", module, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGINT (a node's clean shutdown), then SIGKILL after timeout s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class CellRun:
    """A running cell, for fault injection: its processes by name (executor, robot, bridge on
    the robot side; clock, chunk_node on the policy side), the relay (None on loopback: no link
    to cut) and how to start each process again."""

    POLICY_SIDE = ("chunk_node", "clock")

    def __init__(self, relay: L2Relay | None, launchers: Mapping[str, Any]) -> None:
        self.relay = relay
        self._launchers = dict(launchers)
        self.processes: dict[str, subprocess.Popen] = {name: start() for name, start in self._launchers.items()}
        self.events: dict[str, float] = {}  # what the fault did and when (this host's time.time() [s])

    def mark(self, event: str) -> None:
        self.events[event] = time.time()

    def kill(self, *names: str) -> None:
        """SIGKILL: the machine died (no clean shutdown, nothing more is sent)."""
        for name in names:
            self.processes[name].kill()
            self.processes[name].wait()

    def restart(self, name: str) -> None:
        """Stop the process (SIGINT) and start it again."""
        stop_process(self.processes[name])
        self.processes[name] = self._launchers[name]()

    def link_down(self, down: bool) -> None:
        if self.relay is None:
            raise RuntimeError("no link to cut on loopback: run the cell with network='netns'")
        self.relay.down = down


def run_cell(
    checkpoint: Path,
    workdir: Path,
    delay_ms: float = 0.0,
    loss: float = 0.0,
    offset_s: float = 0.0,
    seconds: float = 20.0,
    network: str = "netns",
    jitter_ms: float = 0.0,
    duplicate: float = 0.0,
    chunk_params: Mapping[str, str] | None = None,
    fault: Callable[[CellRun], None] | None = None,
    bridge_params: Mapping[str, str] | None = None,
    keep_record: bool = False,
) -> dict[str, Any]:
    """Run one cell for `seconds` after the first chunk landed; returns link_metrics plus the cell.

    fault(run), if given, runs after those seconds (a link cut, a kill, a restart: CellRun);
    what it marked is returned under "events". bridge_params: also run robot_bridge_node (sim
    backend, config/sim.yaml, these overrides) on the robot side; it publishes /joint_states
    instead of the kinematic robot, and its safety mode over time is returned under "bridge".
    keep_record: return the robot peer's raw record (every command, report and chunk) as "record"."""
    from psi0_ros.paths import config_path

    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid() % 10000}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", FASTDDS_BUILTIN_TRANSPORTS="UDPv4")
    env["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST" if network == "loopback" else "SUBNET"
    metrics_file = workdir / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    params = {
        "checkpoint": str(checkpoint),
        "publish_commands": "false",
        "use_sim_time": "true",
        "torch_threads": "1",
        "inference_niceness": "0",
        **(chunk_params or {}),
    }
    chunk_args = ["--ros-args", "-r", "/clock:=/policy_clock"]
    for name, value in params.items():
        chunk_args += ["-p", f"{name}:={value}"]
    peer_args = ["robot", "--out", str(metrics_file)]
    if keep_record:
        peer_args.append("--keep-record")
    if bridge_params is not None:
        peer_args.append("--no-joint-states")
    bridge_args = ["--ros-args", "--params-file", str(config_path("sim.yaml")), "-p", "sim.camera_mode:='off'"]
    for name, value in (bridge_params or {}).items():
        bridge_args += ["-p", f"{name}:={value}"]

    @contextmanager
    def link() -> Iterator[tuple[str | None, str | None, L2Relay | None]]:
        if network == "loopback":
            yield None, None, None
            return
        with two_machines(tag) as (policy, robot, a, b):
            relay = L2Relay(a, b, delay_ms / 1e3, jitter_ms / 1e3, loss, duplicate)
            relay.start()
            try:
                yield policy, robot, relay
            finally:
                relay.stop()

    with link() as (policy, robot, relay):
        launchers: dict[str, Callable[[], subprocess.Popen]] = {
            "executor": lambda: _node(
                robot, "psi0_ros.nodes.chunk_executor_node", env=env, log=workdir / "executor.log"
            ),
            "robot": lambda: _node(robot, "psi0_ros.nodes.link_peers", *peer_args, env=env, log=workdir / "robot.log"),
        }
        if bridge_params is not None:
            launchers["bridge"] = lambda: _node(
                robot, "psi0_ros.nodes.robot_bridge_node", *bridge_args, env=env, log=workdir / "bridge.log"
            )
        launchers["clock"] = lambda: _node(
            policy, "psi0_ros.nodes.link_peers", "clock", "--offset", str(offset_s), env=env, log=workdir / "clock.log"
        )
        launchers["chunk_node"] = lambda: _node(
            policy, "psi0_ros.nodes.chunk_node", *chunk_args, env=env, log=workdir / "chunk_node.log"
        )
        run = CellRun(relay, launchers)
        try:
            _wait_for_chunks(workdir, list(run.processes.values()), timeout=120.0)
            time.sleep(seconds)
            if fault is not None:
                fault(run)
        finally:
            stop_process(run.processes["chunk_node"])  # the policy first: the executor's counters settle
            time.sleep(1.5)  # before the robot peer writes
            for name in ("clock", "bridge", "executor", "robot"):
                if name in run.processes:
                    stop_process(run.processes[name])
        counters = dict(relay.counters) if relay is not None else {}
    if not metrics_file.is_file():
        raise RuntimeError(f"the robot peer wrote no metrics; see {workdir}")
    metrics = json.loads(metrics_file.read_text())
    cell = {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "loss": loss, "duplicate": duplicate, "offset_s": offset_s}
    return {**cell, "network": network, **metrics, "relay": counters, "events": run.events}


def _wait_for_chunks(workdir: Path, processes: list[subprocess.Popen], timeout: float) -> None:
    """Until the executor ran the first chunk (the robot peer logs it); fails if a process exits first."""
    deadline = time.monotonic() + timeout
    log = workdir / "robot.log"
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[-1] if process.args else process} exited early; see {workdir}")
        if "first chunk landed" in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no chunk landed within {timeout} s; see {workdir}")


def write_checkpoint(directory: Path) -> Path:
    """A tiny random checkpoint with Psi0's stage-3 chunk length (30: execution horizon 15)."""
    import dataclasses

    from psi0_ros.policy.config import FlowConfig, PolicyConfig, expert_preset
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    expert = dataclasses.replace(expert_preset("tiny"), horizon=30)
    config = PolicyConfig(expert=expert, flow=FlowConfig(num_steps=4))
    return write_tiny_checkpoint(directory, with_vlm=False, config=config)


def run(args: argparse.Namespace) -> dict[str, Any]:
    images = image_link_report(args.image)
    print(json.dumps({"image_bytes_per_s": images.get("image_bytes_per_s", images)}), file=sys.stderr)
    if args.only_image_bytes:
        return {"image_link": images}
    if args.network == "netns":
        problem = netns_available()
        if problem:
            raise SystemExit(f"psi0 bench link: {problem} (--network loopback runs without namespaces)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="psi0_link_") as tmp:
        checkpoint = write_checkpoint(Path(tmp) / "ckpt")
        for delay in args.delays_ms:
            for loss in args.losses:
                for offset in args.offsets_s:
                    if args.network == "loopback" and (delay or loss):
                        continue
                    cell = run_cell(
                        checkpoint,
                        Path(tmp) / f"cell_{delay}_{loss}_{offset}",
                        delay,
                        loss,
                        offset,
                        args.seconds,
                        args.network,
                        args.jitter_ms,
                        args.duplicate,
                    )
                    print(
                        json.dumps(
                            {
                                k: cell[k]
                                for k in (
                                    "delay_ms",
                                    "loss",
                                    "offset_s",
                                    "missed_ticks",
                                    "late_chunks",
                                    "prefix_mismatch_rad",
                                )
                            }
                        ),
                        file=sys.stderr,
                    )
                    rows.append(cell)
    return {"image_link": images, "rows": rows}
