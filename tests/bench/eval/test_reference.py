"""The untrained references (frozen-primary, frozen-mean) against a brute-force numpy computation
on a hand-made catalog: 6 items, a primary image, a title and two auxiliary images (one item lacks
one), 8 image queries with one relevant item each."""

import numpy as np
import pytest
from ftbench.data.catalog import ArrayCatalog, ViewSlot
from ftbench.data.dataset import MultiViewDataset
from ftbench.data.queries import QuerySet, relevance_from_pairs
from ftbench.eval.evaluator import EvalConfig
from ftbench.eval.reference import FrozenReference

N, D = 6, 4


def _dataset():
    rng = np.random.default_rng(3)
    slots = [
        ViewSlot("image", "image", "primary"),
        ViewSlot("title", "text", "primary"),
        ViewSlot("photo_1", "image", "auxiliary"),
        ViewSlot("photo_2", "image", "auxiliary"),
    ]
    feats = [rng.normal(size=(N, D)).astype(np.float32) * rng.uniform(0.5, 3, size=(N, 1)).astype(np.float32) for _ in slots]
    avail = np.ones((N, len(slots)), bool)
    avail[4, 3] = False  # item 4 has one photo only
    feats[3][4] = 0.0
    catalog = ArrayCatalog(slots, feats, avail, [f"item{i}" for i in range(N)])
    relevant = np.array([0, 1, 2, 3, 4, 5, 2, 4])
    # each query is a noisy copy of one of its item's photos
    q = feats[2][relevant] + 0.8 * rng.normal(size=(len(relevant), D)).astype(np.float32)
    pairs = np.stack([np.arange(len(relevant)), relevant], axis=1)
    indptr, items, grades = relevance_from_pairs(len(relevant), pairs)
    queries = QuerySet(
        ids=np.array([f"q{i}" for i in range(len(relevant))]),
        modality="image",
        features=q,
        relevant_indptr=indptr,
        relevant_items=items,
        relevant_grades=grades,
        split=np.full(len(relevant), 2, np.int8),
        interactions=np.empty((0, 2), np.int64),
    )
    return MultiViewDataset("hand", catalog, np.full(N, 2, np.int8), queries), feats, avail, q, relevant


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _rank(scores, target):
    """1-based rank of `target` in one row of scores, ties to the lower index."""
    s = scores[target]
    return 1 + int(np.sum(scores > s) + np.sum((scores == s)[:target]))


def _brute_force(feats, avail, variant):
    """[N, D] frozen item embeddings: primary image, or the mean of unit image views (slots 0, 2, 3)."""
    if variant == "frozen-primary":
        return _unit(feats[0])
    unit = [np.nan_to_num(_unit(f)) for f in feats]
    return _unit(sum(np.where(avail[:, s : s + 1], unit[s], 0) for s in (0, 2, 3)))


@pytest.mark.parametrize("variant", ["frozen-primary", "frozen-mean"])
def test_query_task_recall_equals_brute_force(variant):
    dataset, feats, avail, q, relevant = _dataset()
    reference = FrozenReference(dataset, variant, 8, EvalConfig(ks=(1, 2, 3)))
    metrics, _, _ = reference.query_task("test")
    items = _brute_force(feats, avail, variant)
    ranks = np.array([_rank(_unit(q[i]) @ items.T, relevant[i]) for i in range(len(q))])
    for k in (1, 2, 3):
        assert metrics["query->item"][f"recall@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-6)
    # the reciprocal rank is named with its cut-off C (mrr@C); a relevant item below C counts 0
    (name,) = [m for m in metrics["query->item"] if m.startswith("mrr@")]
    cutoff = int(name.split("@")[1])
    assert cutoff >= 3
    assert metrics["query->item"][name] == pytest.approx(np.mean(np.where(ranks <= cutoff, 1.0 / ranks, 0)), abs=1e-6)


def test_aux_to_item_and_image_to_item_equal_brute_force_leave_one_out():
    dataset, feats, avail, _, _ = _dataset()
    ks = (1, 2, 3)
    unit = [np.nan_to_num(_unit(f)) for f in feats]
    # frozen-mean: gallery = mean of every image view; own target = mean without the query view
    gallery = _unit(sum(np.where(avail[:, s : s + 1], unit[s], 0) for s in (0, 2, 3)))

    def loo(i, s):
        return _unit(sum(unit[t][i] for t in (0, 2, 3) if t != s and avail[i, t]))

    def ranks_for(slots, target_of):
        out = []
        for s in slots:
            for i in range(N):
                if not avail[i, s]:
                    continue
                scores = unit[s][i] @ gallery.T
                scores[i] = unit[s][i] @ target_of(i, s)
                out.append(_rank(scores, i))
        return np.array(out)

    m, na = FrozenReference(dataset, "frozen-mean", 8, EvalConfig(ks=ks)).cross_view(np.arange(N))
    for name, slots in (("aux->item", (2, 3)), ("image->item", (0,))):
        ranks = ranks_for(slots, loo)
        assert m[name]["queries"] == len(ranks)
        for k in ks:
            assert m[name][f"recall@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-6), (name, k)
    assert "title->image" in na and "not one space" in na["title->image"]

    # frozen-primary: aux view against the primary images of every item
    gallery = unit[0]
    ranks = ranks_for((2, 3), lambda i, s: unit[0][i])
    m, na = FrozenReference(dataset, "frozen-primary", 8, EvalConfig(ks=ks)).cross_view(np.arange(N))
    for k in ks:
        assert m["aux->item"][f"recall@{k}"] == pytest.approx(np.mean(ranks <= k), abs=1e-6)
    assert "primary view itself" in na["image->item"]


def test_views_cap_limits_the_mean():
    dataset, feats, avail, q, relevant = _dataset()
    # --views 3: image, title, photo_1 -> the mean is of the primary image and photo_1
    metrics, _, _ = FrozenReference(dataset, "frozen-mean", 3, EvalConfig(ks=(1, 2))).query_task("test")
    items = _unit(_unit(feats[0]) + _unit(feats[2]))
    ranks = np.array([_rank(_unit(q[i]) @ items.T, relevant[i]) for i in range(len(q))])
    assert metrics["query->item"]["recall@1"] == pytest.approx(np.mean(ranks <= 1), abs=1e-6)
