"""Check that result files reproduce: run a seeded sample of a folder's result files again and
compare every metric with the recorded one, exactly.

A result file records everything a run depends on (`spec_from_result`), so running it again on the
same software and thread count must give the same floats, to the last digit (the CPU guarantee of
`docs/guarantees.md`). "The same" here means equality of the numbers after a JSON round trip: the
recorded file is read as JSON, the rerun's file is written and read back the same way.

Metric names are compared as the current schema names them. A file of an older schema is read
through `upgrade_payload`, whose renames (schema 1's `mrr` is today's `mrr@500`) form the alias
table; each alias used is reported, never applied silently.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..errors import input_errors
from ..train.loop import NonFiniteError
from .experiment import execute, package_versions, prepare
from .provenance import command_line, git_state, spec_from_result
from .results import READABLE_VERSIONS, SCHEMA_VERSION, upgrade_payload


@dataclass
class MetricComparison:
    """The outcome of comparing a recorded result's metrics with a rerun's.

    Attributes
    ----------
    compared : number of metric values present on both sides.
    max_abs_diff : largest absolute difference among them (0.0 when every value is equal).
    differences : ``task/metric: recorded -> new`` for every value that differs or is on one side only.
    aliases : ``(task, legacy name, current name)`` for every legacy name read under its current name.
    """

    compared: int = 0
    max_abs_diff: float = 0.0
    differences: list[str] = field(default_factory=list)
    aliases: list[tuple[str, str, str]] = field(default_factory=list)


def legacy_metric_names(payload: dict) -> dict[str, dict[str, str]]:
    """``{task: {legacy name: current name}}`` for a result file of an older schema: the renames
    `upgrade_payload` applies when it reads the file (empty for the current schema)."""
    version = payload.get("schema_version")
    if version == SCHEMA_VERSION or version not in READABLE_VERSIONS or not isinstance(payload.get("metrics"), dict):
        return {}
    upgraded = upgrade_payload(payload)["metrics"]
    renames: dict[str, dict[str, str]] = {}
    for task, values in payload["metrics"].items():
        if isinstance(values, dict):
            # upgrade_payload renames keys in place, keeping their order: pair them up
            pairs = {old: new for old, new in zip(values, upgraded.get(task, {})) if old != new}
            if pairs:
                renames[task] = pairs
    return renames


def compare_metrics(recorded: dict, new: dict) -> MetricComparison:
    """Compare the metrics of a recorded result payload with those of its rerun, value by value,
    exactly (no tolerance).

    Parameters
    ----------
    recorded : the recorded result payload (as read from its JSON file); a file of an older schema
        has its legacy metric names read under their current names (`legacy_metric_names`).
    new : the rerun's ``metrics`` block, ``{task: {metric: value}}``, as read back from its file.
    """
    renames = legacy_metric_names(recorded)
    outcome = MetricComparison()
    old_metrics = recorded.get("metrics") or {}
    for task in sorted(set(old_metrics) | set(new)):
        task_renames = renames.get(task, {})
        outcome.aliases += [(task, old, current) for old, current in task_renames.items()]
        legacy_of = {current: old for old, current in task_renames.items()}
        a = {task_renames.get(name, name): value for name, value in (old_metrics.get(task) or {}).items()}
        b = new.get(task) or {}
        for metric in sorted(set(a) | set(b)):
            x, y = a.get(metric), b.get(metric)
            shown = f"{task}/{metric}" + (f" (recorded as {legacy_of[metric]})" if metric in legacy_of else "")
            if x is None or y is None:
                outcome.differences.append(f"{shown}: {x} -> {y}")
                continue
            outcome.compared += 1
            if x != y:
                outcome.differences.append(f"{shown}: {x!r} -> {y!r}")
                gap = abs(float(x) - float(y))
                outcome.max_abs_diff = max(outcome.max_abs_diff, gap if math.isfinite(gap) else math.inf)
    return outcome


def legacy_name_lines(comparison: MetricComparison) -> list[str]:
    """``legacy name mrr = mrr@500 (task, task, ...)``: one line per rename the comparison used."""
    tasks: dict[tuple[str, str], list[str]] = {}
    for task, old, new in comparison.aliases:
        tasks.setdefault((old, new), []).append(task)
    return [f"legacy name {old} = {new} ({', '.join(names)})" for (old, new), names in tasks.items()]


def run_file_problem(path: Path) -> str | None:
    """Why the JSON file `path` is not a run's result file (a cost file, a design, a profile, a
    validation report), or None when it is one."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"unreadable ({exc})"
    if not isinstance(payload, dict):
        return "not a JSON object"
    if not isinstance(payload.get("metrics"), dict):
        return "no metrics block"
    try:
        spec_from_result(payload)
    except ValueError as exc:
        return str(exc)
    return None


