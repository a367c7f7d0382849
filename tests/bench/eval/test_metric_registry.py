"""The metric registry: each metric defined once and read by evaluation, selection, the report, the
printed table and the export; map@K (opt-in) against trec_eval's AP@K through ir-measures."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ftbench.data.queries import relevance_from_pairs
from ftbench.eval.metric_registry import (
    DEFAULT_METRICS,
    METRICS,
    check_metric_families,
    is_task_metric,
    metric_bounds,
    metric_label,
    metric_names,
    parse_metric,
)
from ftbench.eval.metrics import ranked_list_metrics, target_rank_metrics

ir_measures = pytest.importorskip("ir_measures")


def _case(seed, nq=30, n=50, kmax=25):
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.permutation(n)[:kmax] for _ in range(nq)])
    pairs, grades = [], []
    for q in range(nq):
        # 0..12 relevant items, many inside the list (|R| > K happens at K = 1, 5, 10)
        for item in rng.choice(n, size=int(rng.integers(0, 13)), replace=False):
            pairs.append((q, int(ranked[q, rng.integers(0, kmax)]) if rng.random() < 0.5 else int(item)))
            grades.append(int(rng.integers(1, 4)))
    pairs = np.array(pairs).reshape(-1, 2)
    _, first = np.unique(pairs, axis=0, return_index=True)  # one grade per (query, item)
    first = np.sort(first)
    indptr, items, g = relevance_from_pairs(nq, pairs[first], np.array(grades, dtype=np.float32)[first])
    return ranked, indptr, items, g, n


def _brute_force_ap(row, relevant, k):
    """AP@K written out: precision at every relevant position within the top K, over |R|."""
    hits, total = 0, 0.0
    for p, item in enumerate(row[:k], start=1):
        if item in relevant:
            hits += 1
            total += hits / p
    return total / len(relevant)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_at_k_is_trec_evals_ap_at_k(seed):
    """map@K per query equals ir-measures' AP@K (trec_eval map_cut: divided by |R|, not min(|R|, K))
    and a brute-force loop, on graded relevance (binarised) with |R| above and below K."""
    ranked, indptr, items, grades, n = _case(seed)
    ks = (1, 5, 10, 25)
    report = ranked_list_metrics(ranked, indptr, items, grades, n, ks, metrics=("recall", "map"))
    assert set(report.metrics) == {f"{m}@{k}" for k in ks for m in ("recall", "map")}
    qrels = [
        ir_measures.Qrel(f"q{q}", f"d{i}", int(gr))
        for q in range(len(indptr) - 1)
        for i, gr in zip(items[indptr[q] : indptr[q + 1]], grades[indptr[q] : indptr[q + 1]])
    ]
    # strictly decreasing scores: trec_eval ranks by score, so the list's order is kept
    run = [
        ir_measures.ScoredDoc(f"q{q}", f"d{i}", float(len(row) - p)) for q, row in enumerate(ranked) for p, i in enumerate(row)
    ]
    theirs = {(m.query_id, str(m.measure)): m.value for m in ir_measures.iter_calc([ir_measures.AP @ k for k in ks], qrels, run)}
    assert any(indptr[q + 1] - indptr[q] > 10 for q in report.query_index)  # |R| > K occurs
    for row, q in enumerate(report.query_index):
        relevant = set(items[indptr[q] : indptr[q + 1]].tolist())
        for k in ks:
            ours = report.per_query[f"map@{k}"][row]
            assert ours == pytest.approx(theirs[(f"q{q}", f"AP@{k}")], abs=1e-12)
            assert ours == pytest.approx(_brute_force_ap(ranked[q].tolist(), relevant, k), abs=1e-12)
    for k in ks:  # the average over queries, as ir-measures aggregates
        agg = ir_measures.calc_aggregate([ir_measures.AP @ k], qrels, run)[ir_measures.AP @ k]
        assert report.metrics[f"map@{k}"] == pytest.approx(agg, abs=1e-12)


def test_map_hand_computed_and_the_normalisation():
    # relevant {1, 2, 3, 4, 5}; ranked 1, 9, 2: AP@3 = (1/1 + 2/3) / 5; a perfect list at K=2 is 2/5, not 1
    ranked = np.array([[1, 9, 2], [4, 5, 1]])
    indptr, items, grades = relevance_from_pairs(
        2, np.array([(0, i) for i in range(1, 6)] + [(1, 4), (1, 5)]), np.ones(7, np.float32)
    )
    rep = ranked_list_metrics(ranked, indptr, items, grades, 10, (2, 3), metrics=("map",))
    assert rep.per_query["map@3"][0] == pytest.approx((1 + 2 / 3) / 5)
    assert rep.per_query["map@2"][0] == pytest.approx(1 / 5)
    assert rep.per_query["map@2"][1] == pytest.approx(1.0)  # |R| = 2 = K, both on top


def test_single_target_map_is_the_reciprocal_rank_within_k():
    ranks = np.array([1, 2, 5, 11, 40])
    rep = target_rank_metrics(ranks, 50, (1, 10), mrr_cutoff=10, metrics=("map", "mrr"))
    assert rep.per_query["map@10"].tolist() == pytest.approx([1, 1 / 2, 1 / 5, 0, 0])
    assert rep.per_query["map@10"].tolist() == rep.per_query["mrr@10"].tolist()
    assert rep.per_query["map@1"].tolist() == [1, 0, 0, 0, 0]


def test_default_metrics_and_names_are_unchanged():
    """Without `metrics` the same keys in the same order as before the registry, map not among them."""
    ranked, indptr, items, grades, n = _case(3)
    rep = ranked_list_metrics(ranked, indptr, items, grades, n, (1, 10), mrr_at=25)
    assert list(rep.metrics) == ["recall@1", "hit@1", "ndcg@1", "recall@10", "hit@10", "ndcg@10", "mrr@25"]
    both = ranked_list_metrics(ranked, indptr, items, grades, n, (1, 10), mrr_at=25, metrics=DEFAULT_METRICS + ("map",))
    assert list(both.metrics) == ["recall@1", "hit@1", "ndcg@1", "map@1", "recall@10", "hit@10", "ndcg@10", "map@10", "mrr@25"]
    for name, value in rep.metrics.items():  # adding a metric changes none of the others
        assert both.metrics[name] == value
    single = target_rank_metrics(np.array([1, 3]), 20, (1, 10))
    assert list(single.metrics) == ["recall@1", "hit@1", "ndcg@1", "recall@10", "hit@10", "ndcg@10", "mrr"]
    assert metric_names(("mrr", "recall"), (5,), None) == ["recall@5", "mrr"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("recall@10", ("recall", 10)),
        ("map@100", ("map", 100)),
        ("mrr@500", ("mrr", 500)),
        ("mrr", ("mrr", None)),
    ],
)
def test_parse(text, expected):
    metric, k = parse_metric(text)
    assert (metric.name, k) == expected


@pytest.mark.parametrize(
    "text, match",
    [
        ("precision@10", "expected one of recall@K"),
        ("recall", "needs its cut-off, recall@K"),
        ("map@0", "at least 1"),
        ("Recall@10", "expected one of"),
        ("map@10x", "expected one of"),
    ],
)
def test_parse_names_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_metric(text)


def test_select_metric_forms():
    from ftbench.train.loop import TrainConfig

    for ok in ("query->item/map@100", "cross-view/mean map@10", "query->item/mrr", "photo->product/recall@1"):
        assert is_task_metric(ok)
        TrainConfig(select_metric=ok).validate()
    for bad in ("map@10", "query->item/precision@10", "query->item/ndcg", "/recall@10", "a/b/recall@10"):
        assert not is_task_metric(bad)
        with pytest.raises(ValueError, match="select_metric"):
            TrainConfig(select_metric=bad).validate()


def test_labels_and_bounds_come_from_the_registry():
    from ftbench.report.headline import metric_label as report_label
    from ftbench.report.tables import metric_bounds as report_bounds

    assert report_label("query->item/map@10") == "MAP@10, query → item"
    assert report_label("ndcg@10") == "NDCG@10" and report_label("mrr") == "MRR"
    assert metric_label("recall@100", short=True) == "R@100"
    assert report_bounds("query->item/map@10") == (0.0, 1.0) == metric_bounds("hit@1")
    assert report_bounds("query->item/queries") is None
    assert all(m.higher_is_better and m.bounds == (0.0, 1.0) for m in METRICS.values())


def test_eval_option_metrics_is_checked_and_out_of_the_hash_while_default():
    from ftbench.eval.evaluator import EvalConfig
    from ftbench.run.experiment import RunSpec, prepare

    with pytest.raises(ValueError, match="eval option 'metrics': unknown metric 'precision'"):
        EvalConfig(metrics=("recall", "precision")).validate()
    with pytest.raises(ValueError, match="listed twice"):
        check_metric_families(("map", "map"), "eval option 'metrics'")
    plain = prepare(RunSpec(objective="clip", dataset="synthetic", views=2, seed=0, sets=[]))
    assert "metrics" not in plain.config["eval_config"]
    named = prepare(
        RunSpec(objective="clip", dataset="synthetic", views=2, seed=0, sets=["eval.metrics=('recall', 'hit', 'ndcg', 'mrr')"])
    )
    assert named.config_hash == plain.config_hash
    with_map = prepare(
        RunSpec(
            objective="clip", dataset="synthetic", views=2, seed=0, sets=["eval.metrics=('recall', 'hit', 'ndcg', 'mrr', 'map')"]
        )
    )
    assert with_map.config["eval_config"]["metrics"] == ["recall", "hit", "ndcg", "mrr", "map"]
    assert with_map.config_hash != plain.config_hash


def test_selection_on_map_needs_it_computed():
    from ftbench.data.views import SlotLayout
    from ftbench.datasets import DATASETS
    from ftbench.datasets.synthetic import SyntheticConfig
    from ftbench.eval.evaluator import EvalConfig, Evaluator
    from ftbench.model.towers import TowerConfig, Towers
    from ftbench.objectives import OBJECTIVES
    from ftbench.objectives.base import ObjectiveContext

    dataset = DATASETS.get("synthetic")().build(SyntheticConfig(items=300, interactions=600))
    towers = Towers(dataset.catalog.feature_dims, TowerConfig(embedding_dim=16, hidden_dim=32))
    cls = OBJECTIVES.get("clip")
    context = ObjectiveContext(SlotLayout.from_catalog(dataset.catalog), 16, 300, True, True)

    def evaluator(metrics):
        config = EvalConfig(ks=(1, 10, 50), metrics=metrics)
        return Evaluator(dataset, towers, cls(cls.Config(), context), 4, torch.device("cpu"), config)

    with pytest.raises(ValueError, match="eval option 'metrics' computes recall, hit, ndcg, mrr, not map"):
        evaluator(DEFAULT_METRICS).resolve_select_metric("query->item/map@10")
    scoring = evaluator(DEFAULT_METRICS + ("map",))
    full, _, _ = scoring.query_task("val")
    name, score = scoring.validation_score("query->item/map@10", 20_000, seed=0)
    assert name == "query->item/map@10" and score == full["query->item"]["map@10"]
    name, score = scoring.validation_score("cross-view/mean map@10", 20_000, seed=0)
    views, _ = scoring.cross_view(dataset.items("val"))
    assert name == "cross-view/mean map@10"
    assert score == pytest.approx(np.mean([v["map@10"] for v in views.values() if "map@10" in v]))


def test_report_and_export_cope_with_runs_without_map(tmp_path):
    """Two committed-style results, one with map@10: the report's all-metrics table gains a MAP
    column (— for the run without it), both stay one group, and the export labels the rows."""
    from ftbench.report.build import build_report
    from ftbench.report.export import export_frame
    from ftbench.report.load import group_key

    fixture = Path(__file__).parents[2] / "fixtures" / "results" / "synthetic__clip__v1__s0__a5c09a2e17.json"
    base = json.loads(fixture.read_text())
    assert "metrics" not in base["config"]["eval_config"]
    with_map = json.loads(json.dumps(base))
    with_map["config"]["eval_config"]["metrics"] = ["recall", "hit", "ndcg", "mrr", "map"]
    with_map["config"]["views"] = base["config"]["views"] + 1  # its own row of the table
    with_map["config_hash"] = "f" * 16
    with_map["metrics"]["query->item"]["map@10"] = 0.123
    assert group_key(with_map["config"], with_map.get("data")) == group_key(base["config"], base.get("data"))
    out = tmp_path / "results"
    out.mkdir()
    (out / "a.json").write_text(json.dumps(base))
    (out / "b.json").write_text(json.dumps(with_map))
    frame, unreadable = export_frame(out)
    assert not unreadable, unreadable
    row = frame[frame["metric"] == "map@10"]
    assert row["value"].tolist() == [0.123] and row["metric_label"].tolist() == ["MAP@10"]
    assert row["higher_is_better"].tolist() == [True]
    queries = frame[frame["metric"] == "queries"]
    assert queries["metric_label"].isna().all() and queries["higher_is_better"].isna().all()
    report = build_report(out, tmp_path / "report").path.read_text()
    header = next(line for line in report.splitlines() if line.startswith("| objective | V | seeds |"))
    assert header.rstrip(" |").endswith("mrr@500 | map@10")
    rows = [line for line in report.splitlines() if line.startswith("| clip") and line.count("|") == header.count("|")]
    assert len(rows) == 2
    assert rows[0].rstrip(" |").endswith("—") and rows[1].rstrip(" |").endswith("0.1230 (n=1)")


def test_a_run_with_map_prints_and_records_it_and_changes_no_other_number(tmp_path):
    from ftbench.cli.app import app
    from typer.testing import CliRunner

    tiny = [
        "--objective",
        "clip",
        "--views",
        "2",
        "--set",
        "dataset.items=300",
        "--set",
        "dataset.interactions=500",
        "--set",
        "train.eval_every=5",
        "--set",
        "train.val_gallery_size=200",
        "--steps",
        "6",
        "--batch-size",
        "32",
        "--device",
        "cpu",
    ]
    results = {}
    for name, extra in (("plain", []), ("map", ["--set", "eval.metrics=('recall','hit','ndcg','mrr','map')"])):
        res = CliRunner().invoke(app, ["run", *tiny, *extra, "--out", str(tmp_path / name)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        [path] = (tmp_path / name).glob("*.json")
        results[name] = (json.loads(path.read_text()), res.output)
    plain, with_map = results["plain"][0], results["map"][0]
    assert "MAP@" in results["map"][1] and "MAP@" not in results["plain"][1]  # header cut to the width
    assert with_map["config_hash"] != plain["config_hash"]
    assert set(with_map["metrics"]) == set(plain["metrics"])
    for task, values in with_map["metrics"].items():
        recalls = [k for k in values if k.startswith("recall@")]
        assert recalls and {k.replace("recall@", "map@") for k in recalls} <= set(values), task
        # the same run otherwise: every other number identical
        assert {k: v for k, v in values.items() if not k.startswith("map@")} == plain["metrics"][task]
