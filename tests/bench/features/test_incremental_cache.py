"""The feature cache stores each chunk the moment it is encoded: an encode stopped mid-way (an
exception, SIGKILL) keeps its finished chunks, the next encode of the same inputs encodes only
the rest, and the result equals an uninterrupted encode bit for bit - with a backbone whose
features depend on which inputs share a batch, as padded text batches do in the last bits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ftbench.features import cache as cache_module
from ftbench.features.cache import FeatureCache

# a backbone whose every feature moves with its batch's other inputs (1e-3 x the batch mean), and
# that batches longest first: resumed batches must be the killed run's for equal features
BATCH_SENSITIVE = """
import time
import numpy as np
from ftbench.features.backbones import HashFeatures

class BatchSensitive(HashFeatures):
    def __init__(self, fail_after=None, delay=0.0):
        super().__init__("text", batch_size=4)
        self.fail_after, self.delay, self.batches = fail_after, delay, 0

    def encode_order(self, inputs):
        return sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))

    def _encode(self, inputs, role):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("stopped")
        time.sleep(self.delay)
        own = super()._encode(inputs, role)
        return own + np.float32(1e-3) * own.mean(axis=0, keepdims=True)
"""
namespace: dict = {}
exec(BATCH_SENSITIVE, namespace)
BatchSensitive = namespace["BatchSensitive"]

TEXTS = [f"product {i} " + "with more words " * (i % 7) for i in range(50)]


def _entries(root) -> list:
    return [p for p in root.rglob("*.npy") if not p.name.startswith(".")]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.fixture()
def reference(tmp_path):
    return FeatureCache(tmp_path / "reference", chunk=8).encode(BatchSensitive(), TEXTS)


def test_the_backbone_of_these_tests_is_batch_sensitive():
    bb = BatchSensitive()
    assert not np.array_equal(bb.encode(TEXTS[:4])[0], bb.encode(TEXTS[:1])[0])


def test_an_encode_stopped_after_three_chunks_keeps_them_and_the_next_encodes_only_the_rest(tmp_path, reference):
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="stopped"):
        FeatureCache(root, chunk=8).encode(BatchSensitive(fail_after=3), TEXTS)  # each chunk is one encode call
    assert len(_entries(root)) == 3 * 8
    bb, cache = BatchSensitive(), FeatureCache(root, chunk=8)
    resumed = cache.encode(bb, TEXTS)
    assert bb.encoded == len(TEXTS) - 24 and cache.stats.encoded == len(TEXTS) - 24 and cache.stats.hits == 24
    assert _same_bits(resumed, reference)
    assert not list(root.rglob(".plans/*")) and not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_a_chunk_stored_in_part_is_encoded_whole_again_so_its_batches_are_the_same(tmp_path, reference, monkeypatch):
    root = tmp_path / "cache"
    real_save, saved = cache_module._save_npy, []

    def dies_mid_chunk(path, array):
        if len(saved) == 8 + 3:  # the second chunk: 3 of its 8 entries stored, then the process dies
            raise KeyboardInterrupt
        saved.append(path)
        real_save(path, array)

    monkeypatch.setattr(cache_module, "_save_npy", dies_mid_chunk)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(root, chunk=8).encode(BatchSensitive(), TEXTS)
    monkeypatch.setattr(cache_module, "_save_npy", real_save)
    assert len(_entries(root)) == 11
    bb, cache = BatchSensitive(), FeatureCache(root, chunk=8)
    resumed = cache.encode(bb, TEXTS)
    assert cache.stats.hits == 11 and cache.stats.encoded == len(TEXTS) - 11
    assert bb.encoded == len(TEXTS) - 8  # the 3 stored entries' chunk ran again, to batch its 5 others as before
    assert _same_bits(resumed, reference)  # without the plan, the 39 others batched afresh differ
    assert not list(root.rglob(".plans/*.json"))  # removed once the encode completed


def test_a_plan_from_other_inputs_or_chunk_size_is_not_followed(tmp_path):
    root = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        FeatureCache(root, chunk=8).encode(BatchSensitive(fail_after=1), TEXTS)
    bb, cache = BatchSensitive(), FeatureCache(root, chunk=16)  # another chunk size: a new plan
    out = cache.encode(bb, TEXTS)
    assert cache.stats.encoded == len(TEXTS) - 8 and bb.encoded == len(TEXTS) - 8
    fresh = FeatureCache(tmp_path / "fresh", chunk=16).encode(BatchSensitive(), TEXTS)
    np.testing.assert_allclose(out, fresh, atol=1e-6)


FILL = (
    BATCH_SENSITIVE
    + """
import sys
from ftbench.features.cache import FeatureCache
texts = [f"item {i} " + "and more words " * (i % 11) for i in range(int(sys.argv[2]))]
FeatureCache(sys.argv[1], chunk=64).encode(BatchSensitive(delay=0.02), texts, "item")
"""
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_an_encode_killed_after_its_first_chunk_resumes_with_the_same_bits(tmp_path):
    n, root = 600, tmp_path / "cache"
    texts = [f"item {i} " + "and more words " * (i % 11) for i in range(n)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", FILL, str(root), str(n)], env=env)
    end = time.monotonic() + 120
    while len(_entries(root)) < 64:  # the first chunk has landed
        assert proc.poll() is None, f"the fill ended before it could be killed (code {proc.returncode})"
        assert time.monotonic() < end, "timed out waiting for the first chunk"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    stored = len(_entries(root))
    assert 64 <= stored < n
    bb, cache = BatchSensitive(), FeatureCache(root, chunk=64)
    resumed = cache.encode(bb, texts, "item")
    assert cache.stats.hits == stored and cache.stats.encoded == n - stored
    assert bb.encoded <= n - stored + 63  # at most the one chunk stored in part runs again whole
    reference = FeatureCache(tmp_path / "reference", chunk=64).encode(BatchSensitive(), texts, "item")
    assert _same_bits(resumed, reference)
