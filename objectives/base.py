"""The interface every alignment objective implements.

An objective receives an `AlignmentBatch` - the encoded views of B items ([B, W, d] with masks,
roles, sides and weights) and, when the data set has queries, B query embeddings where query b
interacted with item b - and returns a dict of named loss terms (keys ending in `_loss`, summed
into the training loss) plus detached statistics (any other key), in the style of open_clip's
`ClipLoss`. `Objective.forward` does the work every objective shares (logit scale, served item
embedding, query term, statistics); a subclass implements `alignment_terms`. It also says which views it needs per step (`select_views`, so that objectives
that sample views pay only for what they use) and which item embedding it serves at inference
(`item_embedding`). Objectives are `nn.Module`s: the logit scale and any other learnable part of
an objective lives here, not in the towers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Search, check_options, option
from ..data.views import SlotLayout, ViewSelection, all_views, first_of_each_side


@dataclass
class EncodedViews:
    """Tower outputs of B items' views and their per-position metadata (all [B, W])."""

    embeddings: torch.Tensor  # float [B, W, d], unit norm where mask
    mask: torch.Tensor  # bool
    is_primary: torch.Tensor  # bool
    side: torch.Tensor  # long, 0 (image / primary group) or 1 (text / auxiliary group)
    side_weight: torch.Tensor  # float, sums to 1 within each side of each item
    item_weight: torch.Tensor  # float, sums to 1 over each item's views
    item_index: torch.Tensor  # long [B], catalog indices
    # long [B, W]: the views' content ids (`ftbench.data.content`), only in a batch where two items
    # share a view's content (or two queries theirs); None otherwise
    content: torch.Tensor | None = None


@dataclass
class AlignmentBatch:
    views: EncodedViews
    query: torch.Tensor | None = None  # float [B, d]: query b interacted with item b
    query_content: torch.Tensor | None = None  # long [B]: the queries' content ids, set with views.content


@dataclass
class ObjectiveContext:
    """What an objective may know about the data when it is built."""

    layout: SlotLayout
    embedding_dim: int
    num_items: int
    has_queries: bool
    has_interactions: bool


@dataclass
class ObjectiveConfig:
    """Fields every objective has. Subclasses add their own, each documented with `option`."""

    init_logit_scale: float = option(
        1 / 0.07,
        "initial logit scale 1/tau (CLIP init)",
        "CLIP",
        gt=0,
        search=Search(
            5.0,
            100.0,
            "log",
            why="tau in [0.01, 0.2]: 100 is the clamp (max_logit_scale); below 5 the in-batch softmax is nearly flat",
        ),
    )
    max_logit_scale: float = option(
        100.0,
        "upper bound of the logit scale: log scale clamped at log(max) after each optimiser step",
        "CLIP",
        gt=0,
    )
    learn_logit_scale: bool = option(True, "train the logit scale (False keeps tau fixed)", "convention")
    primary_weight: float = option(
        0.5,
        "w_p: weight shared by the primary views in marginals and the fused item embedding",
        "our reading",
        gt=0,
        le=1,
        search=Search(
            0.2,
            0.9,
            "linear",
            why="1 would drop the auxiliary views (clip's single pair); below "
            "0.2 the title and first image are outweighed by any one extra view",
        ),
    )
    query_weight: float = option(1.0, "weight of the query->item InfoNCE term", "our reading", ge=0)

    def validate(self) -> None:
        """The declared choices and bounds of every field (`check_options`), then what relates
        fields; plugins extend it (calling ``super().validate()``)."""
        check_options(self, "objective")
        if self.init_logit_scale > self.max_logit_scale:
            raise ValueError(
                f"objective option 'init_logit_scale' ({self.init_logit_scale}) is above 'max_logit_scale' "
                f"({self.max_logit_scale}); raise the bound or lower the initial scale"
            )


