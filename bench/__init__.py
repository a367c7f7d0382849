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
"""

__version__ = "0.1.0"
