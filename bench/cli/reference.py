"""`ftbench reference`: untrained references (frozen backbone features, no towers) as result files."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import UsageError, check_writable, console, fail, metrics_table, run_overrides


def reference(
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="Data set name (see `ftbench datasets`)."),
    views: int = typer.Option(8, "--views", help="At most this many views per item (primary first), as in the trained runs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cross-view item cap (nothing is trained)."),
    out: Path = typer.Option(
        Path("runs"),
        "--out",
        help="Folder for the result files (default runs/, git-ignored; the committed results/ only when named).",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder, for data sets read from disk."),
    set_: list[str] = typer.Option([], "--set", help="Override a config field: key=value or section.key=value (repeatable)."),
) -> None:
    """Score the frozen backbone features, untrained, on every task they apply to.

    Writes two result files: frozen-primary (the item is its primary view of the query's
    modality) and frozen-mean (the normalised mean of its views of that modality, within
    --views). The report shows them in the tables of every group of trained runs on the same data
    (data set and its options, evaluation options, --views), as rows marked "untrained reference".
    """
    from ..errors import input_errors  # lazy: CLI start-up
    from ..run.experiment import RunSpec  # lazy: CLI start-up
    from ..run.reference import execute_reference  # lazy: CLI start-up

    sets = run_overrides(set_, data_dir, False)
    try:
        check_writable(out)
        done = execute_reference(RunSpec("frozen", dataset, views, seed, "cpu", sets), out)
    except input_errors(UsageError) as exc:
        fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
    for result, path in done:
        name = result.config["objective"]
        console.print(metrics_table(result.metrics, f"{name} @ views={views} (untrained reference, test split)"))
        whole = sorted(k for k in result.not_applicable if "/" not in k)
        if whole:
            console.print(f"not applicable: {', '.join(whole)} (reasons in the result file)", highlight=False)
        console.print(f"result: {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(reference)
