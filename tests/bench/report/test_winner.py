"""The one rule by which every report table names a winner: at least three paired seeds and a
paired 95% interval that excludes zero against every other objective, else "no clear winner" and
the objectives tied with the best mean. Hand computations use t(0.975, 2) = 4.3027."""

import pytest
from ftbench.report.winner import MIN_SEEDS, decide_winner, format_verdict


def test_one_seed_names_no_winner_and_ties_everyone():
    # the case: factorized 0.8207 against clip 0.8190 on one seed
    verdict = decide_winner({"clip": {0: 0.8190}, "factorized": {0: 0.8207}, "oat": {0: 0.70}})
    assert verdict.winner is None and verdict.leader == "factorized"
    assert verdict.tied == ("factorized", "clip", "oat")
    assert format_verdict(verdict) == (
        "no clear winner (fewer than 3 paired seeds); tied: factorized 0.8207 (n=1), clip 0.8190 (n=1), oat 0.7000 (n=1)"
    )


def test_two_seeds_are_not_enough_even_for_a_large_gap():
    verdict = decide_winner({"clip": {0: 0.50, 1: 0.52}, "factorized": {0: 0.70, 1: 0.73}})
    assert MIN_SEEDS == 3 and verdict.winner is None and verdict.tied == ("factorized", "clip")


def test_three_seeds_with_a_clear_gap_name_the_winner():
    # factorized - clip = .05 .04 .06: mean .05, s = .01, half-width 4.3027 * .01 / sqrt(3) = 0.0248
    verdict = decide_winner({"clip": {0: 0.50, 1: 0.52, 2: 0.54}, "factorized": {0: 0.55, 1: 0.56, 2: 0.60}})
    assert verdict.winner == "factorized" and verdict.runner_up == "clip" and verdict.tied == ()
    margin = verdict.against_leader["clip"].absolute
    assert margin.mean == pytest.approx(0.05) and margin.half_width == pytest.approx(0.0248, abs=5e-5)
    assert format_verdict(verdict) == "factorized 0.5700 ± 0.0657 (n=3), +0.0500 ± 0.0248 over clip (paired, n=3)"


def test_three_seeds_with_overlapping_intervals_list_the_ties():
    # full_ot - factorized = .01 -.01 .015: interval includes 0; clip is clearly below full_ot
    verdict = decide_winner(
        {"full_ot": {0: 0.87, 1: 0.85, 2: 0.875}, "factorized": {0: 0.86, 1: 0.86, 2: 0.86}, "clip": {0: 0.80, 1: 0.79, 2: 0.81}}
    )
    assert verdict.winner is None and verdict.leader == "full_ot" and verdict.runner_up == "factorized"
    assert verdict.tied == ("full_ot", "factorized")
    assert "paired 95% interval against full_ot includes 0: factorized" in verdict.reason
    assert format_verdict(verdict).startswith(
        "no clear winner (paired intervals include 0); tied: full_ot 0.8650 (n=3), factorized 0.8600 (n=3)"
    )


def test_a_clear_runner_up_does_not_hide_an_objective_with_too_few_seeds():
    # factorized is clearly ahead of clip (n=3), but mover has one seed: it cannot be ranked below
    verdict = decide_winner({"factorized": {0: 0.55, 1: 0.56, 2: 0.60}, "clip": {0: 0.50, 1: 0.52, 2: 0.54}, "mover": {0: 0.40}})
    assert verdict.winner is None and verdict.tied == ("factorized", "mover")
    assert format_verdict(verdict).startswith("no clear winner (fewer than 3 paired seeds); tied:")


def test_only_matched_seeds_are_paired():
    # three seeds each, but only seeds 1 and 2 are shared: two pairs, not enough
    verdict = decide_winner({"a": {0: 0.9, 1: 0.9, 2: 0.9}, "b": {1: 0.1, 2: 0.1, 3: 0.1}})
    assert verdict.winner is None and verdict.against_leader["b"].n == 2


def test_edge_cases():
    assert decide_winner({}) is None and decide_winner({"clip": {}}) is None
    alone = decide_winner({"clip": {0: 0.5, 1: 0.6, 2: 0.7}})
    assert alone.winner is None and alone.tied == ("clip",)
    assert format_verdict(alone) == "clip 0.6000 ± 0.2484 (n=3) (the only objective)"
    assert format_verdict(None) == "—"
    with pytest.raises(ValueError, match="min_seeds must be at least 2"):
        decide_winner({"clip": {0: 0.5}}, min_seeds=1)
