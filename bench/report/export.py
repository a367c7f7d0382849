"""Result files as one long table: one row per run x task x metric, with the config columns.

For pandas, spreadsheets and dashboards: filter on any config field, pivot on task or metric.
Columns, in order: ``run_id``, ``file``, ``config_hash``, ``created``, ``dataset``, ``objective``,
``views``, ``seed``, ``precision``, then every config field flattened with dots
(``objective_config.primary_weight``, ``train_config.lr``, ``dataset_config.items``, ...; lists
and other non-scalars as JSON text), then ``task``, ``metric``, ``value``, and from the metric
registry (`ftbench.eval.metric_registry`) ``metric_label`` (``Recall@10``) and ``higher_is_better``.
The count rows the result files hold beside the metrics (``queries``) are kept, as metric
``queries``, with both left empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..eval.metric_registry import metric_label, metric_of
from .load import load_run_results

FORMATS = ("csv", "parquet")
TAIL = ["task", "metric", "value", "metric_label", "higher_is_better"]
LEAD = ["run_id", "file", "config_hash", "created", "dataset", "objective", "views", "seed", "precision"]


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def export_frame(results_dir: Path | str) -> tuple[pd.DataFrame, list]:
    """(long table, unreadable files with their reasons) of the result files under `results_dir`."""
    loaded = load_run_results(Path(results_dir))
    rows = []
    for path, result in loaded.runs:
        config: dict = {}
        _flatten("", {k: v for k, v in result.config.items() if k.endswith("_config")}, config)
        base = {
            "run_id": result.run_id,
            "file": str(path),
            "config_hash": result.config_hash,
            "created": result.created,
            "dataset": result.config.get("dataset"),
            "objective": result.config.get("objective"),
            "views": result.config.get("views"),
            "seed": result.config.get("seed"),
            "precision": result.config.get("precision", "fp32"),
            **config,
        }
        for task, values in result.metrics.items():
            for metric, value in values.items():
                entry = metric_of(metric)
                rows.append(
                    {
                        **base,
                        "task": task,
                        "metric": metric,
                        "value": float(value),
                        "metric_label": metric_label(metric) if entry else None,
                        "higher_is_better": entry[0].higher_is_better if entry else None,
                    }
                )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=LEAD + TAIL), loaded.unreadable
    config_cols = sorted(c for c in frame.columns if c not in LEAD and c not in TAIL)
    return frame[LEAD + config_cols + TAIL], loaded.unreadable


def write_export(frame: pd.DataFrame, out: Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(out, index=False)
    else:
        # mixed-type config columns (a field that is a number in one run, text in another) as text
        frame = frame.copy()
        for col in frame.columns:
            if frame[col].dtype == object and col not in ("task", "metric", "metric_label", "higher_is_better"):
                frame[col] = frame[col].map(lambda v: None if v is None else str(v))
        try:
            frame.to_parquet(out, index=False)
        except ImportError as exc:
            raise ImportError(f"--format parquet needs pyarrow (pip install pyarrow), or use --format csv ({exc})") from None
    return out
