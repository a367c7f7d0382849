"""`ftbench cost`'s benchmark-only variants: what each one changes in the measuring process."""

import torch
import torch.nn.functional as F
from ftbench.cost import scaling
from ftbench.data.views import SlotLayout, primary_weighted, side_weights
from ftbench.objectives import OBJECTIVES
from ftbench.objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext, fuse


def _batch(b=6, d=8, seed=0):
    slots = [("image", True), ("text", True), ("text", False), ("image", False)]
    mods = ("image", "text")
    is_primary = torch.tensor([p for _, p in slots])
    layout = SlotLayout(
        names=tuple(f"s{i}" for i in range(len(slots))),
        modalities=mods,
        modality_code=torch.tensor([mods.index(m) for m, _ in slots]),
        is_primary=is_primary,
        side=torch.tensor([0 if m == "image" else 1 for m, _ in slots]),
        multimodal=True,
    )
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, len(slots), generator=g) < 0.8
    mask[:, :2] = True
    emb = F.normalize(torch.randn(b, len(slots), d, generator=g), dim=-1) * mask.unsqueeze(-1)
    views = EncodedViews(
        embeddings=emb,
        mask=mask,
        is_primary=is_primary.expand(b, -1),
        side=layout.side.expand(b, -1),
        side_weight=side_weights(mask, is_primary, layout.side, 0.5),
        item_weight=primary_weighted(mask, is_primary, 0.5),
        item_index=torch.arange(b),
    )
    query = F.normalize(torch.randn(b, d, generator=g), dim=-1)
    return layout, AlignmentBatch(views, query)


def test_oat_floor_keeps_only_the_query_term_on_the_fused_views():
    # `ftbench cost --objective oat-floor`: oat's step with none of its own terms
    layout, batch = _batch()
    context = ObjectiveContext(layout, 8, 6, False, True)
    oat = OBJECTIVES.get("oat")(OBJECTIVES.get("oat").Config(), context)
    assert scaling._base_objective("oat-floor") == "oat"
    floor_cls = scaling.objective_class("oat-floor")
    assert issubclass(floor_cls, OBJECTIVES.get("oat"))
    torch.manual_seed(0)
    floor_oat = floor_cls(floor_cls.Config(), context)
    # the variant is a subclass: oat itself, built in the same process, keeps its terms
    assert {"modality_loss", "wasserstein_loss"} <= set(oat(batch))
    floor = floor_oat(batch)
    assert {k for k in floor if k.endswith("_loss")} == {"query_item_loss"}
    # the query InfoNCE against the item weights' fusion of every view, at oat's logit scale
    item = fuse(batch.views.embeddings, batch.views.item_weight)
    logits = floor_oat.logit_scale() * batch.query @ item.t()
    labels = torch.arange(len(item))
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
    torch.testing.assert_close(floor["query_item_loss"], expected)