def symmetric_info_nce(logits: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(CE(logits, diag) + CE(logits^T, diag)) / 2 - CLIP's symmetric InfoNCE on [B, B] logits.

    `exclude` (bool [B, B], off-diagonal; `duplicate_pairs`): pairs left out of both softmaxes
    (logit -inf), neither positives nor negatives."""
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


# -- duplicated views -----------------------------------------------------------------------------
# Members of a term (the rows and columns of its logits: a view, or a weighted set of views) are
# compared by a *content key*: the sorted (content id, weight) pairs of the views they are made of.
# A pair of members of different items is excluded when one item of the term holds both contents:
# it is then the same content as a positive pair (or as one view twice), so it is no negative; it is
# no positive either (docs/method.md, "Duplicated views").

_NO_VIEW = torch.iinfo(torch.long).max  # content-key filler where a set has no view


def content_keys(content: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """long [B, 2W]: the content key of each row's weighted view set (views of weight 0 left out):
    its (content id, float32 bits of the weight) pairs, sorted. Equal keys: the same views by
    content, with the same weights, in any order."""
    take = weights != 0
    ids = torch.where(take, content, torch.full_like(content, _NO_VIEW))
    bits = torch.where(take, weights.float().contiguous().view(torch.int32).long(), torch.zeros_like(content))
    order = torch.sort(bits, dim=1, stable=True).indices  # then by id, stably: sorted by (id, weight)
    ids, bits = ids.gather(1, order), bits.gather(1, order)
    order = torch.sort(ids, dim=1, stable=True).indices
    return torch.cat([ids.gather(1, order), bits.gather(1, order)], dim=1)


def unique_keys(index: torch.Tensor, width: int) -> torch.Tensor:
    """long [B, width]: content keys that equal no view set's and differ between distinct `index`
    values (an item's own ID embedding is content no other item has)."""
    keys = torch.full((index.shape[0], width), _NO_VIEW, dtype=torch.long, device=index.device)
    keys[:, -1] = -1 - index.long()  # a weight's bits are never negative
    return keys


def _pad_keys(keys: torch.Tensor, width: int) -> torch.Tensor:
    half, pad = keys.shape[1] // 2, (width - keys.shape[1]) // 2
    if pad == 0:
        return keys
    filler = keys.new_full((keys.shape[0], pad), _NO_VIEW)
    return torch.cat([keys[:, :half], filler, keys[:, half:], torch.zeros_like(filler)], dim=1)


def shared_content(keys: torch.Tensor, owner: torch.Tensor, num_owners: int) -> torch.Tensor:
    """bool [M, M] over a term's members (content keys [M, K], owning item [M]): True where two
    members of different items have contents that one item of the term holds both of."""
    _, code = torch.unique(keys, dim=0, return_inverse=True)
    holds = torch.zeros(num_owners, int(code.max()) + 1, dtype=torch.float32, device=keys.device)
    holds[owner, code] = 1.0
    held = holds[:, code]  # [owners, M]: item k holds member m's content
    together = (held.t() @ held) > 0  # sums of 0/1 products: exact in float32
    return together & (owner[:, None] != owner[None, :])


def duplicate_pairs(row_keys: torch.Tensor, col_keys: torch.Tensor) -> torch.Tensor | None:
    """bool [n, n] pairs (i, j), i != j, of an item-level term (row i and column i are item i's)
    to leave out (`shared_content`), or None when there is none."""
    n, width = row_keys.shape[0], max(row_keys.shape[1], col_keys.shape[1])
    keys = torch.cat([_pad_keys(row_keys, width), _pad_keys(col_keys, width)])
    owner = torch.arange(n, device=keys.device).repeat(2)
    exclude = shared_content(keys, owner, n)[:n, n:]
    return exclude if bool(exclude.any()) else None


def first_view_weights(views: EncodedViews, side: int) -> torch.Tensor:
    """float [B, W]: 1 at each item's first view of `side` (`side_views(...)[:, 0]`), else 0."""
    in_side = views.mask & (views.side == side)
    return (in_side & (in_side.long().cumsum(dim=1) == 1)).float()


def primary_pair_selection(mask: torch.Tensor, layout: SlotLayout) -> ViewSelection:
    """The primary pair: the first view of each side (image and title; one-modality catalog:
    primary view and first auxiliary view), side marginals 1, item weights 1/2 each (1 when an
    item has one side). The selection of `clip` and `siglip`, in training and at inference."""
    chosen = first_of_each_side(mask, layout)
    count = chosen.sum(dim=1, keepdim=True).clamp(min=1)
    return ViewSelection(mask=chosen, side_weight=chosen.float(), item_weight=chosen.float() / count)


def primary_pair_duplicates(views: EncodedViews, both: torch.Tensor) -> torch.Tensor | None:
    """Pairs (i, j) of the `both` items' primary pairs (first side-0 view a_i, first side-1 view b_j)
    to leave out (`duplicate_pairs`: e.g. b_j is b_i's text, or a_i is a_j's image); None if none."""
    if views.content is None:
        return None
    return duplicate_pairs(
        content_keys(views.content, first_view_weights(views, 0))[both],
        content_keys(views.content, first_view_weights(views, 1))[both],
    )


def side_set_duplicates(views: EncodedViews, both: torch.Tensor) -> torch.Tensor | None:
    """Pairs (i, j) of the `both` items' side sets (side 0 of i against side 1 of j, each weighted by
    `side_weight`) to leave out (`duplicate_pairs`); None if none."""
    if views.content is None:
        return None
    weight = views.side_weight * views.mask
    return duplicate_pairs(
        content_keys(views.content, weight * (views.side == 0))[both],
        content_keys(views.content, weight * (views.side == 1))[both],
    )


def fuse(embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """normalise(sum_v w_v x_v): the fused item embedding [B, d] with view weights w (rows summing to 1)."""
    return F.normalize(torch.einsum("bw,bwd->bd", weights.to(embeddings.dtype), embeddings), dim=-1)


def rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x[keep] for a bool row mask `keep`, or x itself when every row is kept: the same values and
    gradients without the copy and the scatter of its backward (the usual case of a full batch)."""
    return x if bool(keep.all()) else x[keep]


def info_nce(
    x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, symmetric: bool = True, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """InfoNCE on the logits s <x_i, y_j> (rows L2-normalised first), diagonal positives.

    One direction: mean_i -log softmax_j(s <x_i, y_j>)_i (RecGOAT's `InfoNCE`); symmetric: the mean
    of both directions (CLIP). `exclude`: pairs left out, as in `symmetric_info_nce`.
    """
    logits = scale * F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).t()
    if symmetric:
        return symmetric_info_nce(logits, exclude)
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def anchor_positions(views: EncodedViews, layout: SlotLayout) -> torch.Tensor:
    """bool [B, W]: each item's anchor view - its first primary text view - or nothing if it lacks it.

    With image and text views the primary text views are the primary views of side 1 (the title);
    in a single-modality catalog they are the primary views of side 0. A layout with no primary slot
    on that side falls back to the first primary view of any side, then to the first view.
    """
    anchor_side = anchor_side_of(layout)
    has_slot = bool((layout.is_primary & (layout.side == anchor_side)).any())
    if has_slot:
        cand = views.mask & views.is_primary & (views.side == anchor_side)
    elif bool(layout.is_primary.any()):
        cand = views.mask & views.is_primary
    else:
        cand = views.mask.clone()
    return cand & (cand.long().cumsum(dim=1) == 1)


def anchor_side_of(layout: SlotLayout) -> int:
    """The side that holds the text anchor (the title): 1 (text) with image and text views, 0 (the
    primary group) in a single-modality catalog."""
    return 1 if layout.multimodal else 0


def text_anchor(views: EncodedViews, layout: SlotLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(anchor [B, d], present bool [B], position bool [B, W]) from `anchor_positions`; absent rows are 0."""
    position = anchor_positions(views, layout)
    anchor = torch.einsum("bw,bwd->bd", position.to(views.embeddings.dtype), views.embeddings)
    return anchor, position.any(dim=1), position


class Objective(nn.Module):
    """Base class. Subclasses set `name`, `Config`, a one-line `summary` and implement
    `alignment_terms`; `forward` adds the parts every objective shares.

    `notes` lists what an objective leaves out by construction for the catalog it was built for
    (a term that cannot be posed), in words a run can record.
    """

    name: ClassVar[str] = "base"
    summary: ClassVar[str] = ""
    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig

    def __init__(self, config: ObjectiveConfig, context: ObjectiveContext) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.context = context
        init = torch.tensor(math.log(config.init_logit_scale))
        if config.learn_logit_scale:
            self.log_logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_logit_scale", init)
        self.notes: list[str] = []
        self._empty_terms: list[torch.Tensor] = []

    # -- numerics ----------------------------------------------------------------------------
    def logit_scale(self) -> torch.Tensor:
        """s = exp(log scale). The bound `max_logit_scale` is enforced on the parameter by
        `after_step`, not here: a clamp after exp has zero gradient above the bound, so a scale
        that overshot could never come back down."""
        return self.log_logit_scale.exp()

    @torch.no_grad()
    def after_step(self) -> None:
        """Called by the training loop after every optimiser step: clamp log scale <= log(max), as
        open_clip does after its step (`logit_scale.clamp_(0, math.log(100))`)."""
        self.log_logit_scale.clamp_(max=math.log(self.config.max_logit_scale))

    # -- views -----------------------------------------------------------------------------
    def select_views(self, mask: torch.Tensor, generator: torch.Generator | None = None) -> ViewSelection:
        """Views to encode in a training step ([B, S] slot space). Default: all available."""
        return all_views(mask, self.context.layout, self.config.primary_weight)

    def inference_selection(self, mask: torch.Tensor) -> ViewSelection:
        """Views and weights of the cached item embedding. Default: all available views."""
        return all_views(mask, self.context.layout, self.config.primary_weight)

    # -- embeddings served at inference ---------------------------------------------------
    def item_embedding(self, views: EncodedViews) -> torch.Tensor:
        """The item embedding [B, d] a two-tower system caches. Default: the fused embedding."""
        return fuse(views.embeddings, views.item_weight)

    def query_embedding(self, query: torch.Tensor) -> torch.Tensor:
        return query

    # -- training --------------------------------------------------------------------------
    def served_content_keys(self, views: EncodedViews) -> torch.Tensor:
        """Content keys [B, K] of the served item embeddings (`content_keys`); needs `views.content`.
        Default: the fused view set, weighted by `item_weight`."""
        assert views.content is not None  # needs content ids (query_duplicates checks before calling)
        return content_keys(views.content, views.item_weight)

    def query_duplicates(self, batch: AlignmentBatch) -> torch.Tensor | None:
        """(query, item) pairs the query term leaves out: a query with another query's content, an
        item served from another item's content (`duplicate_pairs`); None without content ids."""
        if batch.views.content is None or batch.query_content is None:
            return None
        query = batch.query_content.unsqueeze(1)
        return duplicate_pairs(
            content_keys(query, torch.ones_like(query, dtype=torch.float32)), self.served_content_keys(batch.views)
        )

    def query_loss(self, batch: AlignmentBatch, item: torch.Tensor) -> dict[str, torch.Tensor]:
        """Symmetric InfoNCE between each query and its item's served embedding."""
        if batch.query is None or self.config.query_weight == 0:
            return {}
        logits = self.logit_scale() * self.query_embedding(batch.query) @ item.t()
        return {"query_item_loss": self.config.query_weight * symmetric_info_nce(logits, self.query_duplicates(batch))}

    def alignment_terms(self, batch: AlignmentBatch, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective's own `*_loss` terms and detached statistics, at logit scale `scale`.

        May return the served item embedding [B, d] under the key "item_embedding" when it was
        computed on the way (it is popped by `forward`, and not recomputed).
        """
        raise NotImplementedError  # pragma: no cover

    def empty_term(self, views: EncodedViews) -> torch.Tensor:
        """A zero loss for a term that has no pairs in this batch. It keeps the graph connected
        (every parameter still gets a - zero - gradient), and `forward` names it in the statistic
        `<term>_empty` = 1, so a term that never fires is visible rather than silently missing."""
        zero = views.embeddings.sum() * 0.0
        self._empty_terms.append(zero)
        return zero

    def forward(self, batch: AlignmentBatch) -> dict[str, torch.Tensor]:
        """alignment terms + query term + `logit_scale` statistic (see the class docstring)."""
        self._empty_terms = []
        scale = self.logit_scale()
        terms = dict(self.alignment_terms(batch, scale))
        item = terms.pop("item_embedding", None)
        if item is None:
            item = self.item_embedding(batch.views)
        terms.update(self.query_loss(batch, item))
        for key, value in list(terms.items()):
            if key.endswith("_loss") and any(value is empty for empty in self._empty_terms):
                terms[key.removesuffix("_loss") + "_empty"] = torch.ones((), device=value.device)
        self._empty_terms = []
        terms["logit_scale"] = scale.detach()
        return terms

    @classmethod
    def memory_estimate(cls, batch_size: int, views: int, dim: int) -> int:
        """Rough peak bytes of the objective's forward + backward on [B, V, d] float32 inputs.
        The cost benchmark skips (objective, V) cells above its memory budget. Objectives whose
        memory grows faster (B^2 V^2 for full OT) override this."""
        return 16 * batch_size * views * dim * 4 + 8 * batch_size * batch_size * 4

    @staticmethod
    def total_loss(terms: dict[str, Any]) -> torch.Tensor:
        losses = [v for k, v in terms.items() if k.endswith("_loss")]
        if not losses:
            raise ValueError("objective returned no *_loss term")
        return torch.stack(losses).sum()


@dataclass
class SideViews:
    """The views of one side of every item, compacted: [B, n, d] with weights and masks."""

    embeddings: torch.Tensor  # float [B, n, d] (zeros at padding)
    weight: torch.Tensor  # float [B, n], the side's marginal (sums to 1 where the item has views)
    mask: torch.Tensor  # bool [B, n]
    is_primary: torch.Tensor  # bool [B, n]

    @property
    def present(self) -> torch.Tensor:
        """bool [B]: the item has at least one view on this side."""
        return self.mask.any(dim=1)


def side_views(views: EncodedViews, side: int) -> SideViews:
    """Gather side `side` (0: image / primary group, 1: text / auxiliary group) of every item."""
    in_side = views.mask & (views.side == side)
    counts = in_side.sum(dim=1)
    width = max(int(counts.max().item()) if in_side.numel() else 0, 1)
    order = torch.sort((~in_side).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=order.device).unsqueeze(0) < counts.unsqueeze(1)
    emb = views.embeddings.gather(1, order.unsqueeze(-1).expand(-1, -1, views.embeddings.shape[-1]))
    emb = emb * valid.unsqueeze(-1).to(emb.dtype)
    weight = torch.where(valid, views.side_weight.gather(1, order), torch.zeros((), device=order.device))
    primary = views.is_primary.gather(1, order) & valid
    return SideViews(embeddings=emb, weight=weight, mask=valid, is_primary=primary)


def both_sides(views: EncodedViews) -> tuple[SideViews, SideViews, torch.Tensor]:
    """Sides 0 and 1 of every item (`side_views`) and the bool [B] mask of the items that have both."""
    image_side, text_side = side_views(views, 0), side_views(views, 1)
    return image_side, text_side, image_side.present & text_side.present


class PrimaryPairObjective(Objective):
    """An objective that trains and serves the primary pair alone (`primary_pair_selection`):
    `clip` and `siglip`, which differ only in their loss on it."""

    def select_views(self, mask: torch.Tensor, generator: torch.Generator | None = None) -> ViewSelection:
        return primary_pair_selection(mask, self.context.layout)

    def inference_selection(self, mask: torch.Tensor) -> ViewSelection:
        return primary_pair_selection(mask, self.context.layout)
