"""The null check of the synthetic marketplace, fast version.

With `aux_informativeness = 0` the auxiliary views are pure noise, so no multi-view objective may
beat `clip` (which trains on the primary views only) on query->item recall beyond the paired 95%
t-interval over seeds. To show that this check has power, the same protocol at informativeness 1,
with every query naming an auxiliary attribute, must find a multi-view objective (full_ot at this
small budget) that does beat clip beyond its interval.

Small catalog (2,000 items, 200 test items), 40 steps of 128 items, 4 views, seeds 0-2; query->item
recall@10 on the test queries. The full version (default catalog and budget) is the command in
the docstring of `ftbench.datasets.synthetic` (section "Null check").
"""

import pytest
from ftbench.report.intervals import paired_difference
from ftbench.run.experiment import RunSpec, execute, prepare

SEEDS = (0, 1, 2)
VIEWS, STEPS, BATCH = 4, 40, 128
MULTI_VIEW = ("factorized", "full_ot", "oat", "mover")


def _recall_at_10(objective: str, informativeness: float, query_aux_fraction: float, cache: dict) -> dict[int, float]:
    sets = [
        "dataset.items=2000",
        "dataset.interactions=6000",
        f"dataset.aux_informativeness={informativeness}",
        f"dataset.query_aux_fraction={query_aux_fraction}",
        "train.eval_every=0",
    ]
    out = {}
    for seed in SEEDS:
        result, _ = execute(
            prepare(RunSpec(objective, "synthetic", VIEWS, seed, "cpu", sets, STEPS, BATCH)), None, dataset_cache=cache
        )
        out[seed] = result.metrics["query->item"]["recall@10"]
    return out


@pytest.mark.slow
def test_no_multi_view_objective_beats_clip_when_auxiliary_views_are_noise():
    cache: dict = {}
    clip = _recall_at_10("clip", 0.0, 0.6, cache)
    for objective in MULTI_VIEW:
        diff = paired_difference(_recall_at_10(objective, 0.0, 0.6, cache), clip)
        assert diff is not None and diff.n == len(SEEDS)
        assert diff.absolute.low <= 0.0, (
            f"{objective} beats clip on noise auxiliary views: query->item R@10 "
            f"{diff.absolute.mean:+.3f} [{diff.absolute.low:+.3f}, {diff.absolute.high:+.3f}]"
        )


@pytest.mark.slow
def test_the_null_check_has_power_when_auxiliary_views_carry_what_queries_ask():
    cache: dict = {}
    clip = _recall_at_10("clip", 1.0, 1.0, cache)
    diff = paired_difference(_recall_at_10("full_ot", 1.0, 1.0, cache), clip)
    assert diff.absolute.low > 0.0, (
        f"full_ot does not beat clip with informative auxiliary views: "
        f"{diff.absolute.mean:+.3f} [{diff.absolute.low:+.3f}, {diff.absolute.high:+.3f}]"
    )
