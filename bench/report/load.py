"""Reading results for the report: every run result file under a folder, checked and flattened
into one pandas frame (one row per run), with the comparison group of each run (see `build`).

Torch-free: only the result files and `ftbench.schema` are read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import config_hash, to_jsonable
from ..eval.metric_registry import DEFAULT_METRICS, METRICS, metric_of
from ..run.identity import fingerprint_of, location_fields, without_locations
from ..run.results import RunResult, load_result
from ..schema import CROSS_VIEW_TASKS, MRR, PAPER_CLAIM, QUERY_TASK
from .tuning_block import tuning_columns

BASELINE = "clip"


QUERY_METRICS = ("recall@10", "recall@100", "recall@500", "ndcg@10")


# the "all metrics" table adds the top of the list (small catalogs: recall@10 is 1 at 12 items)
ALL_QUERY_METRICS = ("recall@1",) + QUERY_METRICS + (MRR,)


TOP_METRIC = "recall@10"


CROSS_VIEW_TABLE = (
    ("title->image", ("recall@1", "recall@10")),
    ("image->title", ("recall@1", "recall@10")),
    ("aux->item", ("recall@1", "recall@10")),
)


HEADLINE_METRIC = "recall@500"


def opt_in_metrics(data: pd.DataFrame, task: str) -> list[str]:
    """`task`'s metrics outside the default `eval.metrics` (map@K) that some row of `data` holds,
    by registry order then K: the columns the "all metrics" table adds (runs without them show —)."""
    found = []
    for column in data.columns:
        head, _, metric = column.partition("/")
        parsed = metric_of(metric) if head == task else None
        if parsed and parsed[0].name not in DEFAULT_METRICS and data[column].notna().any():
            found.append((list(METRICS).index(parsed[0].name), parsed[1] or 0, metric))
    return [metric for *_, metric in sorted(found)]


# studies/: dated measurements with their own summary (e.g. the tower start), not this release's runs
RESERVED_DIRS = ("cost", "report", "studies")


MISSING = "—"


# Label suffix of the untrained references' rows (frozen-primary, frozen-mean) in every table.
REFERENCE_MARK = "(untrained reference)"

# Preferred order of objectives in tables (others follow alphabetically).
OBJECTIVE_ORDER = ("clip", "factorized", "full_ot", "oat", "mover")


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
@dataclass
class LoadedResults:
    """Run results read from a folder, and the files that could not be read (with the reason)."""

    runs: list[tuple[Path, RunResult]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)  # same config hash as a newer file


def find_result_files(results_dir: Path) -> list[Path]:
    """Every `*.json` under `results_dir` except the `cost/` and `report/` folders, the `*.embeddings/`
    folders of `--save-embeddings` (their manifest.json is not a run result), hidden files, and a
    regime-map folder (one holding `design.json`: `ftbench advise` reads it)."""
    root = Path(results_dir)
    out = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).parts
        if (
            rel[0] in RESERVED_DIRS
            or any(part.startswith(".") or part.endswith(".embeddings") for part in rel[:-1])
            or rel[-1].startswith(".")
        ):
            continue
        if _is_regime_map_file(path):
            continue
        out.append(path)
    return out


def _is_regime_map_file(path: Path) -> bool:
    """Anything in a regime-map folder (one holding `design.json`): its design, validation, cell
    profiles and runs. The map's runs are read by `ftbench advise` as one map, not compared here
    group by group (32 cells would be 32 groups of one cell each)."""
    folder = path.parent.parent if path.parent.name == "profiles" else path.parent
    return (folder / "design.json").is_file()


def load_run_results(results_dir: Path) -> LoadedResults:
    """Load every run result under `results_dir`; unreadable files are listed, not fatal.

    Two files with the same config hash are the same run (e.g. a copy); the newer (`created`)
    is kept and the other listed in `duplicates`.
    """
    loaded = LoadedResults()
    by_hash: dict[str, tuple[Path, RunResult]] = {}
    for path in find_result_files(results_dir):
        try:
            result = load_result(path)
            _check_run_result(result)
        except (ValueError, TypeError, OSError) as exc:
            reason = str(exc)
            if reason.startswith(f"{path}: "):  # load_result names the file; the report lists it already
                reason = reason[len(f"{path}: ") :]
            loaded.unreadable.append((path, reason))
            continue
        previous = by_hash.get(result.config_hash)
        if previous is not None:
            older, newer = sorted([previous, (path, result)], key=lambda pr: (pr[1].created, str(pr[0])))
            loaded.duplicates.append(older[0])
            by_hash[result.config_hash] = newer
        else:
            by_hash[result.config_hash] = (path, result)
    loaded.runs = sorted(by_hash.values(), key=lambda pr: str(pr[0]))
    return loaded


def _check_run_result(result: RunResult) -> None:
    """The fields the report needs, with a message naming what is missing."""
    for key in ("objective", "dataset", "views", "seed"):
        if key not in result.config:
            raise ValueError(f"config lacks {key!r}")
    if not isinstance(result.metrics, dict):
        raise ValueError("metrics is not an object")
    for task, values in result.metrics.items():
        if not isinstance(values, dict):
            raise ValueError(f"metrics[{task!r}] is not an object")


def query_task_of(result: RunResult) -> str | None:
    """The data set's query task: the one task (scored or not applicable) that is not cross-view."""
    tasks = set(result.metrics) | {key.split("/", 1)[0] for key in result.not_applicable}
    tasks -= set(CROSS_VIEW_TASKS)
    if not tasks:
        return None
    if len(tasks) > 1:
        return QUERY_TASK if QUERY_TASK in tasks else sorted(tasks)[0]
    return tasks.pop()


