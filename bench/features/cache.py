"""On-disk cache of frozen backbone features, and helpers that encode a catalog's views through it.

Content-addressed: a feature is stored under ``ROOT / <backbone>-<modality>-<fp> / <role> / <h[:2]> / <h>.npy``
with ``fp`` the sha256 of the backbone's fingerprint (`Backbone.fingerprint`) and ``h`` that of the
input's content (`content_hash`), so a stale feature is never reused and moving a data set keeps
its cache. Entries are float32 ``.npy`` files (no pickle), written atomically; an unusable entry is
treated as absent and encoded again. Encoding runs in chunks of `FeatureCache.chunk` inputs, each
stored when done, in an order saved under ``<role>/.plans/`` so that an encode resumed after a kill
gives an uninterrupted run's features bit for bit. ``ROOT``: the `cache_dir` option of a data set,
else ``$FTBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ftbench/features``. The layout, format and
resumption in full: docs/data/real-data.md#feature-cache.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import numpy as np

from ..data.catalog import ArrayCatalog, ViewSlot
from ..data.content import digest_content_ids
from ..files import atomic_write, atomic_write_bytes
from .backbones import ROLES, Backbone, Input, content_hash
from .cache_dir import default_cache_dir

# ---------------------------------------------------------------------------------------------
# Progress reporting (the CLI installs a rich progress bar; library use stays silent)
# ---------------------------------------------------------------------------------------------


class ProgressReporter(Protocol):
    def start(self, label: str, total: int) -> object: ...

    def advance(self, task: object, n: int) -> None: ...


_reporter: contextvars.ContextVar[ProgressReporter | None] = contextvars.ContextVar("ftbench_feature_progress", default=None)


@dataclass
class RecordedInputs:
    """What the loaders handed to the encoders inside `record_inputs`: each `assemble_catalog`
    call as (slots, table of raw inputs, item ids), and each query encoding as its inputs."""

    catalogs: list[tuple[tuple, list, list]] = field(default_factory=list)
    queries: list[list] = field(default_factory=list)


_recorder: contextvars.ContextVar[RecordedInputs | None] = contextvars.ContextVar("ftbench_record_inputs", default=None)


@contextlib.contextmanager
def record_inputs() -> Iterator[RecordedInputs]:
    """Within this block, keep the raw view inputs (texts, image paths) every loader encodes, so
    that `ftbench data convert` can write them out in the catalog layout whatever the loader."""
    recorded = RecordedInputs()
    token = _recorder.set(recorded)
    try:
        yield recorded
    finally:
        _recorder.reset(token)


@contextlib.contextmanager
def report_progress(reporter: ProgressReporter) -> Iterator[None]:
    """Within this block, every encoding pass of a `FeatureCache` reports to `reporter`."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------


@dataclass
class CacheStats:
    """Counts over the life of a `FeatureCache`: inputs read from disk, inputs encoded."""

    hits: int = 0
    encoded: int = 0
    by_backbone: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, key: str, hits: int, encoded: int) -> None:
        self.hits += hits
        self.encoded += encoded
        entry = self.by_backbone.setdefault(key, {"hits": 0, "encoded": 0})
        entry["hits"] += hits
        entry["encoded"] += encoded


def _save_npy(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.float32)
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False), fsync=False)


