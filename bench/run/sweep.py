"""Sweeps: the grid objectives x views x seeds, one result file per run.

A sweep is a list of cells (objective, views, seed) sharing one data set and one set of options.
Every cell is validated with `experiment.prepare` before any training starts, so a typo fails in
seconds, not after hours. A run whose result file already exists (same identity,
`identity.run_identity`: the config hash with the data's content fingerprint, hence the same file
name) and loads correctly is skipped unless `overwrite`; a cell whose data changed runs again beside
its earlier file (`SweepOutcome.data_changed`). A failing run is reported and the sweep goes on (the
caller exits non-zero at the end). Result files are written atomically, so a killed sweep leaves
complete files and at most a hidden temp file, removed by the next sweep
(`results.remove_interrupted_writes`). Runs of the same data-set config share the built data set
(`dataset_cache`). `--shard i/n` keeps every n-th cell of the grid sorted by config hash (which
depends only on the run's config), so n machines with the same grid run every cell once; with a
shared storage (`claims.CellClaims`) workers claim cells instead, and a dead worker's cell is
claimable again after the stale timeout (docs/scaling-out.md). `PRESETS` are the standard grids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import config_hash
from ..files import remove_interrupted_writes
from ..registry import suggest
from .identity import other_data_results
from .results import load_result, result_filename
from .spec import RunSpec

if TYPE_CHECKING:  # the experiment module pulls in torch; importing it lazily keeps `--help` fast
    from .experiment import PreparedRun

# The standard grids. `objectives: None` means every registered objective (OBJECTIVES.names()).
# Options given on the command line replace a preset's lists (--objective, --views, --seed) or
# scalars (--dataset, --steps, --batch-size); `--set` values are applied after the preset's.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": (
            "every registered objective x views 1,2,4,8 x seeds 0,1,2 on the default synthetic "
            "marketplace (20,000 items, 30,000 interactions) with a reduced budget (100 steps of 128 "
            "items, validation once at the end on a 5,000-item gallery) for a first look"
        ),
        "objectives": None,
        "views": [1, 2, 4, 8],
        "seeds": [0, 1, 2],
        "dataset": "synthetic",
        "steps": 100,
        "batch_size": 128,
        "sets": ["train.eval_every=0", "train.val_gallery_size=5000"],
    },
    "paper-scale": {
        "description": (
            "the paper's scale on the synthetic marketplace: 1,000,000 items and 292,520 "
            "interactions (arXiv 2512.18117), 8 views, clip and factorized, seeds 0,1,2, the standard "
            "400-step budget; query->item Recall@500 on the full 1M catalog; 2-4 min a run on 2 CPU cores, "
            "about 20 min for the 6 runs (run it as a "
            "background job; --shard splits it over machines)"
        ),
        "objectives": ["clip", "factorized"],
        "views": [8],
        "seeds": [0, 1, 2],
        "dataset": "synthetic",
        "steps": 400,
        "batch_size": None,
        "sets": ["dataset.items=1000000", "dataset.interactions=292520", "eval.ks=(1, 10, 50, 100, 500)"],
    },
    "regime-map": {
        "description": (
            "the regime map: every registered objective x seeds 0,1,2 on 32 cells of a seeded Sobol "
            "design over the synthetic generator (query_aux_fraction, aux_informativeness, "
            "cross_side_overlap, views 2-8, interactions 3k-100k; ftbench.regime.design), the standard "
            "400-step budget: 672 runs; --shard splits it, and a rerun continues where it stopped"
        ),
        "objectives": None,
        "views": None,
        "seeds": [0, 1, 2],
        "dataset": "synthetic",
        "steps": None,
        "batch_size": None,
        "sets": [],
        "design": "regime",
    },
}


def describe_presets() -> str:
    """One line per preset, for `--help`."""
    return "; ".join(f"'{name}': {p['description']}" for name, p in PRESETS.items())


@dataclass
class SweepSpec:
    """The grid and the options shared by every run of a sweep."""

    objectives: list[str]
    views: list[int]
    seeds: list[int]
    dataset: str = "synthetic"
    sets: list[str] = field(default_factory=list)
    steps: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    deterministic: bool = False
    #: design points (views, extra --set strings) that replace `views`: the regime map's cells
    points: list[tuple[int, list[str]]] | None = None

    def cells(self) -> list[RunSpec]:
        """The grid as run specs, in the order objectives x views x seeds (duplicates removed); with
        design points, points x seeds x objectives, so that a sweep stopped part-way has compared
        every objective on the cells it finished."""
        if self.points is not None:
            order = [
                (objective, views, extra, seed)
                for views, extra in self.points
                for seed in self.seeds
                for objective in self.objectives
            ]
        else:
            order = [(objective, views, [], seed) for objective in self.objectives for views in self.views for seed in self.seeds]
        out, seen = [], set()
        for objective, views, extra, seed in order:
            key = (objective, views, tuple(extra), seed)
            if key in seen:
                continue
            seen.add(key)
            out.append(
                RunSpec(
                    objective=objective,
                    dataset=self.dataset,
                    views=views,
                    seed=seed,
                    device=self.device,
                    sets=list(self.sets) + list(extra),
                    steps=self.steps,
                    batch_size=self.batch_size,
                    deterministic=self.deterministic,
                )
            )
        return out


def spec_from_preset(
    preset: str | None,
    objectives: list[str] | None = None,
    views: list[int] | None = None,
    seeds: list[int] | None = None,
    dataset: str | None = None,
    sets: list[str] | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    deterministic: bool = False,
    registered_objectives: Callable[[], list[str]] | None = None,
) -> SweepSpec:
    """Combine a preset (or none) with command-line options; explicit options win.

    Without a preset, `objectives`, `views` and `seeds` must be given (non-empty).
    """
    if registered_objectives is None:
        from ..objectives import OBJECTIVES  # lazy: CLI start-up

        registered_objectives = OBJECTIVES.names
    base: dict[str, Any] = {
        "objectives": None,
        "views": None,
        "seeds": None,
        "dataset": "synthetic",
        "steps": None,
        "batch_size": None,
        "sets": [],
    }
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(suggest(preset, list(PRESETS), "--preset"))
        base = dict(PRESETS[preset])
        if base["objectives"] is None:
            base["objectives"] = list(registered_objectives())
    chosen_objectives = list(objectives) if objectives else base["objectives"]
    points = None
    if base.get("design") == "regime":
        if views:
            raise ValueError(f"--views cannot be given with --preset {preset}: each cell of the design has its own")
        from ..regime.design import regime_design  # lazy: CLI start-up

        points = [(p.views, p.sets) for p in regime_design()]
        base["views"] = sorted({v for v, _ in points})
    chosen_views = list(views) if views else base["views"]
    chosen_seeds = list(seeds) if seeds else base["seeds"]
    missing = [
        name
        for name, value in (("--objective", chosen_objectives), ("--views", chosen_views), ("--seed", chosen_seeds))
        if not value
    ]
    if missing:
        raise ValueError(
            f"no {', '.join(missing)} given: name the grid (e.g. --objective clip,factorized "
            f"--views 1,8 --seed 0,1,2) or use --preset ({', '.join(PRESETS)})"
        )
    bad_views = [v for v in chosen_views if v < 1]
    if bad_views:
        raise ValueError(f"--views must be at least 1, got {bad_views}")
    return SweepSpec(
        objectives=chosen_objectives,
        views=chosen_views,
        seeds=chosen_seeds,
        dataset=dataset or base["dataset"],
        sets=list(base["sets"]) + list(sets or []),
        steps=steps if steps is not None else base["steps"],
        batch_size=batch_size if batch_size is not None else base["batch_size"],
        device=device,
        deterministic=deterministic,
        points=points,
    )


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`"i/n"` (1 <= i <= n) -> (i, n); None -> None (the whole grid)."""
    if text is None:
        return None
    try:
        left, right = text.split("/")
        i, n = int(left), int(right)
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n with integers, e.g. --shard 1/3") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: expected 1 <= i <= n (shards are numbered 1..n)")
    return i, n