def _data_part(config: dict[str, Any], data: dict | None) -> dict[str, Any]:
    """The data set's part of a group's hash: its name and config, and for data read from files its
    content fingerprint in place of the config's location fields (the folder path is provenance:
    the same data under two paths is one group). A result without a fingerprint (generated data,
    or written before fingerprints) keeps its config as is, path included: its own group."""
    payload = {
        "dataset": config.get("dataset"),
        "dataset_config": without_locations(config, location_fields(data)).get("dataset_config"),
    }
    fingerprint = fingerprint_of(data)
    if fingerprint is not None:
        payload["data_fingerprint"] = fingerprint
    return payload


def _eval_part(config: dict[str, Any]) -> dict[str, Any] | None:
    """The eval config without `metrics`: which metrics a run computed changes none of their
    values (a run that adds map@K compares with one that did not; the report shows — for it)."""
    values = config.get("eval_config")
    return {k: v for k, v in values.items() if k != "metrics"} if isinstance(values, dict) else values


def group_key(config: dict[str, Any], data: dict | None = None) -> str:
    """Hash of everything but objective, views and seed that decides a run's numbers."""
    payload = _data_part(config, data)
    for section in ("train_config", "tower_config"):
        payload[section] = config.get(section)
    payload["eval_config"] = _eval_part(config)
    return config_hash(payload)[:8]


def data_key(config: dict[str, Any], data: dict | None = None) -> str:
    """Hash of what decides an untrained reference's numbers: the data and the evaluation."""
    return config_hash({**_data_part(config, data), "eval_config": _eval_part(config)})[:8]


def _share_references(frame: pd.DataFrame) -> pd.DataFrame:
    """Each untrained reference row also in every group of trained runs on the same data and
    evaluation (its numbers do not depend on training or towers); one with no such group keeps
    its own."""
    refs = frame[frame["reference"]]
    if refs.empty:
        return frame
    trained = frame[~frame["reference"]]
    copies = []
    for _, row in refs.iterrows():
        groups = sorted(set(trained.loc[trained["data_key"] == row["data_key"], "group"]))
        for g in groups or [row["group"]]:
            copy = {**row.to_dict(), "group": g}
            if groups:  # the group's own description, not the reference's (which trains nothing)
                first = trained[trained["group"] == g].iloc[0]
                copy.update({k: first[k] for k in ("group_changes", "paper_scale", "default_data")})
            copies.append(copy)
    return pd.concat([trained, pd.DataFrame(copies)], ignore_index=True)


