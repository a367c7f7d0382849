"""`ftbench export RESULTS --format csv|parquet`: result files as one long table."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import fail


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        results_dir: Path = typer.Argument(..., help="Folder of result files (searched recursively)."),
        format: str = typer.Option("csv", "--format", "-f", help="csv or parquet."),
        out: Path | None = typer.Option(None, "--out", help="Output file (default: RESULTS/results.<format>)."),
    ) -> None:
        """One row per run x task x metric, with the config columns, for pandas, spreadsheets and dashboards."""
        from rich.console import Console  # lazy: CLI start-up

        from ..report.export import FORMATS, export_frame, write_export  # lazy: CLI start-up

        if format not in FORMATS:
            fail(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
        if not results_dir.is_dir():
            fail(f"RESULTS {str(results_dir)!r} is not a folder of result files")
        frame, unreadable = export_frame(results_dir)
        console = Console(stderr=True)
        for path, reason in unreadable:
            console.print(f"skipped {path}: {reason}", highlight=False)
        if frame.empty:
            fail(f"no readable result files under {results_dir}")
        target = out or results_dir / f"results.{format}"
        try:
            write_export(frame, target, format)
        except ImportError as exc:
            fail(str(exc))
        except OSError as exc:
            where = f"--out {str(target)!r}" if out is not None else f"{str(target)!r} (the default --out)"
            fail(f"{where}: cannot write the export ({exc.strerror or exc}); give --out a file in a writable folder")
        console.print(f"{len(frame)} rows ({frame['run_id'].nunique()} runs) -> {target}", highlight=False)
        print(target)
