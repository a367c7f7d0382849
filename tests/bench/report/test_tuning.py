"""The "default vs tuned" section picks each task's informative metric (not a saturated one) and
names the query task as the data set does."""

from __future__ import annotations

import pandas as pd
from ftbench.report.tuning import informative_metrics, tuning_section


def _frame(seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    # a 12-product catalog: recall@10 is 1.0 for everyone, ndcg@10 and recall@1 still differ
    scores = {"clip": (0.70, 0.80), "factorized": (0.90, 0.60)}  # (default, tuned) ndcg@10
    for objective, (d, t) in scores.items():
        for seed in seeds:
            for tuned, value in ((False, d), (True, t)):
                rows.append(
                    {
                        "objective": objective,
                        "objective_label": objective,
                        "views": 8,
                        "seed": seed,
                        "dataset": "grocery-store",
                        "group": "g0",
                        "query_task": "photo->product",
                        "objective_config": "tuned-cfg" if tuned else "default-cfg",
                        "tuned": tuned,
                        "tuning_base_group": "g0" if tuned else None,
                        "tuning_default_objective_config": "default-cfg" if tuned else None,
                        "tuning_trials": "3 + 0 pruned of 3" if tuned else None,
                        "tuning_best_params": "train.lr=0.001" if tuned else None,
                        "query->item/recall@10": 1.0,
                        "query->item/recall@100": float("nan"),
                        "query->item/ndcg@10": value + 0.01 * seed,
                        "aux->item/recall@10": 0.99,
                        "aux->item/recall@1": 0.5 if objective == "clip" else 0.4,
                        "title->image/recall@1": 1.0,
                    }
                )
    return pd.DataFrame(rows)


def test_saturated_metrics_give_way_to_informative_ones():
    assert informative_metrics(_frame()) == [("query->item", "ndcg@10"), ("aux->item", "recall@1"), ("title->image", "recall@1")]


def test_section_names_the_data_sets_query_task_and_ranks_on_its_informative_metric():
    text = "\n".join(tuning_section(_frame()))
    assert "photo->product ndcg@10 default" in text and "query->item recall@10" not in text
    # default ndcg@10: factorized 0.91 > clip 0.71; tuned: clip 0.81 > factorized 0.61
    assert "Ranking on photo->product ndcg@10 (mean over seeds), default: factorized > clip; tuned: clip > factorized." in text
    # the per-seed gaps are 0.2 on every seed: paired intervals far from 0, so both rankings name a winner
    assert "The winner changes with tuning (factorized by default, clip tuned; each with a paired 95% interval" in text


def test_one_seed_names_no_winner_before_or_after_tuning():
    text = "\n".join(tuning_section(_frame(seeds=(0,))))
    assert "The winner" not in text
    assert (
        "Whether tuning changes the winner cannot be said: default: no clear winner (fewer than 3 paired seeds); "
        "tied: factorized 0.9000 (n=1), clip 0.7000 (n=1); tuned: no clear winner"
    ) in text
