"""The `ftbench` console command and `python -m ftbench`: first the heap, then the CLI.

Kept apart from `ftbench.cli` so that the re-execution onto a huge-page heap (`ftbench.heap`)
happens before the commands, and torch with them, are imported: the re-executed process pays the
imports once.
"""

import os
import sys

from .heap import reexec_with_huge_pages

# the text of the guard in the repository's datasets/__init__.py (see `_unshadow_datasets`)
_GUARD = "this folder is ftbench.datasets"


def _unshadow_datasets() -> None:
    """Drop from sys.path the folders in which `datasets` is this repository's data-set folder.

    `python -m ftbench` (and the huge-page re-execution, which is one) puts the working directory
    first on sys.path; run from the repository root, a bare `import datasets` - which transformers
    does when it finds a `datasets` module, for sentence-transformers' MiniLM - would then find
    ftbench's data-set folder instead of Hugging Face's package (whose guard raises ImportError).
    ftbench itself is imported from its installation, never from the working directory.
    """
    kept = []
    for entry in sys.path:
        candidate = os.path.join(entry or os.getcwd(), "datasets", "__init__.py")
        try:
            with open(candidate, encoding="utf-8") as fh:
                if _GUARD in fh.read(4096):
                    continue
        except OSError:
            pass
        kept.append(entry)
    sys.path[:] = kept


def main() -> None:
    _unshadow_datasets()
    reexec_with_huge_pages(sys.argv)
    from .cli.app import main as run_cli  # lazy: after the huge-page re-execution (module docstring)

    run_cli()
