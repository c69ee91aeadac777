"""loss.png from a training run's metrics.csv: the training loss per step, the held-out
validation loss beside it, and the held-out first-action arm error on a second axis.

metrics.csv (training/engine.py) has a row per step; the validation columns (val_loss,
val_arms_first_rad, val_hold_state_arms_first_rad, ...; training/validation.py) have values only
at the steps that validated, empty elsewhere. A file without validation columns draws the
training loss alone.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _column(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that have a value for key."""
    pairs = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [s for s, _ in pairs], [v for _, v in pairs]


def plot_training_curves(metrics_csv: Path, out: Path, title: str = "") -> Path:
    """Draw metrics_csv's curves into out (PNG); ValueError when it has no loss rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(metrics_csv).open() as f:
        rows = list(csv.DictReader(f))
    steps, losses = _column(rows, "loss")
    if not steps:
        raise ValueError(f"{metrics_csv} has no loss rows")
    val_steps, val_losses = _column(rows, "val_loss")
    err_steps, arm_errors = _column(rows, "val_arms_first_rad")
    hold_steps, hold_errors = _column(rows, "val_hold_state_arms_first_rad")

    figure, axis = plt.subplots(figsize=(7, 4.4))
    axis.plot(steps, losses, linewidth=0.6, alpha=0.5, color="tab:blue", label="train loss")
    if len(losses) >= 10:
        window = max(2, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axis.plot(steps[window - 1 :], smooth, linewidth=1.5, color="tab:blue", label=f"train loss, mean of {window}")
    if val_steps:
        axis.plot(val_steps, val_losses, "o-", markersize=3, linewidth=1.5, color="tab:orange", label="val loss")
    every = losses + val_losses
    axis.set_yscale("log" if min(every) > 0 else "linear")
    axis.set_xlabel("step")
    axis.set_ylabel("flow-matching loss")
    axis.grid(alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    if err_steps:
        errors = axis.twinx()
        errors.plot(err_steps, arm_errors, "s--", markersize=3, color="tab:green", label="val arms first-action error")
        if hold_steps:
            errors.plot(hold_steps, hold_errors, ":", color="tab:gray", label="val hold-state baseline")
        errors.set_ylabel("arms first-action error (rad)")
        errors.set_ylim(bottom=0)
        more_handles, more_labels = errors.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axis.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    out = Path(out)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out
