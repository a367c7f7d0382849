"""One run end to end: data -> towers -> objective -> training -> evaluation -> result file.

Under torchrun (or any launcher setting WORLD_SIZE, RANK, ...) every process builds the data set and
trains its share of each global batch (`ftbench.train.distributed`); rank 0 alone validates, evaluates and
writes the result, which records the world size and the global batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..config import apply_overrides, parse_literal, to_jsonable
from ..data.fingerprint import describe_data
from ..data.views import SlotLayout
from ..datasets import DATASETS
from ..device import (
    PRECISIONS,
    check_precision,
    describe_device,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    search_timing,
    seed_everything,
)
from ..eval.evaluator import EvalConfig, Evaluator
from ..eval.metric_registry import DEFAULT_METRICS
from ..eval.run_files import write_run_files
from ..model.encode import capped_availability
from ..model.saved import save_model as write_model
from ..model.towers import TowerConfig, build_towers
from ..objectives import OBJECTIVES
from ..objectives.base import ObjectiveContext
from ..registry import suggest
from ..train.distributed import setup as setup_distributed
from ..train.loop import TrainConfig, train
from .embeddings_io import save_run_embeddings
from .identity import run_identity
from .named_dataset import build_named_dataset
from .provenance import collect as collect_provenance
from .provenance import git_state
from .reductions import describe as describe_on_data
from .results import RunResult, result_filename, write_result
from .spec import SECTIONS, RunSpec
from .tracking import NO_RUN, flatten_params


def parse_sets(pairs: list[str]) -> list[tuple[str | None, str, Any]]:
    """`--set key=value` strings -> (section or None, key, literal value)."""
    out = []
    for text in pairs:
        if "=" not in text:
            raise ValueError(f"--set {text!r}: expected key=value (e.g. --set primary_weight=0.7)")
        key, value = text.split("=", 1)
        key = key.strip()
        section = None
        if "." in key:
            section, key = key.split(".", 1)
            if section not in SECTIONS:
                raise ValueError(f"--set {text!r}: {suggest(section, list(SECTIONS), 'option section')}")
        if not key:
            raise ValueError(f"--set {text!r}: empty key")
        out.append((section, key, parse_literal(value.strip())))
    return out


def route_sets(parsed, configs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Assign each override to its section; a bare key must belong to exactly one section."""
    routed: dict[str, dict[str, Any]] = {s: {} for s in configs}
    for section, key, value in parsed:
        if section is None and key == "seed":
            # the run's seed is --seed; a data generator's own seed must be named as such
            raise KeyError(
                "--set seed=...: the run's seed (initialisation, batching, view sampling; the file "
                "name's s<seed>) is --seed; a data set's own seed is --set dataset.seed=..."
            )
        if section is None:
            owners = [s for s, cfg in configs.items() if key in {f.name for f in dataclasses.fields(cfg)}]
            if not owners:
                every = sorted({f.name for cfg in configs.values() for f in dataclasses.fields(cfg)})
                raise KeyError(suggest(key, every, "--set key"))
            if len(owners) > 1:
                raise KeyError(f"--set key {key!r} is ambiguous ({', '.join(owners)}); write e.g. {owners[0]}.{key}")
            section = owners[0]
        routed[section][key] = value
    return routed


@dataclass
class PreparedRun:
    """Configs resolved and validated before any work, so bad options fail fast."""

    spec: RunSpec
    objective_cls: type
    dataset_plugin: Any
    configs: dict[str, Any]
    config: dict[str, Any]
    config_hash: str  # the run's identity (`identity.run_identity`): config and data fingerprint
    data: dict[str, Any] = field(default_factory=dict)  # the result's `data` block ({} for generated data)


