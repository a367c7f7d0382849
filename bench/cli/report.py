"""`ftbench report RESULTS_DIR` (= `make report`): REPORT.md and plots from the result files."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import UsageError, check_writable, fail


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        results_dir: Path = typer.Argument(Path("results"), help="Folder of result files (searched recursively)."),
        out: Path | None = typer.Option(None, "--out", help="Report folder (default: RESULTS_DIR/report)."),
    ) -> None:
        """Render RESULTS_DIR/report/REPORT.md and its PNG plots, reading only result files; never trains.

        Sections: query->item table (objectives x views, recall@10/100/500, ndcg@10, mean ± 95% t-interval
        over seeds), paired differences against clip, cross-view table, cost against V (from
        RESULTS_DIR/cost/*.json), plots, and the paper's +7.9% Recall@500 claim beside our measurement.
        """
        from rich.console import Console  # lazy: CLI start-up

        from ..report import build_report, find_result_files  # lazy: CLI start-up

        console = Console(soft_wrap=True)
        if results_dir.exists() and not results_dir.is_dir():
            fail(f"RESULTS_DIR {str(results_dir)!r} is a file, expected a folder of result files")
        if not results_dir.exists():
            fail(
                f"RESULTS_DIR {str(results_dir)!r} does not exist: expected a folder of result files "
                f"(write some with `ftbench run --out {results_dir}` or `ftbench sweep --out {results_dir}`)"
            )
        try:
            check_writable(out if out is not None else results_dir / "report")
        except UsageError as exc:
            fail(str(exc))
        if not find_result_files(results_dir):
            console.print(
                f"[yellow]no result files in {results_dir}[/]: the report says so; `report` never trains "
                f"(write results with `ftbench sweep --preset quick --out {results_dir}`).",
                highlight=False,
            )
        try:
            outcome_report = build_report(results_dir, out)
        except OSError as exc:
            fail(f"could not write the report: {exc}")
        console.print(
            f"report: {outcome_report.path} ({outcome_report.runs} run results in {outcome_report.groups} "
            f"comparison group(s), {len(outcome_report.plots)} plots)",
            highlight=False,
        )
        if outcome_report.unreadable:
            console.print(
                f"[yellow]{len(outcome_report.unreadable)} unreadable result file(s) skipped[/] (listed in the report):",
                highlight=False,
            )
            for path, reason in outcome_report.unreadable:
                console.print(f"  {path}: {reason}", highlight=False, markup=False)
        if outcome_report.duplicates:
            console.print(
                f"{len(outcome_report.duplicates)} duplicate result file(s) ignored (listed in the report).", highlight=False
            )
