"""`ftbench report` on the fixture results set: hand-computed cells, missing and single-seed cells,
paired differences, the paper-claims sentence, unreadable files, plots and the CLI.

The fixture set is regenerated into a temporary folder by tests/fixtures/results/generate.py (real
configs and config hashes from `experiment.prepare`, chosen metric values; see its docstring).
Hand computations use t(0.975, 2) = 4.3027 (printed t tables); every expected string is rounded
as the report rounds (4 decimals, relative changes 1 decimal).
"""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from ftbench.report import build_report, claim_verdict, load_results_frame, load_run_results
from ftbench.report.intervals import paired_difference
from typer.testing import CliRunner

GENERATOR = Path(__file__).resolve().parents[2] / "fixtures" / "results" / "generate.py"


def _generator():
    spec = importlib.util.spec_from_file_location("ftbench_fixture_results_generator", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    _generator().main(out)
    return out


@pytest.fixture(scope="module")
def report(fixture_dir, tmp_path_factory):
    results = tmp_path_factory.mktemp("copy")
    shutil.copytree(fixture_dir, results, dirs_exist_ok=True)
    outcome = build_report(results)
    return outcome, outcome.path.read_text()


def _section(text: str, start: str, end: str = "\n## ") -> str:
    i = text.index(start)
    j = text.find(end, i + len(start))
    return text[i : j if j >= 0 else None]


def test_reads_only_readable_results_and_counts_the_rest(report):
    outcome, text = report
    assert outcome.runs == 23 and outcome.groups == 3
    assert sorted(p.name for p, _ in outcome.unreadable) == ["broken.json", "old_schema.json"]
    assert "23 run result(s), 1 cost result(s). 2 unreadable file(s) skipped:" in text
    assert "- `broken.json`: not a valid result file (JSON error" in text
    assert "- `old_schema.json`: schema_version 0, this ftbench reads versions 1, 2" in text


def test_headline_table_with_missing_and_single_seed_cells(report):
    _, text = report
    default = _section(text, "## synthetic, 20,000 items: default data")
    # clip: V=1 .40 .42 .44 -> 0.42 ± 4.3027*0.02/sqrt(3) = 0.0497; V=8 .46 .50 .54 -> 0.50 ± 0.0994
    assert "| clip | 0.4200 ± 0.0497 (n=3) | 0.4700 ± 0.0497 (n=3) | 0.5000 ± 0.0994 (n=3) |" in default
    # factorized: V=1 .41 .44 .44 -> mean 0.43, s = sqrt(0.0003), 0.43 ± 0.0430; V=4 missing; V=8 one seed
    assert "| factorized | 0.4300 ± 0.0430 (n=3) | — | 0.6000 (n=1) |" in default
    # the full table: recall@1 = 0.05, recall@10 = 0.3, ndcg@10 = 0.2, mrr = 0.1 x recall@500
    # (see the generator); intervals scale by the same factors
    assert (
        "| clip | 8 | 3 | 0.0250 ± 0.0050 | 0.1500 ± 0.0298 | 0.3500 ± 0.0696 | 0.5000 ± 0.0994 | "
        "0.1000 ± 0.0199 | 0.0500 ± 0.0099 |"
    ) in default
    assert "| factorized | 4 | 0 | — | — | — | — | — | — |" in default
    assert (
        "| factorized | 8 | 1 | 0.0300 (n=1) | 0.1800 (n=1) | 0.4200 (n=1) | 0.6000 (n=1) | 0.1200 (n=1) | 0.0600 (n=1) |"
    ) in default
    assert "13 runs, seeds 0, 1, 2" in default


def test_paired_differences_against_clip(report):
    _, text = report
    default = _section(text, "## synthetic, 20,000 items: default data")
    # V=1: d = .01 .02 .00 -> +0.0100 ± 4.3027*0.01/sqrt(3) = 0.0248;
    # r = 2.5%, 4.762%, 0% -> mean 2.42%, s = 2.382, ± 5.9%
    assert (
        "| factorized | 1 | +0.0030 ± 0.0075 (+2.4% ± 5.9%), n=3 | +0.0070 ± 0.0174 (+2.4% ± 5.9%), n=3 | "
        "+0.0100 ± 0.0248 (+2.4% ± 5.9%), n=3 | +0.0020 ± 0.0050 (+2.4% ± 5.9%), n=3 |" in default
    )
    assert "| factorized | 4 | — | — | — | — |" in default
    assert "+0.1400 (+30.4%), n=1" in default  # one matched seed: .60 vs .46, no interval


def test_cross_view_table(report):
    _, text = report
    default = _section(text, "## synthetic, 20,000 items: default data")
    cross = _section(default, "### Cross-view", "\n![")
    # clip V=8 title->image recall@10 = .30 .31 .32 -> 0.31 ± 0.0248; V=1 has no title view: not scored
    assert "| clip | 8 | 0.1033 ± 0.0083 (n=3) | 0.3100 ± 0.0248 (n=3) |" in cross
    assert "| clip | 1 | — | — | — | — | — | — |" in cross
    small = _section(text, "## synthetic, 300 items:")
    assert "Not scored in this group (not applicable to the data set, or absent from the runs): aux->item." in small
    # 300 items: K=500 not applicable, recall@100 heads the group; one V: no plot against V
    assert "Headline metric: **recall@100** (best mean 0.619" in small
    assert "(One V in this group (2): no plot against V.)" in small


def test_lead_and_headline_choice(report, fixture_dir, tmp_path):
    """The report opens with the reader's groups and their headline metrics; a saturated metric
    never heads a group; "Paper claims" appears only with a paper-scale group."""
    import pandas as pd
    from ftbench.report.headline import choose_headline

    _, text = report
    assert text.index("## Your comparisons") < text.index("## synthetic,") < text.index("## Paper claims")
    lead = _section(text, "## Your comparisons")
    assert "| synthetic, 300 items: items=300, interactions=400, train.val_gallery_size=200 | 4 | recall@100 | 2 |" in lead
    saturated = pd.DataFrame(
        {
            "objective_label": ["clip", "factorized"],
            "views": [8, 8],
            "query->item/recall@500": [0.99, 1.0],
            "query->item/recall@100": [0.97, 0.99],
            "query->item/recall@10": [0.41, 0.47],
        }
    )
    metric, why = choose_headline(saturated)
    assert metric == "recall@10" and "saturated: recall@500 (best 1.000), recall@100 (best 0.990)" in why
    everything = saturated.assign(**{"query->item/recall@10": [0.96, 0.97]})
    assert choose_headline(everything)[0] == "recall@10"  # all saturate: the lowest best mean

    shutil.copytree(fixture_dir, tmp_path / "r")
    for path in (tmp_path / "r").glob("*.json"):
        if '"items": 1000000' in path.read_text():
            path.unlink()
    small = build_report(tmp_path / "r").path.read_text()
    assert "## Paper claims" not in small


def test_paper_claims_section(report):
    _, text = report
    claims = _section(text, "## Paper claims")
    assert "+7.9% Recall@500" in claims and "No other number of the paper is public" in claims
    assert "1,000,000 listings and 292,520 interactions" in claims
    # paper scale: clip .50 .52 .54, factorized .55 .56 .60 -> d = +0.05 ± 0.0248,
    # r = 10%, 7.692%, 11.111% -> +9.6% ± 4.3%, interval [+5.3%, +13.9%] contains +7.9%
    assert (
        "| paper scale |" in claims
        and "| 8 | 3 | 0.5200 ± 0.0497 | 0.5700 ± 0.0657 | +0.0500 ± 0.0248 (+9.6% ± 4.3%), n=3 |" in claims
    )
    assert "Agreement: the paper's +7.9% lies inside our 95% interval [+5.3%, +13.9%]" in claims
    assert "**default data**" in claims and "One seed only: the measured change is +30.4%" in claims
    assert "recall@500 is not scored in this group (catalog of 300 items" in claims
    assert "Why our numbers may differ" in claims


def test_cost_section_and_plots(report):
    outcome, text = report
    cost = _section(text, "## Cost against the number of views")
    assert "| factorized | step | 12.12 | 12.24 | 12.48 | 12.96 | — (estimated 9.0 GB > budget 8.0 GB) | 0.02 |" in cost
    assert "| clip | objective | 2.52 | 2.55 | 2.60 | 2.70 | — | 0.03 |" in cost
    names = sorted(p.name for p in outcome.plots)
    # 3 groups x (trade-off from the cost file, training curves) + headline against V where V varies + cost
    kinds = sorted(name.split("__", 1)[0] for name in names)  # group hashes follow the generator's defaults
    assert kinds == [
        "cost_vs_views",
        "headline_vs_views",
        "tradeoff",
        "tradeoff",
        "tradeoff",
        "training",
        "training",
        "training",
    ], names
    assert "[group " not in text and "group ba44c8fb" not in text.split("## Your comparisons")[1].split("\n## ")[0]
    for plot in outcome.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot.name})" in text
    assert not list(outcome.path.parent.glob("*.tmp"))


