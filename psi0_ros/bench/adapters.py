"""`psi0 bench adapters`: what a per-task LoRA adapter costs and how fast chunk_node switches tasks.

- Size, per expert preset (tiny and the full ~490M-parameter Psi0 expert): trainable parameters
  of one adapter against the expert's, and its adapter_model.safetensors in MB. The full preset
  is built on the meta device (no memory, nothing downloaded); its adapter file is written with
  zero weights of the real shapes, so its size is measured, not estimated.
- Memory of one base + N adapters against N full checkpoints' experts (N = 1, 10, 100), by
  calculation from those sizes (fp32 weights; the VLM is frozen in stage 3 and shared by both).
- Training: samples/s of a full fine-tune and of an adapter on the same episodes, the same tiny
  stage-3 preset, in this run (the full fine-tune's checkpoint is the adapter's base).
- Switching, in a running chunk_node (its own process, the tiny preset, two adapters on one
  base): ~/set_task alternates the task --switches times; each switch's latency in control ticks
  from the call to the chunk request that used the new adapter (switch_latency_ticks, the worst;
  target <= the minimum execution horizon) and to the first control tick that ran its actions
  (switch_effect_ticks); control ticks without a planned action meanwhile (switch_missed_ticks,
  target 0); and how often the base was loaded (must stay 1).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.bench.link import stop_process

HELP = "per-task LoRA adapters: size vs the expert, base + N adapters vs N checkpoints, training speed, switch ticks"
MEMORY_N = (1, 10, 100)
TARGET_FRACTION = 0.02  # one adapter <= 2 % of the expert's parameters


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", default="tiny,psi0", help="comma-separated expert presets (default: tiny,psi0)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (default: the training default, 16)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per training run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the samples/s averages")
    parser.add_argument(
        "--train-expert", default="tiny", help="expert preset of the two training runs (stage-3 tiny preset otherwise)"
    )
    parser.add_argument("--switches", type=int, default=6, help="task switches in the running chunk_node")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed afterwards)")


def _log(message: str) -> None:
    print(f"[bench adapters] {message}", file=sys.stderr, flush=True)


# --- adapters without training ------------------------------------------------------------------
def write_random_adapter(
    directory: Path,
    base: Path,
    task: str,
    instructions: Sequence[str] = (),
    rank: int = 4,
    seed: int = 0,
    scale: float = 0.5,
) -> Path:
    """An adapter directory on `base` with random LoRA pairs (B is zero after peft's init, so an
    untrained adapter is the base: both get random values here) and synthetic statistics; for
    tests and the bench, nothing trained."""
    import torch

    from psi0_ros.policy.adapters import LORA_TARGETS, base_sha256, lora_config, wrap_expert, write_adapter
    from psi0_ros.policy.checkpoint import load_checkpoint
    from psi0_ros.policy.tiny import synthetic_stats

    checkpoint = load_checkpoint(base)
    peft_model = wrap_expert(checkpoint.expert, lora_config(rank, 2 * rank, 0.0, LORA_TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale / parameter.shape[-1] ** 0.5)
    return write_adapter(directory, peft_model, task, instructions, synthetic_stats(seed + 1), base, base_sha256(base))


# --- sizes --------------------------------------------------------------------------------------
def size_row(preset: str, rank: int, work: Path) -> dict[str, Any]:
    """Parameters and file sizes of one adapter on an expert preset built on the meta device."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from psi0_ros.policy.adapters import LORA_TARGETS, lora_config, wrap_expert
    from psi0_ros.policy.config import expert_preset
    from psi0_ros.policy.mmdit import ActionExpert

    with torch.device("meta"):
        expert = ActionExpert(expert_preset(preset))
        expert_parameters = expert.num_parameters()
        peft_model = wrap_expert(expert, lora_config(rank, 2 * rank, 0.0, LORA_TARGETS))
    state = get_peft_model_state_dict(peft_model)
    adapter_parameters = sum(v.numel() for v in state.values())
    path = work / f"{preset}_adapter_model.safetensors"  # the real shapes, zero weights
    save_file({k: torch.zeros(v.shape, dtype=torch.float32) for k, v in state.items()}, str(path))
    adapter_bytes = path.stat().st_size
    expert_bytes = expert_parameters * 4  # fp32 model.safetensors (a header of a few kB aside)
    return {
        "preset": preset,
        "rank": rank,
        "expert_parameters": expert_parameters,
        "adapter_parameters": adapter_parameters,
        "adapter_param_fraction": adapter_parameters / expert_parameters,
        "adapter_file_mb": adapter_bytes / 1e6,
        "expert_file_mb": expert_bytes / 1e6,
        "memory_mb": {
            str(n): {
                "base_plus_adapters": (expert_bytes + n * adapter_bytes) / 1e6,
                "full_checkpoints": n * expert_bytes / 1e6,
            }
            for n in MEMORY_N
        },
    }


