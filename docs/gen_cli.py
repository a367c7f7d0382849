"""Write docs/cli.md, the command-line reference, from the Typer app itself.

    python docs/gen_cli.py            # rewrite docs/cli.md
    python docs/gen_cli.py --check    # exit 1 if docs/cli.md is not what the app gives now

Every command and sub-command of `ftbench` (typer.main.get_command(app), walked in --help order):
its usage, its help and one row per option and argument (names, type, default, help). The text is
the same plain help `ftbench COMMAND --help` shows, without rich's layout, so the page depends on
the code only, not on the terminal. tests/docs/test_cli_doc.py fails when the page is not current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "cli.md"

HEADER = """# Command line

Every command of `ftbench` with its options, as `ftbench COMMAND --help` shows them. This page is
generated from the command-line app by `docs/gen_cli.py` (do not edit it by hand; run
`python docs/gen_cli.py` after changing a command). A short tour of the commands is in
[Getting started](getting-started.md#the-command-line).
"""


def _plain(text: str | None) -> str:
    """Help text as written: rich's markup escapes removed (`\\[` -> `[`), whitespace collapsed."""
    if not text:
        return ""
    text = re.sub(r"\\(\[)", r"\1", text)
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: no bare `|`, `<` or line breaks."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


# Typer carries its own copy of click (typer._click), so parameters and commands are read by what
# they have (param_type_name, is_flag, list_commands), not by isinstance against click's classes.


def _is_flag(param) -> bool:
    return param.param_type_name == "option" and bool(getattr(param, "is_flag", False))


def _type(param, ctx) -> str:
    if _is_flag(param):
        return "flag"
    # ftbench shows a type as <int>, <path>, ...: the brackets are its --help layout, not the type
    return " ".join(param.display_type(ctx).split()).lower().removeprefix("<").removesuffix(">")


def _default(param) -> str:
    if _is_flag(param) and not param.secondary_opts:
        return ""
    if param.required:
        return "required"
    default = param.default
    if default is None or callable(default) or default == () or default == []:
        return ""
    if _is_flag(param):
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    if isinstance(default, (list, tuple)):
        default = ", ".join(str(d) for d in default)
    return f"`{default}`"


def _names(param) -> str:
    if param.param_type_name == "argument":
        return f"`{(param.metavar or param.name).upper()}`"
    names = [*param.opts, *param.secondary_opts]
    return ", ".join(f"`{n}`" for n in names)


def _command(cmd, path: list[str], parent, out: list[str]) -> None:
    ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent)
    group = hasattr(cmd, "list_commands")
    name = " ".join(path)
    out.append(f"\n{'#' * max(2, min(len(path), 4))} `{name}`\n")
    help_text = _plain(cmd.help)
    if help_text:
        out.append(help_text + "\n")
    if not group:
        usage = " ".join([name, *cmd.collect_usage_pieces(ctx)])
        out.append(f"```text\n{usage}\n```\n")
    rows = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False)]
    if rows:
        out.append("| option | type | default | what |\n|:---|:---|:---|:---|")
        for p in rows:
            out.append(
                f"| {_cell(_names(p))} | {_cell(_type(p, ctx))} | {_cell(_default(p))} | "
                f"{_cell(_plain(getattr(p, 'help', None)))} |"
            )
        out.append("")
    if group:
        for sub in cmd.list_commands(ctx):
            child = cmd.get_command(ctx, sub)
            if child is not None and not child.hidden:
                _command(child, [*path, sub], ctx, out)


def render() -> str:
    """The page, from the app as it is imported now."""
    import typer
    from ftbench.cli.app import app

    out = [HEADER]
    _command(typer.main.get_command(app), ["ftbench"], None, out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is not current: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
