"""`ftbench report`: REPORT.md and its plots, built only from result files (SPEC §5, §7).

Inputs: every run result `*.json` under the results folder (any depth, except the `cost/` and
`report/` sub-folders), and the cost results `cost/*.json` written by `ftbench cost`. A file that
does not load as a run result (schema v1) is skipped and counted, with its reason, in the report.

Grouping. Runs are compared only within a *comparison group*: same data set, same data-set config,
same training, tower and evaluation configs (the group key is a hash of those five). Within a
group a *cell* is (objective, views); if one objective appears with several objective configs in a
group, each config is its own row, labelled `objective[hash]`. Different configs are never mixed
in one cell, and a cell without runs is shown as "—", never averaged in.

Statistics (`ftbench.report.intervals`): each cell shows the mean over seeds and the half-width of the
two-sided 95% Student-t interval, m ± t_{0.975,n-1} s / sqrt(n); n=1 cells show the mean and
"n=1". The paired difference of an objective against `clip` matches runs of the same group, views
and seed; d_k = a_k - b_k and r_k = 100 d_k / b_k get their own t-intervals.

The query task is the data set's search task (`query->item` on the synthetic marketplace; a
real data set may name it, e.g. `photo->product`); in the frame and the tables it is called
`query->item`, with the data set's own name kept in the `query_task` column.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..config import config_hash
from .intervals import Interval, PairedDifference, paired_difference, t_interval
from ..run.results import RunResult, atomic_write_bytes, atomic_write_text, load_result

BASELINE = "clip"
QUERY_TASK = "query->item"
# the cross-view tasks of `ftbench.eval.evaluator` (copied, so that reading results needs no torch)
CROSS_VIEW_TASKS = ("title->image", "image->title", "image->item", "text->item", "aux->item")
QUERY_METRICS = ("recall@10", "recall@100", "recall@500", "ndcg@10")
# the "all metrics" table adds the top of the list (small catalogs: recall@10 is 1 at 12 items)
ALL_QUERY_METRICS = ("recall@1",) + QUERY_METRICS + ("mrr",)
TOP_METRIC = "recall@10"
CROSS_VIEW_TABLE = (("title->image", ("recall@1", "recall@10")), ("image->title", ("recall@1", "recall@10")),
                    ("aux->item", ("recall@1", "recall@10")))
HEADLINE_METRIC = "recall@500"
RESERVED_DIRS = ("cost", "report")
MISSING = "—"

# The one public number of the Factorized Transport paper (abstract of arXiv 2512.18117).
PAPER_CLAIM = {
    "paper": "Factorized Transport Alignment for Multimodal and Multiview E-commerce Representation Learning "
             "(Chen et al., WSDM 2026, arXiv 2512.18117)",
    "relative_percent": 7.9,
    "metric": "recall@500",
    "task": "query->item",
    "quote": "up to +7.9% Recall@500 over strong multimodal baselines",
    "items": 1_000_000,
    "interactions": 292_520,
}

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
    folders of `--save-embeddings` (their manifest.json is not a run result) and hidden files."""
    root = Path(results_dir)
    out = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).parts
        if rel[0] in RESERVED_DIRS or any(part.startswith(".") or part.endswith(".embeddings") for part in rel[:-1]) \
                or rel[-1].startswith("."):
            continue
        out.append(path)
    return out


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
                reason = reason[len(f"{path}: "):]
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


def group_key(config: dict[str, Any]) -> str:
    """Hash of everything but objective, views and seed that decides a run's numbers."""
    payload = {"dataset": config.get("dataset")}
    for section in ("dataset_config", "train_config", "tower_config", "eval_config"):
        payload[section] = config.get(section)
    return config_hash(payload)[:8]


def _default_configs(dataset: str) -> dict[str, dict[str, Any]]:
    """Default configs per section, for naming what a group changed (best effort, no failure)."""
    from ..config import to_jsonable

    out: dict[str, dict[str, Any]] = {}
    try:
        from ..datasets import DATASETS

        out["dataset"] = to_jsonable(DATASETS.get(dataset).Config())
    except Exception:  # noqa: BLE001 - an unknown or unloadable plugin only loses the diff
        pass
    for section, module, name in (("train", "train.loop", "TrainConfig"), ("tower", "model.towers", "TowerConfig"),
                                  ("eval", "eval.evaluator", "EvalConfig")):
        try:
            import importlib

            cls = getattr(importlib.import_module(f"ftbench.{module}"), name)
            out[section] = to_jsonable(cls())
        except Exception:  # noqa: BLE001
            pass
    return out


