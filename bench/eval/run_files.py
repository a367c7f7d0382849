"""TREC run and qrels files of the query task, and its per-query metric values.

`ftbench run --save-run` writes, beside the result file ``<name>.json``, ``<name>.run`` (the top C
items of every test query, C = the reciprocal rank's cut-off, in the TREC run format
``<query id> Q0 <item id> <rank> <score> <tag>`` read by trec_eval, ir-measures, pytrec_eval and ranx),
``<name>.qrels`` (``<query id> 0 <item id> <grade>``) and ``<name>.per_query.tsv`` (every query-task
metric per evaluated test query; column means are the result file's numbers). Two caveats make the
files agree with ftbench's own numbers: trec_eval re-sorts a run by score (ties by item id, not by
rank), so where two consecutive written scores are equal the later one is lowered by 1e-6, and the
file ranks exactly as ftbench ranked (ties by lower catalog index); trec_eval reads integer grades,
so fractional gains (ESCI's) are scaled by the smallest power of ten (up to 10^4) that makes them
integers, which leaves linear-gain nDCG unchanged, and the factor is recorded in the per-query
file's header. Ids with whitespace are an error naming them. docs/evaluation.md#run-files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..data.dataset import MultiViewDataset
    from .evaluator import QueryRun

TIE_STEP = 1e-6


def _check_id(value: str, what: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"--save-run: {what} {value!r} is empty or contains whitespace, which the TREC run format cannot hold")
    return value


def strictly_decreasing(scores: np.ndarray, step: float = TIE_STEP) -> np.ndarray:
    """Row-wise: each score lowered, where needed, to at least `step` below the previous one."""
    out = np.round(np.asarray(scores, dtype=np.float64), 7)
    for j in range(1, out.shape[1]):
        out[:, j] = np.minimum(out[:, j], out[:, j - 1] - step)
    return out


def integer_grades(grades: np.ndarray) -> tuple[np.ndarray, int]:
    """(integer grades, scale): the smallest power of ten <= 10^4 making every grade integral."""
    g = np.asarray(grades, dtype=np.float64)
    for power in range(5):
        scaled = g * 10**power
        if np.allclose(scaled, np.round(scaled), atol=1e-6):
            return np.round(scaled).astype(np.int64), 10**power
    return np.round(g * 10**4).astype(np.int64), 10**4


def write_run_files(stem: Path, run: QueryRun, dataset: MultiViewDataset, tag: str) -> dict[str, Path]:
    """Write ``stem.run``, ``stem.qrels`` and ``stem.per_query.tsv`` (module docstring)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    item_ids = np.asarray([str(i) for i in dataset.catalog.item_ids()])[run.gallery]
    assert dataset.queries is not None and run.scores is not None  # a query run: its queries, scores kept
    query_ids = [_check_id(str(dataset.queries.ids[q]), "query id") for q in run.query_index]
    tag = _check_id(tag, "run tag")
    for i in np.unique(run.ranked):
        _check_id(item_ids[i], "item id")
    scores = strictly_decreasing(run.scores)
    with open(stem.with_suffix(".run"), "w", encoding="utf-8") as handle:
        for r, qid in enumerate(query_ids):
            for p, (item, score) in enumerate(zip(run.ranked[r], scores[r]), start=1):
                handle.write(f"{qid} Q0 {item_ids[item]} {p} {score:.7f} {tag}\n")
    indptr, rel_pos, grades = run.relevance
    int_grades, scale = integer_grades(grades)
    with open(stem.with_suffix(".qrels"), "w", encoding="utf-8") as handle:
        for r, qid in enumerate(query_ids):
            for k in range(indptr[r], indptr[r + 1]):
                handle.write(f"{qid} 0 {_check_id(item_ids[rel_pos[k]], 'item id')} {int_grades[k]}\n")
    report = run.report
    names = list(report.per_query)
    per_query = stem.with_name(stem.name + ".per_query.tsv")
    with open(per_query, "w", encoding="utf-8") as handle:
        handle.write(f"# task {run.task}, split {run.split}; qrels grades x {scale}\n")
        handle.write("query_id\t" + "\t".join(names) + "\n")
        for row, r in enumerate(report.query_index):
            values = "\t".join(repr(float(report.per_query[n][row])) for n in names)
            handle.write(f"{query_ids[r]}\t{values}\n")
    return {"run": stem.with_suffix(".run"), "qrels": stem.with_suffix(".qrels"), "per_query": per_query}


def read_per_query(path: Path):
    """A per-query file as a pandas DataFrame indexed by query id (errors name the file)."""
    import pandas as pd  # heavy: pandas

    path = Path(path)
    try:
        frame = pd.read_csv(path, sep="\t", comment="#", dtype={"query_id": str})
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a per-query file ({exc})") from None
    if "query_id" not in frame.columns:
        raise ValueError(f"{path}: missing column 'query_id'; columns present: {list(frame.columns)}")
    return frame.set_index("query_id")
