"""Result files, reports and saved embeddings honour the umask (0644 under the usual 022), so a
team sharing a results folder can read each other's files; mkstemp/mkdtemp alone would give 0600/0700."""

import os
import stat

import pytest
from ftbench.run.results import atomic_write_text, current_umask


@pytest.fixture
def umask():
    def set_mask(mask):
        previous = os.umask(mask)
        restore.append(previous)
        return mask

    restore: list[int] = []
    yield set_mask
    for previous in reversed(restore):
        os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    path = tmp_path / "result.json"
    atomic_write_text(path, "{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    atomic_write_text(path, "{}\n")  # replacing a file: the same
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_saved_embeddings_folder_honours_umask(tmp_path, umask):
    import numpy as np
    import torch
    from ftbench.run.embeddings_io import save_run_embeddings

    umask(0o022)

    class Catalog:
        num_items = 3

        def item_ids(self):
            return np.arange(3)

    class Data:
        catalog, queries = Catalog(), None

    class Evaluator:
        class towers:
            embedding_dim = 2

        def embed_items(self, items):
            return torch.zeros(len(items), 2)

    # into a folder that does not exist yet (`ftbench run --out NEW --save-embeddings`: the --out
    # check leaves nothing behind, the writers create the folder)
    target = save_run_embeddings(tmp_path / "new" / "run", Evaluator(), Data())
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "item_embeddings.npy").stat().st_mode) == 0o644