def config_changes(config: dict[str, Any], defaults: dict[str, dict[str, Any]]) -> list[str]:
    """`section.key=value` for every field of the dataset/train/tower/eval configs off its default."""
    changes = []
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


def _jsonable_eq(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return str(value)


def results_frame(runs: Iterable[tuple[Path, RunResult]]) -> pd.DataFrame:
    """One row per run: identity, group, sizes, timing and one `task/metric` column per metric.

    Columns: file, run_id, config_hash, dataset, objective, objective_config, objective_label,
    views, seed, group, group_label, group_changes, paper_scale, default_data, query_task, items,
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
        changes = config_changes(config, defaults_cache[dataset])
        items = counts.get("items", dcfg.get("items"))
        interactions = counts.get("interactions", dcfg.get("interactions"))
        row: dict[str, Any] = {
            "file": str(path),
            "run_id": result.run_id,
            "config_hash": result.config_hash,
            "dataset": dataset,
            "objective": str(config["objective"]),
            "objective_config": config_hash(config.get("objective_config"))[:6],
            "views": int(config["views"]),
            "seed": int(config["seed"]),
            "group": group_key(config),
            "group_changes": ", ".join(changes),
            "paper_scale": dcfg.get("items") == PAPER_CLAIM["items"]
            and dcfg.get("interactions") == PAPER_CLAIM["interactions"],
            "default_data": dataset == "synthetic" and not any(c.startswith("dataset.") for c in changes)
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
    frame["group_label"] = [
        f"{d} ({c or 'default config'}) [{g}]" for d, c, g in zip(frame["dataset"], frame["group_changes"], frame["group"])
    ]
    # one label per objective config: plain name, or name[hash] when an objective has several
    labels = []
    variants = frame.groupby(["group", "objective"])["objective_config"].nunique()
    for g, o, oc in zip(frame["group"], frame["objective"], frame["objective_config"]):
        labels.append(o if variants[(g, o)] == 1 else f"{o}[{oc}]")
    frame["objective_label"] = labels
    return frame.sort_values(["group", "objective", "views", "seed"], key=_sort_key).reset_index(drop=True)


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name == "objective":
        return column.map(objective_rank)
    return column


def objective_rank(name: str) -> tuple:
    base = name.split("[", 1)[0]
    return (OBJECTIVE_ORDER.index(base) if base in OBJECTIVE_ORDER else len(OBJECTIVE_ORDER), name)


def load_results_frame(results_dir: Path | str) -> pd.DataFrame:
    """All readable run results under `results_dir` as a DataFrame (see `results_frame`)."""
    return results_frame(load_run_results(Path(results_dir)).runs)


# ----------------------------------------------------------------------------------------------
# statistics on the frame
# ----------------------------------------------------------------------------------------------
def cell_values(frame: pd.DataFrame, column: str, group: str, objective_label: str, views: int) -> dict[int, float]:
    """seed -> value of `column` for one cell; runs without the metric are left out."""
    if column not in frame.columns:
        return {}
    rows = frame[(frame["group"] == group) & (frame["objective_label"] == objective_label) & (frame["views"] == views)]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if pd.notna(v)}


def cell_interval(values: dict[int, float]) -> Interval | None:
    return t_interval(list(values.values())) if values else None


def summary_table(frame: pd.DataFrame, metrics: Iterable[str] = QUERY_METRICS, task: str = QUERY_TASK,
                  group: str | None = None) -> pd.DataFrame:
    """Mean, 95% half-width and n per (group, objective, views) and metric, as numbers.

    Columns: for each metric `<metric>` (mean), `<metric>_hw` (half-width, NaN if n=1) and
    `<metric>_n`; plus `seeds` (the runs behind the row). Missing cells are absent rows.
    """
    data = frame if group is None else frame[frame["group"] == group]
    out = []
    for (g, label, v), rows in data.groupby(["group", "objective_label", "views"], sort=False):
        entry: dict[str, Any] = {"group": g, "objective": label, "views": int(v), "seeds": len(rows)}
        for metric in metrics:
            col = f"{task}/{metric}"
            iv = cell_interval(cell_values(frame, col, g, label, int(v)))
            entry[metric] = iv.mean if iv else np.nan
            entry[f"{metric}_hw"] = iv.half_width if iv and iv.half_width is not None else np.nan
            entry[f"{metric}_n"] = iv.n if iv else 0
        out.append(entry)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["_rank"] = table["objective"].map(objective_rank)
    return table.sort_values(["group", "_rank", "views"]).drop(columns="_rank").set_index(["group", "objective", "views"])


def baseline_label(frame: pd.DataFrame, group: str) -> str | None:
    """The `clip` row of a group: the only clip config, else the one with most runs (hash order)."""
    rows = frame[(frame["group"] == group) & (frame["objective"] == BASELINE)]
    if rows.empty:
        return None
    counts = rows.groupby("objective_label").size()
    return sorted(counts.index, key=lambda label: (-counts[label], label))[0]


def paired_against_baseline(frame: pd.DataFrame, column: str, group: str, objective_label: str,
                            views: int) -> PairedDifference | None:
    """Paired difference of `objective_label` against the group's clip row, same views and seed."""
    base = baseline_label(frame, group)
    if base is None:
        return None
    return paired_difference(cell_values(frame, column, group, objective_label, views),
                             cell_values(frame, column, group, base, views))


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------
def fmt_interval(iv: Interval | None, digits: int = 4, show_n: bool = True) -> str:
    """`0.4123 ± 0.0120 (n=3)`; `0.4123 (n=1)`; "—" for a missing cell."""
    if iv is None:
        return MISSING
    if iv.half_width is None:
        return f"{iv.mean:.{digits}f} (n=1)"
    text = f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}"
    return f"{text} (n={iv.n})" if show_n else text


