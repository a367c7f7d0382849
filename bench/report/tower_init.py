"""The tower-start comparison: `tower.init=residual` against today's `mlp` towers, per objective.

Reads every result file under each setting folder of a results folder (e.g. results/studies/tower-init/
grocery-mini, .../synthetic-default) and writes one markdown summary: per objective and metric the
mean ± 95% t-interval over seeds of each start, the paired difference residual - mlp over the
seeds both have (`intervals.paired_difference`: same seed, same data, batches and views), the
checkpoint steps selected, and the untrained references of the folder as rows of their own.
Runs that differ in anything but the objective, the seed and `tower.init` (a longer budget, say)
are separate groups, each headed by what sets it apart.

    python -m ftbench.report.tower_init results/studies/tower-init     # writes results/studies/tower-init/SUMMARY.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..run.results import load_result
from .intervals import Interval, paired_difference, t_interval

INITS = ("mlp", "residual")
#: (task, metric) pairs reported when the runs of a group have them, in this order
METRICS = (
    ("photo->product", "recall@1"),
    ("photo->product", "mrr@500"),
    ("query->item", "recall@10"),
    ("query->item", "ndcg@10"),
    ("query->item", "recall@100"),
    ("aux->item", "recall@1"),
    ("aux->item", "recall@10"),
)
OBJECTIVE_ORDER = ("clip", "siglip", "pairwise", "factorized", "full_ot", "oat", "mover")


def _init_of(config: dict[str, Any]) -> str:
    # a run recorded before tower.init existed, or with its default, has no `init` field
    return (config.get("tower_config") or {}).get("init", "mlp")


def _group_of(config: dict[str, Any]) -> str:
    """What decides a run's numbers besides objective, seed and tower start, as JSON."""
    tower = {k: v for k, v in (config.get("tower_config") or {}).items() if k != "init"}
    return json.dumps(
        {
            "dataset": config.get("dataset"),
            "views": config.get("views"),
            "dataset_config": config.get("dataset_config"),
            "train_config": config.get("train_config"),
            "tower_config": tower,
            "eval_config": config.get("eval_config"),
            "precision": config.get("precision", "fp32"),
        },
        sort_keys=True,
        default=str,
    )


def _data_of(config: dict[str, Any]) -> str:
    return json.dumps(
        {"dataset": config.get("dataset"), "views": config.get("views"), "dataset_config": config.get("dataset_config")},
        sort_keys=True,
        default=str,
    )


def load_setting(folder: Path) -> tuple[dict, dict]:
    """(groups, references) of one setting folder.

    groups: group JSON -> objective -> init -> seed -> {"metrics", "selected_step", "steps"};
    references: data JSON -> variant -> metrics. Two runs of one cell (a copy) are an error naming
    both files, never averaged."""
    groups: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    references: dict = defaultdict(dict)
    where: dict = {}
    for path in sorted(folder.glob("*.json")):
        result = load_result(path)
        config = result.config
        if "reference" in result.training:
            references[_data_of(config)][config["objective"]] = result.metrics
            continue
        group, objective, init, seed = _group_of(config), config["objective"], _init_of(config), int(config["seed"])
        key = (group, objective, init, seed)
        if key in where:
            raise ValueError(f"{path} and {where[key]} are the same run ({objective}, tower.init={init}, seed {seed})")
        where[key] = path
        groups[group][objective][init][seed] = {
            "metrics": result.metrics,
            "selected_step": result.training.get("selected_step"),
            "steps": int(config["train_config"]["steps"]),
            "commit": (result.provenance.get("commit") or "unknown")[:7],
        }
    return groups, references


def _value(run: dict, task: str, metric: str) -> float | None:
    value = run["metrics"].get(task, {}).get(metric)
    return None if value is None else float(value)


def _fmt(iv: Interval | None, signed: bool = False) -> str:
    if iv is None:
        return "—"
    mean = f"{iv.mean:+.3f}" if signed else f"{iv.mean:.3f}"
    if iv.half_width is None:
        return f"{mean} (n=1)"
    return f"{mean} ± {iv.half_width:.3f}"


def _order(objectives) -> list[str]:
    return sorted(objectives, key=lambda o: (OBJECTIVE_ORDER.index(o) if o in OBJECTIVE_ORDER else len(OBJECTIVE_ORDER), o))


