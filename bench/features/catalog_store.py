"""Generated catalogs kept on disk: view features produced once per data config, memory-mapped.

A generated catalog (the synthetic marketplace) recomputes each view's features from counter-based
random numbers at every read, and a 1M-item run reads its catalog several times over.
`stored_catalog` writes every slot's features and the availability mask once as float32 ``.npy``
files under ``ROOT/catalogs/<dataset>-<key>/`` (``ROOT``: the feature cache folder,
`cache.default_cache_dir`) and serves later reads from read-only memory maps, shared by every run of
a sweep. The key covers the data config (less ``catalog_independent_fields``), the shapes and the
generator's source and numpy version, so stale features are never served; files are written
atomically, and every open checks the manifest, the shapes and a sample of rows against a fresh
generation, regenerating a folder that fails. `StoredCatalog.features` returns exactly what the
generated catalog's `features` returns. Which catalogs: `should_store` (at least
`MIN_STORED_BYTES`; ``FTBENCH_STORE_CATALOGS=0`` turns the store off). In full:
docs/perf/index.md#stored-catalog.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import to_jsonable
from ..data import hashing
from ..data.catalog import Catalog
from ..datasets.synthetic import SyntheticCatalog
from ..files import atomic_write, atomic_write_bytes
from .cache import _reporter, default_cache_dir

STORE_FORMAT = 1
# below this the generator keeps each slot in memory after its first read, generated in seconds
MIN_STORED_BYTES = 1 << 30
#: environment variable that turns the store off ("0", "off", "no", "false"): generated as before
STORE_ENV = "FTBENCH_STORE_CATALOGS"
CHUNK_ITEMS = 65_536  # items generated per piece while writing a slot
SPOT_CHECK_ROWS = 16


def generated_catalog_types() -> tuple[type, ...]:
    """Catalog classes whose features are generated on every read (and so are worth storing)."""
    return (SyntheticCatalog,)


def should_store(catalog: Catalog) -> bool:
    """A generated catalog of at least `MIN_STORED_BYTES`, with the store not turned off."""
    if os.environ.get(STORE_ENV, "").strip().lower() in ("0", "off", "no", "false"):
        return False
    return isinstance(catalog, generated_catalog_types()) and catalog_bytes(catalog) >= MIN_STORED_BYTES


def catalog_bytes(catalog: Catalog) -> int:
    """Bytes of float32 features of every slot of the whole catalog."""
    return catalog.num_items * sum(catalog.feature_dims[s.modality] for s in catalog.slots) * 4


def generator_fingerprint(catalog: Catalog) -> dict[str, str]:
    """What the generated values depend on besides the config: the generator's source (its
    catalog class's module and the counter-based hashing module) and the numpy version."""
    out = {"numpy": np.__version__}
    for module in (sys.modules[type(catalog).__module__], hashing):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):  # no source (frozen install): the module name and package version
            source = f"{module.__name__} {__version__}"
        out[module.__name__] = hashlib.sha256(source.encode()).hexdigest()
    return out


def key_material(name: str, config: Any, catalog: Catalog) -> dict[str, Any]:
    """Everything the stored values depend on (see module docstring), as JSON-ready data."""
    # fields that only shape the queries (a config's `catalog_independent_fields`) are left out,
    # so that a sweep over them shares one stored catalog; the spot check on open still compares
    # the stored rows with a fresh generation, which would catch a field wrongly listed there
    independent = set(getattr(config, "catalog_independent_fields", ()))
    values = to_jsonable(config)
    if isinstance(values, dict):
        values = {k: v for k, v in values.items() if k not in independent}
    return {
        "format": STORE_FORMAT,
        "dataset": name,
        "config": values,
        "items": int(catalog.num_items),
        "slots": [[s.name, s.modality, s.role] for s in catalog.slots],
        "feature_dims": dict(catalog.feature_dims),
        "generator": generator_fingerprint(catalog),
    }


