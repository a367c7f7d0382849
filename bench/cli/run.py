"""`ftbench run`: train one objective on one data set and evaluate it; `ftbench rerun`: run a
result file's recorded config again and compare its metrics with the recorded ones."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..device import check_precision, resolve_device
from ..features.cache import report_progress
from ..run.identity import describe_other_data, other_data_results
from ..run.results import result_filename
from .common import (
    TRACKER_HELP,
    TRACKING_EXPERIMENT_HELP,
    TRACKING_URI_HELP,
    RichFeatureProgress,
    UsageError,
    check_writable,
    console,
    fail,
    metrics_table,
    open_tracker,
    run_overrides,
    use_cache_dir,
)


def _print_verbose(prepared) -> None:
    from ..run.provenance import command_line, git_state  # lazy: CLI start-up

    git = git_state()
    commit = (git["commit"][:12] + (" (uncommitted changes)" if git["dirty"] else "")) if git["commit"] else git["git_note"]
    console.print(f"source: {commit}; command: {command_line()}", highlight=False, markup=False)
    console.print(json.dumps(prepared.config, indent=2), highlight=False, markup=False)


def execute_with_progress(
    prepared,
    out: Path,
    quiet: bool,
    save_embeddings: bool = False,
    save_run: bool = False,
    tracker=None,
    save_model: Path | None = None,
):
    """Run `prepared` under one rich progress display (feature encoding, training, evaluation);
    one-line errors; Ctrl-C says what was kept. Returns (result, path); (None, None) on ranks > 0."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # lazy: CLI start-up

    from ..errors import input_errors  # lazy: CLI start-up
    from ..run.experiment import execute  # lazy: CLI start-up
    from ..train.distributed import shutdown  # lazy: CLI start-up
    from ..train.loop import NonFiniteError  # lazy: CLI start-up
    from .progress import make_progress  # lazy: CLI start-up

    with make_progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as bar:
        tasks: dict = {}

        def progress(phase: str, step: int, total: int, info: dict) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, info="")
            text = "  ".join(f"{k} {v:.4f}" for k, v in info.items())
            bar.update(tasks[phase], completed=step, info=text)

        try:
            with report_progress(RichFeatureProgress(bar)):
                return execute(
                    prepared,
                    out,
                    progress=progress,
                    save_embeddings=save_embeddings,
                    save_run=save_run,
                    tracker=tracker,
                    save_model=save_model,
                )
        except KeyboardInterrupt:
            bar.stop()
            console.print(
                f"\ninterrupted: no result was written to {out} (features encoded so far stay in the "
                "feature cache); the same command starts the run again.",
                highlight=False,
            )
            raise typer.Exit(code=130) from None
        except NonFiniteError as exc:
            fail(f"{exc}; no result was written")
        except input_errors(UsageError) as exc:
            fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
        finally:
            shutdown()


def print_result(result, path) -> None:
    c = result.config
    console.print(metrics_table(result.metrics, f"{c['objective']} @ views={c['views']}, seed={c['seed']} (test split)"))
    if result.not_applicable:
        whole = sorted(k for k in result.not_applicable if "/" not in k)
        cutoffs = sorted({k.split("/", 1)[1] for k in result.not_applicable if "/" in k}, key=lambda m: (len(m), m))
        if whole:
            console.print(f"not applicable: {', '.join(whole)} (reasons in the result file)", highlight=False)
        if cutoffs:
            console.print(f"—: {', '.join(cutoffs)} at or above the gallery size, not reported", highlight=False)
    for line in what_happened(result):
        console.print(line, highlight=False, markup=False)
    t = result.timing
    console.print(
        f"train {t['phases_s']['train_s']:.1f}s, evaluate {t['phases_s']['evaluate_s']:.1f}s, "
        f"median step {t['step_ms_median']:.1f} ms, selected step {result.training['selected_step']} "
        f"({result.training['select_metric']} on val)",
        highlight=False,
    )
    console.print(f"result: {path}", highlight=False)


