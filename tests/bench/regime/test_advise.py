"""`ftbench advise`: the predictor on a map whose answer is known, the map loader on result files,
leave-one-cell-out, and the command."""

import json
from pathlib import Path

import numpy as np
import pytest
from ftbench.cli.app import app
from ftbench.config import config_hash
from ftbench.regime.advise import (
    REFERENCE,
    Advisor,
    MapCell,
    leave_one_cell_out,
    load_map,
    measured_best_set,
    profile_path,
)
from ftbench.regime.design import regime_design
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[3]
OBJECTIVES = {"clip": 0.0, "factorized": 0.5, "pairwise": 0.25, "oat": -0.2}


def indicators_of(point):
    """Indicators that follow the cell's knobs (what a profile measures), plus two constants."""
    o = point.options
    return {
        "log10_items": 4.3,
        "image_share": 0.5,
        "query_primary_modality_share": 0.5,
        "views_per_item_mean": 0.9 * point.views,
        "train_queries_per_item": o["interactions"] / 50_000,
        "train_interactions_per_item": o["interactions"] / 25_000,
        "frozen_recall": 0.75 - 0.1 * o["query_aux_fraction"],
        "aux_gain_queries": 0.1 * o["query_aux_fraction"] * o["aux_informativeness"],
        "aux_gain_views": 0.15 * o["aux_informativeness"],
        "cross_side_overlap": 0.2 * o["cross_side_overlap"],
    }


def known_map(noise=0.002, seed=0):
    """Cells whose gain over clip is slope x aux_gain_queries x 4, three noisy seeds each: factorized
    gains most where queries need the auxiliary views, oat loses a little everywhere."""
    rng = np.random.default_rng(seed)
    cells = []
    for point in regime_design(32):
        ind = indicators_of(point)
        scores = {
            o: {
                s: 0.3 + slope * 4 * ind["aux_gain_queries"] - (0.01 if o == "oat" else 0) + rng.normal(0, noise)
                for s in range(3)
            }
            for o, slope in OBJECTIVES.items()
        }
        cells.append(MapCell(point, ind, scores))
    return cells


def test_constant_indicators_are_left_out_and_named_when_a_catalog_differs():
    advisor = Advisor(known_map())
    assert {"log10_items", "image_share", "query_primary_modality_share"}.isdisjoint(advisor.features)
    catalog = dict(known_map()[3].indicators, log10_items=6.0)
    assert set(advisor.advise(catalog).extrapolated) == {"log10_items"}


def test_advice_on_a_known_map_ranks_and_bounds_the_gains():
    cells = known_map()
    advisor = Advisor(cells)
    point = max(cells, key=lambda c: c.indicators["aux_gain_queries"])  # where factorized gains most
    advice = advisor.advise(point.indicators)
    by = {p.objective: p for p in advice.predictions}
    assert advice.best == "factorized" and advice.inside and advice.nearest_cell == point.point.index
    assert [p.objective for p in advice.predictions] == ["factorized", "pairwise", "clip", "oat"]
    truth = {o: float(np.mean(list(g.values()))) for o, g in point.gains().items()}
    for o in ("factorized", "pairwise", "oat"):
        assert by[o].low <= truth[o] <= by[o].high, (o, by[o], truth[o])
    assert by[REFERENCE].gain == 0.0 and not by["oat"].tied_with_best


def test_a_catalog_far_from_every_cell_is_outside_the_map():
    advisor = Advisor(known_map())
    far = dict(known_map()[0].indicators, views_per_item_mean=60.0, cross_side_overlap=5.0)
    assert not advisor.advise(far).inside


