"""The cost section of the report, read from the `cost/*.json` files `ftbench cost` writes."""

from __future__ import annotations

import json
from pathlib import Path

from .load import MISSING, objective_rank
from .tables import _slug, md_table


# ----------------------------------------------------------------------------------------------
# cost results
# ----------------------------------------------------------------------------------------------
def _cost_files(results_dir: Path):
    """(path, parsed JSON, or the exception that reading it raised) of every `cost/*.json`."""
    folder = Path(results_dir) / "cost"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            yield path, json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            yield path, exc


def load_cost_results(results_dir: Path) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """`cost/*.json` files of kind "cost" (other benchmark files there are ignored)."""
    good, bad = [], []
    for path, payload in _cost_files(results_dir):
        if isinstance(payload, Exception):
            bad.append((path, f"not valid JSON ({payload})"))
            continue
        if not isinstance(payload, dict) or payload.get("kind") != "cost":
            continue
        if not isinstance(payload.get("rows"), list) or not isinstance(payload.get("exponents"), dict):
            bad.append((path, "cost file lacks 'rows' or 'exponents'"))
            continue
        good.append((path, payload))
    return good, bad


def cost_section(
    costs: list[tuple[Path, dict]], bad: list[tuple[Path, str]], report_dir: Path, results_dir: Path
) -> tuple[list[str], list[Path]]:
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
        lines += [
            f"### `{path.name}`: batch {spec.get('batch_size', '?')}, device {device}",
            "",
            "Median milliseconds per training step (whole step) and for the objective alone (forward + backward "
            "on fixed embeddings); cells skipped for the memory budget show the reason.",
            "",
        ]
        header = ["objective", "time"] + [f"V={v}" for v in views] + ["growth exponent"]
        table_rows = []
        for name in sorted(objectives, key=objective_rank):
            exps = result["exponents"].get(name, {})
            for key, what, exp_key in (
                ("step_ms_median", "step", "step_exponent"),
                ("objective_ms_median", "objective", "objective_exponent"),
            ):
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
        lines += [
            md_table(header, table_rows, align_first=2),
            "",
            "Growth exponent: least-squares slope of log time against log V over V >= 2 "
            "(0 = flat, 1 = linear, 2 = quadratic in V).",
            "",
        ]
        from ..cost.scaling import plot_cost  # lazy: the report needs no torch

        png = plot_cost([result], report_dir / f"cost_vs_views__{_slug(path.stem)}.png")
        plots.append(png)
        lines += [f"![cost against V]({png.name})", ""]
    ratio_lines, ratio_bad = step_ratio_lines(results_dir)
    lines += ratio_lines
    for path, reason in bad + ratio_bad:
        lines.append(f"- skipped `{path.name}`: {reason}")
    if bad or ratio_bad:
        lines.append("")
    return lines, plots


def step_ratio_lines(results_dir: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """A table per `cost/*.json` of kind "step_ratio" (`ftbench cost --step-ratio`): each objective's
    whole step against the reference's, measured side by side in one process; and unreadable files."""
    lines, bad = [], []
    for path, payload in _cost_files(results_dir):
        # an unreadable file is listed by load_cost_results
        if not isinstance(payload, dict) or payload.get("kind") != "step_ratio":
            continue
        rows, ref = payload.get("objectives"), payload.get("reference")
        if not isinstance(rows, list) or not rows or not ref:
            bad.append((path, "step-ratio file lacks 'objectives' or 'reference'"))
            continue
        spec = payload.get("spec", {})
        device = (payload.get("device") or {}).get("device", "?")
        lines += [
            f"### `{path.name}`: whole step against `{ref}`, side by side",
            "",
            f"V = {payload.get('views', '?')}, batch {spec.get('batch_size', '?')}, device {device}, "
            f"{payload.get('threads', '?')} threads: {payload.get('rounds', '?')} rounds of "
            f"{spec.get('repeats', '?')} steps of every objective in turn, in one process; each round gives one "
            f"ratio (an objective's median step over `{ref}`'s in that round).",
            "",
        ]
        table = [
            [
                row["objective"],
                f"{row['step_ms_median']:.2f}",
                f"{row['ratio_median']:.2f}x",
                f"{row['ratio_q1']:.2f}-{row['ratio_q3']:.2f}",
                f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}",
            ]
            for row in rows
        ]
        lines += [
            md_table(
                ["objective", "step ms (median)", f"x {ref} (median of rounds)", "quartiles", "range"], table, align_first=1
            ),
            "",
        ]
    return lines, bad
