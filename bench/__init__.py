"""ftbench: benchmark multi-view, multimodal alignment objectives on shared towers.

A run is one pass down this pipeline; each stage is one subpackage:

    ftbench.datasets    data set plugins -> a MultiViewDataset      (folder `datasets/`)
    ftbench.data        catalog, queries, splits, views, batching, downloads
    ftbench.features    frozen backbones (a plugin folder) and the feature cache
    ftbench.model       towers, and the encode path: items -> `--views` cap -> view selection -> towers
    ftbench.objectives  the alignment objectives behind a registry  (folder `objectives/`)
    ftbench.kernels     Sinkhorn, feature transport, volumes, exact search (torch/numpy only)
    ftbench.train       the training loop (one for every objective), distributed training
    ftbench.eval        the tasks and their metrics; names in ftbench.schema
    ftbench.run         one experiment, sweeps, result files, saved embeddings
    ftbench.report      REPORT.md and plots from result files (no torch)
    ftbench.cost        cost against the number of views, search and solver benchmarks
    ftbench.cli         the `ftbench` command, one module per command

The Python API (`ftbench.api`), loaded on first use so that `import ftbench` stays light:

    ftbench.run(objective=..., views=..., dataset=..., overrides={...}, out=None, save_model=None)
    ftbench.sweep(objectives, views, seeds, ..., out="runs")
    ftbench.load_results(folder)         the result files' rows as a DataFrame
    ftbench.load_model(folder)           a saved model: embed_items(...), embed_queries(...)
    ftbench.objectives(), ftbench.datasets()   {name: summary}

`ftbench.run`, `ftbench.objectives` and `ftbench.datasets` are the subpackages above, callable.
"""

__version__ = "0.3.0"

# subpackages that are also API calls (`ftbench._callable`), and the API's functions and classes
_CALLABLE_SUBPACKAGES = ("run", "objectives", "datasets")
_API = ("sweep", "load_results", "load_model", "RunOutput", "SweepOutput")
__all__ = [*_CALLABLE_SUBPACKAGES, *_API, "__version__"]


def __getattr__(name: str):
    import importlib

    if name in _CALLABLE_SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