# --- training speed -----------------------------------------------------------------------------
def training_speed(work: Path, rank: int, steps: int, warmup: int, expert: str = "tiny") -> dict[str, Any]:
    from psi0_ros.bench.train import _steady

    # The training code lives in the top-level `training` package (as in psi0_ros.bench.train).
    synthetic = importlib.import_module("training.synthetic")
    read_metrics = importlib.import_module("training.engine").read_metrics
    entry = importlib.import_module("training.run")
    build_config, run_stage = entry.build_config, entry.run_stage

    data = work / "episodes"
    synthetic.write_episodes(data, episodes=4, frames=40)
    common = [f"data.root={data}", f"run.steps={steps}", "run.save_every=1000000", "run.tensorboard=false"]
    common.append(f"model.expert_preset={expert}")
    _log("training: full fine-tune")
    full = run_stage(build_config("stage3", "tiny", [f"run.output_dir={work / 'full'}", *common]))
    _log("training: adapter on the full fine-tune's checkpoint")
    adapter_sets = [
        f"run.output_dir={work / 'adapter'}",
        f"model.init={full.output}",
        "model.vlm=",
        "adapter.method=lora",
        f"adapter.rank={rank}",
        "adapter.task=bench",
    ]
    run_stage(build_config("stage3", "tiny", [*adapter_sets, *common]))
    full_speed = _steady(read_metrics(work / "full"), warmup)
    adapter_speed = _steady(read_metrics(work / "adapter"), warmup)
    return {
        "preset": "stage3/tiny",
        "expert_preset": expert,
        "samples_per_s_full": 1.0 / full_speed["s_per_sample"],
        "samples_per_s_adapter": 1.0 / adapter_speed["s_per_sample"],
        "adapter_speedup": full_speed["s_per_sample"] / adapter_speed["s_per_sample"],
    }


