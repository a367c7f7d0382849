"""Queries: searches with their relevant items (optionally graded) and training interactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .splits import SPLIT_CODES


@dataclass
class QuerySet:
    """Q queries. `relevant_*` is a CSR list: query q's relevant items are
    `relevant_items[relevant_indptr[q]:relevant_indptr[q+1]]` with gains `relevant_grades[...]`.

    `interactions` [M, 2] holds (query, item) training pairs; repeats encode popularity.
    `modality` names the tower that encodes the queries (text for searches, image for photos).
    `split` [Q] holds 0/1/2 for train/val/test.
    """

    ids: np.ndarray
    modality: str
    features: np.ndarray
    relevant_indptr: np.ndarray
    relevant_items: np.ndarray
    relevant_grades: np.ndarray
    split: np.ndarray
    interactions: np.ndarray

    def __post_init__(self) -> None:
        q = len(self.ids)
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        if self.features.shape[0] != q:
            raise ValueError(f"query features have {self.features.shape[0]} rows for {q} queries")
        if not np.isfinite(self.features).all():
            raise ValueError("query features contain NaN or infinite values")
        if len(self.relevant_indptr) != q + 1:
            raise ValueError("relevant_indptr must have one entry more than there are queries")
        if len(self.relevant_items) != len(self.relevant_grades):
            raise ValueError("relevant_items and relevant_grades differ in length")
        if len(self.split) != q:
            raise ValueError("query split has the wrong length")

    @property
    def num_queries(self) -> int:
        return len(self.ids)

    def relevant(self, q: int) -> np.ndarray:
        return self.relevant_items[self.relevant_indptr[q] : self.relevant_indptr[q + 1]]

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLIT_CODES[split])

    def check_against(self, num_items: int) -> None:
        """Every relevant item and every interaction must point into the catalog."""
        bad = (self.relevant_items < 0) | (self.relevant_items >= num_items)
        if bad.any():
            q = int(np.searchsorted(self.relevant_indptr, np.flatnonzero(bad)[0], side="right") - 1)
            raise ValueError(
                f"query {str(self.ids[q])!r} has a relevant item outside the catalog (index "
                f"{int(self.relevant_items[np.flatnonzero(bad)[0]])}, catalog size {num_items})"
            )
        if len(self.interactions):
            items, queries = self.interactions[:, 1], self.interactions[:, 0]
            bad = (items < 0) | (items >= num_items) | (queries < 0) | (queries >= self.num_queries)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"an interaction points outside the catalog (size {num_items}) or the query set "
                    f"(size {self.num_queries}): row {row} is (query {int(queries[row])}, item {int(items[row])})"
                )


def relevance_from_pairs(num_queries: int, pairs: np.ndarray, grades: np.ndarray | None = None):
    """CSR relevance lists from (query, item[, grade]) pairs; duplicates keep the highest grade."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    g = np.ones(len(pairs), dtype=np.float32) if grades is None else np.asarray(grades, dtype=np.float32)
    order = np.lexsort((-g, pairs[:, 1], pairs[:, 0]))
    pairs, g = pairs[order], g[order]
    keep = np.ones(len(pairs), dtype=bool)
    keep[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    pairs, g = pairs[keep], g[keep]
    counts = np.bincount(pairs[:, 0], minlength=num_queries)
    indptr = np.zeros(num_queries + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, pairs[:, 1].copy(), g
