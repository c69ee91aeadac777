"""`psi0 ablate head`: Psi0's MM-DiT action expert against a naive DiT (psi0_ros.policy.dit).

Both heads are trained by `psi0 train stage3` with the same preset, overrides and demos, only
model.expert_arch differing (or two trained checkpoints are given), then measured the same way:
- parameters of the action expert;
- open-loop error on recorded episodes (psi0_ros.open_loop.open_loop_metrics: arms first-action
  and whole-chunk error against the recorded actions, one chunk per sampled frame);
- inference time: the median wall time of one chunk from VLM features (what chunk_node runs per
  inference: the sampler's Euler steps through the expert), on this machine's CPU or GPU;
- closed-loop success on the same evaluation layouts (psi0_ros.jobs.evaluation.evaluate), with
  collisions and the motion figures per episode; episodes=0 leaves the closed loop out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros import cli
from psi0_ros.jobs import ablation, child
from psi0_ros.jobs.evaluation import DEFAULT_MAX_EPISODE_S, evaluate
from psi0_ros.policy.config import EXPERT_ARCHS

MARKDOWN_COLUMNS = (
    ("arch", "action head", "{}"),
    ("parameters", "expert parameters", "{:,}"),
    ("arms_first_rad", "open loop: arms first (rad)", "{:.4f}"),
    ("arms_chunk_rad", "open loop: arms chunk (rad)", "{:.4f}"),
    ("inference_ms", "inference per chunk (ms)", "{:.1f}"),
    ("success_rate", "closed-loop success", "{:.2f}"),
    ("collisions", "collisions/ep", "{:.2f}"),
)


OPEN_LOOP_STRIDE = 10  # one sampled chunk per 10th frame of the scored episodes


def run_training(args: Sequence[str]) -> float:
    """`psi0 ARGS` (a training) in a child process; its wall time [s], RuntimeError when it fails."""
    started = time.monotonic()
    status = child.run_module(cli, list(args))
    if status != 0:
        raise RuntimeError(f"`psi0 {' '.join(args)}` failed with exit status {status}")
    return time.monotonic() - started


def train_head(arch: str, demos: Path, out: Path, preset: str, overrides: Sequence[str]) -> Path:
    """`psi0 train stage3` of one head (a child process); returns its checkpoint directory."""
    args = ["train", "stage3", "--preset", preset, "--set", f"run.output_dir={out}", "--set", f"data.root={demos}"]
    for override in overrides:
        args += ["--set", override]
    args += ["--set", f"model.expert_arch={arch}"]  # last: the one setting that differs
    run_training(args)
    return out / "checkpoint"


def score_open_loop(policy: Any, episodes: Sequence[Any]) -> tuple[int, dict[str, Any]]:
    """(expert parameters, open-loop summary on `episodes`) of a loaded policy."""
    from psi0_ros.open_loop import open_loop_metrics

    parameters = int(sum(p.numel() for p in policy.expert.parameters()))
    return parameters, open_loop_metrics(policy, episodes, samples=1, stride=OPEN_LOOP_STRIDE)


def inference_ms(policy: Any, episode: Any, repeats: int) -> float:
    """Median wall ms of one chunk from the VLM features of the episode's first frame."""
    from psi0_ros.policy.interface import Observation

    features, mask = policy.encode(episode.image(0), episode.instruction)
    observation = Observation(state=episode.state[0], vlm_features=features, vlm_mask=mask)
    policy.infer(observation)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.infer(observation)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def measure_head(
    checkpoint: Path,
    episodes: Sequence[Any],
    timing_repeats: int,
    device: str = "cpu",
) -> dict[str, Any]:
    """Parameters, open-loop error and inference time of one trained head."""
    from psi0_ros.policy.interface import Policy

    policy = Policy.from_checkpoint(checkpoint, device=device, load_vlm=True)
    parameters, open_loop = score_open_loop(policy, episodes)
    return {
        "arch": policy.config.expert.arch,
        "checkpoint": str(checkpoint),
        "parameters": parameters,
        "arms_first_rad": open_loop["arms_first_rad"],
        "arms_chunk_rad": open_loop["arms_chunk_rad"],
        "open_loop": open_loop,
        "inference_ms": inference_ms(policy, episodes[0], timing_repeats),
    }


def ablate_head(
    work: Path,
    task: str,
    demos: Path | None = None,
    checkpoints: Sequence[Path] | None = None,
    held_out: Path | None = None,
    preset: str = "tiny",
    overrides: Sequence[str] = (),
    episodes: int = 10,
    seed: int = 0,
    max_episode_s: float = DEFAULT_MAX_EPISODE_S,
    layout: str = "full",
    timing_repeats: int = 20,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or take) both heads and measure them (module docstring); returns the document."""
    from psi0_ros.open_loop import read_episodes

    if (demos is None) == (checkpoints is None):
        raise ValueError("give either demos to train both heads on or two checkpoints (MM-DiT, DiT)")
    if episodes < 0 or timing_repeats < 1:
        raise ValueError(f"episodes must be >= 0 and timing_repeats >= 1, got {episodes} and {timing_repeats}")
    work = Path(work)
    if checkpoints is None:
        if not Path(demos).is_dir():
            raise FileNotFoundError(f"no demo directory {demos}")
        checkpoints = []
        for arch in EXPERT_ARCHS:
            log(f"psi0 ablate head: training the {arch} head on {demos}")
            checkpoints.append(train_head(arch, Path(demos), work / arch, preset, overrides))
    if len(checkpoints) != 2:
        raise ValueError(f"expected two checkpoints (MM-DiT, DiT), got {len(checkpoints)}")
    for checkpoint in checkpoints:
        if not (Path(checkpoint) / "config.json").is_file():
            raise FileNotFoundError(f"no checkpoint at {checkpoint} (config.json missing)")
    scored = held_out if held_out is not None else demos
    if scored is None:
        raise ValueError("with --checkpoints, give --held-out episodes for the open-loop error")
    recorded = read_episodes([Path(scored)])
    heads = []
    for checkpoint in checkpoints:
        head = measure_head(Path(checkpoint), recorded, timing_repeats)
        log(f"psi0 ablate head: {head['arch']}: {head['parameters']:,} parameters, {head['inference_ms']:.1f} ms/chunk")
        head.update(success_rate=None, collisions=None, errors=0)
        if episodes:
            summary = evaluate(
                Path(checkpoint),
                task,
                episodes,
                seed,
                work / f"eval_{head['arch']}",
                max_episode_s,
                trace_episodes=0,
                log=log,
                layout=layout,
            )
            ran = [e for e in summary["episodes"] if "collisions" in e]
            head.update(
                success_rate=summary["success_rate"],
                collisions=float(np.mean([e["collisions"]["total"] for e in ran])) if ran else None,
                errors=summary["errors"],
                layout_seeds=summary["layout_seeds"],
            )
        heads.append(head)
    archs = [h["arch"] for h in heads]
    if sorted(archs) != sorted(EXPERT_ARCHS):
        raise ValueError(f"the two checkpoints must be one MM-DiT and one DiT, got {archs}")
    return {
        "task": task,
        "demos": None if demos is None else str(demos),
        "open_loop_episodes": str(scored),
        "preset": preset if demos is not None else None,
        "overrides": list(overrides),
        "episodes": episodes,
        "seed": seed,
        "layout": layout,
        "heads": heads,
    }


def markdown_table(heads: Sequence[dict[str, Any]]) -> str:
    return ablation.markdown_table(heads, MARKDOWN_COLUMNS)