def prepare(spec: RunSpec, data_memo: dict | None = None) -> PreparedRun:
    """Resolve and check every config, and fingerprint the data's files (`ftbench.data.fingerprint`;
    `data_memo` shares fingerprints between the cells of one grid)."""
    if spec.views < 1:
        raise ValueError(f"--views must be at least 1, got {spec.views}")
    if spec.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {spec.seed}")
    if spec.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {spec.precision!r}")
    objective_cls = OBJECTIVES.get(spec.objective)
    plugin_cls = DATASETS.get(spec.dataset)
    configs = {
        "objective": objective_cls.Config(),
        "dataset": plugin_cls.Config(),
        "train": TrainConfig(),
        "tower": TowerConfig(),
        "eval": EvalConfig(),
    }
    routed = route_sets(parse_sets(spec.sets), configs)
    if spec.steps is not None:
        routed["train"]["steps"] = spec.steps
    if spec.batch_size is not None:
        routed["train"]["batch_size"] = spec.batch_size
    for section, overrides in routed.items():
        configs[section] = apply_overrides(configs[section], overrides, section)
        validate = getattr(configs[section], "validate", None)
        if callable(validate):
            validate()
    config: dict[str, Any] = {
        "objective": spec.objective,
        "dataset": spec.dataset,
        "views": spec.views,
        "seed": spec.seed,
        **{f"{s}_config": to_jsonable(c) for s, c in configs.items()},
    }
    if spec.precision != "fp32":  # only then: float32 runs keep the hashes (and file names) they had
        config["precision"] = spec.precision
    if config["tower_config"]["init"] == "mlp":  # likewise: runs with today's towers keep their hashes
        del config["tower_config"]["init"]
    if tuple(config["eval_config"]["metrics"]) == DEFAULT_METRICS:  # likewise: runs before eval.metrics
        del config["eval_config"]["metrics"]
    plugin = plugin_cls()
    data = describe_data(plugin, configs["dataset"], data_memo)
    return PreparedRun(spec, objective_cls, plugin, configs, config, run_identity(config, data), data)


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"ftbench": __version__, "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for dist in ("pot", "geomloss", "pandas", "faiss-cpu", "sentence-transformers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def build_dataset(prepared: PreparedRun, dataset_cache: dict | None = None):
    """The run's data set, built once per data config when `dataset_cache` is given (sweeps, tuning
    trials and references of one process share it). A large generated catalog is served from its
    stored features, generated once per data config for every process (`catalog_store`)."""
    key = (prepared.spec.dataset, repr(prepared.config["dataset_config"]))
    if dataset_cache is not None and key in dataset_cache:
        return dataset_cache[key]
    dataset = build_named_dataset(prepared.spec.dataset, prepared.dataset_plugin, prepared.configs["dataset"])
    if dataset_cache is not None:
        dataset_cache[key] = dataset
    return dataset


def feature_cache_block(dataset, reused: bool) -> dict[str, Any]:
    """{"feature_cache": {...}} for data whose features went through the feature cache: the folder
    actually used (resolved: --cache-dir, $FTBENCH_CACHE_DIR or the default; the config's cache_dir
    stays '' so that the location changes no identity), features encoded and read from the cache
    by this build; a data set an earlier run of the process built is said to be reused (nothing
    encoded or read for this run). {} for generated data."""
    info = dataset.config
    if "features_encoded" not in info:
        return {}
    block = {
        "folder": info.get("cache_dir_resolved"),
        "enabled": info.get("cache_dir_resolved") is not None,
        "encoded": 0 if reused else int(info["features_encoded"]),
        "from_cache": 0 if reused else int(info["features_from_cache"]),
    }
    if reused:
        block["data_set_reused_in_process"] = True
    return {"feature_cache": block}


