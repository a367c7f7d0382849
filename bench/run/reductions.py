"""What an objective amounts to on a run's data, in lines the run prints and records
(`training.on_this_data`, `training.reduces_to`), so that a summary never says more than happened.

* `factorized` and `full_ot` differ from `clip` only through a side with several views. When every
  item's views (after the `--views` cap) hold at most one view per side, factorized's fused sides
  are single views, and full_ot transports one point onto one point, whose only plan is the product
  coupling (plan = 1, no entropy): its set similarity is <x, y>, factorized's closed form. Where,
  in addition, the objective encodes the views clip pairs, with clip's weights, its loss and its
  served embedding are clip's: it *reduces to* clip. Checked on the selections themselves (the
  objective's against clip's, training and inference, on every item), not on a rule about V.
* `clip` and `siglip` train on a primary pair: (primary image, title) with image and text views, but
  in a one-modality catalog the primary view and the first auxiliary view. Their one-line summary
  names the first case; the run says which slots the pair is on this data.
* An objective's own notes (a term it cannot pose on this catalog, `Objective.notes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.catalog import Catalog
from ..model.encode import capped_availability
from ..objectives.clip import Clip

#: objectives whose loss is clip's when each side of every item holds at most one view
SET_OBJECTIVES = ("factorized", "full_ot")
#: objectives that train on the primary pair (`first_of_each_side`)
PAIR_OBJECTIVES = ("clip", "siglip")
CHUNK = 65_536  # items per comparison: bounded memory on catalogs of millions of items


def _same(a, b) -> bool:
    return bool(torch.equal(a.mask, b.mask)) and bool(
        torch.allclose(a.side_weight.float(), b.side_weight.float(), atol=1e-6)
        and torch.allclose(a.item_weight.float(), b.item_weight.float(), atol=1e-6)
    )


def _check(objective, clip, catalog: Catalog, max_views: int, pair_only: bool) -> dict:
    """Over every item: at most one view per side?  objective's selections == clip's (views;
    views and weights)?  And the slots clip's pair uses (alone with `pair_only`). Stops at the first
    chunk with a side of two views, after which nothing reduces."""
    layout = objective.context.layout
    out: dict[str, Any] = {"one_per_side": True, "same_views": True, "same_selection": True, "pair_slots": set()}
    n = catalog.num_items
    generator = torch.Generator().manual_seed(0)  # never the global RNG: the run's draws stay as they are
    for start in range(0, n, CHUNK):
        mask = capped_availability(catalog, np.arange(start, min(n, start + CHUNK)), max_views)
        if pair_only:
            out["pair_slots"] |= set(np.flatnonzero(clip.inference_selection(mask).mask.any(dim=0).numpy()).tolist())
            continue
        if any(int((mask & (layout.side == side)).sum(dim=1).max()) > 1 for side in (0, 1)):
            out["one_per_side"] = False
            return out
        theirs = (objective.select_views(mask, generator), objective.inference_selection(mask))
        clips = (clip.select_views(mask, generator), clip.inference_selection(mask))
        out["pair_slots"] |= set(np.flatnonzero(clips[1].mask.any(dim=0).numpy()).tolist())
        if not all(torch.equal(t.mask, c.mask) for t, c in zip(theirs, clips)):
            out["same_views"] = out["same_selection"] = False
        elif not all(_same(t, c) for t, c in zip(theirs, clips)):
            out["same_selection"] = False
    return out


def describe(objective, catalog: Catalog, max_views: int) -> tuple[list[str], str | None]:
    """(lines, reduces_to): what `objective` amounts to on `catalog` at `--views max_views`;
    `reduces_to` names the objective whose loss and served embedding it computes, or is None."""
    lines = list(getattr(objective, "notes", []))
    name = objective.name
    if name not in SET_OBJECTIVES + PAIR_OBJECTIVES or catalog.num_items == 0:
        return lines, None
    layout = objective.context.layout
    if name in PAIR_OBJECTIVES and all(bool((layout.is_primary & (layout.side == s)).any()) for s in (0, 1)):
        return lines, None  # a primary slot on each side: the pair is (primary image, title), as summarised
    clip = Clip(Clip.Config(), objective.context)
    with torch.random.fork_rng(devices=[]):
        found = _check(objective, clip, catalog, max_views, pair_only=name in PAIR_OBJECTIVES)
    pair = [layout.names[j] for j in sorted(found["pair_slots"])]
    # items missing a view pair the next one (--views keeps the first available): name every slot used
    pair_text = f"({', '.join(pair)})" if len(pair) <= 2 else f"pairs among ({', '.join(pair)})"
    reduces_to = None
    if name in PAIR_OBJECTIVES:
        auxiliary = [j for j in range(layout.num_slots) if not bool(layout.is_primary[j])]
        if any(j in auxiliary for j in found["pair_slots"]):
            unused = len([j for j in auxiliary if j not in found["pair_slots"]])
            lines.append(
                f"{name} trains on {pair_text}: a one-modality catalog has no (image, title) pair, so its pair is "
                f"the primary view and the first auxiliary view"
                + (f"; the other {unused} auxiliary slot(s) are unused" if unused else "")
            )
        return lines, None
    if not found["one_per_side"]:
        return lines, None
    each = f"at --views {max_views} every item has at most one view per side"
    if found["same_selection"]:
        reduces_to = "clip"
        how = (
            "its fused sides are single views"
            if name == "factorized"
            else "one point is transported onto one point, so the plan is the product coupling"
        )
        lines.append(
            f"{name} reduces to clip on this data: {each} ({how}): the loss and the served item "
            f"embedding are clip's on {pair_text}; its results are clip's, up to rounding"
        )
    elif found["same_views"]:
        lines.append(
            f"{name}'s cross-view term is clip's on this data ({each}, on {pair_text}); only the "
            "fused item embedding (query term, served) weighs the views differently "
            f"(primary_weight {objective.config.primary_weight:g}; clip weighs its pair equally)"
        )
    if name == "full_ot" and reduces_to is None:
        reduces_to = "factorized"
        lines.append(
            f"full_ot reduces to factorized's closed form on this data: {each}, so the only plan is "
            "the product coupling (coupling='independent'); Sinkhorn adds cost, not a different loss"
        )
    return lines, reduces_to