def test_frame_groups_and_flags(fixture_dir):
    frame = load_results_frame(fixture_dir)
    assert len(frame) == 23
    assert frame.groupby("group").size().sort_values().tolist() == [4, 6, 13]
    assert frame["paper_scale"].sum() == 6
    assert set(frame.loc[frame["default_data"], "group"].unique()).__len__() == 1
    assert (frame["query_task"] == "query->item").all()
    small = frame[frame["items"] == 300]
    assert small["query->item/recall@500"].isna().all() and small["query->item/recall@100"].notna().all()


def test_objective_config_variants_are_never_mixed(fixture_dir, tmp_path):
    shutil.copytree(fixture_dir, tmp_path / "r")
    source = next((tmp_path / "r").glob("synthetic__factorized__v1__s0__*.json"))
    payload = json.loads(source.read_text())
    payload["config"]["objective_config"]["primary_weight"] = 0.9
    payload["config_hash"] = "f" * 16
    payload["metrics"]["query->item"]["recall@500"] = 0.99
    (tmp_path / "r" / "variant.json").write_text(json.dumps(payload))
    frame = load_results_frame(tmp_path / "r")
    labels = sorted(frame.loc[(frame["objective"] == "factorized") & (frame["views"] == 1), "objective_label"].unique())
    assert len(labels) == 2 and all(label.startswith("factorized[") for label in labels)
    from ftbench.report import summary_table

    table = summary_table(frame).reset_index()
    rows = table[(table["objective"].str.startswith("factorized[")) & (table["views"] == 1)]
    # the variant is its own row (0.99, n=1), not averaged into factorized (.41 .44 .44 -> 0.43, n=3)
    assert sorted(zip(rows["recall@500"].round(4), rows["recall@500_n"])) == [(0.43, 3), (0.99, 1)]