def fmt_difference(diff: PairedDifference | None, digits: int = 4) -> str:
    """`+0.0123 ± 0.0040 (+3.1% ± 1.0%), n=3`; n=1 without intervals; "—" without pairs."""
    if diff is None:
        return MISSING
    a = diff.absolute
    text = f"{a.mean:+.{digits}f}" + ("" if a.half_width is None else f" ± {a.half_width:.{digits}f}")
    r = diff.relative
    if r is not None:
        text += f" ({r.mean:+.1f}%" + ("" if r.half_width is None else f" ± {r.half_width:.1f}%") + ")"
    return f"{text}, n={a.n}"


def md_table(header: list[str], rows: list[list[str]], align_first: int = 1) -> str:
    """A GitHub-flavoured markdown table; the first `align_first` columns left, the rest right."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if i < align_first else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


# ----------------------------------------------------------------------------------------------
# the paper's claim
# ----------------------------------------------------------------------------------------------
def claim_verdict(diff: PairedDifference | None, paper_percent: float = PAPER_CLAIM["relative_percent"]) -> str:
    """A plain sentence comparing our relative change (factorized vs clip, %) with the paper's.

    Cases, with [lo, hi] our 95% interval of the per-seed relative change:
    no pairs; one pair (no interval: only the sign can be compared); paper value inside [lo, hi]
    (agreement); lo > 0 (factorized significantly better) but the paper's value above or below
    the interval (same direction, different size); hi < 0 (factorized significantly worse:
    disagreement); 0 in [lo, hi] and the paper's value outside (no significant difference:
    the claim is not reproduced).
    """
    if diff is None or diff.relative is None:
        return "No matched factorized/clip pairs (or a zero clip recall): nothing to compare."
    r = diff.relative
    p = paper_percent
    if r.half_width is None:
        sign = "the same sign as" if (r.mean > 0) == (p > 0) else "the opposite sign to"
        return (f"One seed only: the measured change is {r.mean:+.1f}%, {sign} the paper's {p:+.1f}%; "
                "with one seed there is no interval, so agreement cannot be judged - run more seeds.")
    lo, hi = r.low, r.high
    span = f"[{lo:+.1f}%, {hi:+.1f}%]"
    if lo <= p <= hi:
        caveat = " The interval also contains 0, so the gain itself is not significant." if lo <= 0 else ""
        return (f"Agreement: the paper's {p:+.1f}% lies inside our 95% interval {span} "
                f"(mean {r.mean:+.1f}%, n={r.n}).{caveat}")
    if lo > 0:
        size = "smaller than" if hi < p else "larger than"
        return (f"Same direction, different size: factorized beats clip significantly (95% interval {span}, "
                f"n={r.n}), but the gain is {size} the paper's {p:+.1f}%, which lies outside the interval.")
    if hi < 0:
        return (f"Disagreement: factorized is significantly worse than clip here (95% interval {span}, n={r.n}), "
                f"against the paper's {p:+.1f}%.")
    return (f"Not reproduced: no significant difference (95% interval {span} contains 0, n={r.n}), "
            f"and the paper's {p:+.1f}% lies outside the interval.")


def ceiling_note(diff: PairedDifference | None, paper_percent: float = PAPER_CLAIM["relative_percent"]) -> str:
    """A sentence when clip's recall leaves less headroom than the paper's gain.

    Recall is at most 1, so with clip at b the largest possible relative gain is 100 (1 - b) / b;
    below the paper's +7.9% the claim cannot be reproduced on that data, whatever the objective.
    """
    if diff is None or diff.baseline.mean <= 0:
        return ""
    b = diff.baseline.mean
    headroom = 100.0 * (1.0 - b) / b
    if headroom >= paper_percent:
        return ""
    return (f" Ceiling: clip's recall@500 is already {b:.4f}, so at most {headroom:+.1f}% is possible on this data; "
            f"a {paper_percent:+.1f}% gain cannot occur here (the catalog is too easy at K=500).")


WHY_THEY_MAY_DIFFER = [
    "The paper's data (Etsy listings, 1M items, 292,520 interactions) is proprietary; ours is the synthetic "
    "marketplace (or a public data set), whose auxiliary views carry as much extra signal as its generator "
    "gives them (`dataset.aux_informativeness`, `dataset.query_aux_fraction`).",
    "The paper publishes no equations: `factorized` is our reading (a product coupling of the view marginals, "
    "primary views plus k sampled auxiliary views per step; SPEC §3.3), not the authors' code.",
    "Our encoders are small trainable towers over frozen backbone features with a fixed step budget; the paper "
    "fine-tunes its own vision-language model with its own budget and schedule.",
    "\"Strong multimodal baselines\" are not named in the abstract; our baseline is `clip` (InfoNCE on the primary "
    "image and title, SPEC §3.1), which may be stronger or weaker than theirs.",
    "\"Up to +7.9%\" is the best of the paper's settings, not an average; a mean over seeds and one setting is "
    "expected to fall below a maximum over settings.",
]


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric_vs_views(frame: pd.DataFrame, group: str, column: str, path: Path, title: str) -> Path:
    """Mean of `column` against V per objective, error bars = 95% half-width (none for n=1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    data = frame[frame["group"] == group]
    for label in sorted(data["objective_label"].unique(), key=objective_rank):
        xs, ys, es = [], [], []
        for v in sorted(data["views"].unique()):
            iv = cell_interval(cell_values(frame, column, group, label, int(v)))
            if iv is None:
                continue
            xs.append(int(v)), ys.append(iv.mean), es.append(iv.half_width or 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ticks = sorted(int(v) for v in data["views"].unique())
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("views per item V")
    ax.set_ylabel(column)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_tradeoff(frame: pd.DataFrame, group: str, column: str, path: Path, title: str) -> Path:
    """Mean of `column` against mean training-step time, one line per objective, points labelled V."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    data = frame[frame["group"] == group]
    for label in sorted(data["objective_label"].unique(), key=objective_rank):
        xs, ys, vs = [], [], []
        for v in sorted(data["views"].unique()):
            quality = cell_values(frame, column, group, label, int(v))
            cost = cell_values(frame, "step_ms_median", group, label, int(v))
            if not quality or not cost:
                continue
            xs.append(float(np.mean(list(cost.values())))), ys.append(float(np.mean(list(quality.values())))), vs.append(v)
        if xs:
            ax.plot(xs, ys, marker="o", label=label)
            for x, y, v in zip(xs, ys, vs):
                ax.annotate(f"V={v}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training step time, ms (median per run, mean over seeds)")
    ax.set_ylabel(column)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# cost results
# ----------------------------------------------------------------------------------------------
def load_cost_results(results_dir: Path) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """`cost/*.json` files of kind "cost" (other benchmark files there are ignored)."""
    folder = Path(results_dir) / "cost"
    good, bad = [], []
    if not folder.is_dir():
        return good, bad
    for path in sorted(folder.glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            bad.append((path, f"not valid JSON ({exc})"))
            continue
        if not isinstance(payload, dict) or payload.get("kind") != "cost":
            continue
        if not isinstance(payload.get("rows"), list) or not isinstance(payload.get("exponents"), dict):
            bad.append((path, "cost file lacks 'rows' or 'exponents'"))
            continue
        good.append((path, payload))
    return good, bad


def cost_section(costs: list[tuple[Path, dict]], bad: list[tuple[Path, str]], report_dir: Path,
                 results_dir: Path) -> tuple[list[str], list[Path]]:
    lines = ["## Cost against the number of views", ""]
    plots: list[Path] = []
    if not costs:
        lines += [f"No cost results under `{Path(results_dir) / 'cost'}`: run `ftbench cost` to measure them.", ""]
    for path, result in costs:
        spec = result.get("spec", {})
        device = (result.get("device") or {}).get("device", "?")
        rows = result["rows"]
        objectives = list(dict.fromkeys(r["objective"] for r in rows))
        views = sorted({int(r["views"]) for r in rows})
        lines += [f"### `{path.name}`: batch {spec.get('batch_size', '?')}, device {device}", "",
                  "Median milliseconds per training step (whole step) and for the objective alone (forward + backward "
                  "on fixed embeddings); cells skipped for the memory budget show the reason.", ""]
        header = ["objective", "time"] + [f"V={v}" for v in views] + ["growth exponent"]
        table_rows = []
        for name in sorted(objectives, key=objective_rank):
            exps = result["exponents"].get(name, {})
            for key, what, exp_key in (("step_ms_median", "step", "step_exponent"),
                                       ("objective_ms_median", "objective", "objective_exponent")):
                cells = []
                for v in views:
                    row = next((r for r in rows if r["objective"] == name and int(r["views"]) == v), None)
                    if row is None:
                        cells.append(MISSING)
                    elif row.get("status") != "ok":
                        cells.append(f"{MISSING} ({row.get('reason', row.get('status'))})")
                    else:
                        cells.append(f"{row[key]:.2f}")
                e = exps.get(exp_key)
                table_rows.append([name, what] + cells + [MISSING if e is None else f"{e:.2f}"])
        lines += [md_table(header, table_rows, align_first=2), "",
                  "Growth exponent: least-squares slope of log time against log V over V >= 2 "
                  "(0 = flat, 1 = linear, 2 = quadratic in V).", ""]
        from ..cost.scaling import plot_cost

        png = plot_cost([result], report_dir / f"cost_vs_views__{_slug(path.stem)}.png")
        plots.append(png)
        lines += [f"![cost against V]({png.name})", ""]
    for path, reason in bad:
        lines.append(f"- skipped `{path.name}`: {reason}")
    if bad:
        lines.append("")
    return lines, plots


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------
@dataclass
class ReportOutcome:
    path: Path
    plots: list[Path]
    runs: int
    unreadable: list[tuple[Path, str]]
    duplicates: list[Path]
    groups: int


def _groups_in_order(frame: pd.DataFrame) -> list[str]:
    """Paper-scale groups first, then the default synthetic data, then the rest (by label)."""
    firsts = frame.groupby("group").first()
    return sorted(firsts.index, key=lambda g: (not firsts.loc[g, "paper_scale"], not firsts.loc[g, "default_data"],
                                               firsts.loc[g, "group_label"]))


def _group_tag(first: pd.Series) -> str:
    if first["paper_scale"]:
        return "paper scale"
    if first["default_data"]:
        return "default data"
    return "other"


def claim_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Factorized vs clip on query->item recall@500 per group, at the largest V with matched seeds."""
    column = f"{QUERY_TASK}/{PAPER_CLAIM['metric']}"
    out = []
    if frame.empty:
        return out
    for g in _groups_in_order(frame):
        data = frame[frame["group"] == g]
        first = data.iloc[0]
        base = baseline_label(frame, g)
        fact = [label for label in data["objective_label"].unique() if label.split("[", 1)[0] == "factorized"]
        if base is None or not fact:
            continue
        for label in sorted(fact):
            best = None
            for v in sorted(data["views"].unique(), reverse=True):
                diff = paired_against_baseline(frame, column, g, label, int(v))
                if diff is not None:
                    best = (int(v), diff)
                    break
            reason = None
            if best is None:
                scored = column in frame.columns and data[column].notna().any()
                reason = (f"{PAPER_CLAIM['metric']} is not scored in this group (catalog of "
                          f"{_fmt_count(first['items'])} items: K=500 needs more than 500)." if not scored else
                          "No seed has both a factorized and a clip run at the same V: nothing to compare.")
            out.append({"group": g, "label": first["group_label"], "tag": _group_tag(first),
                        "objective": label, "baseline": base, "reason": reason,
                        "views": best[0] if best else None, "diff": best[1] if best else None})
    return out


def paper_claims_section(frame: pd.DataFrame) -> list[str]:
    p = PAPER_CLAIM
    lines = [
        "## Paper claims", "",
        f"The Factorized Transport paper ({p['paper']}) reports, on a proprietary marketplace data set of "
        f"{p['items']:,} listings and {p['interactions']:,} interactions, \"{p['quote']}\". No other number of the "
        "paper is public (only the abstract is), and the data set is not available, so what can be checked is the "
        "claim's direction and size under the same protocol: query->item Recall@500 over the full catalog, "
        "factorized against clip, as a relative change with its 95% interval over seeds (per-seed ratios), "
        "at the largest V with matched seeds in each comparison group.", "",
    ]
    rows = claim_rows(frame)
    tags = {r["tag"] for r in rows}
    table = []
    for r in rows:
        d: PairedDifference | None = r["diff"]
        table.append([
            r["tag"], r["label"], r["objective"] + " vs " + r["baseline"], MISSING if r["views"] is None else str(r["views"]),
            MISSING if d is None else str(d.n),
            MISSING if d is None else fmt_interval(d.baseline, show_n=False),
            MISSING if d is None else fmt_interval(d.candidate, show_n=False),
            MISSING if d is None else fmt_difference(d),
            f"+{p['relative_percent']}% (\"up to\")",
        ])
    for tag, command in (("paper scale", "ftbench sweep --preset paper-scale"), ("default data", "ftbench sweep --preset quick")):
        if tag not in tags:
            table.append([tag, "not run yet", "factorized vs clip", MISSING, "0", MISSING, MISSING,
                          f"{MISSING} (run `{command}`)", f"+{p['relative_percent']}% (\"up to\")"])
    lines += [md_table(["setting", "data (group)", "comparison", "V", "seed pairs", "clip R@500", "factorized R@500",
                        "difference (relative)", "paper"], table, align_first=3), ""]
    for r in rows:
        lines.append(f"- **{r['tag']}**, {r['label']}, V={r['views'] if r['views'] is not None else MISSING}: "
                     f"{r['reason'] or claim_verdict(r['diff'])}{ceiling_note(r['diff'])}")
    if rows:
        lines.append("")
    lines += ["Why our numbers may differ from the paper's:", ""]
    lines += [f"- {reason}" for reason in WHY_THEY_MAY_DIFFER]
    lines.append("")
    return lines


def group_section(frame: pd.DataFrame, group: str, report_dir: Path) -> tuple[list[str], list[Path]]:
    data = frame[frame["group"] == group]
    first = data.iloc[0]
    labels = sorted(data["objective_label"].unique(), key=objective_rank)
    views = sorted(int(v) for v in data["views"].unique())
    qnames = sorted({str(t) for t in data["query_task"].dropna().unique()})
    qname = qnames[0] if qnames else QUERY_TASK
    n_runs = len(data)
    seeds = sorted(int(s) for s in data["seed"].unique())
    lines = [f"## {first['dataset']}: {_group_tag(first)} [group {group}]", "",
             f"Config off the defaults: {first['group_changes'] or 'none'}. "
             f"Items {_fmt_count(first['items'])}, interactions {_fmt_count(first['interactions'])}, "
             f"{n_runs} runs, seeds {', '.join(map(str, seeds))}. "
             "Cells: mean ± half-width of the 95% t-interval over seeds (n = seeds behind the cell); "
             f"{MISSING} = no run.", ""]
    plots: list[Path] = []

    def pivot(metric: str) -> list[str]:
        """objectives x views table of query-task `metric` (mean ± interval over seeds)."""
        column = f"{QUERY_TASK}/{metric}"
        rows = [[label] + [fmt_interval(cell_interval(cell_values(frame, column, group, label, v))) for v in views]
                for label in labels]
        return [f"### {qname}: {metric} (objectives x views)", "",
                md_table(["objective"] + [f"V={v}" for v in views], rows), ""]

    # headline pivot, and the top of the list too: on small catalogs recall@500 saturates and
    # recall@10 separates
    head_col = f"{QUERY_TASK}/{HEADLINE_METRIC}"
    lines += pivot(HEADLINE_METRIC)
    top_col = f"{QUERY_TASK}/{TOP_METRIC}"
    if top_col in frame.columns and data[top_col].notna().any():
        lines += pivot(TOP_METRIC)

    # full table
    lines += [f"### {qname}: all metrics", "",
              "`seeds` = runs in the cell; a metric with fewer values (not applicable in some runs) says its own n.", ""]
    rows = []
    for label in labels:
        for v in views:
            count = len(data[(data["objective_label"] == label) & (data["views"] == v)])
            cells = []
            for metric in ALL_QUERY_METRICS:
                iv = cell_interval(cell_values(frame, f"{QUERY_TASK}/{metric}", group, label, v))
                cells.append(fmt_interval(iv, show_n=iv is not None and (iv.n != count or iv.n == 1)))
            rows.append([label, str(v), str(count)] + cells)
    lines += [md_table(["objective", "V", "seeds"] + list(ALL_QUERY_METRICS), rows, align_first=2), ""]

    # paired differences against clip
    base = baseline_label(frame, group)
    lines += [f"### {qname}: paired difference against `{BASELINE}`", ""]
    if base is None:
        lines += [f"No `{BASELINE}` runs in this group: no paired differences.", ""]
    else:
        lines += [f"Each objective minus `{base}` on the same data, views and seed: absolute difference ± 95% "
                  "interval, and in brackets the relative change (percent of clip, per-seed ratios) ± its interval; "
                  f"n = matched seeds. {MISSING} = no matched seed.", ""]
        rows = []
        for label in labels:
            if label == base:
                continue
            for v in views:
                rows.append([label, str(v)] + [fmt_difference(paired_against_baseline(
                    frame, f"{QUERY_TASK}/{m}", group, label, v)) for m in QUERY_METRICS])
        lines += [md_table(["objective", "V"] + list(QUERY_METRICS), rows, align_first=2) if rows
                  else "Only clip in this group.", ""]

    # cross-view
    present = [(task, ms) for task, ms in CROSS_VIEW_TABLE if any(f"{task}/{m}" in frame.columns and
                                                                  data[f"{task}/{m}"].notna().any() for m in ms)]
    absent = [task for task, _ in CROSS_VIEW_TABLE if task not in {t for t, _ in present}]
    lines += ["### Cross-view retrieval (test items)", ""]
    if present:
        header = ["objective", "V"] + [f"{t} {m}" for t, ms in present for m in ms]
        rows = []
        for label in labels:
            for v in views:
                rows.append([label, str(v)] + [fmt_interval(cell_interval(cell_values(frame, f"{t}/{m}", group, label, v)))
                                               for t, ms in present for m in ms])
        lines += [md_table(header, rows, align_first=2), ""]
    if absent:
        lines += [f"Not scored in this group (not applicable to the data set, or absent from the runs): "
                  f"{', '.join(absent)}.", ""]

    # plots
    metric_col = head_col if head_col in frame.columns and data[head_col].notna().any() else None
    if metric_col is None:
        recalls = sorted((c for c in frame.columns if c.startswith(f"{QUERY_TASK}/recall@") and data[c].notna().any()),
                         key=lambda c: int(c.rsplit("@", 1)[1]))
        metric_col = recalls[-1] if recalls else None
        if metric_col:
            lines += [f"({HEADLINE_METRIC} is not available in this group (catalog too small?); the plots use "
                      f"{metric_col.split('/', 1)[1]}.)", ""]
    if metric_col:
        metric = metric_col.split("/", 1)[1]
        tag = f"{_slug(str(first['dataset']))}-{group}"
        p1 = plot_metric_vs_views(frame, group, metric_col, report_dir / f"recall_vs_views__{tag}.png",
                                  f"{qname} {metric} against V ({first['dataset']}, group {group})")
        lines += [f"![{metric} against V]({p1.name})", "",
                  f"{qname} {metric} against V per objective; error bars: 95% t-interval over seeds (none for n=1).", ""]
        plots.append(p1)
        if metric != TOP_METRIC and data.get(top_col) is not None and data[top_col].notna().any():
            p_top = plot_metric_vs_views(frame, group, top_col, report_dir / f"recall10_vs_views__{tag}.png",
                                         f"{qname} {TOP_METRIC} against V ({first['dataset']}, group {group})")
            lines += [f"![{TOP_METRIC} against V]({p_top.name})", "",
                      f"{qname} {TOP_METRIC} against V per objective (95% t-intervals).", ""]
            plots.append(p_top)
        if data["step_ms_median"].notna().any():
            p2 = plot_tradeoff(frame, group, metric_col, report_dir / f"tradeoff__{tag}.png",
                               f"{qname} {metric} against training step time ({first['dataset']}, group {group})")
            lines += [f"![{metric} against step time]({p2.name})", "",
                      f"Trade-off: {metric} (mean over seeds) against the median training-step time of the runs "
                      "(mean over seeds), one point per V.", ""]
            plots.append(p2)
    return lines, plots


def _fmt_count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return MISSING


def build_report(results_dir: Path | str, report_dir: Path | str | None = None) -> ReportOutcome:
    """Render `<results_dir>/report/REPORT.md` (and its PNG plots) from the result files only."""
    results_dir = Path(results_dir)
    report_dir = Path(report_dir) if report_dir is not None else results_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_run_results(results_dir)
    frame = results_frame(loaded.runs)
    costs, bad_costs = load_cost_results(results_dir)

    lines = ["# ftbench report", "",
             f"Built by `ftbench report {results_dir}` from result files only: {len(loaded.runs)} run result(s)"
             f", {len(costs)} cost result(s)."]
    if loaded.unreadable:
        lines[-1] += f" {len(loaded.unreadable)} unreadable file(s) skipped:"
        lines.append("")
        lines += [f"- `{_rel(path, results_dir)}`: {reason}" for path, reason in loaded.unreadable]
    if loaded.duplicates:
        lines.append("")
        lines.append(f"{len(loaded.duplicates)} duplicate file(s) (same config as a newer file) ignored: "
                     + ", ".join(f"`{_rel(p, results_dir)}`" for p in loaded.duplicates) + ".")
    lines.append("")
    plots: list[Path] = []
    group_order: list[str] = []
    if frame.empty:
        lines += ["No readable run results: run `ftbench sweep --preset quick` (or `ftbench run`) first.", ""]
    else:
        group_order = _groups_in_order(frame)
        lines += ["Comparison groups (runs are compared only within a group: same data set and same data, "
                  "training, tower and evaluation configs):", ""]
        for g in group_order:
            first = frame[frame["group"] == g].iloc[0]
            lines.append(f"- [group {g}] {_group_tag(first)}: {first['group_label']}, "
                         f"{int((frame['group'] == g).sum())} runs")
        lines.append("")
    lines += paper_claims_section(frame)
    for g in group_order:
        section, group_plots = group_section(frame, g, report_dir)
        lines += section
        plots += group_plots
    section, cost_plots = cost_section(costs, bad_costs, report_dir, results_dir)
    lines += section
    plots += cost_plots
    lines += ["## Method", "",
              "Every number above is read from the per-run result files (`ftbench run` / `ftbench sweep`) and the "
              "cost files (`ftbench cost`). Intervals: two-sided 95% Student-t over seeds, "
              "mean ± t(0.975, n-1)·s/√n; paired differences match runs of the same group, views and seed. "
              "Regenerate with `make report`; explore with `notebooks/compare_objectives.ipynb`.", ""]
    path = report_dir / "REPORT.md"
    atomic_write_text(path, "\n".join(lines))
    return ReportOutcome(path, plots, len(loaded.runs), loaded.unreadable, loaded.duplicates, len(group_order))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


__all__ = [
    "LoadedResults", "ReportOutcome", "build_report", "load_results_frame", "load_run_results", "results_frame",
    "summary_table", "cell_values", "cell_interval", "paired_against_baseline", "claim_verdict", "fmt_interval",
    "fmt_difference", "find_result_files", "load_cost_results", "PAPER_CLAIM",
]
