"""`synthetic`: a deterministic multi-view marketplace, the embedded default data set.

Item i has latent semantics: a category hierarchy (top t_i, fine f_i) and A = `attributes`
attributes a_ij in {0..K-1}, in three groups: *main* ones (shown by the primary image and the
title), *early auxiliary* ones (shown only by auxiliary views) and *late* ones (shown only, and only
sometimes, by views from the fifth on, so that more views carry more information). A view observing
the semantics O gets z = P_top[t] + P_fine[f] + sum_{j in O} P_attr[j, a_ij] (+ nuisance) from fixed
prototypes in R^L, and the feature x = g_m(z) = W2 tanh(W1 z + b1), one fixed random map per modality.

Auxiliary views show their side's *home* attributes round robin (`attributes_per_aux_view`), the
other side's with probability `cross_side_overlap` / 2 per rank (the two sides' attribute
distributions then overlap by exactly `cross_side_overlap`), and from the fifth view on a not yet
shown late attribute with probability `new_attribute_rate`; they mix these semantics with noise,
z = alpha * semantics + (1 - alpha) * noise, alpha = `aux_informativeness` (0: pure noise, the null
check). Queries name a Zipf-drawn seed item's fine category, one main attribute and, with probability
`query_aux_fraction`, an auxiliary one; their relevant items are the matching items they interacted
with. `slot_information` (`ftbench data info synthetic`) measures what each slot carries.

View features are generated lazily per batch from counter-based random numbers keyed by (seed,
item, view): 1M items x 16 views fit in a few GB, and an item always gets the same features. The
model in full, the layout that reproduces earlier releases' data bit for bit, and the null check's
command: docs/method.md, "The synthetic marketplace".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import option
from ..data.catalog import Catalog, ViewSlot
from ..data.content import feature_content_ids
from ..data.dataset import MultiViewDataset
from ..data.hashing import keyed, normal, uniform
from ..data.queries import QuerySet, relevance_from_pairs
from ..data.splits import random_split
from . import DATASETS
from .base import DatasetConfig, DatasetPlugin

MODALITY_CHOICES = ("image+text", "text", "image")

# stream ids of the counter-based generator, one per kind of random draw
_S_TOP, _S_FINE, _S_ATTR, _S_AVAIL, _S_VIEWNOISE, _S_AUXNOISE, _S_CROSS, _S_NEW = range(1, 9)

# views at slot index >= 4 (the fifth view on) may show late attributes
FIRST_LATE_SLOT = 4


@dataclass
class SyntheticConfig(DatasetConfig):
    #: fields that shape only the queries and their interactions, never a view's features or
    #: availability: the stored catalog (`features.catalog_store`) does not key on them
    catalog_independent_fields = (
        "interactions",
        "query_aux_fraction",
        "mean_interactions_per_query",
        "popularity_exponent",
        "query_fractions",
    )

    items: int = option(20_000, "number of items in the catalog", "our reading", ge=1)
    interactions: int = option(30_000, "number of (query, item) interactions", "our reading", ge=0)
    max_views: int = option(8, "view slots per item (primary views included)", "our reading", ge=1)
    modalities: str = option("image+text", "which modalities the views have", "our reading", MODALITY_CHOICES)
    aux_informativeness: float = option(
        1.0, "alpha: how much item semantics auxiliary views carry (0 = pure noise)", "our reading", ge=0, le=1
    )
    noise: float = option(0.6, "std of per-view nuisance in the latent space", "our reading")
    seed: int = option(0, "seed of the whole generator (semantics, prototypes, backbones)", "convention")
    top_categories: int = option(12, "number of top-level categories", "our reading")
    fine_per_top: int = option(8, "fine categories per top-level category", "our reading")
    attributes: int = option(8, "attributes per item (main, auxiliary and late ones)", "our reading")
    attribute_values: int = option(8, "values per attribute", "our reading")
    main_attributes: int = option(2, "attributes the primary views show (the rest only aux views)", "our reading")
    attributes_per_aux_view: int = option(2, "auxiliary attributes each auxiliary view shows", "our reading", ge=1)
    cross_side_overlap: float = option(
        0.5,
        "rho: overlap of the attributes the two sides' auxiliary views show (0 = disjoint sides, 1 = the same mix)",
        "our reading",
        ge=0,
        le=1,
    )
    late_attributes: int = option(2, "the last attributes, which only views from the fifth on can show (0 = none)", "our reading")
    new_attribute_rate: float = option(
        0.5,
        "probability that a view from the fifth on shows a late attribute its item has not shown yet",
        "our reading",
        ge=0,
        le=1,
    )
    aux_view_dropout: float = option(0.25, "probability that an item lacks a given auxiliary view", "our reading", ge=0, lt=1)
    query_aux_fraction: float = option(0.6, "fraction of queries naming an auxiliary-only attribute", "our reading")
    mean_interactions_per_query: float = option(2.0, "mean interactions per query (geometric)", "our reading", ge=1)
    popularity_exponent: float = option(1.0, "Zipf exponent of item popularity", "our reading")
    latent_dim: int = option(32, "dimension L of the latent semantic space", "our reading")
    image_dim: int = option(96, "feature dimension of the image backbone", "our reading")
    text_dim: int = option(64, "feature dimension of the text backbone", "our reading")
    item_fractions: tuple = option((0.8, 0.1, 0.1), "train/val/test fractions of items", "convention")
    query_fractions: tuple = option((0.8, 0.1, 0.1), "train/val/test fractions of queries", "convention")

    def validate(self) -> None:
        super().validate()
        for name in ("item_fractions", "query_fractions"):
            fractions = getattr(self, name)
            if (
                len(fractions) != 3
                or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not f >= 0 for f in fractions)
                or abs(sum(fractions) - 1.0) > 1e-6
            ):
                raise ValueError(
                    f"dataset option {name!r} must be three non-negative numbers (train, val, test) "
                    f"summing to 1, got {fractions!r}"
                )
        if self.modalities == "image+text" and self.max_views < 2:
            raise ValueError("image+text needs max_views >= 2 (a primary image and a title)")
        if not 0 < self.main_attributes <= self.attributes:
            raise ValueError("dataset option 'main_attributes' must be in 1..attributes")
        if isinstance(self.late_attributes, bool) or not 0 <= self.late_attributes <= self.attributes - self.main_attributes:
            raise ValueError(
                f"dataset option 'late_attributes' must be in 0..attributes - main_attributes "
                f"({self.attributes - self.main_attributes}), got {self.late_attributes!r}"
            )


def _slots(config: SyntheticConfig) -> tuple[ViewSlot, ...]:
    """Fixed slot order: primary views, then auxiliary views alternating image/text."""
    if config.modalities == "image+text":
        slots = [ViewSlot("image_1", "image", "primary"), ViewSlot("title", "text", "primary")]
        texts = ["description", "tags", "bullets", "reviews"]
        img_n, txt_n = 2, 0
        while len(slots) < config.max_views:
            if (len(slots) % 2) == 0:
                slots.append(ViewSlot(f"image_{img_n}", "image", "auxiliary"))
                img_n += 1
            else:
                name = texts[txt_n] if txt_n < len(texts) else f"text_{txt_n + 1}"
                slots.append(ViewSlot(name, "text", "auxiliary"))
                txt_n += 1
        return tuple(slots)
    modality = config.modalities
    first = "title" if modality == "text" else "image_1"
    slots = [ViewSlot(first, modality, "primary")]
    for s in range(1, config.max_views):
        slots.append(ViewSlot(f"{modality}_{s + 1}", modality, "auxiliary"))
    return tuple(slots)


class SyntheticCatalog(Catalog):
    """Lazily generated view features of the synthetic marketplace (see module docstring).

    When the features of every slot of the whole catalog fit in `memory_budget_bytes` (the default
    20,000-item catalog takes 51 MB), a slot's features are generated once, the first time the slot
    is read, and kept; larger catalogs (1M items: 2.5 GB at 8 views) stay lazy. Values are the same
    either way: each item's features depend only on (seed, item, slot).
    """

    memory_budget_bytes: int = 1 << 30

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = c = config
        self.slots = _slots(c)
        # in slot order (not a set's, which changes from process to process)
        self.feature_dims = {
            m: (c.image_dim if m == "image" else c.text_dim) for m in dict.fromkeys(s.modality for s in self.slots)
        }
        n = c.items
        ids = np.arange(n, dtype=np.uint64)
        self.top = (uniform(keyed(c.seed, _S_TOP, ids)) * c.top_categories).astype(np.int32)
        sub = (uniform(keyed(c.seed, _S_FINE, ids)) * c.fine_per_top).astype(np.int32)
        self.fine = self.top * c.fine_per_top + sub
        self.attr = (
            uniform(keyed(c.seed, _S_ATTR, ids[:, None], np.arange(c.attributes, dtype=np.uint64)[None])) * c.attribute_values
        ).astype(np.int16)
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, 0xFAB]))
        L = c.latent_dim
        # prototypes: categories weigh more than attributes, as in a real taxonomy
        self.p_top = rng.normal(0, 1.0, (c.top_categories, L)).astype(np.float32)
        self.p_fine = rng.normal(0, 0.8, (c.top_categories * c.fine_per_top, L)).astype(np.float32)
        self.p_attr = rng.normal(0, 0.8, (c.attributes, c.attribute_values, L)).astype(np.float32)
        self.backbones = {}
        for m in sorted(self.feature_dims):
            hidden = 128
            w1 = rng.normal(0, 1.0 / np.sqrt(L), (L, hidden)).astype(np.float32)
            b1 = rng.normal(0, 0.1, hidden).astype(np.float32)
            w2 = rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, self.feature_dims[m])).astype(np.float32)
            self.backbones[m] = (w1, b1, w2)
        self._early_aux = tuple(range(c.main_attributes, c.attributes - c.late_attributes))
        self._late = tuple(range(c.attributes - c.late_attributes, c.attributes))
        self._observed = self._observed_attributes()
        self._other = self._other_side()
        self._kept: dict[int, np.ndarray] = {}
        self._kept_content: dict[int, np.ndarray] = {}
        whole = c.items * sum(self.feature_dims[s.modality] for s in self.slots) * 4
        self._keep = whole <= self.memory_budget_bytes
        self.check_slots()

    def _observed_attributes(self) -> list[tuple[int, ...]]:
        """Each slot's home attributes: the main ones for primary views; for auxiliary view number k
        (k = 0, 1, ... in slot order) the round robin ``early[(k * p + r) % len(early)]``, r < p,
        over the early auxiliary attributes (neither main nor late)."""
        c = self.config
        main = tuple(range(c.main_attributes))
        early = self._early_aux
        observed, aux_counter = [], 0
        for slot in self.slots:
            if slot.role == "primary" or not early:
                observed.append(main)
            else:
                observed.append(self._round_robin(aux_counter))
                aux_counter += 1
        return observed

    def _round_robin(self, k: int) -> tuple[int, ...]:
        early, p = self._early_aux, self.config.attributes_per_aux_view
        return tuple(early[(k * p + r) % len(early)] for r in range(min(p, len(early))))

    def _other_side(self) -> list[tuple[int, ...] | None]:
        """For auxiliary view k, the home attributes of the other side at the same rank: those of
        auxiliary view k xor 1 (the image/text neighbour in image+text catalogs). An attribute the
        view already shows at another position is not offered (a view never shows one twice)."""
        out: list[tuple[int, ...] | None] = []
        aux_counter = 0
        for s, slot in enumerate(self.slots):
            if slot.role == "primary" or not self._early_aux:
                out.append(None)
                continue
            home, other = self._observed[s], self._round_robin(aux_counter ^ 1)
            out.append(tuple(-1 if o in home else o for o in other))
            aux_counter += 1
        return out

    def observed(self, items: np.ndarray, slot: int) -> np.ndarray:
        """The attributes slot `slot` shows for each of `items`: int array [n, attributes shown].

        A primary view shows the main attributes. An auxiliary view shows, at each rank r, its home
        attribute or, with probability rho / 2 (rho = `cross_side_overlap`), the other side's
        attribute of that rank; from the fifth view on, with probability `new_attribute_rate`, its
        last rank shows instead the first late attribute that the item's earlier views have not
        shown (none left: the view keeps its attributes). Every draw is keyed by (seed, item, slot),
        so an item's layout does not depend on the batch, and no draw is made when the knob is 0.
        """
        c = self.config
        items = np.asarray(items, dtype=np.int64)
        home = np.asarray(self._observed[slot], dtype=np.int64)
        chosen = np.broadcast_to(home, (len(items), len(home))).copy()
        if self.slots[slot].role == "primary":
            return chosen
        ids = items.astype(np.uint64)[:, None]
        other = self._other[slot]
        if c.cross_side_overlap > 0 and other is not None:
            ranks = np.arange(len(home), dtype=np.uint64)[None]
            swap = uniform(keyed(c.seed, _S_CROSS, ids, np.uint64(slot), ranks)) < c.cross_side_overlap / 2
            swap &= np.asarray(other)[None] >= 0
            chosen = np.where(swap, np.asarray(other)[None], chosen)
        late = self._late
        if late and c.new_attribute_rate > 0 and slot >= FIRST_LATE_SLOT:
            earlier = np.arange(FIRST_LATE_SLOT, slot + 1, dtype=np.uint64)[None]
            shows_new = uniform(keyed(c.seed, _S_NEW, ids, earlier)) < c.new_attribute_rate
            shown_before = shows_new[:, :-1].sum(axis=1)
            new = shows_new[:, -1] & (shown_before < len(late))
            late_arr = np.asarray(late, dtype=np.int64)
            chosen[new, -1] = late_arr[np.minimum(shown_before[new], len(late) - 1)]
        return chosen

    @property
    def num_items(self) -> int:
        return self.config.items

    def item_ids(self) -> np.ndarray:
        return np.arange(self.config.items, dtype=np.int64)

    def availability(self, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, dtype=np.uint64)
        s = np.arange(len(self.slots), dtype=np.uint64)
        keep = uniform(keyed(self.config.seed, _S_AVAIL, items[:, None], s[None])) >= self.config.aux_view_dropout
        is_primary = np.array([sl.role == "primary" for sl in self.slots])
        return keep | is_primary[None, :]

    def semantics(self, items: np.ndarray, attributes) -> np.ndarray:
        """Latent semantics [n, L]: category prototypes plus the named attributes' prototypes.
        `attributes` is one tuple for every item or an int array [n, k] (one row per item)."""
        z = self.p_top[self.top[items]] + self.p_fine[self.fine[items]]
        per_item = np.asarray(attributes, dtype=np.int64)
        if per_item.ndim == 1:
            per_item = np.broadcast_to(per_item, (len(items), len(per_item)))
        for r in range(per_item.shape[1]):
            j = per_item[:, r]
            z = z + self.p_attr[j, self.attr[items, j]]
        return z

    def _semantic_std(self, observed_attributes: int) -> float:
        """Per-component std of z: prototypes are N(0, 1) (top), N(0, 0.8^2) (fine, attributes)."""
        return float(np.sqrt(1.0 + 0.64 + 0.64 * observed_attributes))

    def backbone(self, modality: str, z: np.ndarray) -> np.ndarray:
        """g_m(z) = W2 tanh(W1 z + b1). Computed in float64 and rounded to float32, so that an item's
        features do not depend (through BLAS blocking) on which other items share its batch."""
        w1, b1, w2 = self.backbones[modality]
        z = np.asarray(z, dtype=np.float64)
        return (np.tanh(z @ w1.astype(np.float64) + b1) @ w2.astype(np.float64)).astype(np.float32)

    def features(self, items: np.ndarray, slot: int) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        if not self._keep:
            return self._generate(items, slot)
        kept = self._kept.get(slot)
        if kept is None:
            n = self.config.items
            kept = self._kept[slot] = np.concatenate(
                [self._generate(np.arange(a, min(a + 65_536, n)), slot) for a in range(0, n, 65_536)]
            )
        return kept[items]

    def content_ids(self, items: np.ndarray, slot: int) -> np.ndarray | None:
        """Where the features are kept in memory: the hashes of the feature rows
        (`ftbench.data.content.feature_content_ids`, the ids a batch would get by hashing them),
        computed once per slot on first use, so that a training step only indexes them; else None
        (each batch's rows are hashed as they are read)."""
        if not self._keep:
            return None
        ids = self._kept_content.get(slot)
        if ids is None:
            self.features(np.zeros(0, dtype=np.int64), slot)  # generates and keeps the slot's features
            features, modality = self._kept[slot], self.slots[slot].modality
            step = 65_536  # rows hashed at a time: bounded temporaries
            ids = self._kept_content[slot] = np.concatenate(
                [feature_content_ids(features[a : a + step], modality) for a in range(0, max(len(features), 1), step)]
            )
        return ids[np.asarray(items, dtype=np.int64)]

    def _generate(self, items: np.ndarray, slot: int) -> np.ndarray:
        c = self.config
        sl = self.slots[slot]
        z = self.semantics(items, self.observed(items, slot))
        comp = np.arange(c.latent_dim, dtype=np.uint64)[None]
        ids = items.astype(np.uint64)[:, None]
        if sl.role == "auxiliary":
            alpha = c.aux_informativeness
            # noise with the per-component scale of the semantics it replaces (a constant, so the
            # features of an item never depend on the rest of the batch)
            scale = self._semantic_std(len(self._observed[slot]))
            junk = normal(keyed(c.seed, _S_AUXNOISE, ids, np.uint64(slot), comp)) * scale
            z = alpha * z + (1.0 - alpha) * junk
        z = z + c.noise * normal(keyed(c.seed, _S_VIEWNOISE, ids, np.uint64(slot), comp))
        return self.backbone(sl.modality, z.astype(np.float32))


def _zipf_sampler(n: int, exponent: float, rng: np.random.Generator):
    """Draw item indices with P(rank r) proportional to 1 / (r + 1)^s over a random ranking."""
    ranking = rng.permutation(n)
    cdf = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent)
    cdf /= cdf[-1]
    return lambda u: ranking[np.minimum(np.searchsorted(cdf, u), n - 1)]


