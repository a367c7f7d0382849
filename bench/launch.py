"""The `ftbench` console command and `python -m ftbench`: first the heap, then the CLI.

Kept apart from `ftbench.cli` so that the re-execution onto a huge-page heap (`ftbench.heap`)
happens before the commands, and torch with them, are imported: the re-executed process pays the
imports once.
"""

import sys


def main() -> None:
    from .heap import reexec_with_huge_pages

    reexec_with_huge_pages(sys.argv)
    from .cli.app import main as run_cli

    run_cli()
