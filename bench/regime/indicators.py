"""Regime indicators: where a data set sits, measured the same way on synthetic and real data.

`profile_dataset` reads a `MultiViewDataset`'s frozen backbone features only: no tower is trained
and no objective is involved, so the same numbers can be computed for every cell of the regime map
and for a real catalog (`ftbench data profile`). The only things fitted are ridge maps
(scikit-learn's `RidgeCV` among `RIDGE_ALPHAS`) on *train* items, where features of two modalities
must be compared; train items are scored out of fold (`FOLDS`), never by a map fitted on them.
Everything is compared in one modality's space (the queries', else the first primary slot's). An
item's all-views representation weights each auxiliary slot by its *identifiability*, so a slot of
pure noise (weight ~0) does not dilute the primary-only one. The cut-off K is the largest default
cut-off at most `CUTOFF_FRACTION` of the searched items, because frozen recall at the harness's own
K saturates on small catalogs. Each indicator's formula, the shared space, the weights and the
cut-off in full: docs/method.md#regime-indicators.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.dataset import MultiViewDataset
from ..data.splits import SPLIT_CODES
from ..data.views import cap_views
from ..eval.metrics import ranked_list_metrics, relevance_subset
from ..kernels.search import exact_topk, rank_of_targets
from ..schema import DEFAULT_CUTOFFS
from .advise import FEATURES

CUTOFF_FRACTION = 0.005
RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
#: fitting rows (drawn with the seed) on which `RidgeCV` chooses each map's penalty
ALPHA_SAMPLE = 1500
FOLDS = 5
#: train items (per auxiliary slot) used to measure the slot's identifiability
WEIGHT_SAMPLE = 4000
#: the identifiability's k: this share of those items (looser than the recall cut-off: a view that
#: names the item's category, not the item, still counts)
WEIGHT_FRACTION = 0.01
#: held-out (item, auxiliary view) pairs searched for `aux_gain_views`
VIEW_QUERY_SAMPLE = 4000
QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)
PROFILE_VERSION = 1
#: slots listed by name in the table (all of them in the JSON)
SHOWN_SLOTS = 8


@dataclass(frozen=True)
class Profile:
    """A data set's regime indicators (each defined in docs/method.md, "Regime indicators").

    `None` marks an indicator the data set cannot have (no queries, no validation query, no
    auxiliary view, one modality only); `reasons` says why, per indicator.
    """

    dataset: str
    views: int  # the --views cap the indicators were measured under
    items: int
    log10_items: float
    space: str  # the modality whose feature space everything is compared in
    cutoff: int  # K of the query recalls (searched: the whole catalog)
    view_cutoff: int  # K of the held-out view recalls (searched: the evaluation items)
    views_per_item_mean: float
    views_per_item_quantiles: dict[str, float]  # "p0", "p10", "p50", "p90", "p100"
    missing_share: dict[str, float]  # per slot: share of items lacking it (after the cap)
    image_share: float  # share of all available views that are images
    query_modality: str | None
    primary_modalities: tuple[str, ...]
    query_primary_modality_share: float | None  # share of primary slots in the queries' modality
    train_queries_per_item: float
    train_interactions_per_item: float
    frozen_recall: float | None  # validation queries -> primary-only items, recall@cutoff
    frozen_recall_all_views: float | None  # validation queries -> all-view items, recall@cutoff
    aux_gain_queries: float | None  # frozen_recall_all_views - frozen_recall
    view_recall_primary: float | None  # held-out auxiliary view -> primary-only item, recall@view_cutoff
    view_recall_other_views: float | None  # held-out auxiliary view -> the item's other views
    aux_gain_views: float | None  # view_recall_other_views - view_recall_primary
    cross_side_overlap: float | None  # R^2(own item) - R^2(shuffled items), auxiliary residuals
    cross_side_r2: float | None
    cross_side_r2_shuffled: float | None
    slot_weights: dict[str, float]  # identifiability weight of each slot some item has (primaries: 1)
    counts: dict[str, int]
    reasons: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    version: int = PROFILE_VERSION

    # the predictor's inputs, named once in the torch-free regime.advise
    INDICATORS = FEATURES

    def indicators(self) -> dict[str, float | None]:
        """The scalar indicators a regime predictor reads, by name."""
        return {name: getattr(self, name) for name in self.INDICATORS}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["primary_modalities"] = list(self.primary_modalities)
        return out


def cutoff_for(searched: int) -> int:
    """The largest default cut-off at most `CUTOFF_FRACTION` of `searched` items (at least 1)."""
    below = [k for k in DEFAULT_CUTOFFS if k <= max(1.0, CUTOFF_FRACTION * searched)]
    return max(below) if below else 1


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _folds(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([seed, 0xF01D])).permutation(n) % FOLDS


def _penalty(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """The ridge penalty `RidgeCV` (efficient leave-one-out) picks among `RIDGE_ALPHAS`, on at most
    `ALPHA_SAMPLE` rows (its cost grows with the square of the rows; the penalty hardly moves)."""
    from sklearn.linear_model import RidgeCV  # heavy: scikit-learn

    if len(x) > ALPHA_SAMPLE:
        rows = np.sort(np.random.default_rng(np.random.SeedSequence([seed, 0xA1])).choice(len(x), ALPHA_SAMPLE, replace=False))
        x, y = x[rows], y[rows]
    return float(RidgeCV(alphas=RIDGE_ALPHAS).fit(x, y).alpha_)


def crossfit_predict(x: np.ndarray, y: np.ndarray, fit: np.ndarray, seed: int) -> np.ndarray:
    """Ridge predictions of y from x for every row: rows in `fit` (bool) out of fold, from a map
    fitted on the other folds of `fit`; the other rows from the map fitted on all of `fit`. One
    penalty per map (`_penalty`, chosen on the fitting rows).

    Fewer than 2 * FOLDS fitting rows: no map can be checked out of fold, predictions are 0."""
    from sklearn.linear_model import Ridge  # heavy: scikit-learn

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.zeros((len(x), y.shape[1]), dtype=np.float64)
    rows = np.flatnonzero(fit)
    if len(rows) < 2 * FOLDS:
        return out
    ridge = Ridge(alpha=_penalty(x[rows], y[rows], seed))
    rest = ~fit
    if rest.any():
        out[rest] = ridge.fit(x[rows], y[rows]).predict(x[rest])
    fold = _folds(len(rows), seed)
    for f in range(FOLDS):
        train_rows, held = rows[fold != f], rows[fold == f]
        out[held] = ridge.fit(x[train_rows], y[train_rows]).predict(x[held])
    return out


def _r2(pred: np.ndarray, truth: np.ndarray) -> float:
    """Variance-weighted R^2 of `pred` against `truth` (rows: items)."""
    total = ((truth - truth.mean(axis=0)) ** 2).sum()
    return float(1.0 - ((truth - pred) ** 2).sum() / total) if total > 0 else 0.0


class _Views:
    """Every item's views in the shared space, with the availability after the --views cap."""

    def __init__(self, dataset: MultiViewDataset, views: int, space: str, seed: int) -> None:
        catalog = dataset.catalog
        self.slots = catalog.slots
        n = catalog.num_items
        items = np.arange(n)
        self.available = cap_views(torch.from_numpy(np.asarray(catalog.availability(items), dtype=bool)), views).numpy()
        self.train = dataset.item_split == SPLIT_CODES["train"]
        self.own: dict[int, np.ndarray] = {}  # standardized features in the slot's own modality
        for s in range(len(self.slots)):
            raw = np.asarray(catalog.features(items, s), dtype=np.float32)
            basis = self.available[:, s] & self.train
            if not basis.any():  # no train item has it (after the cap): centred on the items that do
                basis = self.available[:, s]
            mean = raw[basis].mean(axis=0) if basis.any() else np.zeros(raw.shape[1], dtype=np.float32)
            self.own[s] = (_unit(raw - mean) * self.available[:, [s]]).astype(np.float32)
        self.vec: dict[int, np.ndarray] = {}
        self.mapped: list[str] = []
        for s, slot in enumerate(self.slots):
            if slot.modality == space:
                self.vec[s] = self.own[s]
                continue
            targets = [t for t, o in enumerate(self.slots) if o.modality == space and o.role == slot.role] or [
                t for t, o in enumerate(self.slots) if o.modality == space
            ]
            count = self.available[:, targets].sum(axis=1)
            target = sum(self.own[t].astype(np.float64) for t in targets) / np.maximum(count, 1)[:, None]
            fit = self.train & self.available[:, s] & (count > 0)
            pred = crossfit_predict(self.own[s], target, fit, seed + s)
            self.vec[s] = (pred * self.available[:, [s]]).astype(np.float32)
            self.mapped.append(slot.name)
        self.primary = [s for s, slot in enumerate(self.slots) if slot.role == "primary"]
        self.auxiliary = [s for s, slot in enumerate(self.slots) if slot.role == "auxiliary"]
        self.weight = {s: 1.0 for s in self.primary}
        self.primary_item = self.fuse(self.primary)
        for s in self.auxiliary:
            self.weight[s] = self._identifiability(s, seed)

    def fuse(self, slots: list[int], rows: np.ndarray | None = None, leave_out: np.ndarray | None = None) -> np.ndarray:
        """Unit-length weighted mean of `slots` views of `rows` (all items by default); `leave_out`
        [len(rows)] names one slot per row to drop (-1: none)."""
        rows = np.arange(len(self.available)) if rows is None else rows
        total = np.zeros((len(rows), self.vec[self.primary[0]].shape[1]), dtype=np.float64)
        for s in slots:
            keep = self.available[rows, s] if leave_out is None else self.available[rows, s] & (leave_out != s)
            total += self.weight.get(s, 1.0) * self.vec[s][rows] * keep[:, None]
        return _unit(total).astype(np.float32)

    def _identifiability(self, s: int, seed: int) -> float:
        rows = np.flatnonzero(self.train & self.available[:, s])
        if len(rows) < 2:
            return 0.0
        if len(rows) > WEIGHT_SAMPLE:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1D, s]))
            rows = np.sort(rng.choice(rows, WEIGHT_SAMPLE, replace=False))
        k = max(1, round(WEIGHT_FRACTION * len(rows)))
        if k >= len(rows):
            return 0.0
        ranks = _ranks(_unit(self.vec[s][rows]), self.primary_item[rows], np.arange(len(rows)))
        chance = k / len(rows)
        return float(max(0.0, ((ranks <= k).mean() - chance) / (1.0 - chance)))


