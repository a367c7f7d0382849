"""A data set built by name as a run builds it: its generated catalog stored once and memory-mapped,
and a warning where attribute views are shared by many items.

Kept apart from `ftbench.run.experiment` so that a saved model (`ftbench.model.saved`), which the
run writes, can build the same data without importing the run.
"""

from __future__ import annotations

import sys
from typing import Any

from ..data.content import shared_view_warning
from ..features.catalog_store import should_store, stored_catalog


def build_named_dataset(name: str, plugin: Any, config: Any):
    """Data set `name` from its `plugin` and data set `config`, as a run builds it (also what
    `ftbench encode` and a loaded model embed)."""
    dataset = plugin.build(config)
    if should_store(dataset.catalog):
        # generated once per data config, then memory-mapped by every run (features/catalog_store.py)
        dataset.catalog = stored_catalog(dataset.catalog, name, config, notes=dataset.notes)
    repeated = shared_view_warning(dataset.catalog)  # attribute views shared by many items (docs/method.md)
    if repeated:
        print(repeated, file=sys.stderr)
        dataset.notes.append(repeated)
    return dataset
