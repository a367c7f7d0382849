"""The same command with the same seed on CPU gives identical results: metrics, validation
history, counts and every embedding, bit for bit.

Why: a comparison between objectives is only as good as its reruns; a metric that moves when
nothing changed makes small differences unreadable. Two `ftbench run` processes are started with
different Python hash seeds (so set and dict iteration orders that depend on string hashing
differ) and compared on everything but timings, the run id and the creation time. `factorized`
is used because it samples auxiliary views at random every step: the sampling must come from the
seeded generator alone. What differs on a GPU, and the `--deterministic` switch, is documented
in docs/guarantees.md.

The exact search's first pass (fp32, bf16 with its fp32 re-score, or low-rank) is forced through
FTBENCH_SEARCH_PRECISION, once per pass, so that every pass is run on every machine: left to
itself the choice depends on the CPU (bf16 only where it has bf16 matrix instructions, and after a
measurement), and the catalog here is far too small for the low-rank pass. The cut-offs stop at
100 so that the query search keeps 100 of the 300 items rather than all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

RUN = [
    "-m",
    "ftbench",
    "run",
    "--objective",
    "factorized",
    "--views",
    "4",
    "--seed",
    "3",
    "--set",
    "dataset.items=300",
    "--set",
    "dataset.interactions=400",
    "--set",
    "train.eval_every=4",
    "--set",
    "train.val_gallery_size=200",
    "--set",
    "eval.ks=(1, 10, 50, 100)",
    "--steps",
    "8",
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
    "--save-embeddings",
]


@pytest.mark.slow
@pytest.mark.parametrize("search_pass", ["fp32", "bf16", "lowrank"])
def test_same_command_and_seed_give_identical_results(tmp_path, search_pass):
    procs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"hashseed{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1", "FTBENCH_SEARCH_PRECISION": search_pass}
        procs.append(
            (
                out,
                subprocess.Popen(
                    [sys.executable, *RUN, "--out", str(out)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
        )
    payloads, embeddings = [], []
    for out, proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output
        (result,) = out.glob("*.json")
        payload = json.loads(result.read_text())
        for volatile in ("run_id", "created", "timing", "device"):
            payload.pop(volatile)
        payload["provenance"].pop("command")  # the two commands differ in --out
        payloads.append(payload)
        folder = next(out.glob("*.embeddings"))
        embeddings.append(
            {name: np.load(folder / name, allow_pickle=False) for name in ("item_embeddings.npy", "query_embeddings.npy")}
        )
    first, second = payloads
    assert first["metrics"] and first["training"]["history"]
    search = first["counts"]["evaluation"]["query->item"]["search"]
    assert search["scan"] == search_pass, search
    assert search["reason"].startswith(f"set by FTBENCH_SEARCH_PRECISION={search_pass}"), search
    assert first["counts"]["evaluation"]["query->item"]["mrr_cutoff"] == 100
    assert first == second
    for name, array in embeddings[0].items():
        assert array.tobytes() == embeddings[1][name].tobytes(), name
