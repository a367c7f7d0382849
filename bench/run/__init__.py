"""Runs: one experiment from options to result file (`experiment`), sweeps over a grid (`sweep`),
the versioned result files and the one atomic writer (`results`), saved embeddings.
"""

from .._callable import make_callable as _make_callable

# `ftbench.run(objective=..., ...)` runs one experiment (`ftbench.api.run`); the subpackage stays importable
_make_callable(__name__, "run")
