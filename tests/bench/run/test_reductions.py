"""`ftbench.run.reductions`: what an objective amounts to on a run's data.

factorized and full_ot reduce to clip exactly when each side of every item holds at most one view
and they encode clip's pair with clip's weights; full_ot with one view per side but other weights is
factorized's closed form; clip and siglip say which pair they train on in a one-modality catalog.
The end-to-end test checks the claim itself: a factorized run said to reduce to clip gives clip's
metrics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.views import SlotLayout
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import ObjectiveContext
from ftbench.run.reductions import describe

TEXT_ONLY = [
    ViewSlot("title", "text", "primary"),
    ViewSlot("description", "text", "auxiliary"),
    ViewSlot("bullets", "text", "auxiliary"),
]
MULTIMODAL = [
    ViewSlot("image", "image", "primary"),
    ViewSlot("title", "text", "primary"),
    ViewSlot("photo", "image", "auxiliary"),
    ViewSlot("description", "text", "auxiliary"),
]


def _catalog(slots, available) -> ArrayCatalog:
    rng = np.random.default_rng(0)
    available = np.asarray(available, dtype=bool)
    feats = [rng.normal(size=(len(available), 4)).astype(np.float32) for _ in slots]
    return ArrayCatalog(slots, feats, available, [f"i{k}" for k in range(len(available))])


def _describe(name, catalog, views, **config):
    cls = OBJECTIVES.get(name)
    context = ObjectiveContext(SlotLayout.from_catalog(catalog), 8, catalog.num_items, False, False)
    cfg = cls.Config(**config)
    return describe(cls(cfg, context), catalog, views)


FULL_TEXT = [[True, True, True]] * 4 + [[True, False, True], [True, False, False]]


@pytest.mark.parametrize("name", ["factorized", "full_ot"])
def test_one_view_per_side_with_equal_weights_is_clip(name):
    lines, reduces_to = _describe(name, _catalog(TEXT_ONLY, FULL_TEXT), views=2)
    assert reduces_to == "clip"
    assert len(lines) == 1 and lines[0].startswith(f"{name} reduces to clip on this data: at --views 2")
    # the pair is named from the data: --views 2 keeps (title, description), or (title, bullets) when
    # the description is missing
    assert "on pairs among (title, description, bullets)" in lines[0]


@pytest.mark.parametrize("name", ["factorized", "full_ot"])
def test_two_auxiliary_views_on_a_side_is_not_clip(name):
    assert _describe(name, _catalog(TEXT_ONLY, FULL_TEXT), views=3) == ([], None)


def test_other_primary_weight_keeps_clips_cross_view_term_only():
    lines, reduces_to = _describe("factorized", _catalog(TEXT_ONLY, FULL_TEXT), views=2, primary_weight=0.7)
    assert reduces_to is None and len(lines) == 1 and "cross-view term is clip's" in lines[0] and "0.7" in lines[0]
    lines, reduces_to = _describe("full_ot", _catalog(TEXT_ONLY, FULL_TEXT), views=2, primary_weight=0.7)
    assert reduces_to == "factorized" and "closed form" in lines[-1]


def test_multimodal_pair_is_clip_whatever_the_primary_weight():
    catalog = _catalog(MULTIMODAL, [[True, True, True, True]] * 5)
    for w_p in (0.5, 0.8):  # (image, title) are both primary: equal weights either way
        assert _describe("factorized", catalog, views=2, primary_weight=w_p)[1] == "clip"


def test_an_auxiliary_photo_standing_in_for_a_missing_image_is_not_clip():
    # item 0 lacks its primary image: at --views 2 factorized aligns its photo with the title, clip
    # leaves the item out of the cross-view term (its pair is the primary image and the title)
    catalog = _catalog(MULTIMODAL, [[False, True, True, True]] + [[True, True, True, True]] * 4)
    assert _describe("factorized", catalog, views=2) == ([], None)
    lines, reduces_to = _describe("full_ot", catalog, views=2)
    assert reduces_to == "factorized" and len(lines) == 1


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_pair_objectives_say_which_pair_a_one_modality_catalog_gives(name):
    lines, reduces_to = _describe(name, _catalog(TEXT_ONLY, FULL_TEXT), views=8)
    assert reduces_to is None
    assert lines == [
        f"{name} trains on pairs among (title, description, bullets): a one-modality catalog has no (image, title) "
        "pair, so its pair is the primary view and the first auxiliary view"
    ]
    lines, _ = _describe(name, _catalog(TEXT_ONLY, [[True, True, True]] * 4), views=8)
    assert (
        lines[0].startswith(f"{name} trains on (title, description):") and "the other 1 auxiliary slot(s) are unused" in lines[0]
    )
    assert _describe(name, _catalog(MULTIMODAL, [[True] * 4] * 4), views=8) == ([], None)  # (image, title): as summarised


def test_the_check_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _describe("factorized", _catalog(TEXT_ONLY, FULL_TEXT), views=3)
    assert torch.equal(torch.rand(3), expected)


def test_a_factorized_run_said_to_reduce_to_clip_gives_clips_metrics(tmp_path):
    from ftbench.run.experiment import RunSpec, execute, prepare

    folder = tmp_path / "cat"
    (folder / "qrels").mkdir(parents=True)
    items = [
        {
            "id": f"i{k}",
            "title": f"item {k} colour {k % 5}",
            "description": f"made of {['oak', 'tin', 'glass'][k % 3]} {k}",
            "split": "train" if k < 30 else "test",
        }
        for k in range(40)
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"id": f"q{k}", "text": f"colour {k % 5}"}) + "\n" for k in range(20))
    )
    for name, qs in (("train", range(12)), ("dev", range(12, 16)), ("test", range(16, 20))):
        (folder / "qrels" / f"{name}.tsv").write_text(
            "".join(f"q{k}\ti{j}\t1\n" for k in qs for j in range(40) if j % 5 == k % 5)
        )
    sets = [f"dataset.data_dir={folder}", "dataset.text_backbone=hash", "dataset.use_cache=False", "train.eval_every=0"]
    results = {}
    for name in ("clip", "factorized"):
        prepared = prepare(RunSpec(name, "catalog", views=2, seed=1, device="cpu", sets=sets, steps=6, batch_size=8))
        results[name] = execute(prepared, None)[0]
    assert results["factorized"].training["reduces_to"] == "clip"
    assert results["clip"].training["on_this_data"][0].startswith("clip trains on (title, description)")
    for task, metrics in results["clip"].metrics.items():
        for metric, value in metrics.items():
            assert results["factorized"].metrics[task][metric] == pytest.approx(value, abs=1e-6), (task, metric)
