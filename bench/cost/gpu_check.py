"""One short GPU check: CUDA tests, cost against V and whole-step ratios on cuda, the search bench on cuda, one paper-scale run.

`make gpu-check` runs it (`python -m ftbench.cost.gpu_check --out results/gpu`). Each step is a
subprocess with its own time limit; its command, exit status, wall time and output tail go into
`<out>/gpu_check.json`, the figures into the files the commands themselves write under <out>
(cost__*.json, step_ratio__*.json, search_bench.json, the run's result JSON). Without a CUDA device it writes nothing
and exits with status 2 and a message saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def steps(out: Path, python: str) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in s) of each step; a few minutes in all on one GPU."""
    ftbench = [python, "-P", "-m", "ftbench"]
    views = [a for v in (2, 4, 8, 16, 32) for a in ("--views", str(v))]
    return [
        (
            "cuda tests",
            [
                python,
                "-P",
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                "tests/bench/train/test_precision.py",
                "tests/bench/kernels",
            ],
            300,
        ),
        ("cost vs V on cuda", ftbench + ["cost", "--device", "cuda", *views, "--out", str(out), "--no-plot"], 300),
        (
            "step ratio on cuda",
            ftbench
            + [
                "cost",
                "--step-ratio",
                "--device",
                "cuda",
                "-o",
                "clip,oat-floor,oat,mover",
                "--views",
                "8",
                "--rounds",
                "10",
                "--repeats",
                "10",
                "--warmup",
                "5",
                "--out",
                str(out),
            ],
            180,
        ),
        ("search bench on cuda", ftbench + ["cost", "--search-bench", "--device", "cuda", "--out", str(out)], 300),
        (
            "paper-scale run on cuda",
            ftbench
            + [
                "run",
                "--objective",
                "factorized",
                "--views",
                "8",
                "--device",
                "cuda",
                "--out",
                str(out / "runs"),
                "--set",
                "dataset.items=1000000",
                "--set",
                "dataset.interactions=292520",
                "--set",
                "eval.ks=(1, 10, 50, 100, 500)",
            ],
            600,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/gpu"), help="folder for the results")
    p.add_argument("--dry-run", action="store_true", help="print the steps and exit (no CUDA needed)")
    a = p.parse_args(argv)
    plan = steps(a.out, sys.executable)
    if a.dry_run:
        for name, cmd, limit in plan:
            print(f"{name} (limit {limit}s): {' '.join(cmd)}")
        return 0
    import torch  # heavy: torch; the module itself loads without it

    if not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA device is available (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}); nothing was run. Run it on a machine with a GPU and a CUDA build "
            "of torch (make install TORCH=torch==2.13.0+cu128).",
            file=sys.stderr,
        )
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "steps": []}
    for name, cmd, limit in plan:
        t = time.perf_counter()
        rc: int | str  # the exit status, or "timeout"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env={**os.environ})
            rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-4000:]
        except subprocess.TimeoutExpired as exc:
            rc, tail = "timeout", str(exc)[-4000:]
        record["steps"].append({"name": name, "command": cmd, "rc": rc, "wall_s": time.perf_counter() - t, "output_tail": tail})
        print(f"{name}: rc={rc} in {record['steps'][-1]['wall_s']:.0f}s", flush=True)
        (a.out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0 if all(s["rc"] == 0 for s in record["steps"]) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
