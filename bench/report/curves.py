"""Training curves per objective: the training loss (left) and the validation score used for
checkpoint selection (right) against the step, one line per objective at the group's largest V,
mean over seeds at each recorded step. Read from each result's `training.loss_curve` and
`training.history`; files written before the loss was recorded draw the validation curve only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .headline import metric_label
from .load import objective_rank
from .plots import _pyplot, _save_figure, _wrap


def _mean_curve(curves: list[list[dict]], key: str) -> tuple[list[int], list[float]]:
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for point in curve or []:
            if isinstance(point, dict) and key in point and point[key] is not None:
                by_step.setdefault(int(point["step"]), []).append(float(point[key]))
    steps = sorted(by_step)
    return steps, [float(np.mean(by_step[s])) for s in steps]


def plot_training_curves(data: pd.DataFrame, path: Path, title: str) -> tuple[Path | None, bool]:
    """(the PNG, whether any loss curve was found); (None, False) when no run has a curve."""
    if "training_history" not in data.columns:
        return None, False
    views = int(data["views"].max())
    rows = data[data["views"] == views]
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8))
    any_loss = any_val = False
    for label in sorted(rows["objective_label"].unique(), key=objective_rank):
        runs = rows[rows["objective_label"] == label]
        steps, losses = _mean_curve(list(runs["training_loss_curve"]), "loss")
        if steps:
            ax_loss.plot(steps, losses, label=label)
            any_loss = True
        steps, scores = _mean_curve(list(runs["training_history"]), "val")
        if steps:
            ax_val.plot(steps, scores, marker="o" if len(steps) < 15 else None, label=label)
            any_val = True
    if not (any_loss or any_val):
        plt.close(fig)
        return None, False
    metric = rows["select_metric"].dropna().iloc[0] if "select_metric" in rows and rows["select_metric"].notna().any() else "validation score"
    ax_loss.set_title("training loss" if any_loss else "training loss: not recorded in these result files", fontsize=9)
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("loss (objective's own scale)")
    ax_val.set_title(f"validation (selects the checkpoint): {metric_label(str(metric))}", fontsize=9)
    ax_val.set_xlabel("training step")
    ax_val.set_ylabel(metric_label(str(metric)))
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(_wrap(f"{title}, V={views}", 120), fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path), any_loss