def what_happened(result) -> list[str]:
    """The lines a run prints about what it did with the data: records the loader skipped, training
    pairs left out and why, items the catalog moved to train, what the objective amounts to on this
    data (`ftbench.run.reductions`), and the feature cache used."""
    lines = []
    counts, training = result.counts, result.training
    if result.skipped:
        lines.append("skipped by the loader: " + ", ".join(f"{k}={v:,}" for k, v in sorted(result.skipped.items())))
    dropped = counts.get("training_pairs_dropped") or {}
    if dropped.get("query_not_train") or dropped.get("item_not_train"):
        used = counts.get("training_pairs_used", 0)
        parts = []
        if dropped.get("item_not_train"):
            parts.append(
                f"{dropped['item_not_train']:,} of train queries name a val/test item (kept out of training "
                "so that the cross-view val/test items stay unseen)"
            )
        if dropped.get("query_not_train"):
            parts.append(f"{dropped['query_not_train']:,} belong to val/test queries (never trained on)")
        lines.append(
            f"training pairs: {used:,} used; not used: "
            + "; ".join(parts)
            + ("" if training.get("used_queries", True) else "; no pair left: trained on the train items alone")
        )
    moved = counts.get("items_moved_to_train") or {}
    if sum(moved.values()):
        lines.append(
            f"item split: {sum(moved.values()):,} items named by train queries' pairs moved to train "
            f"({moved.get('val', 0):,} from val, {moved.get('test', 0):,} from test)"
        )
    lines.extend(training.get("on_this_data") or [])
    cache = (result.provenance or {}).get("feature_cache")
    if cache:
        where = cache["folder"] if cache.get("enabled") else "cache off"
        lines.append(
            "features: data set reused from an earlier run of this process"
            if cache.get("data_set_reused_in_process")
            else f"features: {cache['encoded']:,} encoded, {cache['from_cache']:,} read from the cache ({where})"
        )
    return lines


def _say_if_data_changed(prepared, out: Path) -> None:
    """One line when --out holds this config's result on other data: this run gets its own file."""
    found = other_data_results(out, prepared.config, prepared.data)
    if found:
        console.print(
            f"{describe_other_data(found, prepared.data['fingerprint'])}; this run writes "
            f"{result_filename(prepared.config, prepared.config_hash)}",
            highlight=False,
            markup=False,
        )


def _prepare_checked(spec, out: Path):
    """prepare() and the checks that need no work: one-line errors."""
    from ..run.experiment import prepare  # lazy: CLI start-up
    from ..train.distributed import from_environment  # lazy: CLI start-up

    try:
        prepared = prepare(spec)
        main = from_environment().is_main
        if main:  # only rank 0 writes
            check_writable(out)
        check_precision(spec.precision, resolve_device(spec.device))
    except (ValueError, KeyError, OSError, UsageError) as exc:  # OSError: a data file missing or unreadable
        fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
    return prepared, main


def run(
    objective: str = typer.Option("factorized", "--objective", "-o", help="Objective name (see `ftbench objectives`)."),
    views: int = typer.Option(8, "--views", help="At most this many views per item (primary first)."),
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="Data set name (see `ftbench datasets`)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, batching and view sampling (the file name's s<seed>)."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps (default: train.steps)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Items per step (default: train.batch_size)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK per process)."),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32, or bf16: towers under bfloat16 autocast (objectives stay float32)."
    ),
    out: Path = typer.Option(
        Path("runs"),
        "--out",
        help="Folder for the result file (default runs/, git-ignored; the committed results/ only when named).",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder, for data sets read from disk."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Feature cache folder (default: $FTBENCH_CACHE_DIR or ~/.cache/ftbench/features)."
    ),
    config_file: Path | None = typer.Option(
        None,
        "--config",
        help="TOML file of config fields, the same keys as --set (bare or in [objective], [dataset], [train], [tower], [eval] tables); --set wins.",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config field: key=value or section.key=value (repeatable). The run's seed is --seed; a data set's own seed is dataset.seed.",
    ),
    save_embeddings: bool = typer.Option(False, "--save-embeddings", help="Also write item and test-query embeddings."),
    save_run: bool = typer.Option(
        False,
        "--save-run",
        help="Also write the test queries' top-500 as a TREC run file (.run), their qrels (.qrels) and every "
        "metric per query (.per_query.tsv) beside the result file.",
    ),
    save_model: Path | None = typer.Option(
        None,
        "--save-model",
        metavar="DIR",
        help="Also write the trained towers and the objective's serving parameters to DIR (model.safetensors + "
        "model.json): `ftbench encode --model DIR` and ftbench.load_model(DIR) embed any data set of this layout.",
    ),
    deterministic: bool = typer.Option(False, "--deterministic", help="Forbid non-deterministic kernels (CUDA)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the source commit and the resolved config."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    tracker: str = typer.Option("none", "--tracker", help=TRACKER_HELP),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
    tracking_experiment: str = typer.Option("ftbench", "--tracking-experiment", help=TRACKING_EXPERIMENT_HELP),
) -> None:
    """Train one objective and evaluate it; write one result JSON under --out.

    Under torchrun (`torchrun --nproc_per_node N -m ftbench run ...`) the N processes share each
    global batch of --batch-size items; rank 0 evaluates, prints and writes the result.
    """
    from ..run.experiment import RunSpec  # lazy: CLI start-up

    use_cache_dir(cache_dir)
    try:
        sets = run_overrides(set_, data_dir, deterministic, config_file)
    except UsageError as exc:
        fail(str(exc))
    if save_model is not None:
        from ..model.saved import check_model_folder  # lazy: CLI start-up

        try:
            check_model_folder(save_model)
        except ValueError as exc:
            fail(str(exc))
    prepared, main = _prepare_checked(
        RunSpec(objective, dataset, views, seed, device, sets, steps, batch_size, deterministic, precision), out
    )
    if not main:
        quiet = True  # one progress bar and one report: rank 0's
    else:
        console.print(
            f"[bold]ftbench run[/] objective={objective} views={views} dataset={dataset} seed={seed} "
            f"config={prepared.config_hash[:10]}"
            + (f" data={prepared.data['fingerprint'][:12]} ({prepared.data['files']} files)" if prepared.data else ""),
            highlight=False,
        )
        if verbose:
            _print_verbose(prepared)
        _say_if_data_changed(prepared, out)
    tracking = open_tracker(tracker, tracking_uri, out, tracking_experiment, main)
    result, path = execute_with_progress(prepared, out, quiet, save_embeddings, save_run, tracking, save_model if main else None)
    if result is None:  # a rank other than 0: training done, rank 0 reports
        return
    print_result(result, path)
    if save_model is not None:
        console.print(f"model: {save_model}", highlight=False, markup=False)


