"""Training curves per objective: the training loss (left) and the validation score used for
checkpoint selection (right) against the step, one line per objective at the group's largest V,
mean over seeds at each recorded step. Read from each result's `training.loss_curve` and
`training.history`; files written before the loss was recorded draw the validation curve only.
Where validation ran only once (at the last step: `train.eval_every` 0 or not below `train.steps`)
the validation panel shows that one score per objective, not a curve."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class TrainingCurves:
    """The training-curves PNG of a group and what it could draw.

    `has_loss`: a loss curve was found (older result files have none); `single_validation_step`:
    the one step at which validation ran when no objective was validated more than once (e.g.
    `train.steps` < `train.eval_every`: only the end-of-training check), else None.
    """

    path: Path
    has_loss: bool
    single_validation_step: int | None


def plot_training_curves(data: pd.DataFrame, path: Path, title: str) -> TrainingCurves | None:
    """The two panels (loss, validation) for one group's rows; None when no run has a curve.

    With one validation point per objective there is no curve to draw: the right panel is then a
    dot per objective on a categorical axis (a step axis would show one x-value with a made-up
    range around it, and dots at equal scores hide each other), titled with the step."""
    if "training_history" not in data.columns:
        return None
    views = int(data["views"].max())
    rows = data[data["views"] == views]
    labels = sorted(rows["objective_label"].unique(), key=objective_rank)
    losses = {
        label: _mean_curve(list(rows.loc[rows["objective_label"] == label, "training_loss_curve"]), "loss") for label in labels
    }
    scores = {label: _mean_curve(list(rows.loc[rows["objective_label"] == label, "training_history"]), "val") for label in labels}
    any_loss = any(steps for steps, _ in losses.values())
    validated = {label: curve for label, curve in scores.items() if curve[0]}
    if not (any_loss or validated):
        return None
    validation_steps = {step for steps, _ in validated.values() for step in steps}
    single = (
        next(iter(validation_steps))
        if validated and all(len(steps) == 1 for steps, _ in validated.values()) and len(validation_steps) == 1
        else None
    )
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    for label, (steps, values) in losses.items():
        if steps:
            ax_loss.plot(steps, values, label=label, color=colours[label])
    metric = (
        rows["select_metric"].dropna().iloc[0]
        if "select_metric" in rows and rows["select_metric"].notna().any()
        else "validation score"
    )
    if single is None:
        for label, (steps, values) in validated.items():
            ax_val.plot(steps, values, marker="o" if len(steps) < 15 else None, label=label, color=colours[label])
        ax_val.set_title(f"validation (selects the checkpoint): {metric_label(str(metric))}", fontsize=9)
        ax_val.set_xlabel("training step")
        if ax_val.get_legend_handles_labels()[0]:
            ax_val.legend(fontsize=7)
    else:
        names = list(validated)
        ax_val.scatter(range(len(names)), [validated[n][1][0] for n in names], c=[colours[n] for n in names], zorder=3)
        ax_val.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax_val.set_xlim(-0.6, len(names) - 0.4)
        ax_val.set_title(
            f"validation (selects the checkpoint): {metric_label(str(metric))}\n"
            f"ran once, at the last step ({single}): one score per objective, no curve",
            fontsize=9,
        )
    ax_val.set_ylabel(metric_label(str(metric)))
    ax_loss.set_title("training loss" if any_loss else "training loss: not recorded in these result files", fontsize=9)
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("loss (objective's own scale)")
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize=7)
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
    fig.suptitle(_wrap(f"{title}, V={views}", 120), fontsize=10)
    fig.tight_layout()
    return TrainingCurves(_save_figure(fig, path), any_loss, single)
