"""Typed, versioned result files: one JSON file per run, written atomically.

Tables and plots are built only from these files. `SCHEMA_VERSION` changes whenever a field
changes meaning; `load_result` reads the versions in `READABLE_VERSIONS` (upgrading older ones in
memory, `upgrade_payload`) and refuses any other with a clear message.

Version history: 1, the first; 2, the reciprocal rank is named with its cut-off (`mrr@500`).
Fields added since, without a version change (a file without them reads them as empty):
`provenance`, `tuning`, and `data`, the content fingerprint of data read from files, which the
identity (`config_hash`) holds instead of the data folder's path (`ftbench.run.identity`; a file
written before it keeps the identity it had, path included).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# the file writers live in `ftbench.files` (every stage uses them); imported here by name for the
# code that has always found them in this module
from ..files import (  # noqa: F401
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    make_folders,
    remove_created_folders,
    remove_interrupted_writes,
)

SCHEMA_VERSION = 2
#: versions `load_result` still reads, upgrading them in memory (`upgrade_payload`)
READABLE_VERSIONS = (1, 2)


@dataclass
class RunResult:
    """Everything a run produced and everything needed to know what was run."""

    run_id: str
    config: dict[str, Any]
    #: the run's identity (`ftbench.run.identity.run_identity`): the config, with the data's content
    #: fingerprint in place of its location for data read from files; the file name holds it
    config_hash: str
    versions: dict[str, str]
    device: dict[str, Any]
    counts: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    not_applicable: dict[str, str]
    timing: dict[str, Any]
    training: dict[str, Any]
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    created: str = ""
    #: git commit (and dirty flag) of the source, command line, host, run options: see ftbench.run.provenance;
    #: `feature_cache`: the feature cache folder used and features encoded / read from it (`experiment.feature_cache_block`)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: `ftbench tune` reruns of a best configuration: study, trial counts, best parameters, budget
    tuning: dict[str, Any] = field(default_factory=dict)
    #: data read from files: content fingerprint, file count, bytes, folder read, the config fields
    #: that are locations (`ftbench.data.fingerprint.describe_data`); empty for generated data
    data: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, allow_nan=False)


def write_result(result: RunResult, path: Path) -> Path:
    """Write `result` atomically to `path`, first removing temp files a killed earlier write of
    the same path left behind (`remove_interrupted_writes`). NaN or infinite values are refused
    (`allow_nan=False`): a result is never written with a number that is not one."""
    try:
        text = result.to_json() + "\n"
    except ValueError:
        where = _first_non_finite(asdict(result))
        raise ValueError(f"{path}: not written: {where} is not a finite number (NaN or infinite)") from None
    remove_interrupted_writes(path)
    atomic_write_text(path, text)
    return Path(path)


def _first_non_finite(value: Any, where: str = "result") -> str:
    """Path (e.g. ``metrics['query->item']['recall@10']``) of the first NaN or infinite float."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _first_non_finite(item, f"{where}[{key!r}]" if where != "result" else str(key))
        if found:
            return found
    return ""


# The JSON type each field of a result file must have (what tables and plots rely on).
_FIELD_TYPES: dict[str, type] = {
    "run_id": str,
    "config": dict,
    "config_hash": str,
    "versions": dict,
    "device": dict,
    "counts": dict,
    "metrics": dict,
    "not_applicable": dict,
    "timing": dict,
    "training": dict,
    "skipped": dict,
    "notes": list,
    "created": str,
    "provenance": dict,
    "tuning": dict,
    "data": dict,
}


def _check_payload(path: Path, payload: dict) -> None:
    """Field types, and metrics as {task: {metric: finite number}}: a file that passes can be
    tabulated without a second look; one that does not is named with the offending field."""
    import math

    for key, kind in _FIELD_TYPES.items():
        if key in payload and not isinstance(payload[key], kind):
            json_name = {"dict": "object", "list": "array", "str": "string"}[kind.__name__]
            raise ValueError(f"{path}: field {key!r} must be a JSON {json_name}, got {type(payload[key]).__name__}")
    for task, values in payload.get("metrics", {}).items():
        if not isinstance(values, dict):
            raise ValueError(f"{path}: metrics[{task!r}] must be an object of metric: number, got {type(values).__name__}")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{path}: metrics[{task!r}][{name!r}] must be a finite number, got {value!r}")


def load_result(path: Path) -> RunResult:
    """Read a result file; errors name the file and what was wrong (not JSON or not UTF-8, not
    an object, another schema version, a missing field, a field of the wrong type, a metric that
    is not a finite number)."""
    path = Path(path)
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a valid result file (not UTF-8 at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a valid result file (JSON error at line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a valid result file (nested too deeply)") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: a result file must hold a JSON object")
    version = payload.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ValueError(
            f"{path}: schema_version {version!r}, this ftbench reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version != SCHEMA_VERSION:
        if not isinstance(payload.get("metrics"), dict):
            raise ValueError(f"{path}: field 'metrics' must be a JSON object")
        payload = upgrade_payload(payload)
    known = set(RunResult.__dataclass_fields__)
    missing = [
        k
        for k in known
        if k not in payload
        and RunResult.__dataclass_fields__[k].default is not None
        and k not in ("skipped", "notes", "created", "provenance", "tuning", "data", "schema_version")
    ]
    if missing:
        raise ValueError(f"{path}: result file lacks field(s) {sorted(missing)}")
    _check_payload(path, payload)
    return RunResult(**{k: v for k, v in payload.items() if k in known})


def upgrade_payload(payload: dict) -> dict:
    """A version-1 result payload in the current schema (version 2).

    Version 2 names the reciprocal rank with its cut-off: `mrr` became `mrr@C`. In version 1 the
    query task's `mrr` was cut at the ranked list's length, recorded as
    ``counts.evaluation[<task>].mrr_cutoff``: it becomes `mrr@<that cut-off>`, the same number. The
    cross-view tasks' `mrr` ran over the full ranking; it becomes `mrr@500` (the default cut-off),
    which it exceeds by less than 1/500 of the share of queries ranked beyond 500 - said in the notes."""
    payload = dict(payload)
    evaluation = (payload.get("counts") or {}).get("evaluation") or {}
    metrics = {}
    renamed_cross_view = False
    for task, values in payload["metrics"].items():
        if isinstance(values, dict) and "mrr" in values:
            recorded = evaluation.get(task, {}).get("mrr_cutoff") if isinstance(evaluation.get(task), dict) else None
            cutoff = int(recorded) if isinstance(recorded, int) and not isinstance(recorded, bool) else 500
            renamed_cross_view |= recorded is None
            values = {(f"mrr@{cutoff}" if k == "mrr" else k): v for k, v in values.items()}
        metrics[task] = values
    payload["metrics"] = metrics
    notes = list(payload.get("notes") or [])
    note = "read from schema version 1: `mrr` renamed `mrr@C` with its cut-off"
    if renamed_cross_view:
        note += "; the cross-view tasks' mrr was over the full ranking (now labelled mrr@500)"
    payload["notes"] = notes + [note]
    payload["schema_version"] = SCHEMA_VERSION
    return payload


def result_filename(config: dict[str, Any], config_hash: str) -> str:
    """`<dataset>__<objective>__v<V>__s<seed>__<hash>.json`: readable and unique per config."""
    return f"{config['dataset']}__{config['objective']}__v{config['views']}__s{config['seed']}__{config_hash[:10]}.json"