def _default_configs(dataset: str) -> dict[str, dict[str, Any]]:
    """Default configs per section, for naming what a group changed (best effort, no failure)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        from ..datasets import DATASETS  # lazy: the report needs no torch; an unloadable plugin only loses the diff

        out["dataset"] = to_jsonable(DATASETS.get(dataset).Config())
    except Exception:  # noqa: BLE001 - an unknown or unloadable plugin only loses the diff
        pass
    for section, module, name in (
        ("train", "train.loop", "TrainConfig"),
        ("tower", "model.towers", "TowerConfig"),
        ("eval", "eval.evaluator", "EvalConfig"),
    ):
        try:
            import importlib

            cls = getattr(importlib.import_module(f"ftbench.{module}"), name)
            out[section] = to_jsonable(cls())
        except Exception:  # noqa: BLE001
            pass
    return out


def config_changes(config: dict[str, Any], defaults: dict[str, dict[str, Any]], data: dict | None = None) -> list[str]:
    """`section.key=value` for every field of the dataset/train/tower/eval configs off its default;
    not the data set's location fields when the data has a content fingerprint (`data`)."""
    changes = []
    config = without_locations(config, location_fields(data))
    for section in ("dataset", "train", "tower", "eval"):
        values = config.get(f"{section}_config") or {}
        base = defaults.get(section)
        if base is None:
            continue
        for key, value in values.items():
            if key in base and _jsonable_eq(base[key], value):
                continue
            changes.append(f"{section}.{key}={_short(value)}")
    return changes


def data_identity_text(rows: pd.DataFrame) -> str:
    """How a group's data is identified, for its section: the content fingerprint and the folders
    it was read from (provenance only), or that its results predate fingerprints (then the folder
    path is part of the group); empty for generated data."""
    if rows.empty or "data_fingerprint" not in rows.columns:
        return ""
    fingerprints = sorted(set(rows["data_fingerprint"].dropna()))
    folders = ", ".join(f"`{f}`" for f in sorted(set(rows["data_folder"].dropna())))
    if fingerprints:
        return f"Data: content fingerprint `{fingerprints[0][:12]}`, read from {folders}."
    if folders:
        return (
            f"Data: read from {folders}; written before data fingerprints, so the folder path, not the content, "
            "identifies this group."
        )
    return ""


def _jsonable_eq(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)