def execute(
    prepared: PreparedRun,
    out_dir: Path | None,
    progress: Callable[[str, int, int, dict], None] | None = None,
    save_embeddings: bool = False,
    dataset_cache: dict | None = None,
    save_run: bool = False,
    tracker: Any = None,
    tuning: dict | None = None,
    save_model: Path | None = None,
) -> tuple[RunResult | None, Path | None]:
    """Train and evaluate; write the result (atomically) under `out_dir` if given, and with
    `save_run` the query task's TREC run, qrels and per-query files beside it
    (`ftbench.eval.run_files`). `tuning`: the result's tuning block (`ftbench tune` reruns of a best
    configuration).

    With a `tracker` (`ftbench.run.tracking.Tracker`), rank 0 also sends the run's parameters,
    per-step loss, validation scores, final metrics and result file to it; a run that raises is
    closed there as FAILED (KILLED when interrupted).

    With `save_model` (a folder), rank 0 also writes the trained towers and objective there
    (`ftbench.model.saved`), whether or not the run has an `out_dir`.

    With several processes, only rank 0 evaluates and writes; the other ranks return (None, None)
    once training is done.
    """
    spec = prepared.spec
    distributed, device = setup_distributed(resolve_device(spec.device))
    run = functools.partial(_execute, prepared, out_dir, progress, save_embeddings, dataset_cache, save_run, distributed, device)
    if tracker is None or not tracker.enabled or not distributed.is_main:
        return run(tuning=tuning, save_model=save_model)

    tags = {"ftbench.config_hash": prepared.config_hash, "ftbench.objective": spec.objective, "ftbench.dataset": spec.dataset}
    commit = git_state().get("commit")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tracked = tracker.start_run(
        f"{spec.objective} V={spec.views} seed={spec.seed}",
        {**flatten_params(prepared.config), "config_hash": prepared.config_hash},
        tags,
    )
    try:
        result, path = run(tracked, tuning, save_model)
    except KeyboardInterrupt:
        tracked.end("KILLED")
        raise
    except BaseException:
        tracked.end("FAILED")
        raise
    try:
        log_final(tracked, result, path)
    finally:
        tracked.end("FINISHED")
    return result, path


def log_final(tracked, result: RunResult, path: Path | None) -> None:
    """After evaluation: every test metric as `test/<task>/<metric>`, the selected validation
    score, timings, and the result JSON as an artifact (written to a temporary file when the run
    has no --out)."""
    steps = int(result.config["train_config"]["steps"])
    values = {
        f"test/{task}/{metric}": value
        for task, per_task in result.metrics.items()
        for metric, value in per_task.items()
        if isinstance(value, (int, float))
    }
    if result.training.get("selected_val_score") is not None:
        values["val/selected"] = result.training["selected_val_score"]
    timing = result.timing
    values.update({f"timing/{k}": v for k, v in timing.get("phases_s", {}).items()})
    values.update({f"timing/{k}": timing[k] for k in ("step_ms_median", "step_ms_p90") if k in timing})
    tracked.log_metrics(values, steps)
    tracked.set_tags(
        {"ftbench.selected_step": str(result.training.get("selected_step"))}
        | ({"ftbench.result_file": path.name} if path is not None else {})
    )
    if path is not None:
        tracked.log_artifact(path, "result")
        return
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "result.json"
        file.write_text(result.to_json(), encoding="utf-8")
        tracked.log_artifact(file, "result")