def test_only_run_results_are_read(fixture_dir, tmp_path):
    from ftbench.report import find_result_files

    shutil.copytree(fixture_dir, tmp_path / "r")
    (tmp_path / "r" / "run.embeddings").mkdir()
    (tmp_path / "r" / "run.embeddings" / "manifest.json").write_text("{}")
    (tmp_path / "r" / ".x.json.tmp").write_text("{")
    (tmp_path / "r" / "report").mkdir()
    (tmp_path / "r" / "report" / "other.json").write_text("{}")
    names = {p.name for p in find_result_files(tmp_path / "r")}
    assert len(names) == 25 and "manifest.json" not in names and "cost__B256__cpu.json" not in names


def test_duplicate_files_count_once(fixture_dir, tmp_path):
    shutil.copytree(fixture_dir, tmp_path / "r")
    source = next((tmp_path / "r").glob("synthetic__clip__v8__s0__*.json"))
    payload = json.loads(source.read_text())
    payload["created"] = "2030-01-01T00:00:00+00:00"
    (tmp_path / "r" / "copy_of_clip.json").write_text(json.dumps(payload))
    loaded = load_run_results(tmp_path / "r")
    assert len(loaded.runs) == 23 and [p.name for p in loaded.duplicates] == [source.name]


@pytest.mark.parametrize(
    "candidate, baseline, expected",
    [
        ({0: 0.55, 1: 0.56, 2: 0.60}, {0: 0.50, 1: 0.52, 2: 0.54}, "Agreement"),
        ({0: 0.51, 1: 0.53, 2: 0.55}, {0: 0.50, 1: 0.52, 2: 0.54}, "Same direction, different size"),  # ~+1.9%
        ({0: 0.40, 1: 0.41, 2: 0.43}, {0: 0.50, 1: 0.52, 2: 0.54}, "Disagreement"),
        ({0: 0.51, 1: 0.50, 2: 0.545}, {0: 0.50, 1: 0.52, 2: 0.54}, "Not reproduced"),  # interval contains 0
        ({0: 0.60}, {0: 0.50}, "One seed only"),
    ],
)
def test_claim_verdicts(candidate, baseline, expected):
    assert claim_verdict(paired_difference(candidate, baseline)).startswith(expected)
    assert claim_verdict(None).startswith("No matched")