def test_an_indicator_undefined_for_few_views_reads_as_its_neutral_value():
    """A two-view catalog has no auxiliary view (aux_gain_views None), a three-view one none on both
    sides (cross_side_overlap None): the predictor reads them as 0 (nothing to gain, nothing shared),
    both when fitting and when advising, instead of dropping the indicator or failing."""
    cells = known_map()
    for c in cells:
        if c.point.views <= 3:
            c.indicators["cross_side_overlap"] = None
        if c.point.views == 2:
            c.indicators["aux_gain_views"] = None
    advisor = Advisor(cells)
    assert {"aux_gain_views", "cross_side_overlap"} <= set(advisor.features)
    two_view = next(c for c in cells if c.point.views == 2)
    zeroed = dict(two_view.indicators, aux_gain_views=0.0, cross_side_overlap=0.0)
    assert advisor.standardise(two_view.indicators).tolist() == advisor.standardise(zeroed).tolist()
    assert leave_one_cell_out(cells)["cells"] == 32


def test_leave_one_cell_out_on_a_known_map():
    outcome = leave_one_cell_out(known_map())
    assert outcome["cells"] == 32
    # where aux_gain_queries is ~0 every objective but oat ties with clip: hits either way
    assert outcome["hit_rate"] >= 0.9 and outcome["median_spearman"] >= 0.7, outcome["hit_rate"]


def test_measured_best_set_follows_the_winner_rule():
    cell = known_map(noise=0.0005)[max(range(32), key=lambda i: known_map()[i].indicators["aux_gain_queries"])]
    assert measured_best_set(cell) == {"factorized"}
    flat = MapCell(cell.point, cell.indicators, {o: {0: 0.3, 1: 0.31, 2: 0.29} for o in OBJECTIVES})
    assert measured_best_set(flat) == set(OBJECTIVES)


def write_map(folder: Path, cells: list[MapCell], points_with_profiles) -> None:
    """Result files (a committed synthetic result, re-labelled) and profiles for `cells`."""
    template = json.loads(next((REPO / "results" / "synthetic-default").glob("synthetic__clip__v8__s0__*.json")).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        for objective, seeds in cell.scores.items():
            for seed, value in seeds.items():
                payload = json.loads(json.dumps(template))
                payload["config"].update(objective=objective, seed=seed, views=cell.point.views)
                payload["config"]["dataset_config"].update(cell.point.options)
                payload["metrics"]["query->item"]["recall@10"] = value
                payload["config_hash"] = config_hash(payload["config"])  # each fabricated run its own identity
                name = f"synthetic__{objective}__v{cell.point.views}__s{seed}__c{cell.point.index:02d}.json"
                (folder / name).write_text(json.dumps(payload))
        if cell.point.index in points_with_profiles:
            path = profile_path(folder, cell.point)
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({"indicators": cell.indicators}))


def test_load_map_reads_cells_from_result_files_and_lists_what_is_missing(tmp_path):
    cells = known_map()[:6]
    incomplete = MapCell(known_map()[6].point, {}, {"clip": {0: 0.3}, "oat": {0: 0.2}})
    write_map(tmp_path, cells + [incomplete], {c.point.index for c in cells[:5]})
    regime = load_map(tmp_path)
    assert [c.point.index for c in regime.cells] == [c.point.index for c in cells[:5]]
    assert regime.missing_profiles == [cells[5].point.index] and regime.incomplete == [6]
    assert regime.cells[0].scores["factorized"] == pytest.approx(cells[0].scores["factorized"])
    with pytest.raises(FileNotFoundError, match="ftbench sweep --preset regime-map"):
        load_map(tmp_path / "nowhere")


