"""ftbench: benchmark multi-view, multimodal alignment objectives on shared towers.

The path through the package follows the data:

    ftbench.datasets   catalogs of items with views, queries, splits      (folder `datasets/`)
    ftbench.model.towers     one trainable tower per modality, fused item embedding
    ftbench.objectives the alignment objectives behind a registry         (folder `objectives/`)
    ftbench.eval.evaluator exact search and Recall@K / nDCG / MRR
    ftbench.run.results    typed, versioned result files; ftbench.report builds tables from them
"""

__version__ = "0.1.0"
