"""`ftbench report RESULTS_DIR` (= `make report`): REPORT.md and plots from the result files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        results_dir: Path = typer.Argument(Path("results"), help="Folder of result files (searched recursively)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: RESULTS_DIR/report)."),
        run_quick_if_empty: bool = typer.Option(
            True, "--run-quick-if-empty/--no-run-quick-if-empty",
            help="With no result files at all, first run `ftbench sweep --preset quick --out RESULTS_DIR`."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (for the quick sweep)."),
    ) -> None:
        """Render RESULTS_DIR/report/REPORT.md and its PNG plots, reading only result files.

        Sections: query->item table (objectives x views, recall@10/100/500, ndcg@10, mean ± 95% t-interval
        over seeds), paired differences against clip, cross-view table, cost against V (from
        RESULTS_DIR/cost/*.json), plots, and the paper's +7.9% Recall@500 claim beside our measurement.
        """
        from rich.console import Console

        from .common import UsageError, fail
        from ..report import build_report, find_result_files

        console = Console(soft_wrap=True)
        if results_dir.exists() and not results_dir.is_dir():
            fail(f"RESULTS_DIR {str(results_dir)!r} is a file, expected a folder of result files")
        if not results_dir.exists() and not run_quick_if_empty:
            fail(f"RESULTS_DIR {str(results_dir)!r} does not exist (run `ftbench sweep --out {results_dir}` first, "
                 "or leave out --no-run-quick-if-empty)")
        if not (results_dir.is_dir() and find_result_files(results_dir)) and run_quick_if_empty:
            from ..run.sweep import GridError, PRESETS, spec_from_preset
            from .sweep import run_sweep_with_progress

            console.print(
                f"No result files in {results_dir}: running `ftbench sweep --preset quick --out {results_dir}` first "
                f"({PRESETS['quick']['description']}). Pass --no-run-quick-if-empty to skip this.",
                highlight=False,
            )
            try:
                outcome = run_sweep_with_progress(spec_from_preset("quick"), results_dir, quiet=quiet, console=console)
            except (GridError, ValueError, KeyError, UsageError) as exc:
                fail(f"the quick sweep could not start: {exc}")
            if outcome.failed:
                console.print(f"[yellow]{len(outcome.failed)} run(s) of the quick sweep failed; the report shows "
                              "the rest.[/]", highlight=False)
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
            console.print(f"[yellow]{len(outcome_report.unreadable)} unreadable result file(s) skipped[/] "
                          "(listed in the report):", highlight=False)
            for path, reason in outcome_report.unreadable:
                console.print(f"  {path}: {reason}", highlight=False, markup=False)
        if outcome_report.duplicates:
            console.print(f"{len(outcome_report.duplicates)} duplicate result file(s) ignored (listed in the report).",
                          highlight=False)