def _ranks(queries: np.ndarray, gallery: np.ndarray, target: np.ndarray, target_vectors: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each query's target row of `gallery` (ties against it), the target scored
    with `target_vectors` (default: its gallery row)."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    g = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32))
    t = torch.from_numpy(np.asarray(target, dtype=np.int64))
    own = g[t] if target_vectors is None else torch.from_numpy(np.ascontiguousarray(target_vectors, dtype=np.float32))
    return rank_of_targets(q, g, t, (q * own).sum(dim=1)).numpy()


def _query_recalls(dataset: MultiViewDataset, views: _Views, k: int) -> tuple[float, float, int]:
    """recall@k of the validation queries against primary-only and all-view items (whole catalog)."""
    q = dataset.queries
    assert q is not None  # the caller checks the data set has validation queries
    val = q.indices("val")
    features = q.features.astype(np.float64)
    queries = torch.from_numpy(_unit(features - features.mean(axis=0))[val].astype(np.float32))
    indptr, rel, grades = relevance_subset(q.relevant_indptr, q.relevant_items, q.relevant_grades, val)
    n = dataset.catalog.num_items
    out = []
    for items in (views.primary_item, views.fuse(list(range(len(views.slots))))):
        _, ranked = exact_topk(queries, torch.from_numpy(items), k, precision="fp32")
        report = ranked_list_metrics(ranked.numpy(), indptr, rel, grades, n, (k,))
        out.append(report.metrics[f"recall@{k}"])
    return out[0], out[1], int(report.num_queries)


def _view_recalls(views: _Views, gallery: np.ndarray, seed: int) -> tuple[float, float, int, int]:
    """Held-out auxiliary views of the gallery items search the gallery: recall@k against primary-only
    items and against the item represented by its other views (leave-one-out)."""
    slot_of = []
    for s in views.auxiliary:
        rows = np.flatnonzero(views.available[gallery, s])
        slot_of.append(np.stack([rows, np.full(len(rows), s)], axis=1))
    pairs = np.concatenate(slot_of) if slot_of else np.zeros((0, 2), dtype=np.int64)
    if len(pairs) > VIEW_QUERY_SAMPLE:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E1D]))
        pairs = pairs[np.sort(rng.choice(len(pairs), VIEW_QUERY_SAMPLE, replace=False))]
    k = cutoff_for(len(gallery))
    if len(pairs) == 0 or k >= len(gallery):
        return math.nan, math.nan, k, len(pairs)
    position, slot = pairs[:, 0], pairs[:, 1]
    items = gallery[position]
    queries = _unit(np.stack([views.vec[s][i] for i, s in zip(items, slot)]).astype(np.float64))
    primary = _ranks(queries, views.primary_item[gallery], position)
    everything = list(range(len(views.slots)))
    others = views.fuse(everything, items, leave_out=slot)
    other = _ranks(queries, views.fuse(everything, gallery), position, others)
    return float((primary <= k).mean()), float((other <= k).mean()), k, len(pairs)