def store_key(material: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


def store_folder(name: str, material: dict[str, Any], root: str | Path | None = None) -> Path:
    """``ROOT/catalogs/<name>-<key>``."""
    base = Path(root).expanduser() if root is not None else default_cache_dir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return base / "catalogs" / f"{safe}-{store_key(material)}"


def spot_rows(n: int) -> np.ndarray:
    """The rows compared against a fresh generation on open: first, last, evenly spaced."""
    return np.unique(np.linspace(0, n - 1, min(n, SPOT_CHECK_ROWS)).round().astype(np.int64))


class StoredCatalog(Catalog):
    """A generated catalog served from its stored, memory-mapped features (module docstring).

    `features` and `availability` read the maps; anything else (a generator's semantics, its
    config) is the generated catalog's, reached through attribute lookup."""

    def __init__(self, generated: Catalog, features: list[np.ndarray], available: np.ndarray, folder: Path) -> None:
        self.generated = generated
        self.slots = generated.slots
        self.feature_dims = generated.feature_dims
        self.folder = folder
        self._features = features
        self._available = available

    def __getattr__(self, name: str):
        # only called for names not found on the instance: the generator's own attributes
        if name in ("generated", "_features", "_available"):
            raise AttributeError(name)
        return getattr(self.generated, name)

    @property
    def num_items(self) -> int:
        return self.generated.num_items

    def item_ids(self) -> np.ndarray:
        return self.generated.item_ids()

    def availability(self, items: np.ndarray) -> np.ndarray:
        return self._available[np.asarray(items)]

    def features(self, items: np.ndarray, slot: int) -> np.ndarray:
        items = np.asarray(items)
        mapped = self._features[slot]
        if items.ndim == 1 and len(items) and items[-1] - items[0] == len(items) - 1 and (np.diff(items) == 1).all():
            return np.array(mapped[items[0] : items[-1] + 1])  # a contiguous run: one slice, no gather
        return mapped[items]


def _write_slot(path: Path, catalog: Catalog, slot: int, workers: int) -> None:
    """Stream slot `slot` of `catalog` into `path` as float32 .npy, generated in pieces of
    `CHUNK_ITEMS` items on `workers` threads (numpy releases the GIL), written in order."""
    n, dim = catalog.num_items, catalog.feature_dims[catalog.slots[slot].modality]
    starts = list(range(0, n, CHUNK_ITEMS))

    def piece(a: int) -> np.ndarray:
        values = np.ascontiguousarray(catalog.features(np.arange(a, min(a + CHUNK_ITEMS, n)), slot), dtype=np.float32)
        if values.shape != (min(a + CHUNK_ITEMS, n) - a, dim):
            raise ValueError(f"generated catalog: slot {slot} gave features of shape {values.shape}, expected (n, {dim})")
        return values

    reporter = _reporter.get()
    task = (
        reporter.start(f"generating view {catalog.slots[slot].name!r} of {n} items once (stored for later runs)", n)
        if reporter
        else None
    )

    def write(handle) -> None:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
        with _single_threaded_blas(), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            # at most 2 * workers pieces in flight: memory stays a few pieces, not the slot
            window = 2 * max(1, workers)
            pending = [pool.submit(piece, a) for a in starts[:window]]
            for i in range(len(starts)):
                values = pending[i].result()
                handle.write(values.tobytes())
                pending[i] = None  # type: ignore[call-overload]  # drop the finished future: its array is written
                if reporter:
                    reporter.advance(task, len(values))
                if i + window < len(starts):
                    pending.append(pool.submit(piece, starts[i + window]))

    atomic_write(path, write, fsync=False)


def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits  # optional: installed with scikit-learn, not declared
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _open(folder: Path, material: dict, generated: Catalog) -> tuple[list[np.ndarray], np.ndarray] | str:
    """The stored arrays, or the reason the folder cannot be used."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return "missing" if not folder.exists() else "incomplete (no manifest.json)"
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        return f"manifest.json unreadable ({exc})"
    if recorded.get("key_material") != json.loads(json.dumps(material)):
        return "manifest.json is for another config or generator"
    n, s_count = generated.num_items, len(generated.slots)
    arrays = []
    for name in ["available.npy"] + [f"slot_{s}.npy" for s in range(s_count)]:
        try:
            arrays.append(np.load(folder / name, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:  # missing, truncated or not .npy
            return f"{name} unreadable ({exc})"
    available, features = arrays[0], arrays[1:]
    if available.shape != (n, s_count) or available.dtype != np.bool_:
        return f"available.npy has shape {available.shape} and dtype {available.dtype}, expected {(n, s_count)} bool"
    for s, array in enumerate(features):
        dim = generated.feature_dims[generated.slots[s].modality]
        if array.shape != (n, dim) or array.dtype != np.float32:
            return f"slot_{s}.npy has shape {array.shape} and dtype {array.dtype}, expected {(n, dim)} float32"
    rows = spot_rows(n)
    if not np.array_equal(available[rows], generated.availability(rows)):
        return "availability differs from a fresh generation"
    for s, array in enumerate(features):
        fresh = np.ascontiguousarray(generated.features(rows, s), dtype=np.float32)
        if not np.array_equal(np.asarray(array[rows]).view(np.uint32), fresh.view(np.uint32)):
            return f"slot_{s}.npy differs from a fresh generation"
    return features, available


def stored_catalog(
    generated: Catalog,
    name: str,
    config: Any,
    root: str | Path | None = None,
    workers: int | None = None,
    notes: list[str] | None = None,
) -> StoredCatalog:
    """`generated`'s features and availability, produced once under the feature cache and
    memory-mapped (module docstring). A damaged or stale folder is regenerated; the reason is
    appended to `notes` when given. Raises OSError naming the folder when it cannot be written."""
    material = key_material(name, config, generated)
    folder = store_folder(name, material, root)
    opened = _open(folder, material, generated)
    if isinstance(opened, str):
        if opened != "missing" and notes is not None:
            notes.append(f"stored catalog {folder}: {opened}; regenerated")
        try:
            _generate(folder, material, generated, workers or _threads())
        except OSError as exc:
            raise OSError(
                f"cannot write the stored catalog under {folder} ({exc}); give a writable feature cache "
                "folder with --cache-dir or $FTBENCH_CACHE_DIR"
            ) from exc
        opened = _open(folder, material, generated)
        if isinstance(opened, str):  # written just now and still unusable: refuse, do not loop
            raise RuntimeError(f"stored catalog {folder}: {opened} right after writing it")
    features, available = opened
    return StoredCatalog(generated, features, available, folder)


def _generate(folder: Path, material: dict, generated: Catalog, workers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    if manifest.exists():
        manifest.unlink()  # the folder is incomplete until every file is rewritten
    n = generated.num_items
    available = np.concatenate(
        [np.asarray(generated.availability(np.arange(a, min(a + CHUNK_ITEMS, n))), dtype=bool) for a in range(0, n, CHUNK_ITEMS)]
    )
    atomic_write(folder / "available.npy", lambda h: np.save(h, available, allow_pickle=False), fsync=False)
    for s in range(len(generated.slots)):
        _write_slot(folder / f"slot_{s}.npy", generated, s, workers)
    shapes = {f"slot_{s}": [n, generated.feature_dims[sl.modality]] for s, sl in enumerate(generated.slots)}
    atomic_write_bytes(
        manifest, json.dumps({"key_material": material, "shapes": shapes}, indent=1, sort_keys=True).encode(), fsync=False
    )


def _threads() -> int:
    """Generator threads: OMP_NUM_THREADS when set (the run's thread budget), else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1
