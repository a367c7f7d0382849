"""`ftbench objectives` and `ftbench datasets`: the two plugin registries, listed the same way."""

from __future__ import annotations

import inspect
import sys

import typer
from rich.table import Table

from ..config import describe, search_space
from ..registry import UnknownNameError
from .common import console, fail


def _describe_plugin(kind: str, registry, name: str) -> None:
    entry = registry.get(name)
    console.print(f"[bold]{name}[/]: {entry.summary}", highlight=False)
    # the equations live in the plugin's docstring: the class's, else its module's (one file each)
    doc = inspect.getdoc(entry) if entry.__doc__ else (sys.modules[entry.__module__].__doc__ or "")
    doc = inspect.cleandoc(doc) if doc else ""
    if doc:
        console.print(doc, highlight=False, markup=False)
    if kind == "objective" and entry.__module__.startswith("ftbench.objectives."):
        # the built-in objectives each have a section (same anchor as the name) in the method
        console.print(f"\nThe method, with the other objectives: docs/method.md#{name}\n", highlight=False, markup=False)
    table = Table(title=f"{kind} config fields (--set {'' if kind == 'objective' else 'dataset.'}NAME=VALUE)")
    for col in ("name", "default", "accepts", "meaning", "source"):
        table.add_column(col, no_wrap=col == "name")  # a field name must stay copyable for --set
    for row in describe(entry.Config):
        accepts = row["bounds"].describe() if row["bounds"] else " | ".join(map(str, row["choices"])) if row["choices"] else ""
        table.add_row(row["name"], repr(row["default"]), accepts, row["help"], row["source"])
    console.print(table)
    if kind == "objective":
        _describe_search_space(entry.Config)


def _describe_search_space(config_cls) -> None:
    """What `ftbench tune` searches for this objective: the shared training fields and its own,
    each with its range and why the range is what it is."""
    from ..train.loop import TrainConfig  # lazy: CLI start-up

    rows = [("train." + name, s) for name, s in search_space(TrainConfig).items()]
    rows += list(search_space(config_cls).items())
    table = Table(title="ftbench tune search space (shared training fields, then the objective's own)")
    for col in ("field", "range", "why this range"):
        table.add_column(col, no_wrap=col != "why this range")
    for name, s in rows:
        table.add_row(name, s.describe(), s.why)
    console.print(table)


def list_plugins(kind: str, registry, name: str | None, verbose: bool, width: int) -> None:
    """One line per registered plugin; with a NAME, that plugin's documentation and config
    fields; with `--verbose` and no NAME, every plugin's."""
    if name or verbose:
        try:
            for each in [name] if name else list(registry):
                _describe_plugin(kind, registry, each)
        except UnknownNameError as exc:
            fail(str(exc))
        return
    for name in registry:
        console.print(f"{name:<{width}} {registry.get(name).summary}", highlight=False)


def objectives(
    name: str | None = typer.Argument(None, help="Show this objective's equations and config fields."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Equations and config fields (of every objective without NAME)."),
) -> None:
    """List the registered objectives, one line each (`ftbench objectives NAME` for one in full)."""
    from ..objectives import OBJECTIVES  # lazy: CLI start-up

    list_plugins("objective", OBJECTIVES, name, verbose, 12)


def datasets(
    name: str | None = typer.Argument(None, help="Show this data set's description and config fields."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Description and config fields (of every data set without NAME)."
    ),
) -> None:
    """List the registered data sets, one line each (`ftbench datasets NAME` for one in full)."""
    from ..datasets import DATASETS  # lazy: CLI start-up

    list_plugins("dataset", DATASETS, name, verbose, 16)


def register(app: typer.Typer) -> None:
    app.command()(objectives)
    app.command()(datasets)
