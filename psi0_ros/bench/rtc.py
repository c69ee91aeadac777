"""`psi0 bench rtc`: the RTC scheduler's modes under injected inference latency.

The same tiny random policy (made here, nothing downloaded) runs behind the scheduler of
psi0_ros.control.scheduler in virtual time: each control tick (30 Hz) pops one action; an
inference requested at tick k lands at tick k + ceil(latency / tick period), i.e. the injected
latency replaces the wall time of the forward pass, so the result does not depend on how loaded
the machine is. The robot is a kinematic follower: its arm and hand joints reach each commanded target
within the tick and feed the next observation's state.

One row per (mode, latency) with:
  missed_ticks       ticks without a planned action (held or no command), after the first chunk
  max_junction_jump  largest |step| [rad] (max over the 28 arm/hand dims) over each chunk switch:
                     from the landing tick through the first non-frozen action of the new chunk
  median_step        median |step| [rad] over all executed ticks
  junction_ratio     max_junction_jump / median_step
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from psi0_ros.constants import CONTROL_RATE_HZ
from psi0_ros.control.scheduler import (
    SCHEDULER_MODES,
    InferenceRequest,
    RTCScheduler,
    SchedulerConfig,
    TickOutput,
)
from psi0_ros.layout import (
    ACTION_LOWER_BODY,
    ACTION_UPPER_BODY,
    STATE_PADDED_DIM,
    STATE_TORSO,
    STATE_TORSO_COMMAND_COLUMNS,
    STATE_UPPER_BODY,
)

HELP = "RTC scheduler modes under injected latency: missed ticks and junction jumps (virtual time)"
DEFAULT_LATENCIES_MS = (0, 100, 200, 300)
RANDOM_POLICY_NOTE = (
    "a random policy: its missed ticks are the scheduler's, but its junction figures are not meaningful "
    "(it never learned to continue a prefix); give --checkpoint a trained one"
)
TRAINED_POLICY_NOTE = (
    "a trained policy on fixed random VLM features and a kinematic follower: junction figures of the "
    "scheduler and the policy's prefix handling; closed-loop success, jerk and collisions: psi0 ablate rtc"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modes", default=",".join(SCHEDULER_MODES), help="comma-separated scheduler modes")
    parser.add_argument(
        "--latencies-ms", default=",".join(str(v) for v in DEFAULT_LATENCIES_MS), help="injected latencies [ms]"
    )
    parser.add_argument("--ticks", type=int, default=300, help="control ticks per run (30 Hz)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny policy")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a trained checkpoint instead of the tiny random policy (junction jumps only mean something then)",
    )


def simulate(
    scheduler: RTCScheduler,
    infer: Callable[[InferenceRequest, int], np.ndarray],
    latency_ticks: Callable[[int], int],
    num_ticks: int,
    start_tick: int = 0,
    on_tick: Callable[[TickOutput], None] | None = None,
) -> list[dict[str, Any]]:
    """Drive a scheduler in virtual time. infer(request, tick) -> (H, 36) runs at request time;
    its result lands latency_ticks(request_id) ticks later, before that tick runs. Returns one
    record per delivered chunk: request, landing tick, the ChunkRecord."""
    pending: list[tuple[int, InferenceRequest, np.ndarray]] = []
    delivered: list[dict[str, Any]] = []
    for tick in range(start_tick, start_tick + num_ticks):
        for item in [p for p in pending if p[0] <= tick]:
            pending.remove(item)
            land, request, actions = item
            record = scheduler.deliver(request, actions, (land - request.start_tick) / CONTROL_RATE_HZ)
            delivered.append({"request": request, "land": land, "record": record})
        if scheduler.should_request(tick):
            request = scheduler.make_request(tick)
            actions = infer(request, tick)
            pending.append((tick + max(0, latency_ticks(request.request_id)), request, actions))
        if pending and pending[0][0] <= tick:  # zero latency: lands before this tick runs
            land, request, actions = pending.pop(0)
            record = scheduler.deliver(request, actions, 0.0)
            delivered.append({"request": request, "land": land, "record": record})
        output = scheduler.on_tick(tick)
        if on_tick is not None:
            on_tick(output)
    return delivered


def run_mode(
    mode: str, latency_ms: float, ticks: int, seed: int = 0, threads: int = 1, checkpoint: str | None = None
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)  # a tiny model: more threads only contend on a loaded machine
    from psi0_ros.policy.interface import ActionPrefix, Observation, Policy

    if checkpoint is None:
        policy = _tiny_policy(mode, seed)
    else:
        policy = Policy.from_checkpoint(checkpoint, load_vlm=False, seed=seed, rtc_mode=SCHEDULER_MODES[mode])
    config = SchedulerConfig(
        mode=mode, min_execution_horizon=max(1, policy.horizon // 2), max_delay=policy.config.flow.max_delay
    )
    scheduler = RTCScheduler(config, horizon=policy.horizon)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((8, policy.config.expert.vlm_dim)).astype(np.float32)
    position = np.zeros(ACTION_UPPER_BODY.stop, dtype=np.float64)  # the follower's arm/hand joints
    commanded: dict[int, np.ndarray] = {}
    state = np.zeros(STATE_PADDED_DIM, dtype=np.float32)

    def infer(request: InferenceRequest, tick: int) -> np.ndarray:
        state[STATE_UPPER_BODY] = position
        last = scheduler.last_action
        if last is not None:  # the torso values in the state are the commanded ones (layout.build_state)
            state[STATE_TORSO] = last[ACTION_LOWER_BODY][STATE_TORSO_COMMAND_COLUMNS]
        prefix = None
        if request.prefix is not None:
            prefix = ActionPrefix(request.prefix[: policy.horizon].astype(np.float32), request.delay)
        return policy.infer(Observation(state=state.copy(), vlm_features=features), prefix)

    def on_tick(output: TickOutput) -> None:
        if output.action is not None:
            position[:] = output.action[ACTION_UPPER_BODY]  # kinematic follower: reaches each target within a tick
        if output.action is not None and not output.holding:
            commanded[output.tick] = output.action

    latency_ticks = math.ceil(latency_ms / 1000.0 * CONTROL_RATE_HZ - 1e-9)
    delivered = simulate(scheduler, infer, lambda _: latency_ticks, ticks, on_tick=on_tick)
    return summarise(mode, latency_ms, commanded, delivered, ticks)


def summarise(
    mode: str, latency_ms: float, commanded: dict[int, np.ndarray], delivered: list[dict[str, Any]], ticks: int
) -> dict[str, Any]:
    first = min(commanded) if commanded else ticks
    missed = sum(1 for t in range(first, ticks) if t not in commanded)
    step_at = dict(zip(range(first + 1, ticks), _steps_by_tick(commanded, first, ticks), strict=False))
    steps = [s for s in step_at.values() if s is not None]
    jumps = []
    for item in delivered[1:]:
        record = item["record"]
        if not record.insert.accepted:
            continue
        end = max(item["land"], record.start_tick + record.prefix_length) + 1
        window = [step_at[t] for t in range(item["land"], end + 1) if step_at.get(t) is not None]
        if window:
            jumps.append(max(window))
    median = float(np.median(steps)) if steps else 0.0
    worst = max(jumps) if jumps else 0.0
    return {
        "mode": mode,
        "latency_ms": latency_ms,
        "missed_ticks": missed,
        "max_junction_jump": worst,
        "median_step": median,
        "junction_ratio": worst / median if median > 0 else None,
        "chunks": len(delivered),
    }


def _steps_by_tick(commanded: dict[int, np.ndarray], first: int, ticks: int) -> list[float | None]:
    out: list[float | None] = []
    for t in range(first + 1, ticks):
        if t in commanded and t - 1 in commanded:
            out.append(float(np.abs(commanded[t][ACTION_UPPER_BODY] - commanded[t - 1][ACTION_UPPER_BODY]).max()))
        else:
            out.append(None)
    return out


def _tiny_policy(mode: str, seed: int) -> Any:
    import dataclasses

    import torch

    from psi0_ros.policy.config import FlowConfig, PolicyConfig, RTCConfig, expert_preset
    from psi0_ros.policy.interface import Policy
    from psi0_ros.policy.mmdit import ActionExpert
    from psi0_ros.policy.tiny import randomize_modulation, synthetic_stats
    from psi0_ros.policy.transforms import Normalizer

    config = PolicyConfig(
        expert=expert_preset("tiny", horizon=30),
        flow=FlowConfig(num_steps=4, max_delay=8),
        rtc=RTCConfig(mode=SCHEDULER_MODES[mode]),
    )
    torch.manual_seed(seed)
    expert = randomize_modulation(ActionExpert(config.expert), seed=seed)
    normalizer = Normalizer(synthetic_stats(seed), config.norm.mode, config.norm.normalize_state)
    return Policy(dataclasses.replace(config), expert, normalizer, seed=seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in SCHEDULER_MODES]
    if unknown:
        raise SystemExit(f"psi0 bench rtc: unknown modes {unknown}; known: {list(SCHEDULER_MODES)}")
    latencies = [float(v) for v in args.latencies_ms.split(",") if v.strip()]
    if args.checkpoint is None:
        print(f"psi0 bench rtc: {RANDOM_POLICY_NOTE}", file=sys.stderr)
    rows = []
    with tqdm(total=len(modes) * len(latencies), desc="rtc modes") as bar:
        for mode in modes:
            for latency in latencies:
                rows.append(run_mode(mode, latency, args.ticks, args.seed, args.threads, args.checkpoint))
                bar.update(1)
    return {
        "policy": args.checkpoint or "tiny random",
        "note": RANDOM_POLICY_NOTE if args.checkpoint is None else TRAINED_POLICY_NOTE,
        "control_rate_hz": CONTROL_RATE_HZ,
        "min_execution_horizon": "horizon // 2 (15 for Psi0's 30)",
        "rows": rows,
    }
