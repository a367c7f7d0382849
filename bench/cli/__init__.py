"""The `ftbench` command line: `app` and one module per command (each defines `register(app)`).

`main` first re-executes the process with the heap on huge pages where that helps
(`ftbench.heap`), before the commands (and torch) are imported, so that the re-execution costs
no second import.
"""

import sys


def main() -> None:
    from ..heap import reexec_with_huge_pages

    reexec_with_huge_pages(sys.argv)
    from .app import main as run_app

    run_app()


def __getattr__(name: str):
    if name == "app":
        from .app import app

        return app
    raise AttributeError(name)


__all__ = ["app", "main"]
