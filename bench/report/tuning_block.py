"""The results frame's columns for a run's `tuning` block (`ftbench tune` reruns).

A leaf module: `load` builds the frame with it, and the tuning section of the report
(`tuning`), which reads the frame, imports `load`.
"""

from __future__ import annotations

from typing import Any


def tuning_columns(tuning: dict[str, Any] | None) -> dict[str, Any]:
    """The frame columns of one run's `tuning` block (empty block: an untuned run)."""
    tuning = tuning or {}
    params = tuning.get("best_params") or {}
    return {
        "tuned": bool(tuning),
        "tuning_base_group": tuning.get("base_group"),
        "tuning_default_objective_config": tuning.get("default_objective_config"),
        "tuning_study": tuning.get("study"),
        "tuning_trials": (
            f"{tuning.get('completed', 0)} + {tuning.get('pruned', 0)} pruned of {tuning.get('trials')}"
            + (f", {tuning['failed']} failed" if tuning.get("failed") else "")
        )
        if tuning
        else None,
        "tuning_best_params": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
        if tuning
        else None,
    }
