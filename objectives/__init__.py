"""Alignment objectives, one per file, registered by name in `OBJECTIVES`.

To add one: create `objectives/<name>.py` with a subclass of `Objective` (see `base.py`) decorated
with `@OBJECTIVES.register("<name>")`. It is discovered automatically.
"""

from ..registry import Registry

OBJECTIVES: Registry = Registry("objective")

import sys as _sys  # noqa: E402

from ..plugins import import_plugins  # noqa: E402

import_plugins(_sys.modules[__name__])

from .._callable import make_callable as _make_callable  # noqa: E402

# `ftbench.objectives()`: {name: summary} of the registered objectives (`ftbench.api.objectives`)
_make_callable(__name__, "objectives")
