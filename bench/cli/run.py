"""`ftbench run`: train one objective on one data set and evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import UsageError, check_writable, console, fail, metrics_table, run_overrides


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
    save_run: bool = typer.Option(
        False, "--save-run",
        help="Also write the test queries' top-500 as a TREC run file (.run), their qrels (.qrels) and every "
        "metric per query (.per_query.tsv) beside the result file.",
    ),
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
            result, path = execute(prepared, out, progress=progress, save_embeddings=save_embeddings, save_run=save_run)
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


def register(app: typer.Typer) -> None:
    app.command()(run)
