"""Hand-computed checks of the view bookkeeping (bench/views.py)."""

import torch
from ftbench.data.catalog import ViewSlot
from ftbench.data.views import SlotLayout, cap_views, first_of_each_side, primary_weighted, side_weights


class _Cat:
    def __init__(self, slots):
        self.slots = tuple(slots)
        self.modalities = list(dict.fromkeys(s.modality for s in slots))


IMG_TXT = _Cat(
    [
        ViewSlot("image_1", "image", "primary"),
        ViewSlot("title", "text", "primary"),
        ViewSlot("image_2", "image", "auxiliary"),
        ViewSlot("description", "text", "auxiliary"),
        ViewSlot("image_3", "image", "auxiliary"),
    ]
)
TEXT_ONLY = _Cat(
    [ViewSlot("title", "text", "primary"), ViewSlot("desc", "text", "auxiliary"), ViewSlot("bullets", "text", "auxiliary")]
)


def test_cap_views_keeps_first_available_in_slot_order():
    avail = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1], [1, 0, 0, 0, 1]], dtype=torch.bool)
    got = cap_views(avail, 3)
    expected = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(got, expected)


def test_primary_weighted_hand_computed():
    is_primary = torch.tensor([True, True, False, False, False])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    w = primary_weighted(mask, is_primary, 0.6)
    # row 0: primaries share 0.6 -> 0.3 each; two aux share 0.4 -> 0.2 each
    assert torch.allclose(w[0], torch.tensor([0.3, 0.3, 0.2, 0.2, 0.0]))
    # row 1: no auxiliary view -> primaries get everything
    assert torch.allclose(w[1], torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0]))
    # row 2: no primary view -> auxiliaries share 1
    assert torch.allclose(w[2], torch.tensor([0.0, 0.0, 1 / 3, 1 / 3, 1 / 3]))


def test_side_weights_sum_to_one_per_side():
    layout = SlotLayout.from_catalog(IMG_TXT)
    assert layout.multimodal and layout.side.tolist() == [0, 1, 0, 1, 0]
    mask = torch.ones(1, 5, dtype=torch.bool)
    w = side_weights(mask, layout.is_primary, layout.side, 0.5)
    # image side: image_1 0.5, image_2 0.25, image_3 0.25; text side: title 0.5, description 0.5
    assert torch.allclose(w[0], torch.tensor([0.5, 0.5, 0.25, 0.5, 0.25]))


def test_single_modality_sides_are_primary_vs_auxiliary():
    layout = SlotLayout.from_catalog(TEXT_ONLY)
    assert not layout.multimodal and layout.side.tolist() == [0, 1, 1]


def test_clip_pair_never_substitutes_an_auxiliary_view_for_a_primary():
    layout = SlotLayout.from_catalog(IMG_TXT)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=torch.bool)
    chosen = first_of_each_side(mask, layout)
    assert chosen[0].tolist() == [True, True, False, False, False]
    # item 1 lacks the primary image: only its title is chosen, not image_2
    assert chosen[1].tolist() == [False, True, False, False, False]
    text = SlotLayout.from_catalog(TEXT_ONLY)
    got = first_of_each_side(torch.tensor([[1, 0, 1]], dtype=torch.bool), text)
    assert got[0].tolist() == [True, False, True]  # title and the first auxiliary view present
