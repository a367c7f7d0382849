"""A run's identity: the `config_hash` that names its result file and that sweeps, shards, claims
and the report's comparison groups go by.

The identity is the hash of the run's config with, for a data set read from files, the config
fields that say where the files are (`data_dir`, `cache_dir`, ...: provenance, still recorded in
the result's config) replaced by the data's content fingerprint (`ftbench.data.fingerprint`, the
result's `data` block). The same data under two paths is one identity; changed data is another,
with another file name, so a result of other data is never overwritten. A data set decided by its
config alone (`synthetic`) has no `data` block and its identity is the hash of its config, as it
always was (committed results keep their file names). Results written before fingerprints existed
have no `data` block either: their identity stays what it was (the folder path is part of it).

Torch-free: the report reads identities from result files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import config_hash
from .results import load_result


def fingerprint_of(data: dict | None) -> str | None:
    """The content fingerprint of a result's `data` block (None: the data has no fingerprint)."""
    value = (data or {}).get("fingerprint")
    return value if isinstance(value, str) and value else None


def location_fields(data: dict | None) -> tuple[str, ...]:
    """The data-set config fields that are locations, as recorded with the fingerprint."""
    if fingerprint_of(data) is None:
        return ()
    return tuple(str(f) for f in (data or {}).get("location_fields") or ())


def without_locations(config: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """`config` with the data-set config's location `fields` left out."""
    if not fields:
        return config
    dataset_config = {k: v for k, v in (config.get("dataset_config") or {}).items() if k not in fields}
    return {**config, "dataset_config": dataset_config}


def identity_payload(config: dict[str, Any], data: dict | None) -> dict[str, Any]:
    """What the identity hashes: the config, locations replaced by the data's fingerprint."""
    fingerprint = fingerprint_of(data)
    if fingerprint is None:
        return config
    return {**without_locations(config, location_fields(data)), "data_fingerprint": fingerprint}


def run_identity(config: dict[str, Any], data: dict | None) -> str:
    """The run's `config_hash` (see the module docstring)."""
    return config_hash(identity_payload(config, data))


def options_key(config: dict[str, Any], fields: tuple[str, ...]) -> str:
    """The hash of a run's options alone, with neither locations nor data: equal for the same cell
    run on other data (`other_data_results`)."""
    return config_hash(without_locations(config, fields))


def other_data_results(out_dir: Path, config: dict[str, Any], data: dict | None) -> list[tuple[Path, str | None]]:
    """Result files in `out_dir` of this very config (same options, same cell) on other data:
    (file, its data fingerprint, None when it was written before fingerprints). Empty for a data
    set without a fingerprint (nothing to compare)."""
    fingerprint = fingerprint_of(data)
    if fingerprint is None or not Path(out_dir).is_dir():
        return []
    fields = location_fields(data)
    mine = options_key(config, fields)
    pattern = f"{config['dataset']}__{config['objective']}__v{config['views']}__s{config['seed']}__*.json"
    out = []
    for path in sorted(Path(out_dir).glob(pattern)):
        try:
            other = load_result(path)
        except (ValueError, TypeError, OSError):
            continue
        theirs = fingerprint_of(other.data)
        if theirs == fingerprint or options_key(other.config, fields) != mine:
            continue
        out.append((path, theirs))
    return out


def describe_other_data(found: list[tuple[Path, str | None]], fingerprint: str) -> str:
    """One line: which files hold this config's results on other data (kept, not overwritten)."""
    names = ", ".join(p.name for p, _ in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    theirs = sorted({(t[:12] if t else "not recorded") for _, t in found})
    return (
        f"the data changed: {names} hold{'s' if len(found) == 1 else ''} this config's result on other data "
        f"(fingerprint {', '.join(theirs)}; now {fingerprint[:12]}); kept, not overwritten"
    )