def _execute(
    prepared,
    out_dir,
    progress,
    save_embeddings,
    dataset_cache,
    save_run,
    distributed,
    device,
    tracked=None,
    tuning=None,
    save_model=None,
):
    tracked = tracked or NO_RUN
    spec, configs = prepared.spec, prepared.configs
    check_precision(spec.precision, device)
    reset_peak_memory(device)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    built_before = None if dataset_cache is None else len(dataset_cache)
    dataset = build_dataset(prepared, dataset_cache)
    reused = built_before is not None and len(dataset_cache) == built_before  # built by an earlier run of this process
    phases["data_s"] = time.perf_counter() - t0

    seed_everything(spec.seed, spec.deterministic)
    layout = SlotLayout.from_catalog(dataset.catalog)
    towers = build_towers(dataset, configs["tower"]).to(device)
    context = ObjectiveContext(
        layout=layout,
        embedding_dim=configs["tower"].embedding_dim,
        num_items=dataset.catalog.num_items,
        has_queries=dataset.queries is not None,
        has_interactions=dataset.queries is not None and len(dataset.queries.interactions) > 0,
    )
    objective = prepared.objective_cls(configs["objective"], context).to(device)

    on_this_data, reduces_to = describe_on_data(objective, dataset.catalog, spec.views)
    evaluator = Evaluator(dataset, towers, objective, spec.views, device, configs["eval"])
    tcfg = configs["train"]
    # fail before training, not at the first validation, when validation cannot select
    selecting = tcfg.select_metric != "last"
    if selecting:
        evaluator.resolve_select_metric(tcfg.select_metric)

    def validate():
        return evaluator.validation_score(tcfg.select_metric, tcfg.val_gallery_size, spec.seed)

    main = distributed.is_main
    t1 = time.perf_counter()
    outcome = train(
        dataset,
        towers,
        objective,
        tcfg,
        spec.views,
        spec.seed,
        device,
        validate=validate if main and selecting else None,
        progress=(lambda step, info: progress("train", step, tcfg.steps, info)) if progress and main else None,
        distributed=distributed,
        precision=spec.precision,
        tracked=tracked,
    )
    phases["train_s"] = time.perf_counter() - t1
    if not main:
        return None, None
    t2 = time.perf_counter()
    if progress:
        progress("evaluate", 0, 1, {})
    metrics, not_applicable, eval_counts = evaluator.evaluate(seed=spec.seed)
    phases["evaluate_s"] = time.perf_counter() - t2
    if progress:
        progress("evaluate", 1, 1, {})
    phases["total_s"] = time.perf_counter() - t0

    # realised views per item (recorded: the mean actually realised under --views)
    sample = np.arange(min(dataset.catalog.num_items, 50_000))
    capped = capped_availability(dataset.catalog, sample, spec.views)
    counts = dataset.counts()
    counts.update(
        {
            "realised_views_per_item": float(capped.sum(1).float().mean()),
            "views_per_training_step_item": outcome.mean_views_per_step,
            "training_pairs_dropped_not_train": outcome.dropped_pairs,
            "training_pairs_dropped": dict(outcome.dropped_by_reason),
            "training_pairs_used": outcome.training_pairs,
            **(
                {"items_moved_to_train": dataset.config["items_moved_to_train"]}
                if "items_moved_to_train" in dataset.config
                else {}
            ),
            "evaluation": eval_counts,
        }
    )
    step_ms = np.asarray(outcome.step_ms)
    timing = {
        "phases_s": {k: round(v, 4) for k, v in phases.items()},
        "step_ms_median": float(np.median(step_ms)),
        "step_ms_p90": float(np.percentile(step_ms, 90)),
        "steps": int(len(step_ms)),
        **{k: round(v, 1) for k, v in peak_memory_mb(device).items()},
        **search_timing(device),  # the measured figure behind the search's choice of pass, if any
    }
    run_id = f"{prepared.config_hash[:10]}-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    result = RunResult(
        run_id=run_id,
        config=prepared.config,
        config_hash=prepared.config_hash,
        versions=package_versions(),
        device=describe_device(device),
        counts=counts,
        metrics=metrics,
        not_applicable=not_applicable,
        timing=timing,
        training={
            "selected_step": outcome.selected_step,
            "select_metric": outcome.select_metric if selecting else "last (no selection: final state kept)",
            "selected_val_score": outcome.selected_score,
            "history": outcome.history,
            "loss_curve": outcome.loss_curve,
            "used_queries": outcome.used_queries,
            "on_this_data": on_this_data,
            "reduces_to": reduces_to,
            "precision": spec.precision,
            **distributed.describe(tcfg.batch_size),
        },
        skipped=dict(dataset.skipped),
        notes=list(dataset.notes) + ([f"tracked: {tracked.describe()}"] if tracked.run_id else []),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        provenance={**collect_provenance(spec), **feature_cache_block(dataset, reused)},
        tuning=dict(tuning or {}),
        data=dict(prepared.data),
    )
    if save_model is not None:
        result.notes.append(
            f"model saved: {write_model(save_model, prepared, dataset, towers, objective, outcome.selected_step)}"
        )
    path = None
    if out_dir is not None:
        path = Path(out_dir) / result_filename(prepared.config, prepared.config_hash)
        if save_embeddings:
            save_run_embeddings(path.with_suffix(""), evaluator, dataset)
        if save_run:
            if evaluator.last_query_run is None:
                result.notes.append(
                    f"--save-run: no run file written ({not_applicable.get(dataset.query_task, 'no query task scored')})"
                )
            else:
                files = write_run_files(
                    path.with_suffix(""), evaluator.last_query_run, dataset, tag=f"{spec.objective}-s{spec.seed}"
                )
                result.notes.append("run files: " + ", ".join(p.name for p in files.values()))
        write_result(result, path)
    return result, path