def tracked_files(folder: Path) -> set[Path]:
    """The files under `folder` that git tracks (committed or staged), as resolved paths."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", "."], cwd=folder, capture_output=True, check=True, timeout=60
        ).stdout.decode("utf-8")
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"{folder}: cannot list the files git tracks ({exc})") from None
    return {(folder / name).resolve() for name in listed.split("\0") if name}


@dataclass
class FolderSample:
    """The run files of one folder and the seeded sample drawn from them.

    Attributes
    ----------
    folder : the folder as given.
    runs : every run result file found (sorted).
    chosen : the sample, a sorted subset of `runs`.
    size : the sample size asked for.
    skipped : ``(path, reason)`` for each JSON file that is not a run result.
    untracked : how many JSON files were left out because git does not track them.
    """

    folder: Path
    runs: list[Path]
    chosen: list[Path]
    skipped: list[tuple[Path, str]]
    size: int
    untracked: int = 0


def sample_folder(folder: Path, size: int, seed: int = 0, tracked_only: bool = False) -> FolderSample:
    """Draw `size` run result files from `folder` (searched recursively; hidden files, such as an
    interrupted write's temp file, excluded), seeded by `seed` and the folder's name, so the same
    command picks the same files. JSON files that are not run results are listed in `skipped`; with
    `tracked_only`, files git does not track are left out (a sweep still writing into the folder
    then leaves the sample unchanged)."""
    if size < 1:
        raise ValueError(f"{folder}: the sample must be at least 1 file, got {size}")
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    candidates = sorted(
        p for p in folder.rglob("*.json") if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    untracked = 0
    if tracked_only:
        tracked = tracked_files(folder)
        kept = [p for p in candidates if p.resolve() in tracked]
        untracked, candidates = len(candidates) - len(kept), kept
    runs, skipped = [], []
    for path in candidates:
        problem = run_file_problem(path)
        if problem is None:
            runs.append(path)
        else:
            skipped.append((path, problem))
    # a string seed is hashed with SHA-512 by `random`: the same draw in every process and version
    chosen = sorted(random.Random(f"{seed}:{folder.resolve().name}").sample(runs, min(size, len(runs))))
    return FolderSample(folder, runs, chosen, skipped, size, untracked)


@dataclass
class RerunCheck:
    """One result file run again and compared.

    Attributes
    ----------
    path : the recorded result file.
    status : "equal", "differs" or "error".
    comparison : the metric comparison (None after an error).
    seconds : wall time of the rerun.
    threads : the torch thread count the rerun used (the recorded one where the file has it).
    notes : what else differs from the recorded run (package versions, config hash) or the error.
    """

    path: Path
    status: str
    comparison: MetricComparison | None
    seconds: float
    threads: int
    notes: list[str] = field(default_factory=list)


def rerun_and_compare(path: Path, out_dir: Path, device: str | None = None, dataset_cache: dict | None = None) -> RerunCheck:
    """Run the result file `path` again into `out_dir` under its recorded config and torch thread
    count (``device.torch_threads``; the caller's count is restored afterwards), read the new
    result file back and compare its metrics with the recorded ones (`compare_metrics`). An input
    error (missing data, a backbone unavailable) or a non-finite training step is the status
    "error" with its message; any other exception is a bug and propagates."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    recorded_threads = (payload.get("device") or {}).get("torch_threads")
    outer = torch.get_num_threads()
    threads = int(recorded_threads) if isinstance(recorded_threads, int) and recorded_threads > 0 else outer
    notes = [] if threads == outer or recorded_threads is None else [f"torch threads {threads} as recorded (not {outer})"]
    start = time.perf_counter()
    torch.set_num_threads(threads)
    try:
        prepared = prepare(spec_from_result(payload, device))
        _, written = execute(prepared, out_dir, dataset_cache=dataset_cache)
    except input_errors(NonFiniteError) as exc:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return RerunCheck(path, "error", None, time.perf_counter() - start, threads, [*notes, message])
    finally:
        torch.set_num_threads(outer)
    seconds = time.perf_counter() - start
    assert written is not None  # a single process: rank 0 writes
    rerun = json.loads(written.read_text(encoding="utf-8"))
    comparison = compare_metrics(payload, rerun.get("metrics") or {})
    if rerun.get("config_hash") != payload.get("config_hash"):
        notes.append(f"config hash {str(rerun.get('config_hash'))[:10]}, recorded {str(payload.get('config_hash'))[:10]}")
    recorded_versions, versions = payload.get("versions") or {}, rerun.get("versions") or {}
    notes += [
        f"{name} {versions.get(name)} (recorded {recorded_versions.get(name)})"
        for name in sorted(set(recorded_versions) | set(versions))
        if name != "ftbench" and recorded_versions.get(name) != versions.get(name)
    ]
    status = "differs" if comparison.differences else "equal"
    return RerunCheck(path, status, comparison, seconds, threads, notes)


def check_record(checks: list[RerunCheck], samples: list[FolderSample], *, seed: int, tracked_only: bool) -> dict[str, Any]:
    """The JSON record of a check: what was sampled and skipped, and each rerun's outcome, with the
    source commit, the command line and the package versions that ran it."""
    git = git_state()
    return {
        "kind": "rerun-check",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "versions": package_versions(),
        "seed": seed,
        "tracked_only": tracked_only,
        "folders": [
            {
                "folder": str(s.folder),
                "run_files": len(s.runs),
                "sample": s.size,
                "chosen": [str(p) for p in s.chosen],
                "skipped": [{"file": str(p), "reason": reason} for p, reason in s.skipped],
                "untracked": s.untracked,
            }
            for s in samples
        ],
        "files": [
            {
                "file": str(c.path),
                "status": c.status,
                "metrics_compared": c.comparison.compared if c.comparison else 0,
                "max_abs_diff": c.comparison.max_abs_diff if c.comparison and math.isfinite(c.comparison.max_abs_diff) else None,
                "differences": c.comparison.differences if c.comparison else [],
                "legacy_names": [f"{task}: {old} = {new}" for task, old, new in c.comparison.aliases] if c.comparison else [],
                "seconds": round(c.seconds, 1),
                "torch_threads": c.threads,
                "notes": c.notes,
            }
            for c in checks
        ],
        "passed": all(c.status == "equal" for c in checks),
    }
