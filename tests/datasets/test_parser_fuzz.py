"""Fuzz run of the data-file parsers: randomly damaged files never crash a loader with anything
but a clear error, and never load into an inconsistent data set.

Why: the bad-input table (test_bad_data_files.py) covers the damage we thought of; real files are
damaged in ways nobody lists (a download cut at an odd byte, an editor that re-encoded a line, a
stray quote). Each case takes a valid folder (conftest.py), applies one to three random
mutations to one of its files - truncation, a deleted span, inserted separators, quotes,
newlines, NUL, invalid UTF-8, a byte-order mark, JSON punctuation or huge numbers, a duplicated
or swapped line, a flipped byte; for Amazon Reviews also damage to the gzip-compressed file -
and loads it with the cheap `hash` backbone. Allowed outcomes:

- a ValueError or FileNotFoundError whose message names a file of the data folder, or
- a data set that holds together: a non-empty catalog, unique item ids, every item with a view,
  finite features, relevance pointing into the catalog, skip counts that are positive integers.

Anything else - another exception type, an error that does not say where, an inconsistent data
set - fails with the case's seed, so it can be replayed. `CASES_PER_FORMAT` cases per format,
four formats: docs/guarantees.md states the total. Seeds are fixed: the run is the same every time.
"""

from __future__ import annotations

import gzip
import traceback

import numpy as np
import pytest

CASES_PER_FORMAT = 150
TOKENS = [
    b"\t",
    b",",
    b'"',
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b'"title": null',
    b"null",
    b"NaN",
    b"-1",
    b"99999999999999999999",
    b"\\u0000",
    b"E",
    b"Exact",
    b" ",
]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation of `data`."""
    n = len(data)
    kind = rng.integers(7)
    pos = int(rng.integers(n + 1)) if n else 0
    if kind == 0:  # truncation
        return data[:pos]
    if kind == 1:  # a deleted span
        return data[:pos] + data[pos + int(rng.integers(1, 40)) :]
    if kind == 2:  # an inserted token
        return data[:pos] + TOKENS[int(rng.integers(len(TOKENS)))] + data[pos:]
    if kind == 3:  # a random byte overwritten
        if not n:
            return data
        pos = min(pos, n - 1)
        return data[:pos] + bytes([int(rng.integers(256))]) + data[pos + 1 :]
    lines = data.split(b"\n")
    if len(lines) < 2:
        return data
    i, j = (int(x) for x in rng.integers(len(lines), size=2))
    if kind == 4:  # a duplicated line
        lines.insert(j, lines[i])
    elif kind == 5:  # two lines swapped
        lines[i], lines[j] = lines[j], lines[i]
    else:  # a line dropped
        del lines[i]
    return b"\n".join(lines)


def _check_consistent(ds) -> None:
    cat = ds.catalog
    assert cat.num_items >= 1
    ids = cat.item_ids()
    assert len(set(ids.tolist())) == len(ids)
    items = np.arange(cat.num_items)
    avail = cat.availability(items)
    assert avail.any(axis=1).all(), "an item without any view"
    for slot in range(len(cat.slots)):
        assert np.isfinite(cat.features(items, slot)).all()
    assert all(isinstance(v, int) and v > 0 for v in ds.skipped.values()), ds.skipped
    q = ds.queries
    if q is not None and q.num_queries:
        assert q.relevant_items.min() >= 0 and q.relevant_items.max() < cat.num_items
        assert np.isfinite(q.features).all()


@pytest.mark.parametrize("case_block", range(3))
def test_damaged_files_give_a_clear_error_or_a_consistent_data_set(data_format, tmp_path, case_block):
    """One third of the format's cases (three blocks keep each test short in the report)."""
    base = tmp_path / "valid"
    data_format.write(base)
    originals = {name: (base / name).read_bytes() for name in data_format.files}
    outcomes = {"loaded": 0, "error": 0}
    per_block = CASES_PER_FORMAT // 3
    for case in range(case_block * per_block, (case_block + 1) * per_block):
        seed = [0xF022, sorted(["amazon-reviews-2023", "esci", "grocery-store", "wands"]).index(data_format.name), case]
        rng = np.random.default_rng(seed)
        folder = tmp_path / f"case{case}"
        data_format.write(folder)
        name = data_format.files[int(rng.integers(len(data_format.files)))]
        target = folder / name
        data = originals[name]
        compressed = name.endswith(".jsonl") and rng.random() < 0.25
        if compressed:
            data = gzip.compress(data, mtime=0)
            target.unlink()
            target = target.with_name(name + ".gz")
        for _ in range(int(rng.integers(1, 4))):
            data = _mutate(data, rng)
        target.write_bytes(data)
        try:
            ds = data_format.build(folder)
        except (ValueError, FileNotFoundError) as exc:
            assert str(folder) in str(exc), f"seed {seed}: the error does not name a file of the data set: {exc}"
            outcomes["error"] += 1
            continue
        except Exception:  # noqa: BLE001 - any other type is the failure this test looks for
            pytest.fail(f"seed {seed} ({name}{' gzipped' if compressed else ''}): unexpected\n{traceback.format_exc()}")
        try:
            _check_consistent(ds)
        except AssertionError as exc:
            pytest.fail(f"seed {seed} ({name}): loaded an inconsistent data set: {exc}")
        outcomes["loaded"] += 1
    assert sum(outcomes.values()) == per_block
    assert outcomes["error"] > 0  # the mutations do damage: some cases must be refused
