"""What the command modules share: the consoles, the one-line error exit, and option helpers.
Command modules import from here, never from `app` (which imports them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..eval.metric_registry import DEFAULT_METRICS, METRICS, metric_label, metric_of
from ..run.results import make_folders, remove_created_folders
from ..schema import METRIC_COLUMNS

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class UsageError(Exception):
    """An error in the user's input, shown as one clear message (no traceback)."""


def fail(message: str) -> None:
    # escaped: messages quote user input and config tables ([train]), which are not markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=2)


def check_writable(out: Path) -> None:
    """Fail before any work if `--out` cannot be written, leaving nothing behind: the folders
    this check creates to try are removed again (the writers create them when they write), so a
    run that fails later leaves no empty `--out`."""
    created: list[Path] = []
    try:
        created = make_folders(out)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ftbench-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {str(out)!r} is not a writable folder ({exc.strerror or exc})") from None
    finally:
        remove_created_folders(created)


def split_list(values: list[str], option: str, kind: type = str) -> list:
    """A list option as given: repeated (`--views 1 --views 2`), comma-separated (`--views 1,2`),
    or both; with `kind=int` each entry must be an integer (a one-line error otherwise)."""
    out: list = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if kind is int:
                try:
                    out.append(int(part))
                except ValueError:
                    raise UsageError(f"{option} {part!r}: expected an integer (a list: {option} 1,2,4)") from None
            else:
                out.append(part)
    return out


class RichFeatureProgress:
    """Feature-encoding passes (`ftbench.features.cache.report_progress`) as rows of a rich Progress
    whose columns read `task.fields['info']`."""

    def __init__(self, progress) -> None:
        self.progress = progress

    def start(self, label: str, total: int) -> object:
        return self.progress.add_task(label, total=total, info="")

    def advance(self, task: object, n: int) -> None:
        self.progress.advance(task, n)


def use_cache_dir(cache_dir: Path | None) -> None:
    """`--cache-dir`: the feature cache's folder for this process ($FTBENCH_CACHE_DIR). Not a config
    field: where features are cached changes no result, so it leaves config hashes alone."""
    if cache_dir is not None:
        os.environ["FTBENCH_CACHE_DIR"] = str(cache_dir)


def run_overrides(set_: list[str], data_dir: Path | None, deterministic: bool, config_file: Path | None = None) -> list[str]:
    """The `--set` list of `run` and `sweep`: a `--config` TOML file's keys first (so `--set`
    wins), then `--set`, then `--data-dir` as `dataset.data_dir`; with
    `--deterministic`, cuBLAS's workspace setting before a backbone may create the first cuBLAS
    handle (data encoding happens before training)."""
    sets = []
    if config_file is not None:
        from ..run.provenance import sets_from_config_file  # lazy: CLI start-up

        try:
            sets += sets_from_config_file(config_file)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    sets += list(set_)
    if data_dir is not None:
        sets.append(f"dataset.data_dir={str(data_dir)!r}")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return sets


def metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title, show_lines=False, caption="R@K = recall@K", caption_justify="left")
    cols = list(METRIC_COLUMNS)
    # an opt-in metric (eval.metrics, e.g. map@K): one column, at K = 10 (one per family keeps the
    # table within 80 columns; every K is in the result file)
    extra = {
        name
        for values in metrics.values()
        for name in values
        if (found := metric_of(name)) and found[0].name not in DEFAULT_METRICS
    }
    cols += [f"{name}@10" for name in METRICS if f"{name}@10" in extra]
    table.add_column("task", no_wrap=True)
    for c in cols:
        table.add_column(metric_label(c, short=True), justify="right")
    table.add_column("queries", justify="right")
    for task, values in metrics.items():
        row = [task] + [f"{values[c]:.3f}" if c in values else "—" for c in cols]
        row.append(str(int(values.get("queries", 0))) if "queries" in values else "—")
        table.add_row(*row)
    return table


TRACKER_HELP = (
    "Experiment tracking: none, or mlflow (parameters, per-step loss, validation scores, final "
    "metrics and the result file; needs pip install 'ftbench[tracking]')."
)
TRACKING_URI_HELP = (
    "With --tracker mlflow: where to track (sqlite:///PATH, http(s)://HOST:PORT, "
    "postgresql://USER:PASSWORD@HOST/DB); default: the SQLite store OUT/mlruns/mlflow.db."
)
TRACKING_EXPERIMENT_HELP = "With --tracker: the experiment the runs are grouped under."


def open_tracker(name: str, uri: str | None, out: Path, experiment: str, main: bool = True):
    """The tracker of `--tracker/--tracking-uri/--tracking-experiment`, opened (store reached,
    experiment found or created) on the main process before any work: one-line errors."""
    from ..run.tracking import TrackingError, make_tracker  # lazy: CLI start-up

    try:
        tracker = make_tracker(name, uri, out, experiment)
        if main:
            tracker.open()
    except (TrackingError, KeyError) as exc:
        fail(str(exc) if not isinstance(exc, KeyError) else str(exc.args[0]))
    if main and tracker.enabled:
        console.print(f"tracking: {tracker.describe()}", highlight=False, markup=False)
    return tracker
