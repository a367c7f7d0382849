"""Data set plugins, one per file, registered by name in `DATASETS`.

To add one: create `datasets/<name>.py` with a subclass of `DatasetPlugin` (see `base.py`)
decorated with `@DATASETS.register("<name>")`. It is discovered automatically.

This folder is installed as `ftbench.datasets`; it must never be importable as a bare top-level
`datasets`, which is Hugging Face's package.
"""

if __name__ != "ftbench.datasets":  # e.g. `import datasets` from the repository root
    raise ImportError(
        "this folder is ftbench.datasets, not Hugging Face's `datasets`; install ftbench "
        "(`make install`) and import ftbench.datasets"
    )

from ..registry import Registry

DATASETS: Registry = Registry("data set")

import sys as _sys  # noqa: E402

from ..plugins import import_plugins  # noqa: E402

import_plugins(_sys.modules[__name__])

from .._callable import make_callable as _make_callable  # noqa: E402

# `ftbench.datasets()`: {name: summary} of the registered data sets (`ftbench.api.datasets`)
_make_callable(__name__, "datasets")
