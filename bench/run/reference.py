"""`ftbench reference`: the untrained references (`ftbench.eval.reference`) as result files.

One result file per reference, named and grouped like a trained run: the objective field holds
`frozen-primary` or `frozen-mean` and `config.reference` says it is an untrained reference. Its
numbers depend on the data and the evaluation only, so the report shows it in every group of
trained runs with the same data set, data-set config, evaluation config and V, as rows marked
"untrained reference". Nothing is trained; the seed only fixes the cap on cross-view items, as
for a trained run.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np

from ..eval.reference import REFERENCE_NOTE, REFERENCES, FrozenReference
from ..model.encode import capped_availability
from .experiment import RunSpec, build_dataset, package_versions, prepare
from .identity import run_identity
from .results import RunResult, result_filename, write_result

REFERENCE_OBJECTIVE = "frozen"  # `ftbench reference` and `ftbench run --objective frozen`


def reference_config(config: dict, variant: str) -> dict:
    """A trained run's config turned into the reference's: same data and protocol, no objective."""
    out = dict(config)
    out["objective"] = variant
    out["objective_config"] = {}
    out["reference"] = REFERENCE_NOTE
    return out


def execute_reference(
    spec: RunSpec, out_dir: Path | None, dataset_cache: dict | None = None
) -> list[tuple[RunResult, Path | None]]:
    """Score both references on `spec`'s data and protocol; write one result each under `out_dir`."""
    prepared = prepare(RunSpec(**{**spec.__dict__, "objective": "clip"}))  # configs only; no objective is built
    configs = prepared.configs
    t0 = time.perf_counter()
    dataset = build_dataset(prepared, dataset_cache)
    data_s = time.perf_counter() - t0
    counts = dataset.counts()
    sample = np.arange(min(dataset.catalog.num_items, 50_000))
    counts["realised_views_per_item"] = float(capped_availability(dataset.catalog, sample, spec.views).sum(1).float().mean())
    out = []
    for variant in REFERENCES:
        t1 = time.perf_counter()
        reference = FrozenReference(dataset, variant, spec.views, configs["eval"])
        metrics, not_applicable, eval_counts = reference.evaluate(seed=spec.seed)
        evaluate_s = time.perf_counter() - t1
        config = reference_config(prepared.config, variant)
        chash = run_identity(config, prepared.data)
        result = RunResult(
            run_id=f"{chash[:10]}-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}",
            config=config,
            config_hash=chash,
            versions=package_versions(),
            device={"device": "cpu"},
            counts={**counts, "evaluation": eval_counts},
            metrics=metrics,
            not_applicable=not_applicable,
            timing={"phases_s": {"data_s": round(data_s, 4), "train_s": 0.0, "evaluate_s": round(evaluate_s, 4)}, "steps": 0},
            training={
                "reference": REFERENCE_NOTE,
                "selected_step": 0,
                "select_metric": "none (untrained)",
                "selected_val_score": None,
                "history": [],
            },
            skipped=dict(dataset.skipped),
            notes=list(dataset.notes) + [f"{variant}: {REFERENCE_NOTE}"],
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            data=dict(prepared.data),
        )
        path = None
        if out_dir is not None:
            path = Path(out_dir) / result_filename(config, chash)
            write_result(result, path)
        out.append((result, path))
    return out
