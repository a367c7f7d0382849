"""The Python API: what a notebook calls instead of `ftbench.run.experiment.prepare(RunSpec(...))`
with `--set`-style strings.

    import ftbench
    out = ftbench.run(objective="clip", views=4, steps=300, overrides={"train.lr": 1e-3})
    out.metrics                          # DataFrame: task, metric, value
    ftbench.load_results("results")      # every result file's rows (the export's long table)
    model = ftbench.load_model("model")  # after ftbench.run(..., save_model="model")

`ftbench.run`, `ftbench.objectives` and `ftbench.datasets` are subpackages (the run stage and the
two plugin folders) that can also be called: calling one calls `run`, `objectives` or `datasets`
of this module (`ftbench._callable`). This module imports nothing heavy itself: torch and the
plugins load on the first call.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and the run modules load on first use
    import pandas as pd

    from .model.saved import SavedModel
    from .run.results import RunResult


@dataclass
class RunOutput:
    """What `run` returns.

    Attributes
    ----------
    metrics : pandas.DataFrame
        One row per test metric: columns ``task``, ``metric``, ``value`` (the result file's
        ``metrics``, count rows such as ``queries`` included).
    config : dict
        The run's resolved config (as in the result file).
    config_hash : str
        The run's identity (config and data fingerprint).
    path : pathlib.Path or None
        The result file, when `out` was given.
    model_dir : pathlib.Path or None
        The saved model, when `save_model` was given (`load_model` reads it).
    result : RunResult
        The whole result (timing, training history, counts, provenance).
    """

    metrics: pd.DataFrame
    config: dict[str, Any]
    config_hash: str
    path: Path | None
    model_dir: Path | None
    result: RunResult = field(repr=False)


@dataclass
class SweepOutput:
    """What `sweep` returns.

    Attributes
    ----------
    results : pandas.DataFrame
        The long table (`load_results`) of the grid's result files, run now or found in `out`.
    ran, skipped : list of pathlib.Path
        Result files written by this call, and those already in `out` (not run again).
    failed : list of (str, str)
        (cell, message) of every cell that raised.
    """

    results: pd.DataFrame
    ran: list[Path]
    skipped: list[Path]
    failed: list[tuple[str, str]]


def override_strings(overrides: Mapping[str, Any] | None) -> list[str]:
    """{"train.steps": 300, "primary_weight": 0.7} -> the `--set` strings `prepare` reads.

    Values are written as Python literals (`repr`), which `--set` parses back with
    `ast.literal_eval`; paths become strings."""
    out = []
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ValueError(f"overrides: key {key!r} is not a config field name (e.g. 'train.steps' or 'primary_weight')")
        if isinstance(value, Path):
            value = str(value)
        out.append(f"{key}={value!r}")
    return out


def metrics_frame(metrics: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """A result's `metrics` ({task: {metric: value}}) as rows (task, metric, value)."""
    import pandas as pd  # heavy: pandas

    rows = [
        {"task": task, "metric": metric, "value": float(value)}
        for task, values in metrics.items()
        for metric, value in values.items()
    ]
    return pd.DataFrame(rows, columns=["task", "metric", "value"])


def run(
    objective: str = "factorized",
    views: int = 8,
    dataset: str = "synthetic",
    data_dir: Path | str | None = None,
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    out: Path | str | None = None,
    save_model: Path | str | None = None,
    save_embeddings: bool = False,
) -> RunOutput:
    """Train one objective on one data set and evaluate it, as `ftbench run` does.

    Parameters
    ----------
    objective : str
        Objective name (`objectives()`).
    views : int
        At most this many views per item (primary first).
    dataset : str
        Data set name (`datasets()`).
    data_dir : path, optional
        Data folder, for data sets read from disk.
    seed : int
        Seed of initialisation, batching and view sampling.
    steps, batch_size : int, optional
        Training steps and items per step (default: the train config's).
    overrides : mapping, optional
        Config fields, as `--set` takes them: ``{"train.lr": 1e-3, "primary_weight": 0.7}``.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    precision : str
        ``fp32``, or ``bf16`` (towers under bfloat16 autocast).
    out : path, optional
        Folder for the result file; None writes none.
    save_model : path, optional
        Folder for the trained towers and the objective's serving parameters (`load_model`).
    save_embeddings : bool
        With `out`: also write item and test-query embeddings beside the result file.

    Returns
    -------
    RunOutput
        Metrics as a DataFrame, the config, the result file's path.

    Raises
    ------
    ValueError, KeyError
        A bad option value or an unknown name or config field (the message names it).
    """
    from .device import check_precision, resolve_device  # lazy: keeps `import ftbench` light; torch loads on the first call
    from .run.experiment import RunSpec, execute, prepare  # lazy: keeps `import ftbench` light; torch loads on the first call

    if save_embeddings and out is None:
        raise ValueError("save_embeddings=True needs out= (the embeddings are written beside the result file)")
    sets = override_strings(overrides)
    if data_dir is not None:
        sets.append(f"dataset.data_dir={str(data_dir)!r}")
    spec = RunSpec(
        objective=objective,
        dataset=dataset,
        views=views,
        seed=seed,
        device=device,
        sets=sets,
        steps=steps,
        batch_size=batch_size,
        precision=precision,
    )
    prepared = prepare(spec)
    check_precision(precision, resolve_device(device))
    if save_model is not None:
        from .model.saved import check_model_folder  # lazy: keeps `import ftbench` light; torch loads on the first call

        check_model_folder(save_model)
    result, path = execute(
        prepared,
        None if out is None else Path(out),
        save_embeddings=save_embeddings,
        save_model=None if save_model is None else Path(save_model),
    )
    if result is None:  # a rank other than 0 of a multi-process run
        raise RuntimeError("ftbench.run: this process is not rank 0 of a multi-process run; rank 0 holds the result")
    return RunOutput(
        metrics=metrics_frame(result.metrics),
        config=result.config,
        config_hash=result.config_hash,
        path=path,
        model_dir=None if save_model is None else Path(save_model),
        result=result,
    )


