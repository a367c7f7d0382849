"""`ftbench run --save-run`: the TREC run and qrels files score under ir-measures (trec_eval's
definitions) exactly as ftbench scored the run, and the per-query file averages to the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ftbench.cli.app import app
from ftbench.eval.run_files import integer_grades, read_per_query, strictly_decreasing
from typer.testing import CliRunner

ir_measures = pytest.importorskip("ir_measures")

TINY = [
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=500",
    "--set",
    "train.eval_every=5",
    "--set",
    "train.val_gallery_size=200",
    "--steps",
    "10",
    "--batch-size",
    "32",
    "--quiet",
    "--device",
    "cpu",
]


def test_save_run_files_score_identically_under_ir_measures(tmp_path):
    res = CliRunner().invoke(
        app,
        ["run", "--objective", "factorized", "--views", "4", "--out", str(tmp_path), "--save-run", *TINY],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    ours = result["metrics"]["query->item"]
    stem = result_file.with_suffix("")
    run = list(ir_measures.read_trec_run(str(stem.with_suffix(".run"))))
    qrels = list(ir_measures.read_trec_qrels(str(stem.with_suffix(".qrels"))))
    assert len({r.query_id for r in run}) == result["counts"]["query_split"]["test"]
    assert max(int(line.split()[3]) for line in stem.with_suffix(".run").read_text().splitlines()) == 300  # whole catalog < 500
    measures = [ir_measures.R @ 10, ir_measures.R @ 100, ir_measures.nDCG @ 10, ir_measures.nDCG @ 100, ir_measures.RR @ 500]
    theirs = ir_measures.calc_aggregate(measures, qrels, run)
    assert theirs[ir_measures.R @ 10] == pytest.approx(ours["recall@10"], abs=1e-9)
    assert theirs[ir_measures.R @ 100] == pytest.approx(ours["recall@100"], abs=1e-9)
    assert theirs[ir_measures.nDCG @ 10] == pytest.approx(ours["ndcg@10"], abs=1e-6)
    assert theirs[ir_measures.nDCG @ 100] == pytest.approx(ours["ndcg@100"], abs=1e-6)
    assert theirs[ir_measures.RR @ 500] == pytest.approx(ours["mrr@500"], abs=1e-9)
    # per query too, and the per-query file averages to the result's numbers
    per_query = read_per_query(stem.with_name(stem.name + ".per_query.tsv"))
    assert len(per_query) == ours["queries"]
    for name, value in ours.items():
        if name != "queries":
            assert per_query[name].mean() == pytest.approx(value, abs=1e-12), name
    by_query = {
        (m.query_id, str(m.measure)): m.value
        for m in ir_measures.iter_calc([ir_measures.RR @ 500, ir_measures.nDCG @ 10], qrels, run)
    }
    for qid, row in per_query.iterrows():
        assert by_query[(qid, "RR@500")] == pytest.approx(row["mrr@500"], abs=1e-9)
        assert by_query[(qid, "nDCG@10")] == pytest.approx(row["ndcg@10"], abs=1e-6)


def test_graded_qrels_are_scaled_to_integers_and_ties_keep_ftbench_order():
    grades, scale = integer_grades(np.array([1.0, 0.1, 0.01]))
    assert scale == 100 and grades.tolist() == [100, 10, 1]
    assert integer_grades(np.array([1.0, 2.0]))[1] == 1
    s = strictly_decreasing(np.array([[0.5, 0.5, 0.5, 0.2]]))
    assert (np.diff(s[0]) < 0).all() and s[0, 3] == 0.2


def test_graded_relevance_scores_identically_under_ir_measures(tmp_path):
    """Fractional graded gains (as ESCI's 1 / 0.1 / 0.01), ties in the scores: written files give
    ir-measures' graded nDCG, recall and RR equal to ftbench's per-query values."""
    from types import SimpleNamespace

    from ftbench.data.queries import relevance_from_pairs
    from ftbench.eval.evaluator import QueryRun
    from ftbench.eval.metrics import ranked_list_metrics
    from ftbench.eval.run_files import write_run_files

    rng = np.random.default_rng(7)
    n_items, n_q, depth = 60, 25, 40
    pairs = np.array([(q, i) for q in range(n_q) for i in rng.choice(n_items, 4, replace=False)])
    grades = rng.choice([1.0, 0.1, 0.01], size=len(pairs))
    indptr, items, g = relevance_from_pairs(n_q, pairs, grades)
    ranked = np.stack([rng.permutation(n_items)[:depth] for _ in range(n_q)])
    scores = np.sort(np.round(rng.normal(size=(n_q, depth)), 1), axis=1)[:, ::-1]  # many ties
    report = ranked_list_metrics(ranked, indptr, items, g, n_items, (1, 10, 20), mrr_at=depth)
    run = QueryRun("query->item", "test", np.arange(n_q), np.arange(n_items), ranked, scores, (indptr, items, g), report)
    dataset = SimpleNamespace(
        catalog=SimpleNamespace(item_ids=lambda: np.array([f"d{i}" for i in range(n_items)])),
        queries=SimpleNamespace(ids=np.array([f"q{q}" for q in range(n_q)])),
    )
    files = write_run_files(tmp_path / "graded", run, dataset, tag="t")
    qrels = list(ir_measures.read_trec_qrels(str(files["qrels"])))
    assert {q.relevance for q in qrels} <= {100, 10, 1}
    trec = list(ir_measures.read_trec_run(str(files["run"])))
    values = {
        (m.query_id, str(m.measure)): m.value
        for m in ir_measures.iter_calc(
            [ir_measures.nDCG @ 10, ir_measures.nDCG @ 20, ir_measures.R @ 10, ir_measures.RR @ depth], qrels, trec
        )
    }
    for row, q in enumerate(report.query_index):
        qid = f"q{q}"
        assert values[(qid, "nDCG@10")] == pytest.approx(report.per_query["ndcg@10"][row], abs=1e-6)
        assert values[(qid, "nDCG@20")] == pytest.approx(report.per_query["ndcg@20"][row], abs=1e-6)
        assert values[(qid, "R@10")] == pytest.approx(report.per_query["recall@10"][row], abs=1e-9)
        assert values[(qid, f"RR@{depth}")] == pytest.approx(report.per_query[f"mrr@{depth}"][row], abs=1e-9)
