"""Per-query significance tests between two objectives on the same seed and test queries.

The seed intervals (`ftbench.report.intervals`) say how much a result moves with the seed; they
say nothing about whether two objectives differ on *these* queries. IR evaluation answers that with
paired tests over queries (Smucker, Allan & Carterette, "A comparison of statistical significance
tests for information retrieval evaluation", CIKM 2007), as trec_eval, ir-measures and ranx users
expect. For the per-query values a_q, b_q of one metric (same data set, views, seed and test
queries; the ``.per_query.tsv`` files `ftbench run --save-run` writes), with d_q = a_q - b_q over
the n queries both have:

- **paired t-test** (Student): t = mean(d) / (sd(d) / sqrt(n)), two-sided p from Student's t with
  n - 1 degrees of freedom (`scipy.stats.ttest_rel`). All d_q equal: p = 1 if they are 0, else 0.
- **paired randomisation test** (Fisher's; Smucker et al. 2007): under the null hypothesis the
  labels a/b of each query are exchangeable, i.e. each d_q's sign is a fair coin. With P random
  sign vectors s (seeded), p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + P), two-sided; the + 1
  counts the observed assignment, so p is never 0 (Phipson & Smyth 2010).

ranx's `compare` (stat_test="student" / "fisher") computes the same tests; the test suite uses it
as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..eval.run_files import read_per_query
from .tables import md_table

DEFAULT_PERMUTATIONS = 10_000


@dataclass(frozen=True)
class PairedTest:
    """Mean per-query difference (a - b) of one metric and the two p-values."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    t_p: float
    randomisation_p: float
    permutations: int


def paired_t_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of a against b."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size < 2:
        raise ValueError(f"paired t-test: needs at least 2 paired queries, got {d.size}")
    if np.allclose(d, d[0], rtol=0, atol=1e-15):
        return 1.0 if abs(d[0]) <= 1e-15 else 0.0
    from scipy.stats import ttest_rel  # heavy: scipy

    return float(ttest_rel(a, b).pvalue)


def randomisation_p(a: np.ndarray, b: np.ndarray, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of the paired (sign-flip) randomisation test of a against b."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size < 1:
        raise ValueError("randomisation test: no paired queries")
    if permutations < 1:
        raise ValueError(f"randomisation test: permutations must be >= 1, got {permutations}")
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    exceed = 0
    for start in range(0, permutations, 1000):  # chunks bound the memory at 1000 x n
        signs = rng.integers(0, 2, size=(min(1000, permutations - start), d.size)) * 2 - 1
        exceed += int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (1 + exceed) / (1 + permutations)


def paired_tests(per_query_a, per_query_b, metrics, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0) -> list[PairedTest]:
    """Both tests for each metric over the queries both per-query frames (indexed by query id) hold."""
    common = per_query_a.index.intersection(per_query_b.index)
    out = []
    for m in metrics:
        if m not in per_query_a.columns or m not in per_query_b.columns or len(common) < 2:
            continue
        a = per_query_a.loc[common, m].to_numpy(dtype=np.float64)
        b = per_query_b.loc[common, m].to_numpy(dtype=np.float64)
        out.append(
            PairedTest(
                m,
                len(common),
                float(a.mean()),
                float(b.mean()),
                float((a - b).mean()),
                paired_t_p(a, b),
                randomisation_p(a, b, permutations, seed),
                permutations,
            )
        )
    return out


def per_query_path(result_file: str | Path) -> Path:
    """The per-query file `--save-run` writes beside a result file."""
    p = Path(result_file)
    return p.with_name(p.stem + ".per_query.tsv")


def significance_section(
    frame,
    metrics=("recall@10", "recall@100", "ndcg@10", "mrr@500"),
    baseline: str = "clip",
    permutations: int = DEFAULT_PERMUTATIONS,
) -> list[str]:
    """Markdown lines: each objective against `baseline` on the same group, views and seed, per
    metric, with both p-values; from the per-query files beside the result files (runs without
    one are left out, and the section says how to get them)."""
    if frame.empty or "file" not in frame.columns:
        return []
    have = frame[[per_query_path(f).is_file() for f in frame["file"]]]
    lines = [
        "## Per-query significance against " + baseline,
        "",
        "Paired over the test queries of the same group, views and seed (`--save-run` per-query files): "
        f"mean difference (objective - {baseline}), two-sided p of the paired t-test and of the paired "
        f"randomisation test ({permutations} sign flips). These sit beside the seed intervals above: "
        "those vary the seed, these hold it fixed and vary the query.",
        "",
    ]
    rows = []
    for (_group, views, seed), cell in have.groupby(["group", "views", "seed"], sort=True):
        base = cell[cell["objective"] == baseline]
        if base.empty:
            continue
        base_pq = read_per_query(per_query_path(base.iloc[0]["file"]))
        for _, run in cell[cell["objective"] != baseline].iterrows():
            tests = paired_tests(read_per_query(per_query_path(run["file"])), base_pq, metrics, permutations)
            for t in tests:
                rows.append(
                    [
                        run["objective_label"],
                        str(views),
                        str(seed),
                        t.metric,
                        str(t.n),
                        f"{t.mean_difference:+.4f}",
                        f"{t.t_p:.3g}",
                        f"{t.randomisation_p:.3g}",
                    ]
                )
    if not rows:
        lines += [
            f"No pair of runs with per-query files (rerun with `ftbench run --save-run`, {baseline} and "
            "another objective on the same seed) - no per-query test.",
            "",
        ]
        return lines
    lines += [
        md_table(
            ["objective", "V", "seed", "metric", "queries", "mean diff", "t-test p", "randomisation p"], rows, align_first=3
        ),
        "",
    ]
    return lines
