"""The report's regime-map section on a fabricated map folder whose answer is known by construction.

Nine complete cells and one incomplete, four objectives, three seeds, written as real result files
(a committed synthetic result re-labelled, as tests/bench/regime/test_advise.py does) beside the
committed design and one profile per cell:

- three cells where the auxiliary views add nothing for queries (`aux_gain_queries` <= 0.01):
  every objective within seed noise of clip, so clip is tied-best;
- two cells (0.06, 0.07): full_ot and factorized tied ahead of clip;
- four cells (0.08 .. 0.12): full_ot the clear winner.

The other indicators are interleaved over the three groups, so only `aux_gain_queries` separates
clip-tied cells from the others, and the decision guide's one split must say so with these counts.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from ftbench.regime.advise import REFERENCE, load_map, profile_path
from ftbench.regime.design import design_json, regime_design
from ftbench.report import build_report
from ftbench.report.regime import (
    CLIP_TIED,
    NO_WINNER_FACE,
    NO_WINNER_HATCH,
    cell_outcome,
    complete_cells,
    decision_rules,
    design_points,
    marker_style,
    objective_colours,
    objective_regions,
    regime_map_section,
)

REPO = Path(__file__).resolve().parents[3]
OBJECTIVES = ("clip", "factorized", "full_ot", "oat")
AUX_GAIN = (0.0, 0.005, 0.01, 0.06, 0.07, 0.08, 0.09, 0.11, 0.12)
CLIP_TIED_CELLS = (0, 1, 2)
TIED_AHEAD_CELLS = (3, 4)
FULL_OT_WINS_CELLS = (5, 6, 7, 8)
INCOMPLETE_CELL = 9
BASE = 0.30
#: per-seed offsets: within noise of each other (paired intervals include 0)
NOISE = {
    "clip": (0.0, 0.0, 0.0),
    "factorized": (0.010, -0.010, 0.002),
    "full_ot": (-0.010, 0.012, 0.001),
    "oat": (0.005, -0.006, 0.003),
}


def cell_scores(k: int) -> dict[str, dict[int, float]]:
    if k in CLIP_TIED_CELLS:
        shift = {o: 0.0 for o in OBJECTIVES}
    elif k in TIED_AHEAD_CELLS:
        shift = {"clip": 0.0, "factorized": 0.08, "full_ot": 0.081, "oat": 0.0}
    else:  # full_ot clear: 0.05 above factorized with seed jitter far below that
        shift = {"clip": 0.0, "factorized": 0.05, "full_ot": 0.10, "oat": 0.01}
    scale = 1.0 if k in CLIP_TIED_CELLS + TIED_AHEAD_CELLS else 0.1
    return {o: {s: BASE + shift[o] + scale * NOISE[o][s] for s in range(3)} for o in OBJECTIVES}


def indicators(k: int) -> dict[str, float | None]:
    """`aux_gain_queries` from AUX_GAIN; the others interleaved (k * m mod 9 for m coprime to 9)."""
    return {
        "log10_items": 4.3,
        "image_share": 0.5,
        "query_primary_modality_share": 0.5,
        "views_per_item_mean": 2 + 6 * ((2 * k) % 9) / 8,
        "train_queries_per_item": 0.1 + ((4 * k) % 9) / 4,
        "train_interactions_per_item": 0.2 + ((4 * k) % 9) / 2,
        "frozen_recall": 0.65 + ((7 * k) % 9) / 80,
        "aux_gain_queries": AUX_GAIN[k] if k < len(AUX_GAIN) else 0.05,
        "aux_gain_views": ((5 * k) % 9) / 50,
        "cross_side_overlap": ((7 * k) % 9) / 40,
    }


def write_map_folder(folder: Path, validation: dict | None = None) -> None:
    points = regime_design()
    template = json.loads(next((REPO / "results" / "synthetic-default").glob("synthetic__clip__v8__s0__*.json")).read_text())
    folder.mkdir(parents=True)
    (folder / "design.json").write_text(design_json(points, 0))
    for k in range(INCOMPLETE_CELL + 1):
        point = points[k]
        scores = cell_scores(k)
        if k == INCOMPLETE_CELL:
            del scores["oat"][2]  # two seeds of oat: a cell with runs, not complete
        for objective, seeds in scores.items():
            for seed, value in seeds.items():
                payload = json.loads(json.dumps(template))
                payload["config"].update(objective=objective, seed=seed, views=point.views)
                payload["config"]["dataset_config"].update(point.options)
                payload["metrics"]["query->item"]["recall@10"] = value
                (folder / f"synthetic__{objective}__v{point.views}__s{seed}__c{k:02d}.json").write_text(json.dumps(payload))
        path = profile_path(folder, point)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"cell": k, "indicators": indicators(k)}))
    if validation is not None:
        (folder / "validation.json").write_text(json.dumps(validation))


VALIDATION = {
    "metric": "query->item/recall@10",
    "cells": 9,
    "hit_rate": 8 / 9,
    "median_spearman": 0.75,
    "rows": [
        {
            "cell": k,
            "advised": "factorized" if k == 5 else "full_ot",
            "measured_best": ["full_ot"],
            "hit": k != 5,
            "spearman": 0.4 if k == 5 else 0.8,
            "inside": True,
            "predicted": {},
            "measured": {"clip": 0.0, "factorized": 0.05, "full_ot": 0.1},
        }
        for k in range(9)
    ],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_map_folder(root / "regime-map", VALIDATION)
    # one ordinary comparison beside the map, so the report also has its lead section
    (root / "default").mkdir()
    for path in sorted((REPO / "results" / "synthetic-default").glob("synthetic__*__v8__s*__*.json")):
        (root / "default" / path.name).write_text(path.read_text())
    return root


@pytest.fixture(scope="module")
def outcomes(results):
    regime = load_map(results / "regime-map", design_points(results / "regime-map"))
    return [cell_outcome(c) for c in complete_cells(regime)]


def test_only_complete_cells_enter_and_their_tied_best_sets_are_the_constructed_ones(outcomes):
    by_cell = {o.index: o for o in outcomes}
    assert sorted(by_cell) == list(range(9))  # cell 9 has two seeds of oat: left out
    for k in CLIP_TIED_CELLS:
        assert REFERENCE in by_cell[k].best_set and by_cell[k].winner is None
    for k in TIED_AHEAD_CELLS:
        assert set(by_cell[k].best_set) == {"full_ot", "factorized"} and by_cell[k].leader == "full_ot"
    for k in FULL_OT_WINS_CELLS:
        assert by_cell[k].winner == "full_ot" and by_cell[k].best_set == ("full_ot",)
        assert by_cell[k].leader_gain == pytest.approx(0.10 + 0.1 * np.mean(NOISE["full_ot"]))


def test_winner_colouring_follows_the_tied_best_set(outcomes):
    colours = objective_colours(list(OBJECTIVES))
    for o in outcomes:
        style = marker_style(o, colours)
        if len(o.best_set) == 1:
            assert style["facecolor"] == colours[o.best_set[0]] and "hatch" not in style
        else:
            assert style["facecolor"] == NO_WINNER_FACE and style["hatch"] == NO_WINNER_HATCH
            assert style["edgecolor"] == colours[o.leader]


def test_the_decision_guide_counts_the_constructed_cells(outcomes):
    rules = decision_rules(outcomes)
    assert len(rules) == 2
    low, high = rules
    assert low.region.startswith("`aux_gain_queries` ≤") and low.cells == list(CLIP_TIED_CELLS)
    assert dict(low.classes) == {CLIP_TIED: 3}
    assert high.region.startswith("`aux_gain_queries` >") and high.cells == list(TIED_AHEAD_CELLS + FULL_OT_WINS_CELLS)
    assert dict(high.classes) == {"full_ot leads, clip beaten": 6}
    assert high.best_objective == "full_ot" and high.tied_best["full_ot"] == 6 and high.tied_best["factorized"] == 2
    expected = [0.081 + np.mean(NOISE["full_ot"])] * 2 + [0.10 + 0.1 * np.mean(NOISE["full_ot"])] * 4
    assert high.best_gains == pytest.approx(expected)
    regions = {r.objective: r for r in objective_regions(outcomes, list(OBJECTIVES))}
    name, threshold, in_low, n_low, in_high, n_high = regions["clip"].split
    assert name == "aux_gain_queries" and 0.01 < threshold < 0.06 and (in_low, n_low, in_high, n_high) == (3, 3, 0, 6)
    assert regions["full_ot"].tied_best == 9 and regions["full_ot"].winner == 4 and regions["full_ot"].split is None


def test_the_section_renders_with_its_figure_guide_table_and_validation(results, tmp_path):
    lines, plots = regime_map_section(results / "regime-map", tmp_path, results)
    text = "\n".join(lines)
    assert "**preliminary: 9 of 32 cells complete**" in text and "1 with runs still incomplete" in text
    assert len(plots) == 1 and plots[0].is_file() and plots[0].stat().st_size > 10_000
    assert f"![regime map]({plots[0].name})" in text
    # the guide's rules with their numbers: counts, the best objective's mean gain over the rule's cells
    gains = np.array([0.081 + np.mean(NOISE["full_ot"])] * 2 + [0.10 + 0.1 * np.mean(NOISE["full_ot"])] * 4)
    assert f"(3 cells: 00, 01, 02): {CLIP_TIED}: 3 of 3." in text
    assert (
        f"(6 cells: 03, 04, 05, 06, 07, 08): full_ot leads, clip beaten: 6 of 6. Best objective there: full_ot, gain over clip +{gains.mean():.4f}"
        in text
    )
    assert "| clip | 3 of 9 | 0 | 0 (reference) | `aux_gain_queries` ≤" in text
    assert "| full_ot | 9 of 9 | 4 |" in text and "in every cell" in text
    # the per-cell table: tied-best set and the leader's paired gain
    assert "| 05 | **full_ot** | full_ot +0.1001 ±" in text
    assert "| 03 | no clear winner: full_ot, factorized | full_ot +0.0820 ±" in text
    row = next(line for line in text.splitlines() if line.startswith("| 00 |"))
    assert "no clear winner:" in row and " clip" in row.split("|")[2]
    # the validation: hit rate, median Spearman, the failure named
    assert "**8 of 9** (89%)" in text and "**+0.75**" in text
    assert (
        "- cell 05: advised factorized, measured tied-best full_ot (factorized measured +0.0500 over clip); Spearman +0.40."
        in text
    )


def test_the_report_opens_with_the_map(results, tmp_path):
    outcome = build_report(results, tmp_path / "report")
    text = outcome.path.read_text()
    assert text.index("## Regime map") < text.index("## Your comparisons")
    assert any(p.name.startswith("regime_map__") for p in outcome.plots)
    assert outcome.runs == len(list((results / "default").glob("*.json")))  # the map's runs are not a comparison group


def test_a_stale_or_missing_validation_is_said(tmp_path):
    write_map_folder(tmp_path / "results" / "regime-map", dict(VALIDATION, cells=5, rows=VALIDATION["rows"][:5]))
    text = "\n".join(regime_map_section(tmp_path / "results" / "regime-map", tmp_path, tmp_path / "results")[0])
    assert "The validation covers 5 cells; `ftbench advise` now fits from 10: rerun" in text
    (tmp_path / "results" / "regime-map" / "validation.json").unlink()
    text = "\n".join(regime_map_section(tmp_path / "results" / "regime-map", tmp_path, tmp_path / "results")[0])
    assert "Not run yet: `ftbench advise --validate --map results/regime-map`" in text


def test_no_map_folder_adds_nothing(tmp_path):
    from ftbench.report.regime import regime_map_sections

    (tmp_path / "results").mkdir()
    assert regime_map_sections(tmp_path / "results", tmp_path / "report") == ([], [])


def test_the_advice_checked_on_a_real_catalog_is_tabled(tmp_path):
    folder = tmp_path / "results" / "regime-map"
    write_map_folder(folder, VALIDATION)
    check = {
        "dataset": "grocery-store",
        "sets": ["dataset.train_photo_queries=false", "dataset.data_dir='../data'"],
        "advice": {"best": "full_ot", "inside": False},
        "measured": {
            "folder": "results/grocery-mini",
            "task": "photo->product",
            "metric": "ndcg@10",
            "measured_tied_best": ["full_ot", "pairwise"],
            "hit": True,
            "measured_best_inside_advised_ties": False,
            "spearman": 0.36,
        },
    }
    (folder / "real-data__grocery-mini.json").write_text(json.dumps(check))
    text = "\n".join(regime_map_section(folder, tmp_path, tmp_path / "results")[0])
    row = next(line for line in text.splitlines() if line.startswith("| grocery-store"))
    assert row == (
        "| grocery-store (dataset.train_photo_queries=false) | `results/grocery-mini` | photo->product ndcg@10 | full_ot "
        "| full_ot, pairwise | yes | **no** | +0.36 | **outside** |"
    )
    # the check files are not map runs: the map still has its 9 complete cells
    assert "### The advice on real catalogs" in text and "preliminary: 9 of" in text
