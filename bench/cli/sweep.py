"""`ftbench sweep`: the grid objectives x views x seeds, one result file per run."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import config_hash
from ..device import resolve_device
from ..features.cache import report_progress
from ..run.claims import redact_url
from ..run.identity import other_data_results
from ..run.results import load_result
from ..run.sweep import (
    PRESETS,
    GridError,
    SweepOutcome,
    SweepSpec,
    cell_label,
    existing_result,
    parse_shard,
    prepare_grid,
    run_sweep,
    shard_grid,
    spec_from_preset,
)
from ..schema import QUERY_TASK
from .common import (
    TRACKER_HELP,
    TRACKING_EXPERIMENT_HELP,
    TRACKING_URI_HELP,
    RichFeatureProgress,
    UsageError,
    check_writable,
    fail,
    open_tracker,
    run_overrides,
    split_list,
    use_cache_dir,
)


def _preset_help() -> str:
    lines = []
    for name, p in PRESETS.items():
        objectives = "all registered" if p["objectives"] is None else ", ".join(p["objectives"])
        extras = [f"--steps {p['steps']}"] if p["steps"] else []
        extras += [f"--batch-size {p['batch_size']}"] if p["batch_size"] else []
        extras += [f"--set {s}" for s in p["sets"]]
        lines.append(
            f"'{name}': objectives {objectives}; views "
            f"{'per cell of the design' if p['views'] is None else ', '.join(map(str, p['views']))}; seeds "
            f"{', '.join(map(str, p['seeds']))}; dataset {p['dataset']}"
            + (f"; {' '.join(extras)}" if extras else "")
            + f" ({p['description']})."
        )
    return " ".join(lines)


def results_table(paths: list[Path], title: str):
    """One row per result file: the cell and its query-task headline metrics (test split)."""
    from rich.table import Table  # lazy: CLI start-up

    columns = ("recall@10", "ndcg@10", "recall@100", "recall@500")
    table = Table(
        title=title, caption="test split; — = not reported (e.g. K at or above the gallery size)", caption_justify="left"
    )
    for name in ("objective", "V", "seed", *columns, "step ms"):
        table.add_column(name, justify="left" if name == "objective" else "right")
    rows = []
    for path in paths:
        try:
            result = load_result(path)
        except (OSError, ValueError):
            continue
        query = result.metrics.get(QUERY_TASK) or next(
            (v for k, v in result.metrics.items() if "->item" in k and not k.startswith(("aux", "image", "text"))), {}
        )
        c = result.config
        rows.append(
            (
                c["objective"],
                int(c["views"]),
                int(c["seed"]),
                [f"{query[m]:.3f}" if m in query else "—" for m in columns],
                f"{result.timing.get('step_ms_median', float('nan')):.1f}",
            )
        )
    for objective, v, seed, values, step in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        table.add_row(objective, str(v), str(seed), *values, step)
    return table


def run_sweep_with_progress(
    spec: SweepSpec,
    out: Path,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    quiet: bool = False,
    console=None,
    claims=None,
    tracker=None,
) -> SweepOutcome:
    """Validate the whole grid, then run this shard with a progress bar; print a summary.

    Raises `ftbench.run.sweep.GridError` (invalid cells) or `ftbench.cli.app.UsageError` (unwritable
    --out) before any run starts.
    """
    from rich.console import Console  # lazy: CLI start-up
    from rich.progress import (  # lazy: CLI start-up
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .progress import make_progress  # lazy: CLI start-up

    console = console or Console(soft_wrap=True)
    prepared = prepare_grid(spec)
    mine = shard_grid(prepared, shard)
    check_writable(out)
    done_before = sum(1 for p in mine if existing_result(p, out)[1] is not None)
    shard_text = f", shard {shard[0]}/{shard[1]}: {len(mine)} runs" if shard else ""
    console.print(
        f"[bold]ftbench sweep[/] {len(prepared)} runs ({len(spec.objectives)} objectives x "
        + (f"{len(spec.points)} design cells" if spec.points is not None else f"{len(spec.views)} views")
        + f" x {len(spec.seeds)} seeds) on {spec.dataset}{shard_text}; "
        + (
            f"{done_before} already have a result ({'re-running them: --overwrite' if overwrite else 'skipped'}); "
            if done_before
            else ""
        )
        + f"out {out}",
        highlight=False,
    )
    changed = [
        (p, found)
        for p in mine
        if existing_result(p, out)[1] is None
        for found in [other_data_results(out, p.config, p.data)]
        if found
    ]
    if changed:
        cells = ", ".join(cell_label(p) for p, _ in changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        console.print(
            f"the data changed: {len(changed)} cell(s) ({cells}) have a result in {out} on other data "
            f"(fingerprint now {changed[0][0].data['fingerprint'][:12]}); they run again, the earlier "
            "files stay",
            highlight=False,
            markup=False,
        )
    with make_progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
        transient=False,
    ) as bar:
        grid_task = bar.add_task("sweep", total=len(mine), info="")
        finished: dict[str, int] = {}
        kept: list[Path] = []
        run_task = bar.add_task("run", total=1, info="", visible=False)

        def on_start(index, total, prepared_run, action):
            c = prepared_run.config
            bar.update(grid_task, description=f"sweep: {c['objective']} V={c['views']} seed={c['seed']}")
            if action == "run":
                bar.reset(run_task, total=prepared_run.configs["train"].steps, visible=True, description="train", info="")

        def on_done(index, total, prepared_run, status, detail):
            finished[status] = finished.get(status, 0) + 1
            if status != "failed":
                kept.append(Path(detail))
            bar.update(grid_task, completed=index + 1)
            bar.update(run_task, visible=False)
            if status == "failed":
                c = prepared_run.config
                console.print(f"[red]failed[/] {c['objective']} V={c['views']} seed={c['seed']}: {detail}", highlight=False)

        def run_progress(phase, step, total, info):
            text = "  ".join(f"{k} {v:.4f}" for k, v in info.items())
            bar.update(run_task, description=phase, completed=step, total=total, info=text)

        try:
            with report_progress(RichFeatureProgress(bar)):
                outcome = run_sweep(
                    mine,
                    out,
                    overwrite=overwrite,
                    on_start=on_start,
                    on_done=on_done,
                    run_progress=run_progress,
                    claims=claims,
                    tracker=tracker,
                )
        except KeyboardInterrupt:
            bar.stop()

            console.print(
                f"\ninterrupted after {sum(finished.values())} of {len(mine)} cells: {len(kept)} result file(s) kept in "
                f"{out} ({finished.get('ran', 0)} written now); the same command continues with the cells that have "
                "no result (the running cell starts again).",
                highlight=False,
            )
            raise typer.Exit(code=130) from None
    if not quiet:
        console.print(results_table(outcome.ran + outcome.skipped, f"sweep results ({out})"))
    console.print(
        f"sweep done: {len(outcome.ran)} ran"
        + (f" ({len(outcome.data_changed)} because the data changed)" if outcome.data_changed else "")
        + f", {len(outcome.skipped)} skipped (result exists), "
        f"{len(outcome.failed)} failed"
        + (f", {len(outcome.elsewhere)} run by other workers" if claims is not None else "")
        + f"; results in {out}",
        highlight=False,
    )
    for cell, message in outcome.failed:
        console.print(f"  failed: {cell}: {message}", highlight=False, markup=False)
    return outcome


def register(app: typer.Typer) -> None:
    @app.command(
        short_help="Run the grid objectives x views x seeds (presets: quick, paper-scale, regime-map).",
        help=(
            "Run the grid objectives x views x seeds: one result file per run under --out. A run whose result "
            "file exists (same config and same data content => same file name) is skipped unless --overwrite; a cell "
            "whose data changed runs again beside its earlier file; every cell is validated "
            "before any run starts; a failing run is reported, the sweep goes on and exits non-zero at the end. "
            "Presets (explicit options replace the preset's lists and scalars; --set adds to its settings): " + _preset_help()
        ),
    )
    def sweep(
        objective: list[str] = typer.Option(
            [], "--objective", "-o", help="Objective (repeatable, or a comma list: clip,factorized)."
        ),
        views: list[str] = typer.Option(
            [], "--views", help="At most this many views per item (repeatable, or a comma list: 1,2,4,8)."
        ),
        seed: list[str] = typer.Option([], "--seed", help="Seed (repeatable, or a comma list: 0,1,2)."),
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="Data set name (default: synthetic, or the preset's)."),
        set_: list[str] = typer.Option([], "--set", help="Config override key=value or section.key=value (repeatable)."),
        steps: int | None = typer.Option(None, "--steps", help="Training steps (default: train.steps, or the preset's)."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Items per step."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        out: Path = typer.Option(
            Path("runs"),
            "--out",
            help="Folder for the result files (default runs/, git-ignored; the committed results/ only when named).",
        ),
        data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder, for data sets read from disk."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Re-run cells whose result file already exists."),
        preset: str | None = typer.Option(None, "--preset", help=f"A standard grid: {', '.join(PRESETS)} (see above)."),
        shard: str | None = typer.Option(
            None,
            "--shard",
            help="i/n: run only shard i of n (1 <= i <= n) of the grid sorted by config hash; "
            "n machines with the same options and shards 1/n..n/n run every cell exactly once.",
        ),
        deterministic: bool = typer.Option(False, "--deterministic", help="Forbid non-deterministic kernels (CUDA)."),
        config_file: Path | None = typer.Option(
            None, "--config", help="TOML file of config fields (the keys of --set); --set wins."
        ),
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Feature cache folder."),
        storage: str | None = typer.Option(
            None,
            "--storage",
            help="Shared storage for concurrent workers (postgresql://USER:PASSWORD@HOST/DB, "
            "sqlite:///PATH, journal:PATH): each worker claims a cell before running it, so that every cell runs "
            "once without --shard; a dead worker's cell is claimable again after --stale-after seconds.",
        ),
        stale_after: float = typer.Option(
            120.0,
            "--stale-after",
            help="With --storage: seconds without a heartbeat after which a claimed cell is taken for abandoned.",
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no results table."),
        tracker: str = typer.Option("none", "--tracker", help=TRACKER_HELP + " One tracked run per cell that runs."),
        tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
        tracking_experiment: str = typer.Option("ftbench", "--tracking-experiment", help=TRACKING_EXPERIMENT_HELP),
    ) -> None:
        use_cache_dir(cache_dir)
        try:
            sets = run_overrides(set_, data_dir, deterministic, config_file)
            objective = split_list(objective, "--objective")
            view_list = split_list(views, "--views", int)
            seed_list = split_list(seed, "--seed", int)
            spec = spec_from_preset(
                preset, objective, view_list, seed_list, dataset, sets, steps, batch_size, device, deterministic
            )
            part = parse_shard(shard)
            resolve_device(device)
            claims = None
            if storage is not None:
                import optuna  # optional: tune extra

                from ..run.claims import CellClaims, open_storage  # lazy: CLI start-up

                optuna.logging.set_verbosity(optuna.logging.WARNING)
                grid = sorted(p.config_hash for p in shard_grid(prepare_grid(spec), part))
                claims = CellClaims(open_storage(storage), f"sweep-{config_hash(grid)[:12]}", stale_after)
            tracking = open_tracker(tracker, tracking_uri, out, tracking_experiment)
            outcome = run_sweep_with_progress(
                spec,
                out,
                overwrite=overwrite,
                shard=part,
                quiet=quiet,
                claims=claims,
                tracker=tracking if tracking.enabled else None,
            )
        except (GridError, ValueError, KeyError, UsageError) as exc:
            fail(redact_url(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)))
        if outcome.failed:
            raise typer.Exit(code=1)