class FeatureCache:
    """Content-addressed feature store (module docstring). `enabled=False` encodes everything
    and stores nothing (same results, no disk)."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True, chunk: int = 256) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.enabled = enabled
        self.chunk = chunk
        self.stats = CacheStats()

    # -- keys --------------------------------------------------------------------------------
    def backbone_dir(self, backbone: Backbone) -> Path:
        """``ROOT/<backbone>-<modality>-<fp>`` (`fp` = sha256 of `Backbone.fingerprint()`, 16 hex)."""
        return self._backbone_dir(backbone)[0]

    def _backbone_dir(self, backbone: Backbone) -> tuple[Path, dict]:
        fp = backbone.fingerprint()
        digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in backbone.name)
        return self.root / f"{safe}-{backbone.modality}-{digest}", fp

    def path(self, backbone: Backbone, role: str, key: str) -> Path:
        """Where the feature of content hash `key` in `role` is stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return self._entry(self.backbone_dir(backbone), role, key)

    @staticmethod
    def _entry(bdir: Path, role: str, key: str) -> Path:
        return bdir / role / key[:2] / f"{key}.npy"

    @staticmethod
    def _write_manifest(bdir: Path, fp: dict) -> None:
        manifest = bdir / "backbone.json"
        if not manifest.exists():
            atomic_write_bytes(manifest, json.dumps(fp, indent=2, sort_keys=True).encode(), fsync=False)

    def _read(self, path: Path, dim: int) -> np.ndarray | None:
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # truncated or foreign file: re-encode and overwrite
            return None
        if arr.shape != (dim,) or arr.dtype != np.float32 or not np.isfinite(arr).all():
            return None  # foreign, wrong-dimension or damaged entry: re-encode and overwrite
        return arr

    # -- encoding ----------------------------------------------------------------------------
    def encode(
        self,
        backbone: Backbone,
        inputs: Sequence[Input],
        role: str = "item",
        label: str | None = None,
        keys: Sequence[str] | None = None,
    ) -> np.ndarray:
        """float32 [n, D]: features of `inputs` in `role`, read from the cache where present,
        encoded (each distinct content once) and stored where not. `keys`: the inputs'
        `content_hash`es when the caller has them (an image is then not read again to hash it)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        inputs = list(inputs)
        recorder = _recorder.get()
        if recorder is not None and role == "query":
            recorder.queries.append(list(inputs))
        n, dim = len(inputs), backbone.dim
        out = np.zeros((n, dim), dtype=np.float32)
        if n == 0:
            return out
        stat_key = f"{backbone.spec}/{backbone.modality}/{role}"
        if not (self.enabled and backbone.cacheable):
            out[:] = self._run(backbone, inputs, role, label, cached=False)
            self.stats.add(stat_key, 0, n)
            return out
        bdir, fp = self._backbone_dir(backbone)  # once per call: the version may hash a weights file
        keys = list(keys) if keys is not None else [content_hash(backbone.modality, x) for x in inputs]
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            arr = self._read(self._entry(bdir, role, key), dim) if key not in missing else None
            if arr is None:
                missing.setdefault(key, []).append(i)
            else:
                out[i] = arr
        hits = n - sum(len(v) for v in missing.values())
        if missing:
            self._write_manifest(bdir, fp)
            self._encode_missing(backbone, inputs, keys, missing, out, bdir, role, label)
        self.stats.add(stat_key, hits, len(missing))
        return out

    def _encode_missing(
        self,
        backbone: Backbone,
        inputs: list[Input],
        keys: list[str],
        missing: dict[str, list[int]],
        out: np.ndarray,
        bdir: Path,
        role: str,
        label: str | None,
    ) -> None:
        """Encode the `missing` contents chunk by chunk, storing each chunk's entries as soon as it
        is encoded, so that a killed encode keeps every finished chunk (module docstring: Resuming)."""
        first = dict(zip(reversed(keys), reversed(inputs)))  # key -> an input of that content
        plan_path = bdir / role / ".plans" / f"{hashlib.sha256(' '.join(sorted(first)).encode()).hexdigest()[:32]}.json"
        order = self._read_plan(plan_path, missing)
        if order is None:
            todo = list(missing)
            order = [todo[i] for i in backbone.encode_order([first[k] for k in todo])]
            atomic_write_bytes(plan_path, json.dumps({"chunk": self.chunk, "order": order}).encode(), fsync=False)
        reporter = _reporter.get()
        task = (
            reporter.start(self._describe(backbone, role, label, len(missing), cached=True), len(missing)) if reporter else None
        )
        for start in range(0, len(order), self.chunk):
            chunk = order[start : start + self.chunk]
            absent = [k for k in chunk if k in missing]
            if not absent:
                continue  # every entry of this chunk is on disk (a resumed encode)
            # a chunk is always encoded whole, in the plan's order: its inputs meet in the same
            # batches as in an uninterrupted run, so their features are the same bit for bit
            whole = len(absent) == len(chunk)
            on_batch = (lambda k: reporter.advance(task, k)) if reporter and whole else None
            feats = backbone.encode([first[k] for k in chunk], role, on_batch=on_batch)
            self._check_finite(backbone, feats)
            for key, vec in zip(chunk, feats):
                if key in missing:
                    _save_npy(self._entry(bdir, role, key), vec)
                    out[missing[key]] = vec
            if reporter and not whole:
                reporter.advance(task, len(absent))
        plan_path.unlink(missing_ok=True)

    def _read_plan(self, path: Path, missing: dict[str, list[int]]) -> list[str] | None:
        """The encoding order a killed encode of the same inputs wrote, if it covers every
        `missing` content with this cache's chunk size; None otherwise."""
        try:
            plan = json.loads(path.read_text())
            order = [str(k) for k in plan["order"]]
            if plan["chunk"] != self.chunk or not set(missing) <= set(order):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return order

    def _run(self, backbone: Backbone, inputs: list[Input], role: str, label: str | None, cached: bool = True) -> np.ndarray:
        """Features of every input (no cache), batched in the backbone's `encode_order`."""
        reporter = _reporter.get()
        task = reporter.start(self._describe(backbone, role, label, len(inputs), cached), len(inputs)) if reporter else None
        order = backbone.encode_order(inputs)
        feats = np.zeros((len(inputs), backbone.dim), dtype=np.float32)
        for start in range(0, len(order), self.chunk):
            rows = order[start : start + self.chunk]
            part = backbone.encode(
                [inputs[i] for i in rows], role, on_batch=(lambda k: reporter.advance(task, k)) if reporter else None
            )
            self._check_finite(backbone, part)
            feats[rows] = part
        return feats

    @staticmethod
    def _describe(backbone: Backbone, role: str, label: str | None, count: int, cached: bool) -> str:
        # the first run on a data set spends most of its time here: say what and how many
        what = label or f"{backbone.spec} ({backbone.modality}, {role})"
        where = "not in the cache" if cached else "(feature cache off)"
        return f"encoding {count} inputs {where}: {what}"

    @staticmethod
    def _check_finite(backbone: Backbone, feats: np.ndarray) -> None:
        if not np.isfinite(feats).all():
            raise ValueError(f"backbone {backbone.spec!r} produced NaN or infinite features")