def sweep(
    objectives: Sequence[str],
    views: Sequence[int],
    seeds: Sequence[int] = (0,),
    dataset: str = "synthetic",
    data_dir: Path | str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    out: Path | str = "runs",
    overwrite: bool = False,
) -> SweepOutput:
    """Run every objective x views x seed cell, one result file each under `out`, as `ftbench
    sweep` does: cells whose result is already there are not run again (unless `overwrite`).

    Parameters
    ----------
    objectives, views, seeds : sequences
        The grid.
    dataset, data_dir, steps, batch_size, overrides, device
        As in `run`, shared by every cell.
    out : path
        Folder for the result files.
    overwrite : bool
        Run cells whose result exists again.

    Returns
    -------
    SweepOutput
        The grid's rows (`load_results` of its files), what ran, was skipped or failed.

    Raises
    ------
    ValueError
        A cell fails validation (every invalid cell is named); nothing has run then.
    """
    from .run.sweep import SweepSpec, prepare_grid, run_sweep  # lazy: keeps `import ftbench` light; torch loads on the first call

    sets = override_strings(overrides)
    if data_dir is not None:
        sets.append(f"dataset.data_dir={str(data_dir)!r}")
    spec = SweepSpec(
        objectives=list(objectives),
        views=[int(v) for v in views],
        seeds=[int(s) for s in seeds],
        dataset=dataset,
        sets=sets,
        steps=steps,
        batch_size=batch_size,
        device=device,
    )
    outcome = run_sweep(prepare_grid(spec), Path(out), overwrite=overwrite)
    frame = load_results(out)
    files = {str(p) for p in [*outcome.ran, *outcome.skipped]}
    return SweepOutput(
        results=frame[frame["file"].isin(files)].reset_index(drop=True),
        ran=list(outcome.ran),
        skipped=list(outcome.skipped),
        failed=list(outcome.failed),
    )


def load_results(folder: Path | str) -> pd.DataFrame:
    """Every result file under `folder` as one long table (what `ftbench export` writes).

    One row per run x task x metric: ``run_id``, ``file``, ``config_hash``, ``created``,
    ``dataset``, ``objective``, ``views``, ``seed``, ``precision``, every config field flattened
    with dots (``train_config.lr``, ...), then ``task``, ``metric``, ``value``.
    Unreadable files are skipped with a warning naming each.

    Raises
    ------
    FileNotFoundError
        `folder` does not exist.
    """
    from .report.export import export_frame  # lazy: keeps `import ftbench` light; torch loads on the first call

    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"results folder {str(folder)!r}: no such folder")
    frame, unreadable = export_frame(folder)
    for path, reason in unreadable:
        warnings.warn(f"skipped unreadable result file {path}: {reason}", stacklevel=2)
    return frame


def objectives() -> dict[str, str]:
    """The registered objectives: {name: one-line summary}, in registration order."""
    from .objectives import OBJECTIVES  # lazy: keeps `import ftbench` light; torch loads on the first call

    return {name: OBJECTIVES.get(name).summary for name in OBJECTIVES}


def datasets() -> dict[str, str]:
    """The registered data sets: {name: one-line summary}, in registration order."""
    from .datasets import DATASETS  # lazy: keeps `import ftbench` light; torch loads on the first call

    return {name: DATASETS.get(name).summary for name in DATASETS}


def load_model(folder: Path | str, device: str = "cpu") -> SavedModel:
    """Read a model saved by `run(save_model=...)` / `ftbench run --save-model`.

    Parameters
    ----------
    folder : path
        The saved model's folder (model.safetensors + model.json).
    device : str
        Where to put the towers: ``cpu`` (default), ``cuda`` or ``auto``.

    Returns
    -------
    SavedModel
        With ``build_dataset(...)``, ``embed_items(dataset, items=None)`` and
        ``embed_queries(dataset, queries="test")`` (float32 NumPy arrays).
    """
    from .model.saved import load_model as _load  # lazy: keeps `import ftbench` light; torch loads on the first call

    return _load(folder, device)
