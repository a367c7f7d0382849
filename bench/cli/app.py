"""The `ftbench` command line (Typer + rich)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import tempfile
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import __version__

app = typer.Typer(
    name="ftbench",
    help="Benchmark multi-view alignment objectives: train on shared towers, report Recall@K and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class UsageError(Exception):
    """An error in the user's input, shown as one clear message (no traceback)."""


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"ftbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
) -> None:
    """ftbench: which alignment objective for multi-view product embeddings, and at what cost."""


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ftbench-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {str(out)!r} is not a writable folder ({exc.strerror or exc})") from None


def run_overrides(set_: List[str], data_dir: Optional[Path], deterministic: bool) -> List[str]:
    """The `--set` list of `run` and `sweep`, with `--data-dir` as `dataset.data_dir`; with
    `--deterministic`, cuBLAS's workspace setting before a backbone may create the first cuBLAS
    handle (data encoding happens before training)."""
    sets = list(set_)
    if data_dir is not None:
        sets.append(f"dataset.data_dir={str(data_dir)!r}")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return sets


def metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title, show_lines=False, caption="R@K = recall@K", caption_justify="left")
    cols = ["recall@1", "recall@10", "recall@100", "recall@500", "ndcg@10", "mrr"]
    table.add_column("task", no_wrap=True)
    for c in cols:
        table.add_column(c.replace("recall@", "R@"), justify="right")
    table.add_column("queries", justify="right")
    for task, values in metrics.items():
        row = [task] + [f"{values[c]:.3f}" if c in values else "—" for c in cols]
        row.append(str(int(values.get("queries", 0))) if "queries" in values else "—")
        table.add_row(*row)
    return table


@app.command()
def run(
    objective: str = typer.Option("factorized", "--objective", "-o", help="Objective name (see `ftbench objectives`)."),
    views: int = typer.Option(8, "--views", "-v", help="At most this many views per item (primary first)."),
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="Data set name (see `ftbench datasets`)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batching and view sampling."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: train.steps)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Items per step (default: train.batch_size)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK per process)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or bf16: towers under bfloat16 autocast (objectives stay float32)."),
    out: Path = typer.Option(Path("results"), "--out", help="Folder for the result file."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data folder, for data sets read from disk."),
    set_: List[str] = typer.Option([], "--set", help="Override a config field: key=value or section.key=value (repeatable)."),
    save_embeddings: bool = typer.Option(False, "--save-embeddings", help="Also write item and test-query embeddings."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Forbid non-deterministic kernels (CUDA)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train one objective and evaluate it; write one result JSON under --out.

    Under torchrun (`torchrun --nproc_per_node N -m ftbench run ...`) the N processes share each
    global batch of --batch-size items; rank 0 evaluates, prints and writes the result.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..train.distributed import from_environment, shutdown
    from ..errors import input_errors
    from ..run.experiment import RunSpec, execute, prepare
    from ..train.loop import NonFiniteError

    sets = run_overrides(set_, data_dir, deterministic)
    try:
        prepared = prepare(
            RunSpec(objective, dataset, views, seed, device, sets, steps, batch_size, deterministic, precision)
        )
        main = from_environment().is_main
        if main:  # only rank 0 writes
            check_writable(out)
        from ..device import check_precision, resolve_device

        check_precision(precision, resolve_device(device))
    except (ValueError, KeyError, UsageError) as exc:
        fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
    if not main:
        quiet = True  # one progress bar and one report: rank 0's
    else:
        console.print(
            f"[bold]ftbench run[/] objective={objective} views={views} dataset={dataset} seed={seed} "
            f"config={prepared.config_hash[:10]}",
            highlight=False,
        )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=quiet, transient=False,
    ) as bar:
        tasks: dict = {}

        def progress(phase: str, step: int, total: int, info: dict) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, info="")
            text = "  ".join(f"{k} {v:.4f}" for k, v in info.items())
            bar.update(tasks[phase], completed=step, info=text)

        try:
            result, path = execute(prepared, out, progress=progress, save_embeddings=save_embeddings)
        except NonFiniteError as exc:
            fail(f"{exc}; no result was written")
        except input_errors(UsageError) as exc:
            fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
        finally:
            shutdown()
    if result is None:  # a rank other than 0: training done, rank 0 reports
        return
    console.print(metrics_table(result.metrics, f"{objective} @ views={views}, seed={seed} (test split)"))
    if result.not_applicable:
        whole = sorted(k for k in result.not_applicable if "/" not in k)
        cutoffs = sorted({k.split("/", 1)[1] for k in result.not_applicable if "/" in k}, key=lambda m: (len(m), m))
        if whole:
            console.print(f"not applicable: {', '.join(whole)} (reasons in the result file)", highlight=False)
        if cutoffs:
            console.print(f"—: {', '.join(cutoffs)} at or above the gallery size, not reported", highlight=False)
    t = result.timing
    console.print(
        f"train {t['phases_s']['train_s']:.1f}s, evaluate {t['phases_s']['evaluate_s']:.1f}s, "
        f"median step {t['step_ms_median']:.1f} ms, selected step {result.training['selected_step']} "
        f"({result.training['select_metric']} on val)",
        highlight=False,
    )
    console.print(f"result: {path}", highlight=False)


def _describe_plugin(kind: str, registry, name: str) -> None:
    from ..config import describe

    entry = registry.get(name)
    console.print(f"[bold]{name}[/]: {entry.summary}", highlight=False)
    doc = (entry.__doc__ or "").strip()
    if doc:
        console.print(doc, highlight=False, markup=False)
    table = Table(title=f"{kind} config fields (--set {'' if kind == 'objective' else 'dataset.'}NAME=VALUE)")
    for col in ("name", "default", "meaning", "source"):
        table.add_column(col)
    for row in describe(entry.Config):
        table.add_row(row["name"], repr(row["default"]), row["help"], row["source"])
    console.print(table)


@app.command()
def objectives(verbose: Optional[str] = typer.Option(None, "--verbose", help="Show the equations and config of NAME.")) -> None:
    """List the registered objectives, one line each."""
    from ..objectives import OBJECTIVES
    from ..registry import UnknownNameError

    if verbose:
        try:
            _describe_plugin("objective", OBJECTIVES, verbose)
        except UnknownNameError as exc:
            fail(str(exc))
        return
    for name in OBJECTIVES:
        console.print(f"{name:<12} {OBJECTIVES.get(name).summary}", highlight=False)


@app.command()
def datasets(verbose: Optional[str] = typer.Option(None, "--verbose", help="Show the description and config of NAME.")) -> None:
    """List the registered data sets, one line each."""
    from ..datasets import DATASETS
    from ..registry import UnknownNameError

    if verbose:
        try:
            _describe_plugin("dataset", DATASETS, verbose)
        except UnknownNameError as exc:
            fail(str(exc))
        return
    for name in DATASETS:
        console.print(f"{name:<16} {DATASETS.get(name).summary}", highlight=False)


def _register_command_modules() -> None:
    from .. import cli

    for info in sorted(pkgutil.iter_modules(cli.__path__), key=lambda i: i.name):
        if info.name == "app":
            continue
        module = importlib.import_module(f"{cli.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_command_modules()


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
