"""`ftbench cost --encode-bench`: its inputs (the grocery mini as the loader reads it, seeded
synthetic product texts) and one set's row, with the dependency-free `hash` backbone (the real
encoders' figures are the committed results/cost/encode_bench__cpu.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ftbench.cost.encode_bench import bench_set, grocery_inputs, synthetic_product_texts

MINI = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grocery_store_mini"


def test_synthetic_product_texts_are_seeded_titles_and_descriptions_of_realistic_lengths():
    texts = synthetic_product_texts(2000)
    assert texts == synthetic_product_texts(2000) and texts != synthetic_product_texts(2000, seed=1)
    assert len(set(texts)) == 2000  # each ends in its index: no duplicate is encoded once for two
    words = np.array([len(t.split()) - 1 for t in texts])
    titles, descriptions = words[0::2], words[1::2]
    assert titles.min() >= 4 and titles.max() <= 14
    assert 35 <= np.median(descriptions) <= 55 and descriptions.max() <= 400 and descriptions.min() >= 8


@pytest.mark.skipif(not MINI.is_dir(), reason="grocery_store_mini copy not beside the repository")
def test_grocery_inputs_are_the_distinct_texts_and_images_the_loader_encodes():
    texts, images = grocery_inputs(MINI)
    assert len(texts) == len(set(texts)) == 34 and len(images) == len(set(images)) == 1010
    assert all(Path(p).is_file() for p in images[::50])


def test_a_set_row_times_before_and_after_on_the_same_features():
    lines = []
    row = bench_set(
        "tiny", "hash", "text", synthetic_product_texts(300), {"fp32": 10.0, "bf16": 20.0}, before_inputs=100, say=lines.append
    )
    assert row["before"]["inputs"] == 100 and row["after"]["inputs"] == 300
    assert row["after_vs_before_max_abs_diff"] == 0.0 and "bf16" not in row  # hash has no bf16 path
    assert row["speedup"] == round(row["after"]["inputs_per_s"] / row["before"]["inputs_per_s"], 2)
    assert [line.split(":")[0] for line in lines] == ["tiny hash before", "tiny hash after"]