def test_the_command_validates_and_advises(tmp_path):
    cells = known_map()[:12]
    write_map(tmp_path / "map", cells, {c.point.index for c in cells})
    runner = CliRunner()
    out = runner.invoke(app, ["advise", "--validate", "--map", str(tmp_path / "map")])
    assert out.exit_code == 0, out.output
    assert "leave-one-cell-out over 12 cells" in out.output
    assert json.loads((tmp_path / "map" / "validation.json").read_text())["cells"] == 12
    out = runner.invoke(
        app,
        [
            "advise",
            "--dataset",
            "synthetic",
            "--set",
            "items=3000",
            "--views",
            "4",
            "--map",
            str(tmp_path / "map"),
            "--cost-dir",
            str(REPO / "results" / "cost"),
            "--json",
            str(tmp_path / "advice.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "confirm on your data: ftbench sweep --dataset synthetic --set dataset.items=3000" in out.output
    advice = json.loads((tmp_path / "advice.json").read_text())
    assert {p["objective"] for p in advice["advice"]["predictions"]} == set(OBJECTIVES)
    assert advice["step_ms"]["clip"] > 0


def test_the_command_says_what_an_unfinished_map_lacks(tmp_path):
    write_map(tmp_path / "map", known_map()[:2], set())
    out = CliRunner().invoke(app, ["advise", "--dataset", "synthetic", "--map", str(tmp_path / "map")])
    assert out.exit_code == 2 and "ftbench advise --profile-map" in out.output


def test_the_report_leaves_the_map_folder_to_advise(tmp_path):
    from ftbench.report.load import find_result_files

    cells = known_map()[:2]
    write_map(tmp_path / "results" / "regime-map", cells, {c.point.index for c in cells})
    (tmp_path / "results" / "regime-map" / "design.json").write_text("{}")
    (tmp_path / "results" / "regime-map" / "validation.json").write_text("{}")
    (tmp_path / "results" / "other").mkdir()
    (tmp_path / "results" / "other" / "validation.json").write_text("{}")  # not a map folder: still read
    found = {p.relative_to(tmp_path / "results").as_posix() for p in find_result_files(tmp_path / "results")}
    assert not any(f.startswith("regime-map/profiles/") for f in found)
    assert "regime-map/design.json" not in found and "regime-map/validation.json" not in found
    assert not any(f.startswith("regime-map/") for f in found)  # runs included: advise reads them
    assert "other/validation.json" in found


def test_advice_is_checked_against_a_comparison_measured_on_the_catalog(tmp_path):
    from ftbench.regime.advise import check_advice, measured_comparison

    point = known_map()[5].point
    # factorized clearly ahead over three seeds, pairwise level with clip, oat behind
    measured = {"clip": 0.50, "factorized": 0.60, "pairwise": 0.50, "oat": 0.45}
    jitter = {0: 0.0, 1: 0.004, 2: -0.003}
    cell = MapCell(point, {}, {o: {s: v + jitter[s] * (1 + i) for s in range(3)} for i, (o, v) in enumerate(measured.items())})
    write_map(tmp_path, [cell], set())
    for path in tmp_path.glob("*.json"):  # saturate the larger cut-offs: the headline rule then picks recall@10
        payload = json.loads(path.read_text())
        payload["metrics"]["query->item"].update({"recall@500": 0.99, "recall@100": 0.99, "recall@50": 0.99})
        path.write_text(json.dumps(payload))
    # an untrained reference in its own comparison group is left out
    frozen = json.loads(next(tmp_path.glob("synthetic__clip__*s0*.json")).read_text())
    frozen["config"].update(objective="frozen-mean")
    frozen["config"]["train_config"]["steps"] = 0
    frozen["config_hash"] = config_hash(frozen["config"])
    (tmp_path / "synthetic__frozen-mean__v0__s0__x.json").write_text(json.dumps(frozen))

    comparison = measured_comparison(tmp_path, "synthetic", point.views)
    assert comparison["metric"] == "recall@10" and comparison["tied_best"] == ["factorized"]
    assert comparison["gains"]["factorized"] == pytest.approx(0.1 + 0.001 / 3, abs=1e-9)
    assert "frozen-mean" not in comparison["scores"]

    advice = Advisor(known_map()).advise(max(known_map(), key=lambda c: c.indicators["aux_gain_queries"]).indicators)
    checked = check_advice(advice, comparison)  # the known map advises factorized > pairwise > clip > oat
    assert checked["hit"] and checked["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no synthetic run result at --views 9"):
        measured_comparison(tmp_path, "synthetic", 9)