def rerun(
    result_file: Path = typer.Argument(..., help="A result file written by `ftbench run` or `ftbench sweep`."),
    out: Path = typer.Option(Path("runs/rerun"), "--out", help="Folder for the new result file (never the original's file)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda (default: the recorded --device)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache folder."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the source commit and the resolved config."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run a result file's recorded config again (every config field, views, seed, precision) and
    compare the new metrics with the recorded ones, exactly; exit 1 if any differs. A legacy metric
    name (schema 1's `mrr`) is compared under its current name, and said so."""
    from ..run.provenance import spec_from_result  # lazy: CLI start-up
    from ..run.verify import compare_metrics, legacy_name_lines  # lazy: CLI start-up

    use_cache_dir(cache_dir)
    try:
        payload = json.loads(result_file.read_text(encoding="utf-8"))
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        spec = spec_from_result(payload, device)
    except FileNotFoundError:
        fail(f"RESULT_FILE {str(result_file)!r}: no such file")
    except IsADirectoryError:
        fail(f"RESULT_FILE {str(result_file)!r} is a folder, expected a result file")
    except (ValueError, UnicodeDecodeError) as exc:
        fail(f"RESULT_FILE {result_file}: not a result file ({exc})")
    if out.resolve() == result_file.parent.resolve():
        fail(f"--out {str(out)!r} is the original's folder: the rerun would replace {result_file.name}; pick another")
    prepared, main = _prepare_checked(spec, out)
    recorded = payload.get("provenance", {}).get("commit")
    if main:
        console.print(
            f"[bold]ftbench rerun[/] {result_file} (recorded commit {recorded[:12] if recorded else 'unknown'}; "
            f"config {prepared.config_hash[:10]}, recorded {str(payload.get('config_hash', '?'))[:10]})",
            highlight=False,
        )
        if verbose:
            _print_verbose(prepared)
    result, path = execute_with_progress(prepared, out, quiet or not main)
    if result is None:
        return
    print_result(result, path)
    comparison = compare_metrics(payload, json.loads(path.read_text(encoding="utf-8"))["metrics"])
    for line in legacy_name_lines(comparison):
        console.print(line, highlight=False, markup=False)
    if comparison.differences:
        console.print(f"[red]metrics differ from the recorded ones[/] ({len(comparison.differences)}):", highlight=False)
        for line in comparison.differences[:20]:
            console.print(f"  {line}", highlight=False, markup=False)
        raise typer.Exit(code=1)
    console.print(f"metrics equal to the recorded ones, to the last digit ({comparison.compared} values).", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(rerun)
