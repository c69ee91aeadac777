"""The main job's report: OUT/report.md with its images (ROS-free).

- rollout.gif: the first evaluation episode from the head camera (left) and a scene camera
  (right), rendered from its world snapshots (psi0_ros.jobs.evaluation.render_rollout);
- predicted_vs_expert.png: for one demonstration episode, the chunks the trained policy predicts
  from a few of its observations (image, state, instruction) over the expert's recorded actions,
  for the four action dimensions that move most in that episode;
- loss.png: the stage-3 training loss per step (from the trainer's metrics.csv);
- report.md: success rate, per-episode outcome, those images.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np


def plot_loss(metrics_csv: Path, out: Path) -> Path:
    """loss.png: training loss, and the held-out loss and arm error when the run validated."""
    from psi0_ros.loss_plot import plot_training_curves

    return plot_training_curves(metrics_csv, out, title="stage-3 training")


def predicted_vs_expert(checkpoint: Path, episode_file: Path, out: Path, frames: int = 4) -> dict[str, Any]:
    """Plot the policy's chunks from `frames` observations of one episode over its recorded actions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from psi0_ros.constants import ACTION_NAMES
    from psi0_ros.data.hdf5 import read_episode
    from psi0_ros.policy.interface import Observation, Policy

    episode = read_episode(episode_file)
    policy = Policy.from_checkpoint(checkpoint, seed=0)
    camera = next(iter(episode.images))
    images = episode.images[camera]
    instruction = str(episode.attrs.get("task", ""))
    actions = np.asarray(episode.action, dtype=np.float64)
    length = actions.shape[0]
    dims = list(np.argsort(actions.std(axis=0))[::-1][:4])
    starts = np.linspace(0, max(0, length - policy.horizon), frames).astype(int)
    chunks = []
    for t in starts:
        frame = images[t]
        image = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB")) if isinstance(frame, bytes) else frame
        chunk = policy.infer(Observation(state=episode.state[t], image=image, instruction=instruction))
        chunks.append((int(t), chunk))
    fig, axes = plt.subplots(len(dims), 1, figsize=(8, 2.0 * len(dims)), sharex=True)
    errors = []
    for ax, dim in zip(np.atleast_1d(axes), dims, strict=True):
        ax.plot(np.arange(length), actions[:, dim], color="black", lw=1.2, label="expert")
        for k, (t, chunk) in enumerate(chunks):
            span = np.arange(t, min(length, t + chunk.shape[0]))
            ax.plot(span, chunk[: len(span), dim], color="tab:red", lw=1.2, label="predicted" if k == 0 else None)
        ax.set_ylabel(ACTION_NAMES[dim], fontsize=7)
        ax.grid(alpha=0.3)
    for t, chunk in chunks:
        span = min(length - t, chunk.shape[0])
        errors.append(float(np.abs(chunk[:span] - actions[t : t + span]).mean()))
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=7)
    np.atleast_1d(axes)[-1].set_xlabel("control tick (30 Hz)")
    fig.suptitle(f"predicted chunks vs expert actions: {episode_file.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return {"episode": str(episode_file), "dims": [ACTION_NAMES[d] for d in dims], "mean_abs_error": errors}


LAYOUT_TEXT = {
    "full": "can, basket and cube anywhere in the placement area, either hand",
    "lab": "can, basket and cube each uniform within +-5 cm of a fixed spot, docs/sim.md",
}
OPEN_LOOP_ROWS = (
    ("arms, first action (rad)", "arms_first_rad", "hold_state_arms_first_rad", "nearest_arms_first_rad"),
    ("arms, whole chunk (rad)", "arms_chunk_rad", "hold_state_arms_chunk_rad", "nearest_arms_chunk_rad"),
    ("hands, first action (rad)", "hands_first_rad", "hold_state_hands_first_rad", "nearest_hands_first_rad"),
    ("vx, vy, first action (m/s)", "lower_velocity_first", "hold_state_lower_velocity_first", None),
)


def open_loop_table(open_loop: dict[str, Any]) -> list[str]:
    """Markdown: the policy's open-loop errors beside the trivial baselines, per split."""

    def cell(metrics: dict[str, Any], key: str | None) -> str:
        return f"{metrics[key]:.4f}" if key and key in metrics else "-"

    lines = [
        "## Open loop (the policy's chunks against the recorded actions)",
        "",
        "| split | frames | what | policy | hold current state | nearest training frame |",
        "|---|---|---|---|---|---|",
    ]
    for split in ("train", "held_out"):
        metrics = open_loop.get(split)
        if not metrics:
            continue
        for label, policy, hold, nearest in OPEN_LOOP_ROWS:
            row = f"| {split} | {metrics['frames']} | {label} | {cell(metrics, policy)} | {cell(metrics, hold)} |"
            lines.append(row + f" {cell(metrics, nearest)} |")
        bias, spread = cell(metrics, "bias_arms_rad"), cell(metrics, "spread_arms_rad")
        jitter, expert = cell(metrics, "jitter_arms"), cell(metrics, "expert_jitter_arms")
        lines.append(
            f"| {split} | | arms: bias of the mean chunk / sampling spread {bias} / {spread}; "
            f"jitter {jitter} (expert {expert}) | | | |"
        )
        if "walk_drift_m" in metrics:
            spread_ratio = cell(metrics, "walk_vy_spread_ratio")
            lines.append(
                f"| {split} | | first walk, chunks every {metrics['walk_every']} ticks on the recorded observations: "
                f"base rests {metrics['walk_drift_m']:.4f} m (median) from the recording's stop, "
                f"{metrics['walk_drift_within_15mm']:.0%} of {metrics['walk_episodes']} episodes within 1.5 cm; "
                f"vy spread over layouts / recorded {spread_ratio} | | | |"
            )
    lines += [""]
    return lines


def write_report(
    out: Path,
    task: str,
    demos_dir: Path,
    episodes_dir: Path,
    train_dir: Path,
    summary: dict[str, Any],
    plot_frames: int = 4,
    seen: dict[str, Any] | None = None,
    open_loop: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write OUT/report.md and its images; returns what was written (paths and plot data).

    summary: `psi0 eval` on new layouts; seen: the same on the demonstrations' own layouts (or
    None); open_loop: `psi0 eval --open-loop`'s JSON with "train" and "held_out" splits (or None)."""
    import json

    from psi0_ros.jobs.evaluation import render_rollout

    out = Path(out)
    written: dict[str, Any] = {}
    traces = sorted((out / "eval_episodes").glob("trace_*.npz"))
    if traces:
        index = int(traces[0].stem.split("_")[1])
        written["gif_frames"] = render_rollout(traces[0], summary["layout_seeds"][index], out / "rollout.gif")
        written["gif"] = str(out / "rollout.gif")
    written["loss_plot"] = str(plot_loss(train_dir / "metrics.csv", out / "loss.png"))
    episode_files = sorted(Path(episodes_dir).rglob("*.hdf5"))
    if not episode_files:
        raise FileNotFoundError(f"no episodes (*.hdf5) under {episodes_dir}")
    written["prediction"] = predicted_vs_expert(
        train_dir / "checkpoint", episode_files[0], out / "predicted_vs_expert.png", plot_frames
    )
    demos = json.loads((Path(demos_dir) / "demos.json").read_text())
    layout = summary.get("layout", "full")
    lines = [
        f"# psi0_ros main job: {task}",
        "",
        f"**Closed-loop success on new layouts: {summary['success_rate'] * 100:.0f}%** over "
        f"{len(summary['episodes'])} evaluation episodes (layout seeds {summary['layout_seeds'][0]}-"
        f"{summary['layout_seeds'][-1]}, none used by a demo)"
        + (
            f"; **on the demonstrations' own layouts: {seen['success_rate'] * 100:.0f}%** over "
            f"{len(seen['episodes'])} episodes (seeds {', '.join(str(x) for x in seen['layout_seeds'])})"
            if seen
            else ""
        )
        + ", through the deploy graph (vlm_node, chunk_node with RTC, robot_bridge_node on the simulated G1).",
        "",
        f"Layouts: `{layout}` ranges ({LAYOUT_TEXT.get(layout, layout)}), for demonstrations and evaluation alike.",
        "",
        f"- demonstrations: {len(demos['episodes'])} scripted-expert episodes, expert success "
        f"{demos['success_rate'] * 100:.0f}%; {len(episode_files)} HDF5 episodes after `psi0 convert`",
        f"- policy: stage-3 fine-tune, checkpoint {train_dir / 'checkpoint'}",
        f"- mean episode: {summary['mean_episode_s']:.1f} s simulated (limit {summary['max_episode_s']:g} s); "
        f"sim real-time factor during evaluation {summary['realtime_factor']:.2f}",
        "",
        "| episode | layout seed | outcome | sim s | wall s | real-time factor |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["episodes"]:
        outcome = "error: " + r["error"] if r.get("error") else ("success" if r.get("success") else "failure")
        lines.append(
            f"| {r.get('episode', '')} | {r['seed']} | {outcome} | {r.get('sim_time_s', 0.0):.1f} | "
            f"{r.get('wall_s', 0.0):.1f} | {r.get('realtime_factor', 0.0):.2f} |"
        )
    lines += [""]
    if seen:
        lines += ["Demonstrations' own layouts:", "", "| layout seed | outcome | sim s |", "|---|---|---|"]
        for r in seen["episodes"]:
            outcome = "error: " + r["error"] if r.get("error") else ("success" if r.get("success") else "failure")
            lines.append(f"| {r['seed']} | {outcome} | {r.get('sim_time_s', 0.0):.1f} |")
        lines += [""]
    if open_loop:
        lines += open_loop_table(open_loop)
    if "gif" in written:
        lines += ["## One rollout (head camera | scene camera)", "", "![rollout](rollout.gif)", ""]
    errors = ", ".join(f"{e:.3f}" for e in written["prediction"]["mean_abs_error"])
    lines += [
        "## Predicted vs expert actions",
        "",
        f"Chunks predicted from {plot_frames} observations of {Path(written['prediction']['episode']).name} "
        f"(red) over the expert's recorded actions (black); mean absolute error per chunk: {errors}.",
        "",
        "![predicted vs expert](predicted_vs_expert.png)",
        "",
        "## Training loss",
        "",
        "Training loss per step; with held-out demos, their flow loss and the arms' first-action error.",
        "",
        "![loss](loss.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    written["report"] = str(out / "report.md")
    return written