def generate_queries(catalog: SyntheticCatalog, config: SyntheticConfig) -> QuerySet | None:
    c = config
    if c.interactions == 0:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([c.seed, 0x0E1]))
    # number of interactions per query: 1 + geometric, trimmed so they sum to exactly `interactions`
    p = 1.0 / c.mean_interactions_per_query
    per_query = rng.geometric(p, size=c.interactions)
    cum = np.cumsum(per_query)
    q_count = int(np.searchsorted(cum, c.interactions) + 1)
    per_query = per_query[:q_count]
    per_query[-1] -= int(cum[q_count - 1] - c.interactions)
    seed_items = _zipf_sampler(c.items, c.popularity_exponent, rng)(rng.random(q_count))

    main = np.arange(c.main_attributes)
    aux = np.arange(c.main_attributes, c.attributes)
    main_pick = main[rng.integers(0, len(main), q_count)]
    use_aux = (rng.random(q_count) < c.query_aux_fraction) & (len(aux) > 0)
    aux_pick = aux[rng.integers(0, max(len(aux), 1), q_count) % max(len(aux), 1)] if len(aux) else np.zeros(q_count, int)

    # items matching a query: same fine category, same value of each named attribute
    K = c.attribute_values
    pairs_q, pairs_i = [], []
    all_items = np.arange(c.items)
    for j_main in main:
        for with_aux in (False, True):
            for j_aux in aux if with_aux else [-1]:
                sel = np.flatnonzero((main_pick == j_main) & (use_aux == with_aux) & ((aux_pick == j_aux) | (not with_aux)))
                if len(sel) == 0:
                    continue
                key_items = catalog.fine[all_items].astype(np.int64) * K + catalog.attr[all_items, j_main]
                if with_aux:
                    key_items = key_items * K + catalog.attr[all_items, j_aux]
                order = stable_order(key_items)
                sorted_keys = key_items[order]
                s_items = seed_items[sel]
                key_q = catalog.fine[s_items].astype(np.int64) * K + catalog.attr[s_items, j_main]
                if with_aux:
                    key_q = key_q * K + catalog.attr[s_items, j_aux]
                lo = np.searchsorted(sorted_keys, key_q, side="left")
                hi = np.searchsorted(sorted_keys, key_q, side="right")
                counts = per_query[sel]
                # first interaction: the seed item; the others: matching items drawn uniformly
                q_rep = np.repeat(sel, counts)
                first = np.zeros(len(q_rep), dtype=bool)
                first[np.concatenate([[0], np.cumsum(counts)[:-1]])] = True
                lo_r, hi_r = np.repeat(lo, counts), np.repeat(hi, counts)
                draw = order[np.minimum(lo_r + (rng.random(len(q_rep)) * (hi_r - lo_r)).astype(np.int64), hi_r - 1)]
                items_r = np.where(first, np.repeat(s_items, counts), draw)
                pairs_q.append(q_rep)
                pairs_i.append(items_r)
    q_idx = np.concatenate(pairs_q)
    i_idx = np.concatenate(pairs_i)
    order = np.argsort(q_idx, kind="stable")
    interactions = np.stack([q_idx[order], i_idx[order]], axis=1).astype(np.int64)
    indptr, rel_items, grades = relevance_from_pairs(q_count, interactions)

    # query features: the text backbone of (fine category + named attributes) plus noise
    query_modality = "text" if "text" in catalog.feature_dims else next(iter(catalog.feature_dims))
    z = catalog.p_top[catalog.top[seed_items]] + catalog.p_fine[catalog.fine[seed_items]]
    z = z + catalog.p_attr[main_pick, catalog.attr[seed_items, main_pick]]
    if len(aux):
        z = z + use_aux[:, None] * catalog.p_attr[aux_pick, catalog.attr[seed_items, aux_pick]]
    z = z + c.noise * rng.normal(size=z.shape)
    features = catalog.backbone(query_modality, z.astype(np.float32))
    return QuerySet(
        ids=np.arange(q_count, dtype=np.int64),
        modality=query_modality,
        features=features,
        relevant_indptr=indptr,
        relevant_items=rel_items,
        relevant_grades=grades,
        split=random_split(q_count, tuple(c.query_fractions), c.split_seed + 1),
        interactions=interactions,
    )


