"""The names results are written and read under: tasks, metrics and the paper's claim.

Torch-free on purpose: the evaluator writes these names, and the report, the notebook and the
command line read them without importing torch or the training code.

Tasks (see `ftbench.eval.evaluator` for how each is scored):

- the query task, `query->item`: a data set's search queries against the served item embeddings
  (a data set may give it its own name, e.g. `photo->product`; the report calls it `query->item`);
- the cross-view tasks: `title->image`, `image->title` (primary views against each other),
  `image->item`, `text->item`, `aux->item` (one view against the served embedding of the item
  encoded without that view).

Metrics per task: `recall@K`, `hit@K`, `ndcg@K` for each cut-off K, and the reciprocal rank
named with its cut-off, `mrr@500` (the largest K; ranx's and ir-measures' name; result files of
schema version 1 called it `mrr`, and are still read: `ftbench.run.results.upgrade_payload`).
Opt-in (`eval.metrics`): `map@K`. Each metric is defined once, with its label and range, in
`ftbench.eval.metric_registry`; see `ftbench.eval.metrics`. A key in a result file is `<task>/<metric>`.
"""

from __future__ import annotations

from typing import Any

QUERY_TASK = "query->item"
CROSS_VIEW_TASKS = ("title->image", "image->title", "image->item", "text->item", "aux->item")
#: the validation score that averages a metric over the cross-view tasks
CROSS_VIEW_MEAN = "cross-view"
DEFAULT_CUTOFFS = (1, 10, 50, 100, 500)
#: the columns of the metrics table `ftbench run` prints
#: the reciprocal rank at the largest default cut-off
MRR = f"mrr@{DEFAULT_CUTOFFS[-1]}"
METRIC_COLUMNS = ("recall@1", "recall@10", "recall@100", "recall@500", "ndcg@10", MRR)

# The one public number of the Factorized Transport paper (abstract of arXiv 2512.18117).
PAPER_CLAIM: dict[str, Any] = {
    "paper": "Factorized Transport Alignment for Multimodal and Multiview E-commerce Representation Learning "
    "(Chen et al., WSDM 2026, arXiv 2512.18117)",
    "relative_percent": 7.9,
    "metric": "recall@500",
    "task": QUERY_TASK,
    "quote": "up to +7.9% Recall@500 over strong multimodal baselines",
    "items": 1_000_000,
    "interactions": 292_520,
}
