"""The paper-claim sensitivity section: paper-scale clip/factorized pairs per knob setting,
hand-computed relative gains, and runs with any other change left out."""

from __future__ import annotations

import pandas as pd
import pytest
from ftbench.report.sensitivity import METRIC, _default_objective_hash, sensitivity_section, sensitivity_table

PRESET = ("dataset.items", "dataset.interactions", "eval.ks")


def _row(objective, seed, value, qaf=0.6, cso=0.5, extra=(), tuned=False, objective_config=None):
    changed = (
        PRESET
        + tuple(f"dataset.{k}" for k, v, d in (("query_aux_fraction", qaf, 0.6), ("cross_side_overlap", cso, 0.5)) if v != d)
        + extra
    )
    return {
        "dataset": "synthetic",
        "paper_scale": True,
        "tuned": tuned,
        "reference": False,
        "objective": objective,
        "views": 8,
        "seed": seed,
        "changed_fields": changed,
        "query_aux_fraction": qaf,
        "cross_side_overlap": cso,
        "objective_config": objective_config or _default_objective_hash(objective),
        METRIC: value,
    }


def _frame():
    rows = [_row("clip", s, c) for s, c in enumerate((0.30, 0.31, 0.32))]
    rows += [_row("factorized", s, c * 1.2) for s, c in enumerate((0.30, 0.31, 0.32))]  # +20% each seed
    rows += [_row("clip", 0, 0.40, qaf=0.0), _row("factorized", 0, 0.42, qaf=0.0)]  # +5%
    rows += [_row("clip", 0, 0.40, cso=0.0), _row("factorized", 0, 0.50, cso=0.0)]  # +25%
    # left out: another change, a tuned rerun, another objective config, a point without clip
    rows += [
        _row("factorized", 1, 0.9, qaf=0.0, extra=("train.steps",)),
        _row("factorized", 2, 0.9, qaf=0.0, tuned=True),
        _row("factorized", 3, 0.9, qaf=0.0, objective_config="abcdef"),
        _row("factorized", 0, 0.5, qaf=0.2),
    ]
    return pd.DataFrame(rows)


def test_points_pair_by_seed_and_ignore_other_changes():
    table = sensitivity_table(_frame())
    assert [(e["query_aux_fraction"], e["cross_side_overlap"]) for e in table] == [(0.6, 0.0), (0.0, 0.5), (0.6, 0.5)]
    gains = {(e["query_aux_fraction"], e["cross_side_overlap"]): e["diff"].relative for e in table}
    assert gains[(0.0, 0.5)].mean == pytest.approx(5.0) and gains[(0.0, 0.5)].n == 1
    assert gains[(0.6, 0.0)].mean == pytest.approx(25.0)
    assert gains[(0.6, 0.5)].mean == pytest.approx(20.0) and gains[(0.6, 0.5)].n == 3
    assert gains[(0.6, 0.5)].half_width == pytest.approx(0.0, abs=1e-9)


def test_section_says_where_the_papers_claim_falls(tmp_path):
    lines, plots = sensitivity_section(_frame(), tmp_path)
    text = "\n".join(lines)
    assert "| 0 | 0.5 | 0.4000 (n=1) | 0.4200 (n=1) | +5.0% | 1 | not judged (n=1) |" in text
    assert "| 0.6 | 0.5 |" in text and "| +20.0% ± 0.0% | 3 | above |" in text
    assert len(plots) == 1 and plots[0].exists() and plots[0].stat().st_size > 0


def test_no_paper_scale_pairs_no_section(tmp_path):
    assert sensitivity_section(_frame().iloc[:3], tmp_path) == ([], [])
