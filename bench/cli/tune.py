"""`ftbench tune`: equal-budget tuning of several objectives (Optuna), then seeded reruns."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    TRACKER_HELP,
    TRACKING_EXPERIMENT_HELP,
    TRACKING_URI_HELP,
    UsageError,
    check_writable,
    console,
    fail,
    open_tracker,
    run_overrides,
    split_list,
)


def tune(
    objective: list[str] = typer.Option([], "--objective", "-o", help="Objective to tune (repeatable, or comma-separated)."),
    trials: int = typer.Option(24, "--trials", help="Trials per objective that finish (completed or pruned), over all workers."),
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="Data set name."),
    views: int = typer.Option(8, "--views", help="At most this many views per item."),
    set_: list[str] = typer.Option([], "--set", help="Config override key=value (repeatable), applied to every trial."),
    steps: int | None = typer.Option(None, "--steps", help="Training steps per trial and rerun (default: train.steps)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Items per step."),
    seeds: list[str] = typer.Option(
        ["0", "1", "2"],
        "--seeds",
        help="Seeds of the reruns of the default and best configuration (repeatable, or comma-separated).",
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Shared Optuna storage: a database URL (postgresql://USER:PASSWORD@HOST/DB, "
        "sqlite:///PATH) or journal:PATH; default: the SQLite file tune.sqlite3 under --out. N workers running "
        "this same command on one storage share the budget; rerunning it resumes.",
    ),
    study: str = typer.Option("ftbench", "--study", help="Study name prefix (the objective and a config hash are appended)."),
    sampler_seed: int = typer.Option(0, "--sampler-seed", help="Seed of the TPE sampler."),
    stale_after: float = typer.Option(
        120.0, "--stale-after", help="Seconds without a heartbeat after which a worker's trial counts as failed."
    ),
    no_defaults: bool = typer.Option(
        False, "--no-defaults", help="Do not re-run the default configuration beside the tuned one."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(
        Path("runs/tune"),
        "--out",
        help="Folder for the rerun result files and the default storage (default runs/tune, git-ignored).",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder, for data sets read from disk."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    tracker: str = typer.Option("none", "--tracker", help=TRACKER_HELP + " One tracked run per rerun (trials are not tracked)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
    tracking_experiment: str = typer.Option("ftbench", "--tracking-experiment", help=TRACKING_EXPERIMENT_HELP),
) -> None:
    """Tune each objective with the same number of trials over its declared search space, then
    re-run its default and best configurations with --seeds and evaluate them on test once.

    One Optuna study per objective (TPE with a fixed seed, median pruning on the validation score
    every train.eval_every steps, validation data only). See `ftbench objectives --verbose NAME`
    for each objective's search space and docs/tuning.md for the protocol.
    """
    import optuna  # optional: tune extra
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn  # lazy: CLI start-up
    from rich.table import Table  # lazy: CLI start-up

    from ..run.claims import open_storage, redact_url  # lazy: CLI start-up
    from ..run.tune import TuneSpec, check_objectives, rerun_best, run_study  # lazy: CLI start-up
    from .progress import make_progress  # lazy: CLI start-up

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress display; no URLs in logs
    try:
        objective, seed_list = split_list(objective, "--objective"), split_list(seeds, "--seeds", int)
    except UsageError as exc:
        fail(str(exc))
    spec = TuneSpec(
        objectives=list(objective),
        trials=trials,
        dataset=dataset,
        views=views,
        sets=run_overrides(set_, data_dir, False),
        steps=steps,
        batch_size=batch_size,
        device=device,
        seeds=list(seed_list),
        storage=storage,
        study=study,
        sampler_seed=sampler_seed,
        stale_after=stale_after,
        with_defaults=not no_defaults,
    )
    try:
        check_objectives(spec)
        check_writable(out)
        store = open_storage(storage, out)
    except (ValueError, KeyError, UsageError) as exc:
        fail(redact_url(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)))
    shown = redact_url(storage) if storage else f"sqlite under {out}"
    console.print(
        f"[bold]ftbench tune[/] {', '.join(spec.objectives)}: {trials} trials each on {dataset} "
        f"(views {views}), reruns with seeds {' '.join(map(str, spec.seeds))}; storage {shown}; out {out}",
        highlight=False,
    )
    tracking = open_tracker(tracker, tracking_uri, out, tracking_experiment)
    states = {}
    reruns = []
    dataset_cache: dict = {}  # one data set built per process, shared by every trial and rerun
    failed = False
    with make_progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as bar:
        tasks = {o: bar.add_task(o, total=trials, info="") for o in spec.objectives}
        for name in spec.objectives:

            def on_trial(state, name=name):
                best = f"best {state.best_value:.4f}" if state.best_value is not None else ""
                bar.update(
                    tasks[name],
                    completed=state.finished,
                    info=f"{state.completed} done, {state.pruned} pruned, {state.failed} failed, {state.running} running {best}",
                )

            try:
                states[name] = run_study(spec, name, store, on_trial=on_trial, dataset_cache=dataset_cache)
                bar.update(tasks[name], description=f"{name} reruns")
                reruns += rerun_best(spec, states[name], store, out, dataset_cache=dataset_cache, tracker=tracking)
            except RuntimeError as exc:
                failed = True
                console.print(f"[red]{name}:[/] {redact_url(str(exc))}", highlight=False)
    table = Table(title="ftbench tune: best configuration per objective (validation score)")
    for col in ("objective", "finished", "pruned", "failed", "best val", "metric", "best parameters"):
        table.add_column(col, no_wrap=col not in ("best parameters",))
    for name, s in states.items():
        params = ", ".join(
            f"{k.split('.', 1)[1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
            for k, v in sorted(s.best_params.items())
        )
        table.add_row(
            name,
            f"{s.finished}/{s.budget_trials}",
            str(s.pruned),
            str(s.failed),
            f"{s.best_value:.4f}" if s.best_value is not None else "—",
            s.select_metric,
            params,
        )
    console.print(table)
    counts: dict[str, int] = {}
    for r in reruns:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "failed":
            failed = True
            console.print(
                f"  rerun failed: {r.objective} {r.role} seed {r.seed}: {redact_url(r.detail)}", highlight=False, markup=False
            )
    console.print(
        "reruns: "
        + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none")
        + f"; results in {out}; `ftbench report {out}` shows default vs tuned",
        highlight=False,
    )
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command()(tune)