def _cross_side(dataset: MultiViewDataset, views: _Views, evaluated: np.ndarray, seed: int) -> tuple[dict, str | None]:
    """How much of the auxiliary content of the image side and of the other side is shared: held-out
    R^2 between the two sides' auxiliary views, after the part each side's primaries predict."""
    slots = views.slots
    present = [s for s in views.auxiliary if views.available[:, s].any()]  # kept by the --views cap
    image_aux = [s for s in present if slots[s].modality == "image"]
    other_aux = [s for s in present if slots[s].modality != "image"]
    if not image_aux or not other_aux:
        return {}, "needs auxiliary views of images and of another modality"
    if len({slots[s].modality for s in other_aux}) > 1:
        return {}, "the non-image auxiliary views have more than one modality"
    n = len(views.available)

    def side_mean(side):
        count = views.available[:, side].sum(axis=1)
        return sum(views.own[s].astype(np.float64) for s in side) / np.maximum(count, 1)[:, None], count > 0

    image_side, has_image = side_mean(image_aux)
    other_side, has_other = side_mean(other_aux)
    both = has_image & has_other
    fit = both & views.train
    context = np.concatenate([views.own[s] for s in views.primary], axis=1).astype(np.float64)
    # what the primaries predict is not auxiliary content: it is taken out of both sides
    residual_image = image_side - crossfit_predict(context, image_side, fit, seed)
    residual_other = other_side - crossfit_predict(context, other_side, fit, seed + 1)
    scored = np.zeros(n, dtype=bool)
    scored[evaluated] = True
    scored &= both
    if fit.sum() < 2 * FOLDS or scored.sum() < 2:
        return {}, f"needs at least {2 * FOLDS} train items and 2 evaluated items with auxiliary views on both sides"
    # shuffled baseline: every item's other side paired with another item's (a fixed derangement)
    rows = np.flatnonzero(both)
    partner = np.arange(n)
    partner[rows] = rows[np.roll(np.arange(len(rows)), 1 + len(rows) // 2)]
    r2 = {}
    for name, other in (("own", residual_other), ("shuffled", residual_other[partner])):
        forward = crossfit_predict(residual_image, other, fit, seed + 2)
        backward = crossfit_predict(other, residual_image, fit, seed + 3)
        r2[name] = 0.5 * (_r2(forward[scored], other[scored]) + _r2(backward[scored], residual_image[scored]))
    return {
        "cross_side_r2": r2["own"],
        "cross_side_r2_shuffled": r2["shuffled"],
        "cross_side_overlap": r2["own"] - r2["shuffled"],
        "cross_side_items": int(scored.sum()),
    }, None


def _training_signal(dataset: MultiViewDataset) -> tuple[float, float]:
    """(train queries, train interactions) per train item: interactions whose query and item are
    both in the train split (those a run trains on), and the distinct queries among them."""
    train_items = dataset.item_split == SPLIT_CODES["train"]
    n_train = int(train_items.sum())
    q = dataset.queries
    if q is None or n_train == 0 or len(q.interactions) == 0:
        return 0.0, 0.0
    pairs = np.asarray(q.interactions, dtype=np.int64)
    used = (q.split[pairs[:, 0]] == SPLIT_CODES["train"]) & train_items[pairs[:, 1]]
    return len(np.unique(pairs[used, 0])) / n_train, int(used.sum()) / n_train


def profile_dataset(dataset: MultiViewDataset, views: int = 8, seed: int = 0) -> Profile:
    """The regime indicators of `dataset` under `--views views`, from its frozen features.

    `seed` fixes the folds of the out-of-fold ridge maps and the samples drawn (identifiability,
    held-out views); the same data set, views and seed give the same profile.
    """
    if views < 1:
        raise ValueError(f"--views must be at least 1, got {views}")
    t0 = time.perf_counter()
    catalog = dataset.catalog
    n = catalog.num_items
    reasons: dict[str, str] = {}
    if not (dataset.item_split == SPLIT_CODES["train"]).any():
        raise ValueError(f"data set {dataset.name!r}: no train item to fit the ridge maps on")
    q = dataset.queries
    primary_modalities = tuple(dict.fromkeys(s.modality for s in catalog.slots if s.role == "primary"))
    space = q.modality if q is not None else primary_modalities[0]
    shared = _Views(dataset, views, space, seed)

    per_item = shared.available.sum(axis=1)
    missing = {slot.name: float(1.0 - shared.available[:, s].mean()) for s, slot in enumerate(catalog.slots)}
    image_slots = [s for s, slot in enumerate(catalog.slots) if slot.modality == "image"]
    image_share = float(shared.available[:, image_slots].sum() / max(per_item.sum(), 1))

    counts: dict[str, int] = {"train_items": int((dataset.item_split == SPLIT_CODES["train"]).sum())}
    k = cutoff_for(n)
    frozen = frozen_all = None
    if q is None:
        reasons["aux_gain_queries"] = "the data set has no queries"
    elif len(q.indices("val")) == 0:
        reasons["aux_gain_queries"] = "the data set has no validation query"
    elif k >= n:
        reasons["aux_gain_queries"] = f"the catalog has {n} item(s): no cut-off below its size"
    else:
        frozen, frozen_all, counts["validation_queries"] = _query_recalls(dataset, shared, k)
    val_items = dataset.items("val")
    evaluated = val_items if len(val_items) else dataset.evaluation_items()
    counts["evaluated_items"] = int(len(evaluated))
    view_primary: float | None  # None where there is no held-out view to measure
    view_other: float | None
    view_primary, view_other, view_k, counts["held_out_views"] = _view_recalls(shared, evaluated, seed)
    if math.isnan(view_primary):
        reasons["aux_gain_views"] = (
            "no evaluated item has an auxiliary view"
            if counts["held_out_views"] == 0
            else f"{len(evaluated)} evaluated item(s): no cut-off below their number"
        )
        view_primary = view_other = None
    overlap, why = _cross_side(dataset, shared, evaluated, seed)
    if why:
        reasons["cross_side_overlap"] = why
    else:
        counts["cross_side_items"] = overlap.pop("cross_side_items")
    train_queries, train_interactions = _training_signal(dataset)
    quantiles = np.quantile(per_item, QUANTILES)
    return Profile(
        dataset=dataset.name,
        views=views,
        items=n,
        log10_items=math.log10(n),
        space=space,
        cutoff=k,
        view_cutoff=view_k,
        views_per_item_mean=float(per_item.mean()),
        views_per_item_quantiles={f"p{round(100 * p)}": float(v) for p, v in zip(QUANTILES, quantiles)},
        missing_share=missing,
        image_share=image_share,
        query_modality=q.modality if q is not None else None,
        primary_modalities=primary_modalities,
        query_primary_modality_share=(
            None if q is None else float(np.mean([s.modality == q.modality for s in catalog.slots if s.role == "primary"]))
        ),
        train_queries_per_item=train_queries,
        train_interactions_per_item=train_interactions,
        frozen_recall=frozen,
        frozen_recall_all_views=frozen_all,
        aux_gain_queries=None if frozen is None or frozen_all is None else frozen_all - frozen,  # set together
        view_recall_primary=view_primary,
        view_recall_other_views=view_other,
        aux_gain_views=None if view_primary is None or view_other is None else view_other - view_primary,  # set together
        cross_side_overlap=overlap.get("cross_side_overlap"),
        cross_side_r2=overlap.get("cross_side_r2"),
        cross_side_r2_shuffled=overlap.get("cross_side_r2_shuffled"),
        slot_weights={
            catalog.slots[s].name: round(w, 6) for s, w in sorted(shared.weight.items()) if shared.available[:, s].any()
        },
        counts=counts,
        reasons=reasons,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def profile_rows(profile: Profile) -> list[tuple[str, str, str]]:
    """(indicator, value, what it is) rows of `ftbench data profile`'s table; an indicator the data
    set cannot have shows — and the reason."""
    p = profile
    q = p.views_per_item_quantiles
    why = p.reasons

    def value(name: str, text: str) -> str:
        return text if name not in why else f"— ({why[name]})"

    missing = [v for v in p.missing_share.values() if v < 1.0]
    return [
        ("items", f"{p.items} (log10 {p.log10_items:.2f})", "catalog size"),
        (
            "views per item",
            f"{p.views_per_item_mean:.2f} (p10 {q['p10']:g}, p50 {q['p50']:g}, p90 {q['p90']:g})",
            f"after --views {p.views}",
        ),
        (
            "missing share per slot",
            ", ".join(f"{name} {v:.2f}" for name, v in list(p.missing_share.items())[:SHOWN_SLOTS])
            + (
                f", ... ({len(p.missing_share) - SHOWN_SLOTS} more in the JSON; {len(p.missing_share) - len(missing)} "
                f"slot(s) no item has)"
                if len(p.missing_share) > SHOWN_SLOTS
                else ""
            ),
            "share of items lacking each view slot",
        ),
        ("image share", f"{p.image_share:.3f}", "share of all views that are images"),
        (
            "queries",
            f"{p.query_modality or '—'} vs primary {'+'.join(p.primary_modalities)}"
            + (f" (share {p.query_primary_modality_share:.2f})" if p.query_primary_modality_share is not None else ""),
            "query modality; share of primary slots in it",
        ),
        ("train queries per item", f"{p.train_queries_per_item:.3f}", "train queries with a train interaction / train items"),
        ("train interactions per item", f"{p.train_interactions_per_item:.3f}", "train (query, item) pairs / train items"),
        (
            "frozen recall",
            value("aux_gain_queries", f"{_fmt(p.frozen_recall)} (all views {_fmt(p.frozen_recall_all_views)})"),
            f"validation queries, recall@{p.cutoff}, primary-only items, in the {p.space} space",
        ),
        (
            "aux gain, queries",
            value("aux_gain_queries", _fmt(p.aux_gain_queries, signed=True)),
            f"recall@{p.cutoff}: all views - primary only",
        ),
        (
            "aux gain, views",
            value(
                "aux_gain_views",
                _fmt(p.aux_gain_views, signed=True) + f" ({_fmt(p.view_recall_other_views)} - {_fmt(p.view_recall_primary)})",
            ),
            f"held-out auxiliary view, recall@{p.view_cutoff}: other views - primary only",
        ),
        (
            "cross-side overlap",
            value(
                "cross_side_overlap",
                _fmt(p.cross_side_overlap, signed=True)
                + f" (R² {_fmt(p.cross_side_r2)}, shuffled {_fmt(p.cross_side_r2_shuffled)})",
            ),
            "held-out R² between image- and text-side auxiliary residuals, own - shuffled items",
        ),
        (
            "slot weights",
            ", ".join(f"{name} {w:.2f}" for name, w in list(p.slot_weights.items())[:SHOWN_SLOTS])
            + (f", ... ({len(p.slot_weights) - SHOWN_SLOTS} more in the JSON)" if len(p.slot_weights) > SHOWN_SLOTS else ""),
            "identifiability of each slot's views (primaries 1)",
        ),
        ("seconds", f"{p.seconds:.1f}", "profile only (data set built before)"),
    ]
