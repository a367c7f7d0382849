"""Per-query paired tests against ranx's `compare` (the reference), and seed intervals that never
leave the metric's range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ftbench.report.intervals import t_interval
from ftbench.report.significance import paired_t_p, paired_tests, randomisation_p
from ftbench.report.tables import cell_interval, fmt_interval

ranx = pytest.importorskip("ranx")


def _two_runs(shift: float, n_queries: int = 40, n_items: int = 30, seed: int = 0):
    """Qrels and two runs on the same queries; run b is run a with relevant items pushed down."""
    rng = np.random.default_rng(seed)
    qrels, run_a, run_b = {}, {}, {}
    for q in range(n_queries):
        relevant = rng.choice(n_items, 3, replace=False)
        qrels[f"q{q}"] = {f"d{i}": 1 for i in relevant}
        base = rng.normal(size=n_items)
        boost = np.zeros(n_items)
        boost[relevant] = 1.0
        a = base + boost
        b = base + boost * (1.0 - shift) + rng.normal(scale=0.5, size=n_items)
        run_a[f"q{q}"] = {f"d{i}": float(a[i]) for i in range(n_items)}
        run_b[f"q{q}"] = {f"d{i}": float(b[i]) for i in range(n_items)}
    return ranx.Qrels(qrels), ranx.Run(run_a, name="a"), ranx.Run(run_b, name="b")


def _per_query(qrels, run, metric):
    values = ranx.evaluate(qrels, run, metric, return_mean=False)
    return pd.DataFrame({metric: values}, index=list(run.keys()))


@pytest.mark.parametrize("shift", [0.0, 0.6])
def test_t_test_and_randomisation_test_match_ranx_compare(shift):
    qrels, a, b = _two_runs(shift)
    metric = "ndcg@10"
    pa, pb = _per_query(qrels, a, metric), _per_query(qrels, b, metric)
    [ours] = paired_tests(pa, pb, [metric], permutations=5000, seed=1)
    student = ranx.compare(qrels, runs=[a, b], metrics=[metric], stat_test="student", rounding_digits=8)
    fisher = ranx.compare(qrels, runs=[a, b], metrics=[metric], stat_test="fisher", n_permutations=5000, rounding_digits=8)
    assert ours.t_p == pytest.approx(student.comparisons[("a", "b")][metric]["p_value"], abs=1e-6)
    # Monte-Carlo p-values: same test, different random draws; 5000 flips give sd <= 0.007
    assert ours.randomisation_p == pytest.approx(fisher.comparisons[("a", "b")][metric]["p_value"], abs=0.03)
    assert ours.mean_difference == pytest.approx(pa[metric].mean() - pb[metric].mean())
    if shift:
        assert ours.t_p < 0.01 and ours.randomisation_p < 0.01
    else:
        assert ours.t_p > 0.01


def test_degenerate_and_exact_cases():
    a = np.array([0.5, 0.2, 0.9])
    assert paired_t_p(a, a) == 1.0 and randomisation_p(a, a, 100) == 1.0
    assert paired_t_p(a + 0.1, a) == 0.0
    # n = 3 identical positive differences: of 8 sign vectors only +++ and --- reach |mean| -> p ~ 1/4
    assert randomisation_p(a + 0.1, a, 20000, seed=3) == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError, match="at least 2 paired queries"):
        paired_t_p(a[:1], a[:1])


def test_seed_intervals_never_leave_the_unit_range():
    values = {0: 1.0, 1: 0.99, 2: 0.83}  # t-interval 0.94 ± 0.23 would reach 1.17
    raw = t_interval(values.values())
    assert raw.mean + raw.half_width > 1.0
    iv = cell_interval(values)
    assert iv.clipped and iv.high == 1.0 and 0.0 <= iv.low < iv.mean
    assert fmt_interval(iv) == f"{iv.mean:.4f} [{iv.low:.4f}, 1.0000] (n=3)"
    inside = cell_interval({0: 0.4, 1: 0.42, 2: 0.41})
    assert not inside.clipped and "±" in fmt_interval(inside)
