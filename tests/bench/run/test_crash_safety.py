"""A process killed with SIGKILL at any moment leaves no partial or corrupt result or cache file,
and rerunning a killed sweep completes only the missing runs.

Why: long sweeps die - out of memory, a pre-empted machine, a Ctrl-C twice. SIGKILL runs no
cleanup code, so the only defence is that every file is written to a temporary name and renamed
into place (`results.atomic_write_text`, `feature_cache._atomic_save_npy`): a reader sees the old
file or the whole new one. These tests kill real processes:

1. a writer looping over `atomic_write_text` with multi-megabyte documents, killed at random
   moments (almost always mid-write): the target always parses as one complete document; the
   leftovers are hidden ``.<name>.*.tmp`` files, which `remove_interrupted_writes` clears;
2. a real `ftbench sweep` of three runs, killed during its first run, then (rerun) the moment its
   first result file appears: every result file present loads as a valid result of its cell, and
   the final rerun runs exactly the cells without one, leaves the others byte for byte, and
   removes every temp file;
3. a feature-cache fill killed mid-way: every cache entry on disk holds exactly its input's
   features, and a second pass reuses all of them and encodes only the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ftbench.run.results import load_result, remove_interrupted_writes

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0, poll: float = 0.005) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before the moment to kill it (code {proc.returncode})")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("timed out waiting for the moment to kill the process")
        time.sleep(poll)


WRITER = """
import sys
from pathlib import Path
from ftbench.run.results import atomic_write_text
target = Path(sys.argv[1])
docs = [f'{{"version": {v}, "payload": "{chr(97 + v) * 3_000_000}"}}' for v in (0, 1)]
i = 0
while True:
    atomic_write_text(target, docs[i % 2])
    i += 1
"""


def test_atomic_writes_survive_sigkill_at_random_moments(tmp_path):
    rng = np.random.default_rng(7)
    target = tmp_path / "result.json"
    leftovers_seen = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=ENV)
        _wait_for(target.exists, proc)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        _kill(proc)
        doc = json.loads(target.read_text())  # never a partial document
        assert doc["version"] in (0, 1) and len(doc["payload"]) == 3_000_000
        strays = [p for p in tmp_path.iterdir() if p != target]
        assert all(p.name.startswith(".result.json.") and p.name.endswith(".tmp") for p in strays), strays
        leftovers_seen += len(strays)
        assert len(remove_interrupted_writes(target)) == len(strays)
        assert list(tmp_path.iterdir()) == [target]


SWEEP = [
    "-m",
    "ftbench",
    "sweep",
    "-o",
    "clip",
    "--views",
    "2",
    "--seed",
    "0",
    "--seed",
    "1",
    "--seed",
    "2",
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=400",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.val_gallery_size=200",
    "--steps",
    "5",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
]


def _check_folder(out: Path) -> dict[str, bytes]:
    """Every visible file is a complete, valid result of its own cell; hidden files are only the
    temp files of an interrupted write. Returns the results' bytes by name."""
    results = {}
    for path in out.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(".tmp") and ".json." in path.name, path
            continue
        assert path.suffix == ".json", path
        result = load_result(path)  # raises on a partial or corrupt file
        assert path.name.endswith(f"__{result.config_hash[:10]}.json") and result.metrics
        results[path.name] = path.read_bytes()
    return results


def _sweep(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *SWEEP, "--out", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_a_killed_sweep_leaves_valid_files_and_a_rerun_completes_only_the_missing_runs(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    # 1. killed during its first run: no result at all
    proc = _sweep(out)
    assert "ftbench sweep 3 runs" in proc.stdout.readline()  # grid validated, runs starting
    time.sleep(0.5)
    _kill(proc)
    assert _check_folder(out) == {}
    # 2. killed the moment its first result file appears
    proc = _sweep(out)
    _wait_for(lambda: any(p.suffix == ".json" for p in out.iterdir()), proc)
    _kill(proc)
    before = _check_folder(out)
    assert 1 <= len(before) <= 3
    # 3. the rerun: runs exactly the missing cells, keeps the others byte for byte, leaves no temp file
    done = subprocess.run([sys.executable, *SWEEP, "--out", str(out)], env=ENV, capture_output=True, text=True, timeout=600)
    summary = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{3 - len(before)} ran, {len(before)} skipped (result exists), 0 failed" in summary
    after = _check_folder(out)
    assert len(after) == 3 and all(after[name] == data for name, data in before.items())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


CACHE_FILL = """
import sys
from ftbench.features.backbones import create_backbone
from ftbench.features.cache import FeatureCache
texts = [f"item {i} with words {i % 97} and {i % 89}" for i in range(int(sys.argv[2]))]
FeatureCache(sys.argv[1], chunk=64).encode(create_backbone("hash", "text"), texts, "item")
"""


def test_a_killed_cache_fill_leaves_only_complete_entries(tmp_path):
    from ftbench.features.backbones import create_backbone
    from ftbench.features.cache import FeatureCache

    n = 6000
    cache_dir = tmp_path / "cache"
    backbone = create_backbone("hash", "text")
    proc = subprocess.Popen([sys.executable, "-c", CACHE_FILL, str(cache_dir), str(n)], env=ENV)
    _wait_for(lambda: any(cache_dir.glob("*/item/*/*.npy")), proc, poll=0.002)
    time.sleep(0.2)
    if proc.poll() is None:
        _kill(proc)
    texts = [f"item {i} with words {i % 97} and {i % 89}" for i in range(n)]
    cache = FeatureCache(cache_dir)
    stored = [t for t in texts if cache.path(backbone, "item", _key(t)).exists()]
    assert stored, "the fill was killed before writing any entry"
    for text in stored[:: max(1, len(stored) // 300)]:
        entry = np.load(cache.path(backbone, "item", _key(text)), allow_pickle=False)
        np.testing.assert_array_equal(entry, backbone.encode([text])[0])
    feats = cache.encode(backbone, texts, "item")
    assert cache.stats.hits == len(stored) and cache.stats.encoded == n - len(stored)
    np.testing.assert_array_equal(feats, backbone.encode(texts))


def _key(text: str) -> str:
    from ftbench.features.backbones import content_hash

    return content_hash("text", text)
