"""What the command modules share: the consoles, the one-line error exit, and option helpers.
Command modules import from here, never from `app` (which imports them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..schema import METRIC_COLUMNS

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class UsageError(Exception):
    """An error in the user's input, shown as one clear message (no traceback)."""


def fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


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
    cols = list(METRIC_COLUMNS)
    table.add_column("task", no_wrap=True)
    for c in cols:
        table.add_column(c.replace("recall@", "R@"), justify="right")
    table.add_column("queries", justify="right")
    for task, values in metrics.items():
        row = [task] + [f"{values[c]:.3f}" if c in values else "—" for c in cols]
        row.append(str(int(values.get("queries", 0))) if "queries" in values else "—")
        table.add_row(*row)
    return table


