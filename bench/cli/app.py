"""The `ftbench` command line (Typer + rich): the app and its version option. Every other module
of this folder that defines `register(app)` adds its commands, so a new command is one new file."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from typing import Any

import typer
from typer.models import ParameterInfo

from .. import __version__
from .common import console


def _no_flag_placeholders() -> None:
    """A flag takes no value, so its help row shows no `<bool>` type (Typer's rich help prints one)."""
    option_cls = getattr(getattr(typer, "core", None), "TyperOption", None)
    shown = getattr(option_cls, "display_type_rich", None)
    if shown is None or getattr(shown, "_ftbench_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._ftbench_flags = True  # type: ignore[attr-defined]  # marks the patch: applied once
    assert option_cls is not None  # `shown` was read from it
    option_cls.display_type_rich = display_type_rich


_no_flag_placeholders()

app = typer.Typer(
    name="ftbench",
    help="Benchmark multi-view alignment objectives: train on shared towers, report Recall@K and cost.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"ftbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """ftbench: which alignment objective for multi-view product embeddings, and at what cost."""


def _register_command_modules() -> None:
    # the command modules beside this one, found by folder (importing the `cli` package itself
    # from here would be an import cycle: its __init__ imports this module)
    order = {"run": 0, "listing": 1}  # run and the listings first in --help, then the rest by name
    folder = os.path.dirname(os.path.abspath(__file__))
    for info in sorted(pkgutil.iter_modules([folder]), key=lambda i: (order.get(i.name, 2), i.name)):
        if info.name in ("app", "common"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_command_modules()


def _help_as_plain_text(typer_app: typer.Typer) -> None:
    """Every help text of `typer_app` (commands, their options and arguments, sub-apps) escaped for
    rich: Typer's rich help reads help as markup, which ate the `[tracking]` of
    `pip install 'ftbench[tracking]'` and the `[train]` of a TOML table. Our help is plain text."""
    from rich.markup import escape  # lazy: CLI start-up

    def escape_once(holder: Any, attribute: str, text: str | None) -> None:
        if isinstance(text, str) and not getattr(holder, "_ftbench_plain_help", False):
            setattr(holder, attribute, escape(text))
            try:
                holder._ftbench_plain_help = True  # a callback registered twice is escaped once
            except AttributeError:
                pass

    def parameters(callback) -> None:
        for parameter in inspect.signature(callback).parameters.values():
            if isinstance(parameter.default, ParameterInfo):
                escape_once(parameter.default, "help", parameter.default.help)

    escape_once(typer_app.info, "help", typer_app.info.help)
    if typer_app.registered_callback is not None and typer_app.registered_callback.callback is not None:
        parameters(typer_app.registered_callback.callback)
    for command in typer_app.registered_commands:
        # Typer shows the docstring when no help= is given: it becomes the help, escaped
        escape_once(command, "help", command.help if isinstance(command.help, str) else inspect.getdoc(command.callback))
        parameters(command.callback)
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None  # add_typer always gives one
        _help_as_plain_text(group.typer_instance)


_help_as_plain_text(app)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