class GridError(ValueError):
    """One or more cells of the grid failed validation; the message lists each with its reason."""


def prepare_grid(spec: SweepSpec) -> list[PreparedRun]:
    """`prepare` every cell before running any; collect every failure into one `GridError`."""
    from .experiment import prepare  # lazy: CLI start-up

    prepared, errors = [], []
    cells = spec.cells()
    data_memo: dict = {}  # the cells share one data set: its files are fingerprinted once
    for cell in cells:
        try:
            prepared.append(prepare(cell, data_memo))
        except (ValueError, KeyError, OSError) as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            errors.append((f"{cell.objective} views={cell.views} seed={cell.seed}", message))
    if errors:
        # one line per distinct message (a bad --set fails every cell the same way)
        by_message: dict[str, list[str]] = {}
        for label, message in errors:
            by_message.setdefault(message, []).append(label)
        lines = []
        for message, labels in by_message.items():
            if len(labels) == len(cells):
                lines.append(message)
            else:
                more = f" and {len(labels) - 1} more cell(s)" if len(labels) > 1 else ""
                lines.append(f"{labels[0]}{more}: {message}")
        raise GridError(lines[0] if len(lines) == 1 else "invalid cells:\n  " + "\n  ".join(lines))
    return prepared


def shard_grid(prepared: list[PreparedRun], shard: tuple[int, int] | None) -> list[PreparedRun]:
    """The cells of shard i of n: positions i-1, i-1+n, ... of the grid sorted by config hash."""
    ordered = sorted(prepared, key=lambda p: p.config_hash)
    if shard is None:
        return ordered
    i, n = shard
    return ordered[i - 1 :: n]


def dataset_key(prepared: PreparedRun) -> str:
    """Runs with equal keys build the same data set (name + dataset config)."""
    return f"{prepared.config['dataset']}:{config_hash(prepared.config['dataset_config'])}"