# --- a running chunk_node -----------------------------------------------------------------------
class TaskSwitchProbe:
    """The test's and the bench's side of a chunk_node serving adapters: publishes joint states
    (50 Hz) and VLM features under the current instruction (10 Hz), keeps the newest values of
    chunk_node's /diagnostics, and calls its ~/set_task. Its own rclpy context, spun on a thread."""

    def __init__(self, vlm_dim: int, instruction: str, node_name: str = "chunk_node") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from psi0_ros import g1
        from psi0_ros.constants import TOPIC_DIAGNOSTICS, TOPIC_INSTRUCTION, TOPIC_JOINT_STATES, TOPIC_VLM_FEATURES
        from psi0_ros.msg import VLMFeatures
        from psi0_ros.srv import SetTask

        # chunk_node's profiles (reliable; the instruction latched), without importing the nodes.
        control, latest = QoSProfile(depth=10), QoSProfile(depth=1)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)

        from psi0_ros.transport import apply_transport_defaults

        apply_transport_defaults()  # chunk_node's transports (before the participant is made)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("psi0_task_switch_probe", context=self.context)
        self.lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.instruction = instruction
        self._features = np.random.default_rng(0).normal(size=(8, vlm_dim)).astype(np.float32)
        self._seq = 0
        self._joints = JointState(name=list(g1.ALL_JOINTS), position=[float(v) for v in g1.table("default")])
        self._joint_pub = self.node.create_publisher(JointState, TOPIC_JOINT_STATES, control)
        self._features_pub = self.node.create_publisher(VLMFeatures, TOPIC_VLM_FEATURES, latest)
        self._instruction_pub = self.node.create_publisher(String, TOPIC_INSTRUCTION, latched)
        self.node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diagnostics, control)
        self.client = self.node.create_client(SetTask, f"/{node_name}/set_task")
        self._set_task_type = SetTask
        self.node.create_timer(0.02, self._publish_joints)
        self.node.create_timer(0.1, self._publish_features)
        self._instruction_pub.publish(String(data=instruction))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.closing = threading.Event()
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        while not self.closing.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _publish_joints(self) -> None:
        self._joints.header.stamp = self.node.get_clock().now().to_msg()
        self._joint_pub.publish(self._joints)

    def _publish_features(self) -> None:
        from psi0_ros.ros_messages import vlm_features_message

        self._seq += 1
        stamp = self.node.get_clock().now().to_msg()
        mask = np.ones(len(self._features), bool)
        self._features_pub.publish(vlm_features_message(self._features, mask, self.instruction, self._seq, stamp))

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("chunk_node"):
                with self.lock:
                    self.values = {kv.key: kv.value for kv in status.values}

    def value(self, key: str, default: str = "") -> str:
        with self.lock:
            return self.values.get(key, default)

    def number(self, key: str) -> int:
        return int(float(self.value(key, "0") or 0))

    def set_instruction(self, text: str) -> None:
        """A new instruction on /psi0/instruction; the features follow it (as vlm_node's do)."""
        from std_msgs.msg import String

        self.instruction = text
        self._instruction_pub.publish(String(data=text))

    def set_task(self, text: str, timeout: float = 30.0) -> Any:
        """Call ~/set_task; the response (success, message, task)."""
        if not self.client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError("chunk_node's ~/set_task never appeared")
        future = self.client.call_async(self._set_task_type.Request(task=text))
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"~/set_task({text!r}) got no response in {timeout} s")
            time.sleep(0.01)
        return future.result()

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                with self.lock:
                    values = dict(self.values)
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}; diagnostics: {values}")
            time.sleep(0.05)

    def close(self) -> None:
        import rclpy

        self.closing.set()
        self._spinner.join()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def start_chunk_node(base: Path, adapters: Sequence[Path], task: str, log: Path, *extra: str) -> subprocess.Popen:
    """chunk_node in its own process on `base` with `adapters`, diagnostics at 5 Hz, one torch thread."""
    from psi0_ros.transport import apply_transport_defaults

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    apply_transport_defaults(env)
    args = [
        "--ros-args",
        "-p",
        f"checkpoint:={base}",
        "-p",
        f"adapters:=[{','.join(str(a) for a in adapters)}]",
        "-p",
        f"task:={task}",
        "-p",
        "diagnostics_rate_hz:=5.0",
        "-p",
        # a tiny model: with torch's default threads, one other busy process on this 2-core machine took
        # its inference from ~9 ms to ~1 s (the intra-op threads wait for each other at every operator)
        "torch_threads:=1",
        *extra,
    ]
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "psi0_ros.nodes.chunk_node", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def switch_until_landed(probe: TaskSwitchProbe, task: str, switch: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Ask for `task` by `switch()`, wait until a chunk of it landed; (response, latency, effect)."""
    landed = probe.number("task_switches_landed")
    response = switch()
    probe.wait(
        lambda: probe.value("active_task") == task and probe.number("task_switches_landed") > landed,
        f"task {task!r} to land",
        timeout,
    )
    return response, probe.number("task_switch_latency_ticks"), probe.number("task_switch_effect_ticks")


def measure_switches(work: Path, switches: int) -> dict[str, Any]:
    """Two random adapters on a tiny base in a running chunk_node; alternate them by ~/set_task."""
    from psi0_ros.policy.tiny import write_tiny_checkpoint

    base = write_tiny_checkpoint(work / "base", with_vlm=False)
    tasks = ("cup", "drawer")
    adapters = [
        write_random_adapter(work / task, base, task, [f"the {task} task"], seed=i) for i, task in enumerate(tasks)
    ]
    process = start_chunk_node(base, adapters, tasks[0], work / "chunk_node.log")
    probe = TaskSwitchProbe(vlm_dim=64, instruction=f"the {tasks[0]} task")
    try:
        probe.wait(lambda: probe.number("executed") >= 60, "60 executed ticks", timeout=120.0)
        missed_before = probe.number("missed")
        latencies, effects = [], []
        rng = np.random.default_rng(0)
        for i in range(switches):
            task = tasks[(i + 1) % len(tasks)]
            time.sleep(float(rng.uniform(0.1, 0.6)))  # switches at different phases of a chunk
            response, latency, effect = switch_until_landed(probe, task, lambda t=task: probe.set_task(t))
            if not response.success:
                raise RuntimeError(f"~/set_task({task!r}) refused: {response.message}")
            latencies.append(latency)
            effects.append(effect)
        missed = probe.number("missed") - missed_before
        horizon = 16  # tiny_policy_config: chunks of 16, min execution horizon 8
        return {
            "switches": switches,
            "switch_latency_ticks": max(latencies),
            "switch_latency_ticks_all": latencies,
            "switch_effect_ticks": max(effects),
            "switch_effect_ticks_all": effects,
            "switch_missed_ticks": missed,
            "min_execution_horizon": horizon // 2,
            "checkpoint_loads": probe.number("checkpoint_loads"),
            "adapter_loads": probe.number("adapter_loads"),
        }
    finally:
        probe.close()
        stop_process(process)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from psi0_ros.bench.policy import expert_presets

    presets = expert_presets(args.presets)
    work = args.dir or Path(tempfile.mkdtemp(prefix="psi0-bench-adapters-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = {}
        for preset in presets:
            _log(f"sizes: {preset}")
            rows[preset] = size_row(preset, args.rank, work)
        full = rows.get("psi0") or rows[presets[-1]]
        training = training_speed(work / "training", args.rank, args.steps, args.warmup, args.train_expert)
        _log("switching in a running chunk_node")
        switching = measure_switches(work / "switching", args.switches)
        return {
            "adapter_param_fraction": full["adapter_param_fraction"],
            "adapter_param_fraction_preset": full["preset"],
            "adapter_file_mb": full["adapter_file_mb"],
            "switch_latency_ticks": switching["switch_latency_ticks"],
            "switch_missed_ticks": switching["switch_missed_ticks"],
            "targets": {
                "adapter_param_fraction_max": TARGET_FRACTION,
                "switch_latency_ticks_max": switching["min_execution_horizon"],
                "switch_missed_ticks": 0,
                "met": full["adapter_param_fraction"] <= TARGET_FRACTION
                and switching["switch_latency_ticks"] <= switching["min_execution_horizon"]
                and switching["switch_missed_ticks"] == 0,
            },
            "sizes": rows,
            "training": training,
            "switching": switching,
        }
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
