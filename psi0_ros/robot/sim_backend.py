"""The simulated G1 behind the RobotBackend interface, with the head camera on its own thread.

advance(dt) steps physics; every 1/camera_rate_hz seconds of sim time a snapshot of the world is
handed to the camera thread, which renders it on its own MjData and GL context, so the control
loop never waits for a frame. If the camera falls behind, the older snapshot is replaced (newest
wins) and counted in camera_frames_skipped. camera_mode="sync" waits in advance() until the camera
thread has rendered the frame (every frame, deterministic: the benchmark and tests use it). In both
modes the GL context is created, used and freed on the camera thread only: EGL refuses a context
that another thread made current (EGL_BAD_ACCESS), which killed the control loop when sync mode
rendered on it. A render failure is raised from advance(), so the control loop stops loudly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from psi0_ros.control.command import JointCommand
from psi0_ros.robot.backend import BackendCamera, CameraFrame, CameraModel, LowerBodyFollower, RobotBackend, RobotState
from psi0_ros.sim.kinematic import KinematicConfig, KinematicLowerBody
from psi0_ros.sim.model import CAMERA_HEIGHT, CAMERA_WIDTH
from psi0_ros.sim.simulator import G1Sim, SimConfig, Snapshot

CAMERA_MODES = ("thread", "sync", "off")


@dataclass(frozen=True)
class SimBackendConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    kinematic: KinematicConfig = field(default_factory=KinematicConfig)
    camera_rate_hz: float = 30.0  # frames per second of sim time
    camera_mode: str = "thread"  # "thread" | "sync" | "off"
    camera_width: int = CAMERA_WIDTH  # px; the policy consumes 320x240 (config/sim.yaml renders that)
    camera_height: int = CAMERA_HEIGHT  # px

    def __post_init__(self) -> None:
        if self.camera_mode not in CAMERA_MODES:
            raise ValueError(f"unknown camera_mode {self.camera_mode!r}; expected one of {CAMERA_MODES}")
        if self.camera_mode != "off" and not 0.0 < self.camera_rate_hz <= 120.0:
            raise ValueError(f"camera_rate_hz must be in (0, 120], got {self.camera_rate_hz}")
        if not (0 < self.camera_width <= CAMERA_WIDTH and 0 < self.camera_height <= CAMERA_HEIGHT):
            raise ValueError(
                f"camera size {self.camera_width}x{self.camera_height} must be within "
                f"{CAMERA_WIDTH}x{CAMERA_HEIGHT} (the offscreen buffer the model declares)"
            )


Frame = CameraFrame  # (camera_height, camera_width, 3) uint8 images, sim_time in s of sim time
SYNC_RENDER_TIMEOUT_S = 60.0  # the first EGL frame can take seconds on a loaded machine


class _CameraWorker(threading.Thread):
    """Renders the newest offered snapshot; owns the GL context (created on this thread)."""

    def __init__(self, sim: G1Sim, size: tuple[int, int]) -> None:
        super().__init__(name="psi0-sim-camera", daemon=True)
        self._model = sim.model
        self._size = size  # (width, height) px
        self._cond = threading.Condition()
        self._pending: Snapshot | None = None
        self._stopping = False
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.latest: Frame | None = None
        self.offered = 0
        self.rendered = 0
        self.skipped = 0
        self.render_seconds = 0.0

    def offer(self, snapshot: Snapshot) -> None:
        with self._cond:
            if self._pending is not None:
                self.skipped += 1
            self._pending = snapshot
            self.offered += 1
            self._cond.notify_all()

    def wait_rendered(self, timeout: float) -> Frame:
        """Wait until every offered snapshot is rendered (sync mode); a render error is raised here."""
        with self._cond:
            done = self._cond.wait_for(
                lambda: self.error is not None or self.rendered + self.skipped >= self.offered, timeout
            )
            if self.error is not None:
                raise RuntimeError(f"head camera renderer failed: {self.error!r}") from self.error
            if not done or self.latest is None:
                raise TimeoutError(f"head camera did not render a frame within {timeout} s")
            return self.latest

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise TimeoutError(f"head camera renderer did not start within {timeout} s")
        if self.error is not None:
            raise RuntimeError(f"head camera renderer failed: {self.error}") from self.error

    def run(self) -> None:
        import time

        from psi0_ros.sim.camera import HeadCamera

        try:
            camera = HeadCamera(self._model, *self._size)
        except BaseException as err:  # reported to the owner through wait_ready()
            self.error = err
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                with self._cond:
                    while self._pending is None and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    snapshot, self._pending = self._pending, None
                start = time.perf_counter()
                rgb = camera.render(snapshot)
                with self._cond:
                    self.render_seconds += time.perf_counter() - start
                    self.rendered += 1
                    self.latest = Frame(self.rendered, snapshot.time, rgb)
                    self._cond.notify_all()
        except BaseException as err:  # sync mode raises it from advance(); thread mode counts no more frames
            with self._cond:
                self.error = err
                self._cond.notify_all()
        finally:
            camera.close()


class _SimCamera:
    """The head camera as the BackendCamera capability of SimBackend."""

    def __init__(self, backend: SimBackend) -> None:
        from psi0_ros.sim.camera import intrinsics

        k = intrinsics(backend.config.camera_width, backend.config.camera_height)
        self.model = CameraModel(k.width, k.height, k.matrix(), backend.config.camera_rate_hz)
        self._backend = backend

    def latest_frame(self) -> CameraFrame | None:
        return self._backend.latest_frame()


class SimBackend(RobotBackend):
    name = "sim"

    def __init__(self, config: SimBackendConfig | None = None) -> None:
        self.config = config or SimBackendConfig()
        self.sim = G1Sim(self.config.sim)
        self._follower = KinematicLowerBody(self.sim, self.config.kinematic) if self.sim.kinematic else None
        self._worker: _CameraWorker | None = None
        self._closed_worker: _CameraWorker | None = None
        self._next_frame_time = 0.0
        self._substeps_done = 0

    @property
    def camera_enabled(self) -> bool:
        return self.config.camera_mode != "off"

    def camera(self) -> BackendCamera | None:
        return _SimCamera(self) if self.camera_enabled else None

    def start(self) -> None:
        if self.camera_enabled and self._worker is None:
            self._worker = _CameraWorker(self.sim, (self.config.camera_width, self.config.camera_height))
            self._worker.start()
            self._worker.wait_ready(timeout=SYNC_RENDER_TIMEOUT_S)

    def read_state(self) -> RobotState:
        q, dq, tau = self.sim.joint_state()
        quat, gyro, accel = self.sim.imu()
        return RobotState(self.sim.time, q, dq, tau, quat, gyro, accel)

    def write_command(self, command: JointCommand) -> None:
        self.sim.apply(command)

    def advance(self, dt: float) -> None:
        steps = max(1, round(dt / self.sim.model.opt.timestep))
        self.sim.step(steps)
        self._substeps_done += steps
        if self.camera_enabled and self.sim.time + 1e-9 >= self._next_frame_time:
            self._next_frame_time += 1.0 / self.config.camera_rate_hz
            if self._next_frame_time <= self.sim.time:  # fell far behind (e.g. after a reset)
                self._next_frame_time = self.sim.time + 1.0 / self.config.camera_rate_hz
            if self._worker is None:
                raise RuntimeError("SimBackend.advance() with the camera on before start()")
            if self._worker.error is not None:  # a dead camera stops the sim loudly, in either mode
                raise RuntimeError(f"head camera renderer failed: {self._worker.error!r}") from self._worker.error
            self._worker.offer(self.sim.snapshot())
            if self.config.camera_mode == "sync":
                self._worker.wait_rendered(SYNC_RENDER_TIMEOUT_S)

    def latest_frame(self) -> Frame | None:
        """The newest rendered head-camera frame (None before the first)."""
        worker = self._worker or self._closed_worker
        return worker.latest if worker is not None else None

    def lower_body_follower(self) -> LowerBodyFollower | None:
        return self._follower

    def sim_time(self) -> float:
        return self.sim.time

    def stats(self) -> dict[str, float]:
        stats: dict[str, float] = {"sim_time_s": self.sim.time, "physics_steps": float(self._substeps_done)}
        worker = self._worker or self._closed_worker
        if worker is not None:
            stats["camera_frames"] = float(worker.rendered)
            stats["camera_frames_skipped"] = float(worker.skipped)
            if worker.rendered:
                stats["camera_render_ms"] = 1000.0 * worker.render_seconds / worker.rendered
        position, _ = self.sim.base_pose()
        stats["base_x_m"], stats["base_y_m"], stats["base_z_m"] = (float(v) for v in position)
        return stats

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker.join(timeout=10.0)
            self._closed_worker, self._worker = self._worker, None  # its counters stay readable