def run_order(prepared: list[PreparedRun]) -> list[PreparedRun]:
    """Group runs by data set (so the cache holds one at a time), then objective, views, seed."""
    return sorted(prepared, key=lambda p: (dataset_key(p), p.config["objective"], p.config["views"], p.config["seed"]))


def existing_result(prepared: PreparedRun, out_dir: Path) -> tuple[Path, str | None]:
    """Where the run's result goes, and why it need not run (None: it must run).

    A file is reused only if it loads as a result of this schema version and carries this
    config hash; a damaged or foreign file is re-run (and overwritten).
    """
    path = Path(out_dir) / result_filename(prepared.config, prepared.config_hash)
    if not path.exists():
        return path, None
    try:
        result = load_result(path)
    except (ValueError, TypeError, OSError):
        return path, None
    if result.config_hash != prepared.config_hash:
        return path, None
    return path, "result exists"


@dataclass
class SweepOutcome:
    """What happened to each run of the (sharded) grid."""

    ran: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell, message)
    elsewhere: list[str] = field(default_factory=list)  # cells claimed or run by another worker
    #: cells that ran because their data changed: (cell, the files of its results on other data, kept)
    data_changed: list[tuple[str, list[Path]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def cell_label(prepared: PreparedRun) -> str:
    c = prepared.config
    return f"{c['objective']} V={c['views']} seed={c['seed']}"


def run_sweep(
    runs: list[PreparedRun],
    out_dir: Path,
    overwrite: bool = False,
    on_start: Callable[[int, int, PreparedRun, str], None] | None = None,
    on_done: Callable[[int, int, PreparedRun, str, str], None] | None = None,
    run_progress: Callable[[str, int, int, dict], None] | None = None,
    execute_fn: Callable[..., Any] | None = None,
    claims: Any = None,
    tracker: Any = None,
) -> SweepOutcome:
    """Run `runs` (already prepared and sharded) in `run_order`, writing one result file each.

    `on_start(index, total, run, action)` is called before each run with action "run" or "skip";
    `on_done(index, total, run, status, detail)` after it with status "ran", "skipped" or
    "failed". A run raising any Exception is recorded as failed and the sweep continues
    (KeyboardInterrupt still stops it). The data set is built once per data-set config.
    `execute_fn` defaults to `experiment.execute` (same signature). With `claims`
    (`claims.CellClaims`), each cell runs only if this worker claims it (status "elsewhere"
    otherwise); a failed run releases its claim, so that another worker may try it. With a
    `tracker` (`tracking.Tracker`) every cell that runs is one tracked run (skipped cells are not).
    """
    if execute_fn is None:
        from .experiment import execute  # lazy: CLI start-up

        execute_fn = execute
    outcome = SweepOutcome()
    ordered = run_order(runs)
    cache: dict = {}
    extra = {"tracker": tracker} if tracker is not None else {}
    current_key = None
    total = len(ordered)
    for index, prepared in enumerate(ordered):
        path, reason = existing_result(prepared, out_dir)
        remove_interrupted_writes(path)  # temp files of a killed earlier attempt at this cell
        if reason is not None and not overwrite:
            if on_start:
                on_start(index, total, prepared, "skip")
            outcome.skipped.append(path)
            if on_done:
                on_done(index, total, prepared, "skipped", str(path))
            continue
        key = dataset_key(prepared)
        if key != current_key:
            cache.clear()  # hold one data set at a time (a 1M-item catalog is large)
            current_key = key
        claim = None
        if claims is not None:
            claim = None if claims.done(prepared.config_hash) else claims.claim(prepared.config_hash)
            if claim is None:
                outcome.elsewhere.append(cell_label(prepared))
                if on_done:
                    on_done(index, total, prepared, "elsewhere", "claimed by another worker")
                continue
        earlier = other_data_results(out_dir, prepared.config, prepared.data)
        if earlier:
            outcome.data_changed.append((cell_label(prepared), [p for p, _ in earlier]))
        if on_start:
            on_start(index, total, prepared, "run")
        try:
            if claim is not None:
                with claims.heartbeat(claim):
                    _, written = execute_fn(prepared, out_dir, progress=run_progress, dataset_cache=cache, **extra)
                claims.release(claim, ok=True)
            else:
                _, written = execute_fn(prepared, out_dir, progress=run_progress, dataset_cache=cache, **extra)
        except Exception as exc:  # noqa: BLE001 - a failing run must not stop the sweep
            message = f"{type(exc).__name__}: {exc}"
            if claim is not None:
                claims.release(claim, ok=False, detail=message)
            outcome.failed.append((cell_label(prepared), message))
            if on_done:
                on_done(index, total, prepared, "failed", message)
            continue
        outcome.ran.append(Path(written) if written is not None else path)
        if on_done:
            on_done(index, total, prepared, "ran", str(written))
    return outcome