runner = CliRunner()


def test_cli_report(fixture_dir, tmp_path):
    from ftbench.cli.app import app

    (tmp_path / "r").mkdir()
    for path in fixture_dir.glob("*.json"):  # the 300-item group and the unreadable files only
        payload = path.read_text()
        if '"items": 300,' in payload or path.name in ("broken.json", "old_schema.json"):
            (tmp_path / "r" / path.name).write_text(payload)
    res = runner.invoke(app, ["report", str(tmp_path / "r")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    output = " ".join(res.output.split())
    assert "4 run results in 1 comparison group(s), 1 plots" in output  # training curves; one V, no cost file
    assert "2 unreadable result file(s) skipped" in output
    assert (tmp_path / "r" / "report" / "REPORT.md").exists()


def test_cli_report_never_trains(tmp_path, monkeypatch):
    """A report command never trains: an empty folder gets a report saying so, a missing folder
    (a typo) is refused and not created, and no sweep is started in either case."""
    from ftbench.cli.app import app
    from ftbench.run import sweep as sweep_module

    def no_training(*args, **kwargs):
        raise AssertionError("report started a sweep")

    monkeypatch.setattr(sweep_module, "run_sweep", no_training)
    res = runner.invoke(app, ["report", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "never trains" in " ".join(res.output.split())
    assert "No readable run results" in (tmp_path / "report" / "REPORT.md").read_text()

    res = runner.invoke(app, ["report", str(tmp_path / "typo_results")])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "typo_results").exists()
    res = runner.invoke(app, ["report", str(tmp_path), "--run-quick-if-empty"])
    assert res.exit_code == 2 and "No such option" in res.output


def test_ceiling_note():
    from ftbench.report import ceiling_note

    # clip at 0.95 leaves at most 100 * 0.05 / 0.95 = +5.3%: below +7.9%
    near_one = paired_difference({0: 0.96, 1: 0.97}, {0: 0.95, 1: 0.95})
    assert "at most +5.3% is possible" in ceiling_note(near_one)
    assert ceiling_note(paired_difference({0: 0.55}, {0: 0.50})) == ""  # +100% headroom


def test_a_data_sets_own_query_task_is_the_query_column(fixture_dir, tmp_path):
    (tmp_path / "r").mkdir()
    source = next(fixture_dir.glob("synthetic__clip__v2__s0__*.json"))
    payload = json.loads(source.read_text())
    payload["config"]["dataset"] = "grocery_store"
    payload["metrics"]["photo->product"] = payload["metrics"].pop("query->item")
    payload["not_applicable"] = {k.replace("query->item", "photo->product"): v for k, v in payload["not_applicable"].items()}
    (tmp_path / "r" / "grocery.json").write_text(json.dumps(payload))
    frame = load_results_frame(tmp_path / "r")
    assert frame.loc[0, "query_task"] == "photo->product"
    assert frame.loc[0, "query->item/recall@10"] == payload["metrics"]["photo->product"]["recall@10"]
    text = build_report(tmp_path / "r").path.read_text()
    assert "### photo->product: all metrics" in text


def test_winners_only_where_the_seeds_say_so(report):
    """The lead table and each group name a winner by `report.winner`'s rule: paper scale (three
    paired seeds, d = .05 .04 .06) has one; the default group's factorized V=8 has one seed."""
    _, text = report
    lead = _section(text, "## Your comparisons")
    assert "| headline metric | V | winner | clip |" in lead
    assert (
        "| synthetic, 1,000,000 items: paper scale | 6 | recall@500 | 8 | factorized 0.5700 ± 0.0657 (n=3), "
        "+0.0500 ± 0.0248 over clip (paired, n=3) |"
    ) in lead
    assert "| 8 | no clear winner (fewer than 3 paired seeds); tied: factorized 0.6000 (n=1), clip 0.5000 (n=3) |" in lead
    default = _section(text, "## synthetic, 20,000 items: default data")
    assert "Winner at V=8 on recall@500: no clear winner (fewer than 3 paired seeds)" in default


def test_group_titles_say_what_sets_a_group_apart(report, fixture_dir):
    """No group is "other": each title names the data set, its size and its own config; the changes
    every group of the data set shares (train.steps=5, train.batch_size=32) are left to the section."""
    from ftbench.report.headline import group_titles, split_changes

    _, text = report
    titles = sorted(group_titles(load_results_frame(fixture_dir)).values())
    assert titles == [
        "synthetic, 1,000,000 items: paper scale",
        "synthetic, 20,000 items: default data, train.steps=5, train.batch_size=32",
        "synthetic, 300 items: items=300, interactions=400, train.val_gallery_size=200",
    ]
    assert ": other" not in text and "| other |" not in text
    assert "Config off the defaults: dataset.items=1000000, dataset.interactions=292520, train.steps=5" in text
    assert "| items=300, interactions=400, train.val_gallery_size=200 | synthetic (" in _section(text, "## Paper claims")
    assert split_changes("eval.ks=(10, 100), train.steps=5") == ["eval.ks=(10, 100)", "train.steps=5"]


def test_one_validation_point_is_said_not_drawn_as_a_curve(report, fixture_dir, tmp_path):
    """The fixture runs validate once (at their last step, 5): the report says so, and the plot
    knows it; a run validated at several steps is a curve again."""
    from ftbench.report.curves import plot_training_curves

    _, text = report
    default = _section(text, "## synthetic, 20,000 items: default data")
    assert (
        "Validation ran once, at the last step (5: train.eval_every is 0 or not below train.steps), so the right "
        "panel has one score per objective, not a curve"
    ) in default
    frame = load_results_frame(fixture_dir)
    data = frame[frame["default_data"]]
    assert plot_training_curves(data, tmp_path / "one.png", "t").single_validation_step == 5
    curved = data.assign(training_history=[[{"step": 2, "val": 0.4}, {"step": 5, "val": 0.5}]] * len(data))
    curves = plot_training_curves(curved, tmp_path / "two.png", "t")
    assert curves.single_validation_step is None and curves.path.read_bytes()[:4] == b"\x89PNG"


def test_the_report_names_the_command_that_rebuilds_it(fixture_dir, tmp_path):
    shutil.copytree(fixture_dir, tmp_path / "r")
    text = build_report(tmp_path / "r").path.read_text()
    assert f"Regenerate with `ftbench report {tmp_path / 'r'}`;" in text and "make report" not in text
    elsewhere = build_report(tmp_path / "r", tmp_path / "out").path.read_text()
    assert f"Regenerate with `ftbench report {tmp_path / 'r'} --out {tmp_path / 'out'}`;" in elsewhere
