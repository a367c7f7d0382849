"""docs/cli.md is what docs/gen_cli.py makes of the command-line app now: a command or option
added, removed or re-worded without regenerating the page fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_generator():
    spec = importlib.util.spec_from_file_location("ftbench_docs_gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_page_is_current():
    generated = load_generator().render()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == generated, "docs/cli.md is not current: run python docs/gen_cli.py"


def test_cli_page_names_every_command_and_option():
    import typer
    from ftbench.cli.app import app

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="ftbench")
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        assert f"`ftbench {name}`" in page, name
        sub_ctx = command.context_class(command, info_name=name, parent=ctx)
        for param in command.get_params(sub_ctx):
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"`{opt}`" in page, f"ftbench {name} {opt}"
