"""Deterministic train/val/test splits of items and queries."""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "val", "test")
SPLIT_CODES = {name: code for code, name in enumerate(SPLIT_NAMES)}


def random_split(n: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """int8 [n] of 0/1/2 (train/val/test) with the given fractions, reproducible from `seed`."""
    if n < 0 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    order = rng.permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    split = np.full(n, 2, dtype=np.int8)
    split[order[:n_train]] = 0
    split[order[n_train : n_train + n_val]] = 1
    return split


def split_counts(split: np.ndarray) -> dict[str, int]:
    return {name: int((split == code).sum()) for name, code in SPLIT_CODES.items()}