def stable_order(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")` of non-negative integer keys, through numpy's radix sort
    (much faster than the comparison sort at 1M items) when every key fits in 16 bits. A stable order is unique
    given the keys, so the result is the same array either way."""
    if len(keys) and 0 <= int(keys.min()) and int(keys.max()) <= np.iinfo(np.uint16).max:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    return np.argsort(keys, kind="stable")


@DATASETS.register("synthetic")
class SyntheticMarketplace(DatasetPlugin):
    summary = "deterministic multi-view marketplace (categories, attributes, aux-only attributes, queries); lazy to 1M x 16 views"
    Config = SyntheticConfig

    def build(self, config: SyntheticConfig) -> MultiViewDataset:  # type: ignore[override]  # the registry passes each plugin its own Config
        config.validate()
        catalog = SyntheticCatalog(config)
        queries = generate_queries(catalog, config)
        return MultiViewDataset(
            name="synthetic",
            catalog=catalog,
            item_split=random_split(config.items, tuple(config.item_fractions), config.split_seed),
            queries=queries,
            config={},
            notes=[
                f"auxiliary attributes {list(range(config.main_attributes, config.attributes))} are visible "
                f"only in auxiliary views (the late ones {list(catalog._late)} only from the fifth view on); "
                f"cross-side overlap {config.cross_side_overlap:g}; {config.query_aux_fraction:.0%} of queries name one"
            ],
        )


@dataclass(frozen=True)
class SlotInformation:
    """How much item information one slot carries (see `slot_information`)."""

    slot: str
    modality: str
    role: str
    present: float  # share of test items that have the view
    shows: str  # the attributes the view shows, 'j:percent of items' (a bare j: every item)
    recall_vs_primary: float | None  # same-modality primary view; None for the primary itself
    recall_vs_other_views: float | None  # mean of the item's other same-modality views
    recall_vs_other_modality: float | None  # ridge map to the other modality's views
    chance: float  # K / test items


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _recall_of_own_item(queries: np.ndarray, gallery: np.ndarray, valid: np.ndarray, k: int) -> float:
    """Row q of `queries` belongs to gallery row q; share of rows whose own item is in the top k
    (ties count against it). Gallery rows with `valid` False are never retrieved."""
    scores = queries @ gallery.T
    scores[:, ~valid] = -np.inf
    own = np.diag(scores)
    return float(((scores > own[:, None]).sum(axis=1) < k).mean())


def slot_information(config: SyntheticConfig, k: int = 10, ridge: float = 1.0) -> list[SlotInformation]:
    """Recall@k of an item, among the test items, from each slot's raw backbone feature.

    No tower, no training of the benchmark's kind. Every feature is centred by its slot's mean over
    the evaluated items and scaled to unit length; a query is a test item that has the slot, and
    the gallery holds every test item:

    - ``vs primary``: cosine with the item's primary view of the same modality (image_1 for images,
      the title for texts); not reported for the primary view itself.
    - ``vs other views``: cosine with the mean of the item's other available views of the same
      modality (unit feature vectors averaged, then scaled to unit length); items with none of
      them are left out of the gallery.
    - ``vs other modality``: features of different modalities live in different spaces, so a
      linear map W = argmin ||X W - Y||^2 + ridge ||W||^2, fitted in closed form on the *train*
      items (X: this slot, Y: the mean of the other modality's views of the same role group:
      auxiliary views for an auxiliary slot, the primary view for a primary slot), takes the slot
      into the other modality before the cosine; this is where cross-side content shows.

    ``chance`` is k / number of test items. With ``aux_informativeness = 0`` every auxiliary slot
    is at chance in every column.
    """
    config.validate()
    catalog = SyntheticCatalog(config)
    split = random_split(config.items, tuple(config.item_fractions), config.split_seed)
    test, train = np.flatnonzero(split == 2), np.flatnonzero(split == 0)
    if len(test) < 2:
        raise ValueError(
            f"slot information needs at least 2 test items; dataset option 'item_fractions' "
            f"{config.item_fractions!r} leaves {len(test)} of {config.items}"
        )
    have = catalog.availability(test)
    have_train = catalog.availability(train)
    unit = {s: _unit(catalog.features(test, s)) for s in range(len(catalog.slots))}
    raw_train = {s: catalog.features(train, s) for s in range(len(catalog.slots))}

    def mean_of(slots, available, feats):
        total = sum(feats[s] * available[:, [s]] for s in slots) if slots else None
        if total is None:
            return None, np.zeros(len(available), dtype=bool)
        count = available[:, slots].sum(axis=1)
        return _unit(total / np.maximum(count, 1)[:, None]) * (count > 0)[:, None], count > 0

    rows = []
    for s, slot in enumerate(catalog.slots):
        rows_s = have[:, s]
        q = unit[s][rows_s]
        same = [t for t, other in enumerate(catalog.slots) if other.modality == slot.modality and t != s]
        primary = next((t for t in same if catalog.slots[t].role == "primary"), None)
        vs_primary = None
        if slot.role != "primary" and primary is not None:
            vs_primary = _recall_of_own_item(q, unit[primary][rows_s], np.ones(rows_s.sum(), bool), k)
        gallery, valid = mean_of(same, have, unit)
        vs_other = None if gallery is None or not valid.any() else _recall_of_own_item(q, gallery[rows_s], valid[rows_s], k)
        targets = [t for t, other in enumerate(catalog.slots) if other.modality != slot.modality and other.role == slot.role]
        vs_modality = None
        if targets:

            def target_mean(available, feats):
                count = available[:, targets].sum(axis=1)  # noqa: B023 - target_mean is called only in this iteration
                total = sum(feats[t] * available[:, [t]] for t in targets)  # noqa: B023
                return total / np.maximum(count, 1)[:, None], count > 0

            y_train, ok = target_mean(have_train, raw_train)
            x_train = raw_train[s][ok & have_train[:, s]]
            y_train = y_train[ok & have_train[:, s]]
            x_mean, y_mean = x_train.mean(axis=0), y_train.mean(axis=0)
            xc = (x_train - x_mean).astype(np.float64)
            w = np.linalg.solve(xc.T @ xc + ridge * np.eye(xc.shape[1]), xc.T @ (y_train - y_mean))
            mapped = _unit((catalog.features(test, s)[rows_s] - x_mean) @ w)
            y_test, ok_test = target_mean(have, {t: catalog.features(test, t) for t in targets})
            vs_modality = _recall_of_own_item(mapped, _unit(y_test)[rows_s], ok_test[rows_s], k)
        shown = catalog.observed(test, s)
        shares = np.bincount(shown.ravel(), minlength=config.attributes) / shown.shape[0]
        shows = " ".join(f"{j}:{100 * shares[j]:.0f}" if shares[j] < 0.995 else str(j) for j in np.flatnonzero(shares))
        rows.append(
            SlotInformation(
                slot.name,
                slot.modality,
                slot.role,
                float(rows_s.mean()),
                shows,
                vs_primary,
                vs_other,
                vs_modality,
                min(1.0, k / len(test)),
            )
        )
    return rows