# ---------------------------------------------------------------------------------------------
# Encoding a table of views
# ---------------------------------------------------------------------------------------------


def encode_views(
    table: Sequence[Sequence[Input | None]],
    num_slots: int,
    backbone: Backbone,
    cache: FeatureCache,
    role: str = "item",
    label: str | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Encode an [N, S] table of view inputs (None = the item lacks that view).

    Returns one float32 [N, D] array per slot (zeros where absent) and the bool [N, S] availability
    mask. Every distinct input is encoded once (through the cache), whatever slot it sits in.
    """
    arrays, available, _ = encode_view_table(table, num_slots, backbone, cache, role, label)
    return arrays, available


def encode_view_table(
    table: Sequence[Sequence[Input | None]],
    num_slots: int,
    backbone: Backbone,
    cache: FeatureCache,
    role: str = "item",
    label: str | None = None,
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """`encode_views` plus one int64 [N] array of content ids per slot (`ftbench.data.content`;
    0 where absent), from the same content hashes as the cache keys."""
    n = len(table)
    available = np.zeros((n, num_slots), dtype=bool)
    flat: list[Input] = []
    where: list[tuple[int, int]] = []
    for i, row in enumerate(table):
        if len(row) != num_slots:
            raise ValueError(f"view table row {i} has {len(row)} entries, expected {num_slots}")
        for s, x in enumerate(row):
            if x is not None:
                available[i, s] = True
                flat.append(x)
                where.append((i, s))
    digests = [content_hash(backbone.modality, x) for x in flat]
    feats = cache.encode(backbone, flat, role, label, keys=digests)
    ids = digest_content_ids(backbone.modality, digests)
    arrays = [np.zeros((n, backbone.dim), dtype=np.float32) for _ in range(num_slots)]
    content = [np.zeros(n, dtype=np.int64) for _ in range(num_slots)]
    for (i, s), vec, cid in zip(where, feats, ids):
        arrays[s][i] = vec
        content[s][i] = cid
    return arrays, available, content


def make_progress_printer(callback: Callable[[str, int, int], None]) -> ProgressReporter:
    """A minimal reporter calling ``callback(label, done, total)``; handy in notebooks."""

    class _Printer:
        def __init__(self) -> None:
            self.state: dict[int, list] = {}

        def start(self, label: str, total: int) -> object:
            key = len(self.state)
            self.state[key] = [label, 0, total]
            callback(label, 0, total)
            return key

        def advance(self, task: object, n: int) -> None:
            entry = self.state[task]  # type: ignore[index]  # task is the key start() returned
            entry[1] += n
            callback(entry[0], entry[1], entry[2])

    return _Printer()


def assemble_catalog(
    slots: Sequence[ViewSlot],
    table: Sequence[Sequence[Input | None]],
    backbones: dict[str, Backbone],
    cache: FeatureCache,
    item_ids: Sequence,
    source: str,
    role: str = "item",
) -> ArrayCatalog:
    """An `ArrayCatalog` from an [N, S] table of raw view inputs (texts, image paths, None for a
    missing view): the slots of each modality are encoded by ``backbones[modality]`` through the
    cache (`encode_view_table`), then laid out in slot order, with the content id of every view
    (`ftbench.data.content`: the same text or image file has the same id in every item)."""
    recorder = _recorder.get()
    if recorder is not None:
        recorder.catalogs.append((tuple(slots), [list(row) for row in table], list(item_ids)))
    n, s_count = len(table), len(slots)
    features: list[np.ndarray | None] = [None] * s_count
    content: list[np.ndarray | None] = [None] * s_count
    available = np.zeros((n, s_count), dtype=bool)
    for modality in dict.fromkeys(s.modality for s in slots):
        if modality not in backbones:
            raise ValueError(f"{source}: no backbone for the {modality} views")
        cols = [j for j, s in enumerate(slots) if s.modality == modality]
        sub = [[row[j] for j in cols] for row in table]
        arrays, avail, ids = encode_view_table(sub, len(cols), backbones[modality], cache, role, f"{source}: {modality} views")
        for k, j in enumerate(cols):
            features[j] = arrays[k]
            available[:, j] = avail[:, k]
            content[j] = ids[k]
    return ArrayCatalog(
        slots,
        cast("list[np.ndarray]", features),  # every slot's modality was encoded above
        available,
        list(item_ids),
        source=source,
        content_ids=content,
    )