def results_frame(runs: Iterable[tuple[Path, RunResult]]) -> pd.DataFrame:
    """One row per run: identity, group, sizes, timing and one `task/metric` column per metric.

    Columns: file, run_id, config_hash, dataset, objective, reference (an untrained reference run,
    labelled `<name> (untrained reference)`), objective_config, objective_label,
    views, seed, group, group_label, group_changes, paper_scale, default_data, data_fingerprint, data_folder,
    query_task, items,
    interactions, steps, batch_size, device, step_ms_median, train_s, evaluate_s, total_s,
    peak_rss_mb, realised_views, and `<task>/<metric>` (the query task as `query->item/...`).
    """
    rows = []
    defaults_cache: dict[str, dict] = {}
    for path, result in runs:
        config = result.config
        dataset = str(config["dataset"])
        if dataset not in defaults_cache:
            defaults_cache[dataset] = _default_configs(dataset)
        dcfg = config.get("dataset_config") or {}
        tcfg = config.get("train_config") or {}
        timing = result.timing or {}
        phases = timing.get("phases_s") or {}
        counts = result.counts or {}
        qtask = query_task_of(result)
        data = getattr(result, "data", None) or {}
        changes = config_changes(config, defaults_cache[dataset], data)
        items = counts.get("items", dcfg.get("items"))
        interactions = counts.get("interactions", dcfg.get("interactions"))
        row: dict[str, Any] = {
            "file": str(path),
            "run_id": result.run_id,
            "config_hash": result.config_hash,
            "dataset": dataset,
            "objective": str(config["objective"]),
            "reference": bool(config.get("reference")),  # an untrained reference (`ftbench reference`)
            "objective_config": config_hash(config.get("objective_config"))[:6],
            "views": int(config["views"]),
            "seed": int(config["seed"]),
            "group": group_key(config, data),
            "data_key": data_key(config, data),
            # the data's content fingerprint (None: generated data, or a result written before fingerprints)
            "data_fingerprint": fingerprint_of(data),
            "data_folder": data.get("folder") or dcfg.get("data_dir") or None,
            "group_changes": ", ".join(changes),
            "changed_fields": tuple(c.split("=", 1)[0] for c in changes),
            # the synthetic generator's claim-deciding knobs (`report.sensitivity`); None elsewhere
            "query_aux_fraction": dcfg.get("query_aux_fraction") if dataset == "synthetic" else None,
            "cross_side_overlap": dcfg.get("cross_side_overlap") if dataset == "synthetic" else None,
            "paper_scale": dcfg.get("items") == PAPER_CLAIM["items"] and dcfg.get("interactions") == PAPER_CLAIM["interactions"],
            "default_data": dataset == "synthetic"
            and not any(c.startswith("dataset.") for c in changes)
            and "dataset" in defaults_cache[dataset],
            "query_task": qtask,
            "items": items,
            "interactions": interactions,
            "steps": tcfg.get("steps"),
            "batch_size": tcfg.get("batch_size"),
            "device": (result.device or {}).get("device"),
            "step_ms_median": timing.get("step_ms_median"),
            "train_s": phases.get("train_s"),
            "evaluate_s": phases.get("evaluate_s"),
            "total_s": phases.get("total_s"),
            "peak_rss_mb": timing.get("process_peak_rss_mb"),
            "realised_views": counts.get("realised_views_per_item"),
            # the training curves (lists, for the curves plot)
            "training_history": (result.training or {}).get("history") or [],
            "training_loss_curve": (result.training or {}).get("loss_curve") or [],
            "select_metric": (result.training or {}).get("select_metric"),
            **tuning_columns(getattr(result, "tuning", None)),
        }
        for task, values in result.metrics.items():
            name = QUERY_TASK if task == qtask else task
            for metric, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    row[f"{name}/{metric}"] = float(value)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = _share_references(frame)
    frame["group_label"] = [
        f"{d} ({c or 'default config'}) [{g}]" for d, c, g in zip(frame["dataset"], frame["group_changes"], frame["group"])
    ]
    # one label per objective config: plain name, or name[hash] when an objective has several
    labels = []
    variants = frame.groupby(["group", "objective"])["objective_config"].nunique()
    for g, o, oc, ref in zip(frame["group"], frame["objective"], frame["objective_config"], frame["reference"]):
        label = o if variants[(g, o)] == 1 else f"{o}[{oc}]"
        labels.append(f"{label} {REFERENCE_MARK}" if ref else label)
    frame["objective_label"] = labels
    return frame.sort_values(["group", "reference", "objective", "views", "seed"], key=_sort_key).reset_index(drop=True)


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name == "objective":
        return column.map(objective_rank)
    return column


def objective_rank(name: str) -> tuple:
    """Table order: the known objectives, the others alphabetically, the untrained references last."""
    base = name.split("[", 1)[0]
    reference = name.endswith(REFERENCE_MARK)
    return (reference, OBJECTIVE_ORDER.index(base) if base in OBJECTIVE_ORDER else len(OBJECTIVE_ORDER), name)


def load_results_frame(results_dir: Path | str) -> pd.DataFrame:
    """All readable run results under `results_dir` as a DataFrame (see `results_frame`)."""
    return results_frame(load_run_results(Path(results_dir)).runs)
