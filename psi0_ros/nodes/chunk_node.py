"""chunk_node: the MM-DiT action expert behind the RTC scheduler (DESIGN §2).

Subscribes /psi0/vlm_features, /joint_states, /psi0/instruction (latched) and /psi0/estop;
publishes /psi0/action_chunk per inference and, every control tick (30 Hz),
/psi0/upper_body_command and /psi0/lower_body_command (publish_commands: false leaves the
commands to chunk_executor_node on the robot's machine). /diagnostics: rates, inference latency
p50/p99, delay d, queue depth, dropped and stale inputs.

Two machines (publish_commands: false): the control ticks are the robot's. chunk_node follows
/psi0/executor_state (RobotClock: robot time from the reports' stamps and this machine's monotonic
clock, never its wall clock), keeps its queue equal to what the executor holds (the prefix of
the next chunk is the rows the executor will run), feeds the delay estimate with the landing
ticks the executor measured (inference plus the network both ways), and compares the image stamps
of VLM features with the robot's time. No executor state for executor_timeout_s: no inference.

Thin shell: psi0_ros.control.scheduler decides, psi0_ros.layout.deploy_state builds the state,
psi0_ros.control.chunk_runner checks and times, Policy.from_checkpoint builds the policy (the
scheduler mode names the RTC mode it serves with, scheduler.SCHEDULER_MODES). Inference runs on
the scheduler's worker thread, never on the control timer. Inputs that must not be inferred on (stale or mismatched features, NaN joint
states, estop) start no inference: the queue runs on, then holds, then the stream stops.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String

from psi0_ros.constants import (
    ACTION_NAMES,
    CONTROL_RATE_HZ,
    TOPIC_ACTION_CHUNK,
    TOPIC_DIAGNOSTICS,
    TOPIC_ESTOP,
    TOPIC_EXECUTOR_STATE,
    TOPIC_INSTRUCTION,
    TOPIC_JOINT_STATES,
    TOPIC_VLM_FEATURES,
    relative_topic,
)
from psi0_ros.control.chunk_runner import (
    DelaySchedule,
    RateCounter,
    check_state,
    joint_positions,
    percentiles_ms,
)
from psi0_ros.control.robot_clock import RobotClock
from psi0_ros.control.scheduler import (
    SCHEDULER_MODES,
    ChunkRecord,
    InferenceRequest,
    InferenceWorker,
    RTCScheduler,
    SchedulerConfig,
    catch_up_ticks,
    tick_at,
)
from psi0_ros.layout import deploy_state
from psi0_ros.msg import ActionChunk, ExecutorState, VLMFeatures
from psi0_ros.nodes.command_output import CommandOutput
from psi0_ros.nodes.qos import CONTROL, LARGE_LATEST, LATCHED, PERIODIC_LATEST
from psi0_ros.ros_messages import action_chunk_array, action_chunk_message, vlm_features_arrays

NODE_NAME = "chunk_node"
CONFIRM_WINDOW = 20  # recent chunk round trips kept (two machines)
LANDINGS_KEPT = 4096  # accepted chunks remembered for the motion metrics (as many as scheduler.executed ticks)
MIN_LOST_AFTER_S = 0.1  # s: never take a chunk as lost sooner than this


@dataclass
class SwitchAsk:
    """A task switch asked for that has not landed yet."""

    tick: int  # control tick of the ask
    late_ticks: int  # this node's late_ticks count then
    in_flight: bool  # an inference was running then: the switch waits for its landing
    waited: int = 0  # ticks from the ask to that landing


PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    ("checkpoint", "", "checkpoint directory (DESIGN §6); the model is built from its own config.json"),
    (
        "adapters",
        [""],
        "per-task LoRA adapter directories trained on this checkpoint, switched by ~/set_task and by "
        '/psi0/instruction ([""]: none; docs/adapters.md)',
    ),
    ("task", "", "with adapters: the task served first, a task name or instruction (empty: the first adapter's)"),
    (
        "mode",
        "rtc",
        "rtc (RTC mode training) | rtc_guidance (guidance) | sync | naive_async | temporal_ensemble (none)",
    ),
    ("num_steps", 0, "Euler steps per chunk (0: the checkpoint's)"),
    ("noise_scale", -1.0, "std of the initial flow noise, in [0, 1] (< 0: the checkpoint's, 1 unless set)"),
    ("guidance_beta", 0.0, "rtc_guidance: clip of the guidance weight (0: the checkpoint's)"),
    ("min_execution_horizon", 0, "actions of a chunk that run before the next inference (0: horizon // 2; Psi0 15)"),
    ("delay_window", 6, "delay d = max of this many recent measured delays [ticks] (Psi0: 6)"),
    ("initial_delay", 6, "delay estimate before any measurement [ticks] (Psi0: 6)"),
    ("hold_ticks", 15, "ticks of safe hold (last pose, velocities 0) after the queue runs dry; then silence"),
    ("control_rate_hz", CONTROL_RATE_HZ, "control ticks per second (Psi0: 30)"),
    ("features_timeout_s", 1.0, "VLM features older than this (by their image stamp) start no inference"),
    ("joint_states_timeout_s", 0.5, "joint states older than this start no inference"),
    (
        "publish_commands",
        True,
        "publish the per-tick commands here (false: chunk_executor_node does, and its ExecutorState sets the ticks)",
    ),
    ("executor_timeout_s", 0.5, "publish_commands false: no ExecutorState for this long starts no inference"),
    (
        "unconfirmed_timeout_s",
        1.0,
        "publish_commands false: the longest a published chunk may go unreported by the executor before it is "
        "taken as lost (sooner: 3x the slowest recent confirmation, at least 0.1 s)",
    ),
    (
        "backend",
        "torch",
        "who runs the action expert: torch (checkpoint is a checkpoint) | onnxruntime | exported_program "
        "(checkpoint is a `psi0 export` directory of that format; docs/export.md)",
    ),
    ("torch_compile", False, "backend torch: wrap the expert in torch.compile (the first chunks compile it)"),
    ("device", "cpu", "device of the action expert: cpu | cuda[:N] (onnxruntime: its CUDA/TensorRT providers)"),
    ("torch_threads", 0, "torch CPU threads (0: torch's default)"),
    ("seed", 0, "noise seed of the sampler"),
    ("inference_niceness", 5, "nice value of the inference thread: the control tick gets the CPU first"),
    ("diagnostics_rate_hz", 1.0, "/diagnostics publish rate [Hz]"),
    (
        "inference_latency_ms",
        0.0,
        "latency added to every inference on this node's clock (sim time under use_sim_time) [ms]: "
        "the scheduler modes under delay (psi0 ablate rtc); 0 on a robot",
    ),
    ("debug.inference_delay_s", [0.0], "tests: extra sleep before inference i = value[min(i, len-1)] [s]"),
)


class ChunkNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        for name, default, text in PARAMETERS:
            self.declare_parameter(name, default, ParameterDescriptor(description=text))
        p = {name: self.get_parameter(name).value for name, _, _ in PARAMETERS}
        if not p["checkpoint"]:
            raise ValueError("chunk_node: parameter 'checkpoint' is empty; give a checkpoint directory")
        if p["torch_threads"] > 0:
            import torch

            torch.set_num_threads(int(p["torch_threads"]))
        self.rate_hz = float(p["control_rate_hz"])
        if p["mode"] not in SCHEDULER_MODES:
            raise ValueError(f"unknown scheduler mode {p['mode']!r}; expected one of {tuple(SCHEDULER_MODES)}")
        from psi0_ros.policy.interface import Policy

        self.policy = Policy.from_checkpoint(
            p["checkpoint"],
            device=p["device"],
            load_vlm=False,
            seed=int(p["seed"]),
            rtc_mode=SCHEDULER_MODES[p["mode"]],
            num_steps=int(p["num_steps"]) or None,  # 0: the checkpoint's
            guidance_beta=float(p["guidance_beta"]) or None,  # 0: the checkpoint's
            noise_scale=None if float(p["noise_scale"]) < 0 else float(p["noise_scale"]),
            backend=p["backend"],
            torch_compile=bool(p["torch_compile"]),
        )
        self.adapters = None  # AdapterPolicy: one loaded base, a LoRA pair per task
        if any(p["adapters"]):
            from psi0_ros.policy.adapters import AdapterPolicy

            directories = [d for d in p["adapters"] if d]
            self.adapters = AdapterPolicy(self.policy, p["checkpoint"], directories, p["task"] or None)
            self.policy = self.adapters
        self._switch_asked: dict[str, SwitchAsk] = {}  # task -> its pending switch
        self._switched: dict[int, tuple[str, int]] = {}  # chunk id -> (task it switched to, its request tick)
        # The last switch: latency (ask -> request), effect (-> run), and what held its request back beyond
        # the minimum execution horizon: waited (the inference in flight at the ask), late (stalled ticks).
        self.task_switch_ticks: dict[str, int] = {}
        horizon = self.policy.horizon
        self.scheduler = RTCScheduler(
            SchedulerConfig(
                mode=p["mode"],
                min_execution_horizon=int(p["min_execution_horizon"]) or max(1, horizon // 2),
                max_delay=self.policy.config.flow.max_delay,
                delay_window=int(p["delay_window"]),
                initial_delay=int(p["initial_delay"]),
                hold_ticks=int(p["hold_ticks"]),
                # Two machines: delays are measured where the chunks run (ExecutorState).
                measure_on_delivery=bool(p["publish_commands"]),
            ),
            horizon,
        )
        self.features_timeout_s = float(p["features_timeout_s"])
        self.joints_timeout_s = float(p["joint_states_timeout_s"])
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._features: tuple[float, np.ndarray, np.ndarray, str, int] | None = None  # stamp_s, f, mask, instr, seq
        self._joints: tuple[float, np.ndarray] | None = None  # receive time (ROS clock s), (43,)
        self._instruction: str | None = None
        self._estop = False
        # Two machines: the robot's ticks and what its executor holds.
        self.remote = not p["publish_commands"]
        self.executor_timeout_s = float(p["executor_timeout_s"])
        self.unconfirmed_timeout_s = float(p["unconfirmed_timeout_s"])
        self.robot_clock = RobotClock(self.rate_hz, timeout_s=self.executor_timeout_s)
        self._executor: ExecutorState | None = None  # the newest report
        self._executor_started: tuple[int, int] | None = None
        self._measured_chunk = -1  # the last chunk whose landing fed the delay estimate
        # s from publishing a chunk to the executor's report of it (the round trip), recent ones
        self._confirm_s: deque[float] = deque(maxlen=CONFIRM_WINDOW)
        self._sent: dict[int, tuple[int, np.ndarray, float]] = {}  # chunk id -> start tick, rows, monotonic s
        self._shifts: dict[int, int] = {}  # chunk id -> ticks its start lies after its request (at rest)
        self._rates = {"commands": RateCounter(), "chunks": RateCounter(), "features": RateCounter()}
        self._observations: dict[int, tuple[Any, float]] = {}  # request id -> (observation, image stamp s)
        self._stamps: dict[int, float] = {}  # chunk id -> image stamp [s]
        if float(p["inference_latency_ms"]) < 0:
            raise ValueError(f"chunk_node: inference_latency_ms must be >= 0, got {p['inference_latency_ms']!r}")
        self.injected_latency_ms = float(p["inference_latency_ms"])
        delays = DelaySchedule(list(p["debug.inference_delay_s"]), self.injected_latency_ms * 1e-3, self._now_s)
        # (chunk id, first tick it commands) of each chunk the queue took: where the junctions are
        self.landings: deque[tuple[int, int]] = deque(maxlen=LANDINGS_KEPT)
        # The 30 Hz tick must not wait for the GIL behind the forward pass (as the bridge does it).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self.worker = InferenceWorker(
            self.scheduler,
            delays.wrap(self._infer),
            on_chunk=self._on_chunk,
            on_error=self._on_error,
            niceness=int(p["inference_niceness"]),
        )

        inputs = MutuallyExclusiveCallbackGroup()
        control = MutuallyExclusiveCallbackGroup()
        self.create_subscription(
            VLMFeatures, relative_topic(TOPIC_VLM_FEATURES), self._on_features, LARGE_LATEST, callback_group=inputs
        )
        self.create_subscription(
            JointState, relative_topic(TOPIC_JOINT_STATES), self._on_joints, CONTROL, callback_group=inputs
        )
        self.create_subscription(
            String, relative_topic(TOPIC_INSTRUCTION), self._on_instruction, LATCHED, callback_group=inputs
        )
        self.create_subscription(Bool, relative_topic(TOPIC_ESTOP), self._on_estop, LATCHED, callback_group=inputs)
        if self.remote:  # on the control group: it moves the ticks and the queue
            self.create_subscription(
                ExecutorState,
                relative_topic(TOPIC_EXECUTOR_STATE),
                self._on_executor_state,
                PERIODIC_LATEST,
                callback_group=control,
            )
        self._chunk_pub = self.create_publisher(ActionChunk, relative_topic(TOPIC_ACTION_CHUNK), CONTROL)
        self._diag_pub = self.create_publisher(DiagnosticArray, relative_topic(TOPIC_DIAGNOSTICS), CONTROL)
        if self.adapters is not None:
            from psi0_ros.srv import SetTask

            self.create_service(SetTask, "~/set_task", self._on_set_task, callback_group=inputs)
        self.output = CommandOutput(self) if p["publish_commands"] else None
        self.create_timer(1.0 / self.rate_hz, self._on_tick, callback_group=control)
        self.create_timer(1.0 / float(p["diagnostics_rate_hz"]), self._publish_diagnostics, callback_group=inputs)
        self.get_logger().info(
            f"{p['mode']} chunks of {horizon} at {self.rate_hz:g} Hz from {p['checkpoint']} ({p['backend']}) "
            f"({self.policy.config.flow.num_steps} Euler steps, trained max delay {self.policy.config.flow.max_delay})"
        )

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _stamps_now_s(self) -> float | None:
        """Now on the clock of the image stamps: the robot's (two machines) or this node's."""
        return self.robot_clock.robot_time(time.monotonic()) if self.remote else self._now_s()

    def _now_tick(self) -> int | None:
        if not self.remote:
            return tick_at(self._now_s(), self.rate_hz)
        return self.robot_clock.tick(time.monotonic())

    # --- two machines: the executor's reports ---------------------------------------------------
    def _on_executor_state(self, msg: ExecutorState) -> None:
        if abs(msg.control_rate_hz - self.rate_hz) > 1e-3:
            self.counters["executor_state_rejected"] += 1
            self.get_logger().warning(
                f"executor runs at {msg.control_rate_hz} Hz, this node at {self.rate_hz} Hz: ignored",
                throttle_duration_sec=2.0,
            )
            return
        started = (int(msg.started.sec), int(msg.started.nanosec))
        if self._executor_started is not None and started != self._executor_started:
            # The robot side restarted: its queue is empty, its ticks may have moved.
            self.counters["executor_restarts"] += 1
            self.robot_clock.reset()
            self.scheduler.replace_queue(None, 0, None, 0)
            with self._lock:
                self._sent.clear()
        self._executor_started = started
        self.robot_clock.add(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, time.monotonic())
        self._executor = msg
        chunk_id = int(msg.chunk_id)
        if chunk_id >= 0:
            self.scheduler.reserve_ids(chunk_id + 1)  # a restarted chunk_node numbers on from there
            if chunk_id != self._measured_chunk:
                self._measured_chunk = chunk_id
                with self._lock:  # _executor_ready reads the round trips under the same lock
                    sent = self._sent.get(chunk_id)
                    if sent is not None:
                        self._confirm_s.append(time.monotonic() - sent[2])
                # From the request, not from the start of a chunk started ahead at its landing (at rest).
                with self._lock:
                    shift = self._shifts.get(chunk_id, 0)
                delay = int(msg.chunk_landed_tick) - int(msg.chunk_start_tick) + shift
                self.scheduler.add_measured_delay(delay)

    def _lost_after_s(self) -> float:
        """How long a published chunk may go unreported before it counts as lost: three times the
        slowest recent round trip (publish -> the executor's report of it), at least
        MIN_LOST_AFTER_S, at most unconfirmed_timeout_s (also before any chunk was confirmed). A
        chunk lost on the link then costs about a round trip, not the whole timeout: without it the
        executor's queue ran dry at 1-5 % loss. Called with self._lock held."""
        if not self._confirm_s:
            return self.unconfirmed_timeout_s
        return min(self.unconfirmed_timeout_s, max(MIN_LOST_AFTER_S, 3.0 * max(self._confirm_s)))

    def _executor_ready(self) -> str:
        """'' when a request may start now; otherwise why not (two machines only)."""
        if not self.robot_clock.fresh(time.monotonic()) or self._executor is None:
            return "no_executor_state"
        reported = int(self._executor.chunk_id)
        with self._lock:
            newest = max(self._sent, default=None)
            if newest is None or reported == newest:
                return ""
            if time.monotonic() - self._sent[newest][2] < self._lost_after_s():
                return "chunk_unconfirmed"  # in flight: the prefix would be built on a guess
            # Lost, or dropped there: make the queue what the executor really holds.
            start, rows, _ = self._sent.get(reported, (0, None, 0.0))
            self._sent = {k: v for k, v in self._sent.items() if k == reported}
        self.counters["resynced_to_executor"] += 1
        self.scheduler.replace_queue(reported if rows is not None else None, start, rows, int(self._executor.tick) + 1)
        return ""

    # --- inputs ---------------------------------------------------------------------------------
    def _on_features(self, msg: VLMFeatures) -> None:
        try:
            features, mask = vlm_features_arrays(msg)
            if features.shape[1] != self.policy.config.expert.vlm_dim:
                raise ValueError(f"feature_dim {features.shape[1]} != the expert's {self.policy.config.expert.vlm_dim}")
        except ValueError as err:
            self.counters["features_rejected"] += 1
            self.get_logger().warning(f"dropped VLM features: {err}", throttle_duration_sec=2.0)
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            if self._instruction is not None and msg.instruction != self._instruction:
                self.counters["features_old_instruction"] += 1  # computed under another instruction
                return
            self._features = (stamp, features, mask, msg.instruction, int(msg.image_seq))
        self._rates["features"].add(time.monotonic())

    def _on_joints(self, msg: JointState) -> None:
        try:
            positions = joint_positions(list(msg.name), list(msg.position))
        except ValueError as err:
            self.counters["joint_states_rejected"] += 1
            self.get_logger().warning(f"dropped joint state: {err}", throttle_duration_sec=2.0)
            return
        with self._lock:
            self._joints = (self._now_s(), positions)

    def _on_instruction(self, msg: String) -> None:
        with self._lock:
            changed = msg.data != self._instruction
            if changed:
                self._instruction = msg.data
                self._features = None  # features of the old instruction are never used with the new one
                self.counters["instruction_changes"] += 1
        if changed and self.adapters is not None:
            self.select_task(msg.data, "instruction")

    # --- per-task adapters ----------------------------------------------------------------------
    def _on_set_task(self, request: Any, response: Any) -> Any:
        response.success, response.message, response.task = self.select_task(request.task, "set_task")
        return response

    def select_task(self, text: str, source: str) -> tuple[bool, str, str]:
        """Serve another adapter's task from the next chunk request (text: a task name, one of its
        instructions, or, from ~/set_task, an adapter directory when it holds a '/'); (success, message, task). A
        refusal (unknown task, another base, a bad directory) keeps the current task."""
        from psi0_ros.policy.adapters import AdapterError

        adapters = self.adapters
        try:
            # only the service loads an adapter directory: an instruction is never taken for a path
            task = adapters.add(text) if source == "set_task" and "/" in text else adapters.select(text)
        except (AdapterError, FileNotFoundError) as err:
            self.counters[f"task_refused_{source}"] += 1
            self.get_logger().error(f"{source}: {err}; still serving task {adapters.active!r}")
            return False, str(err), adapters.pending or adapters.active
        tick = self._now_tick()
        if task != adapters.active and tick is not None:
            self._switch_asked[task] = SwitchAsk(tick, self.counters["late_ticks"], self.scheduler.in_flight)
        self.get_logger().info(f"{source}: task {task!r} from the next chunk request")
        return True, f"task {task!r} from the next chunk request", task

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            self._estop = bool(msg.data)

    # --- control tick ---------------------------------------------------------------------------
    def _on_tick(self) -> None:
        now_tick = self._now_tick()
        if now_tick is None:
            self.counters["no_inference_no_executor_state"] += 1
            return  # two machines: no tick before the executor's first report
        ticks = catch_up_ticks(self.scheduler.next_tick, now_tick)
        if not ticks:
            return  # the timer fired twice within one tick
        if self._estop:
            self.scheduler.queue.clear_from(ticks[0])
        self.counters["late_ticks"] += len(ticks) - 1  # run late, in a burst, after the timer stalled
        for tick in ticks:
            output = self.scheduler.on_tick(tick)
            if output.action is not None and self.output is not None and not self._estop:
                self.output.publish(output.tick, output.action, self.rate_hz)
                self._rates["commands"].add(time.monotonic())
        following = now_tick + 1
        if not self.scheduler.should_request(following):
            return
        reason = self._executor_ready() if self.remote else ""
        if reason:
            self.counters[f"no_inference_{reason}"] += 1
            return
        observation, reason = self._observation()
        if observation is None:
            self.counters[f"no_inference_{reason}"] += 1
            return
        request = self.scheduler.make_request(following)
        self._observations[request.request_id] = observation
        self.worker.submit(request)

    def _observation(self) -> tuple[Any, str]:
        from psi0_ros.policy.interface import Observation

        now = self._now_s()
        stamps_now = self._stamps_now_s()
        with self._lock:
            features, joints, estop = self._features, self._joints, self._estop
        if estop:
            return None, "estop"
        if features is None:
            return None, "no_features"
        if stamps_now is None or stamps_now - features[0] > self.features_timeout_s:
            return None, "stale_features"
        if joints is None or now - joints[0] > self.joints_timeout_s:
            return None, "stale_joint_states"
        state = deploy_state(joints[1], self.scheduler.last_action)
        problem = check_state(state)
        if problem is not None:
            self.get_logger().warning(f"no inference: {problem}", throttle_duration_sec=2.0)
            return None, "bad_joint_states"
        return (Observation(state=state, vlm_features=features[1], vlm_mask=features[2]), features[0]), ""

    def _infer(self, request: InferenceRequest) -> np.ndarray:
        from psi0_ros.policy.interface import ActionPrefix

        observation, stamp_s = self._observations.pop(request.request_id)
        prefix = None
        if request.prefix is not None:
            prefix = ActionPrefix(request.prefix[: self.policy.horizon].astype(np.float32), request.delay)
        self._stamps[request.request_id] = stamp_s  # the image the chunk is conditioned on
        if self.adapters is None:
            return self.policy.infer(observation, prefix)
        before = self.adapters.active
        chunk = self.adapters.infer(observation, prefix)  # a pending switch lands here, between chunks
        if self.adapters.last_task != before:
            # the tick the request was made at: its chunk starts at the next one
            self._switched[request.request_id] = (self.adapters.last_task, request.start_tick - 1)
        return chunk

    def _on_chunk(self, record: ChunkRecord) -> None:
        stamp_s = self._stamps.pop(record.chunk_id, None)
        stamp = None
        if stamp_s is not None:
            from builtin_interfaces.msg import Time

            stamp = Time(sec=int(stamp_s), nanosec=int(round((stamp_s % 1.0) * 1e9)) % 1_000_000_000)
        msg = action_chunk_message(
            record.chunk_id,
            record.start_tick,
            record.actions,
            record.prefix_length,
            self.rate_hz,
            record.inference_s * 1e3,
            ACTION_NAMES,
            stamp,
        )
        if not self.context.ok():
            return  # shutting down (Ctrl-C invalidates the context before the nodes are destroyed)
        try:
            self._chunk_pub.publish(msg)
        except Exception:  # rclpy raises RCLError when the context went away during the publish
            if self.context.ok():
                raise
            return
        self._rates["chunks"].add(time.monotonic())
        if record.insert.accepted:
            self.landings.append((record.chunk_id, record.start_tick + record.insert.dropped_past))
        landed = record.request_tick + record.measured_delay  # the tick this chunk was delivered at
        for ask in self._switch_asked.values():
            if ask.in_flight:  # the inference running at the ask landed now
                ask.waited, ask.in_flight = max(0, landed - ask.tick), False
        switched = self._switched.pop(record.chunk_id, None)
        if switched is not None and switched[0] in self._switch_asked:
            ask = self._switch_asked.pop(switched[0])
            # Its first row that is not the frozen prefix of the previous task's chunk runs at `runs`.
            runs = record.start_tick + max(record.prefix_length, record.insert.dropped_past)
            self.task_switch_ticks = {
                # 0 when an inference requested just before the ask had not yet started computing
                "latency": max(0, switched[1] - ask.tick),
                "effect": runs - ask.tick,
                "waited": ask.waited,
                "late": self.counters["late_ticks"] - ask.late_ticks,
            }
            self.counters["task_switches_landed"] += 1
        if self.remote and record.insert.accepted:
            with self._lock:  # rows as the executor decodes them
                self._sent[record.chunk_id] = (record.start_tick, action_chunk_array(msg), time.monotonic())
                self._shifts[record.chunk_id] = record.start_tick - record.request_tick
                for old in sorted(self._sent)[:-8]:
                    del self._sent[old]
                for old in sorted(self._shifts)[:-8]:
                    del self._shifts[old]
        if record.measured_delay >= self.scheduler.config.max_delay:
            self.get_logger().warning(
                f"chunk {record.chunk_id} took {record.measured_delay} ticks, beyond the trained max delay "
                f"{self.scheduler.config.max_delay - 1}: prefix clamped",
                throttle_duration_sec=2.0,
            )

    def _on_error(self, err: BaseException) -> None:
        self.counters["inference_errors"] += 1
        self.get_logger().error(f"inference failed: {err}", throttle_duration_sec=2.0)

    # --- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [self.diagnostic_status()]
        self._diag_pub.publish(array)

    def diagnostic_status(self) -> DiagnosticStatus:
        from psi0_ros.policy.checkpoint import LOADS as CHECKPOINT_LOADS

        now = time.monotonic()
        counters = self.scheduler.stats.counters
        p50, p99 = percentiles_ms(list(self.worker.latencies_s))
        recent = list(self.scheduler.executed)[-self.scheduler.config.hold_ticks - 1 :]
        holding = bool(recent) and recent[-1][2]
        status = DiagnosticStatus()
        status.name = f"{NODE_NAME}: rtc"
        status.hardware_id = str(self.get_parameter("device").value)
        estimate = self.scheduler.estimator.estimate
        trained = self.scheduler.config.max_delay - 1
        if self.worker.last_error is not None and self.counters["inference_errors"]:
            status.level, status.message = DiagnosticStatus.ERROR, f"inference failing: {self.worker.last_error}"
        elif holding:
            status.level, status.message = DiagnosticStatus.WARN, "queue ran dry: holding (velocities zeroed)"
        elif estimate > trained and self.scheduler.config.rtc_mode == "training":
            status.level = DiagnosticStatus.WARN
            status.message = f"delay {estimate} ticks beyond the trained max {trained}: prefix clamped"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        values: dict[str, object] = {
            "mode": self.scheduler.config.mode,
            "command_rate_hz": f"{self._rates['commands'].rate(now):.1f}",
            "chunk_rate_hz": f"{self._rates['chunks'].rate(now):.2f}",
            "features_rate_hz": f"{self._rates['features'].rate(now):.2f}",
            "inference_latency_p50_ms": f"{p50:.1f}",
            "inference_latency_p99_ms": f"{p99:.1f}",
            "inference_latency_injected_ms": f"{self.injected_latency_ms:g}",
            "delay_ticks": estimate,
            "measured_delay_ticks": self.scheduler.stats.last_measured_delay,
            "queue_depth": self.scheduler.depth(),
            "checkpoint_loads": CHECKPOINT_LOADS["checkpoint"],
            "holding": holding,
        }
        if self.adapters is not None:
            values.update(self.adapters.diagnostics())
            values.update({f"task_switch_{k}_ticks": v for k, v in self.task_switch_ticks.items()})
        values.update({k: v for k, v in sorted(counters.items())})
        values.update({k: v for k, v in sorted(self.counters.items())})
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return status

    def destroy_node(self) -> None:
        self.worker.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    from psi0_ros.nodes.runtime import spin_nodes

    return spin_nodes(lambda: [ChunkNode()], args)


if __name__ == "__main__":
    sys.exit(main())