def _heading(group: str, others: list[str]) -> str:
    """The train and data settings of a group; where the folder has several groups, what differs."""
    payload = json.loads(group)
    train = payload["train_config"] or {}
    data = payload["dataset_config"] or {}
    parts = [
        f"{payload['dataset']}",
        f"--views {payload['views']}",
        f"{train.get('steps')} steps",
        f"batch {train.get('batch_size')}",
        f"lr {train.get('lr')}",
        f"select {train.get('select_metric')}",
    ]
    if "train_photo_queries" in data:
        parts.append(f"train_photo_queries={data['train_photo_queries']}")
    if len(others) > 1:
        differing = []
        for section in ("dataset_config", "train_config", "tower_config", "eval_config"):
            for key, value in (payload[section] or {}).items():
                if any((json.loads(o)[section] or {}).get(key) != value for o in others):
                    differing.append(f"{section.removesuffix('_config')}.{key}={value}")
        if differing:
            parts.append("differs: " + ", ".join(differing))
    return "; ".join(parts)


def setting_section(name: str, groups: dict, references: dict) -> str:
    lines = [f"## {name}", ""]
    if not groups:
        return "\n".join(lines + ["No trained runs.", ""])
    for group in sorted(groups, key=lambda g: (json.loads(g)["train_config"] or {}).get("steps", 0)):
        by_objective = groups[group]
        lines += [f"**{_heading(group, list(groups))}**", ""]
        any_run = next(run for objective in by_objective.values() for runs in objective.values() for run in runs.values())
        metrics = [(t, m) for t, m in METRICS if _value(any_run, t, m) is not None]
        header = ["objective", "metric", "mlp", "residual", "residual − mlp (paired)", "seeds"]
        rows = []
        data = _data_of(
            {
                "dataset": json.loads(group)["dataset"],
                "views": json.loads(group)["views"],
                "dataset_config": json.loads(group)["dataset_config"],
            }
        )
        for variant, values in sorted(references.get(data, {}).items()):
            for task, metric in metrics:
                value = values.get(task, {}).get(metric)
                rows.append(
                    [f"`{variant}` (untrained)", f"{task} {metric}", "—" if value is None else f"{value:.3f}", "", "", ""]
                )
        for objective in _order(by_objective):
            inits = by_objective[objective]
            for task, metric in metrics:
                per_init = {
                    init: {s: v for s, run in inits.get(init, {}).items() if (v := _value(run, task, metric)) is not None}
                    for init in INITS
                }
                ivs = {init: t_interval(vals.values(), bounds=(0.0, 1.0)) if vals else None for init, vals in per_init.items()}
                diff = paired_difference(per_init["residual"], per_init["mlp"]) if all(per_init.values()) else None
                rows.append(
                    [
                        f"`{objective}`",
                        f"{task} {metric}",
                        _fmt(ivs["mlp"]),
                        _fmt(ivs["residual"]),
                        _fmt(diff.absolute if diff else None, signed=True),
                        ",".join(str(k) for k in diff.keys) if diff else "",
                    ]
                )
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|:---|:---|" + "---:|" * (len(header) - 2))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", "Selected checkpoint step per seed (mlp / residual):", ""]
        for objective in _order(by_objective):
            inits = by_objective[objective]
            steps = {init: [inits.get(init, {})[s]["selected_step"] for s in sorted(inits.get(init, {}))] for init in INITS}
            budget = {run["steps"] for runs in inits.values() for run in runs.values()}
            last = all(step == max(budget) for init in INITS for step in steps[init])
            lines.append(
                f"- `{objective}`: {steps['mlp']} / {steps['residual']}"
                + (" (all at the last step)" if last and any(steps.values()) else "")
            )
        # runs reused from an earlier commit say so: the pairing assumes the code between them
        # leaves these runs' numbers unchanged
        commits = {
            init: sorted({run["commit"] for objective in by_objective.values() for run in objective.get(init, {}).values()})
            for init in INITS
        }
        lines += ["", "Source commits: " + "; ".join(f"{init} {', '.join(c) or '—'}" for init, c in commits.items()), ""]
    return "\n".join(lines)


def summary(results_dir: Path) -> str:
    """The markdown summary of every setting folder under `results_dir`."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"{results_dir}: no such folder (expected a folder of setting folders of result files)")
    settings = sorted(p for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.json")))
    if not settings:
        raise ValueError(f"{results_dir}: no setting folder with result files")
    parts = [
        "# Tower start: `tower.init=residual` against `mlp`",
        "",
        f"Generated by `python -m ftbench.report.tower_init {results_dir}` from the result files below it. "
        "Mean ± half-width of the 95% Student-t interval over seeds (cut to [0, 1] where it would "
        "leave it); the difference is paired by seed (same data, batches, views and MLP first layer). "
        "Untrained references: frozen backbone features, no towers.",
        "",
    ]
    for folder in settings:
        groups, references = load_setting(folder)
        parts.append(setting_section(folder.name, groups, references))
    return "\n".join(parts).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ftbench.report.tower_init RESULTS_DIR  (writes RESULTS_DIR/SUMMARY.md)", file=sys.stderr)
        return 2
    try:
        text = summary(Path(args[0]))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args[0]) / "SUMMARY.md"
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
