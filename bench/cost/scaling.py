"""Cost against the number of views.

For each objective and V: (a) the objective alone - view selection, forward and backward on fixed
random unit embeddings of the views it selects - and (b) a whole training step with the towers on
the synthetic marketplace with every item having V views (sampling, feature generation, towers,
objective, backward, AdamW). Warm-up, then the median and spread of repeats. Beside (b): the
step's FLOPs and its GEMM floor, its matrix products replayed alone (`ftbench.cost.floor`), and
the efficiency floor / step. Solver iterations
are fixed (tolerance off) so that curves compare like with like. Each (objective, V) cell runs in
a fresh process, so its peak memory (`ftbench.cost.measure`: RSS high-water mark above the process
baseline on CPU, peak allocated memory on CUDA) is its own; a cell whose estimated memory exceeds the budget is skipped
with the reason. The growth exponent is the least-squares slope of log time against log V over
V >= 2 (V = 1 has no cross-view pair).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import apply_overrides, parse_literal
from ..data.batching import compact_positions
from ..data.dataset import MultiViewDataset
from ..data.views import SlotLayout
from ..datasets.synthetic import SyntheticCatalog, SyntheticConfig, generate_queries
from ..device import describe_device, resolve_device
from ..model.towers import TowerConfig, Towers
from ..objectives import OBJECTIVES
from ..objectives.base import AlignmentBatch, EncodedViews, ObjectiveContext, fuse
from ..run.experiment import package_versions
from ..run.results import atomic_write_bytes, atomic_write_text
from ..train.loop import Stepper, TrainConfig
from .floor import GemmReplay, profile_step
from .measure import PeakMemory, timed_ms

COST_SCHEMA_VERSION = 1

# settings that make every iterative solver run a fixed number of iterations (like with like)
FIXED_ITERATION_SETS: dict[str, list[str]] = {
    "full_ot": ["tolerance=0.0"],
    "mover": [],
    "oat": [],
}


# benchmark-only variants of an objective (not registered, not in any result of `ftbench run`):
# name -> (objective, function giving the variant's class from the objective's), so that a
# before/after pair is measured side by side in one `ftbench cost` run. Subclasses, not patches
# of the registered class: a variant and its objective can be built in one process (--step-ratio)
def _oat_with_geomloss_wasserstein(cls):
    return type("OatGeomlossW1", (cls,), {"wasserstein_solver": "geomloss"})


def _oat_floor(cls):
    def alignment_terms(self, batch, scale):
        # every view still goes through the towers (oat's view selection), fused with the item
        # weights; no plans, CMCL or W1: what oat's step costs before any of its own terms
        return {"item_embedding": fuse(batch.views.embeddings, batch.views.item_weight)}

    return type("OatFloor", (cls,), {"alignment_terms": alignment_terms})


BENCHMARK_VARIANTS = {
    "oat-geomloss-w1": ("oat", _oat_with_geomloss_wasserstein),  # oat's W1 term as two geomloss calls
    # oat's step without its own terms: the floor that oat's terms add to (towers on all V views,
    # the fused item embedding, the query InfoNCE, AdamW)
    "oat-floor": ("oat", _oat_floor),
}


def _base_objective(name: str) -> str:
    return BENCHMARK_VARIANTS[name][0] if name in BENCHMARK_VARIANTS else name


def objective_class(name: str):
    """The class measured under `name`: a registered objective or a benchmark-only variant of one."""
    cls = OBJECTIVES.get(_base_objective(name))
    return BENCHMARK_VARIANTS[name][1](cls) if name in BENCHMARK_VARIANTS else cls


@dataclass
class CostSpec:
    objectives: list[str]
    views: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    batch_size: int = 256
    dim: int = 256
    repeats: int = 10
    warmup: int = 3
    device: str = "cpu"
    memory_budget_gb: float = 8.0
    sets: list[str] = field(default_factory=list)
    threads: int | None = None


def _objective_sets(name: str, spec_sets: list[str]) -> list[str]:
    name = _base_objective(name)
    fields = {f.name for f in dataclasses.fields(OBJECTIVES.get(name).Config)}
    fixed = [s for s in FIXED_ITERATION_SETS.get(name, []) if s.split("=")[0] in fields]
    mine = []
    for s in spec_sets:
        key = s.split("=", 1)[0]
        if key.startswith("objective."):
            key = key.split(".", 1)[1]
            s = s.split(".", 1)[1]
        if key in fields:
            mine.append(s)
    return fixed + mine


def _objective_config(name: str, spec: CostSpec):
    """(class, config, overrides) of the objective or variant measured under `name`."""
    overrides = dict((k, parse_literal(v)) for k, v in (s.split("=", 1) for s in _objective_sets(name, spec.sets)))
    cls = objective_class(name)
    return cls, apply_overrides(cls.Config(), overrides, "objective"), overrides


def _cell_catalog(views: int, spec: CostSpec):
    """The synthetic marketplace of a cell: every item has V views (image and text from V = 2)."""
    n_items = max(8 * spec.batch_size, 512)
    dcfg = SyntheticConfig(
        items=n_items,
        interactions=n_items,
        max_views=max(views, 2) if views > 1 else 1,
        modalities="image+text" if views > 1 else "image",
        aux_view_dropout=0.0,
    )
    return SyntheticCatalog(dcfg), dcfg


def whole_step(name: str, views: int, spec: CostSpec, device, steps: int, catalog=None):
    """A whole training step of `name` at V views as a function of the step number: the same
    `Stepper` as training (sampling, feature generation, towers, objective, backward, AdamW) on the
    cell's synthetic marketplace (`catalog`: a (catalog, config) pair from `_cell_catalog` to reuse),
    with a schedule of `steps` steps. Seeded: the same batches every time."""
    torch.manual_seed(0)
    cls, config, _ = _objective_config(name, spec)
    catalog, dcfg = catalog or _cell_catalog(views, spec)
    n_items = dcfg.items
    ctx = ObjectiveContext(SlotLayout.from_catalog(catalog), spec.dim, n_items, True, True)
    queries = generate_queries(catalog, dcfg)
    dataset = MultiViewDataset("synthetic", catalog, np.zeros(n_items, dtype=np.int8), queries)
    assert dataset.queries is not None  # given just above
    dataset.queries.split[:] = 0
    towers = Towers(catalog.feature_dims, TowerConfig(embedding_dim=spec.dim)).to(device)
    objective = cls(config, ctx).to(device)
    stepper = Stepper(dataset, towers, objective, TrainConfig(steps=steps, batch_size=spec.batch_size), views, 0, device)
    return stepper.step


def _measure_cell(args: tuple) -> dict[str, Any]:
    """Run in a child process: time one (objective, V) cell, alone and as a whole step."""
    name, views, spec_dict = args
    spec = CostSpec(**spec_dict)

    if spec.threads:
        torch.set_num_threads(spec.threads)

    device = resolve_device(spec.device)
    torch.manual_seed(0)
    cls, config, overrides = _objective_config(name, spec)
    catalog, dcfg = _cell_catalog(views, spec)
    layout = SlotLayout.from_catalog(catalog)
    ctx = ObjectiveContext(layout, spec.dim, dcfg.items, True, True)

    memory = PeakMemory(device)
    # (a) the objective alone on fixed random embeddings of the views it selects
    objective = cls(config, ctx).to(device)
    gen = torch.Generator().manual_seed(0)
    full_mask = torch.ones(spec.batch_size, len(layout.names), dtype=torch.bool)
    table = torch.nn.functional.normalize(torch.randn(spec.batch_size, len(layout.names), spec.dim), dim=-1).to(device)
    query = torch.nn.functional.normalize(torch.randn(spec.batch_size, spec.dim), dim=-1).to(device)

    def objective_alone():
        sel = objective.select_views(full_mask, gen)
        slot, valid = compact_positions(sel.mask)
        safe = slot.clamp(min=0).to(device)
        valid_d = valid.to(device)
        emb = table.gather(1, safe.unsqueeze(-1).expand(-1, -1, spec.dim)) * valid_d.unsqueeze(-1)
        emb = emb.detach().requires_grad_(True)
        views_ = EncodedViews(
            embeddings=emb,
            mask=valid_d,
            is_primary=layout.is_primary.to(device)[safe] & valid_d,
            side=layout.side.to(device)[safe],
            side_weight=sel.side_weight.to(device).gather(1, safe) * valid_d,
            item_weight=sel.item_weight.to(device).gather(1, safe) * valid_d,
            item_index=torch.arange(spec.batch_size, device=device),
        )
        q = query.detach().requires_grad_(True)
        terms = objective(AlignmentBatch(views_, q))
        type(objective).total_loss(terms).backward()

    alone = timed_ms(objective_alone, spec.repeats, spec.warmup, device)
    peak_alone = memory.extra_mb()

    # (b) a whole training step on the synthetic marketplace with V views per item
    step = whole_step(name, views, spec, device, steps=spec.warmup + spec.repeats + 2, catalog=(catalog, dcfg))
    counter = iter(range(1, 10**9))
    step_times = timed_ms(lambda: step(next(counter)), spec.repeats, spec.warmup, device)
    peak_step = memory.extra_mb()
    # (c) the step's FLOPs and GEMM floor: one more step's matrix products, replayed alone
    profile = profile_step(lambda: step(next(counter)))
    floor_times = timed_ms(GemmReplay(profile.gemms, device).run, spec.repeats, 1, device)
    floor_ms = float(np.median(floor_times))
    return {
        "objective": name,
        "views": views,
        "status": "ok",
        "objective_ms_median": float(np.median(alone)),
        "objective_ms_iqr": float(np.percentile(alone, 75) - np.percentile(alone, 25)),
        "step_ms_median": float(np.median(step_times)),
        "step_ms_iqr": float(np.percentile(step_times, 75) - np.percentile(step_times, 25)),
        "peak_memory_mb": None if peak_step is None else round(float(max(peak_alone or 0.0, peak_step)), 1),
        "step_gflop": profile.flops / 1e9,
        "gemm_calls": len(profile.gemms),
        "floor_ms_median": floor_ms,
        "efficiency": floor_ms / float(np.median(step_times)),
        "gemms": profile.summary()["gemms"],
        "threads": torch.get_num_threads(),
        "objective_overrides": overrides,
    }


def growth_exponent(views: list[int], times: list[float]) -> float | None:
    """Slope of log(time) against log(V) over V >= 2 (least squares); None with < 2 points."""
    pts = [(v, t) for v, t in zip(views, times) if v >= 2 and t and t > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def run_cost(spec: CostSpec, progress=None) -> dict[str, Any]:
    device = resolve_device(spec.device)
    for name in spec.objectives:
        OBJECTIVES.get(_base_objective(name))  # unknown names fail before any work
    rows: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    total = len(spec.objectives) * len(spec.views)
    done = 0
    for name in spec.objectives:
        cls = OBJECTIVES.get(_base_objective(name))
        for v in spec.views:
            est = cls.memory_estimate(spec.batch_size, v, spec.dim)
            if est > spec.memory_budget_gb * 2**30:
                rows.append(
                    {
                        "objective": name,
                        "views": v,
                        "status": "skipped",
                        "reason": f"estimated {est / 2**30:.1f} GB > budget {spec.memory_budget_gb} GB",
                    }
                )
            else:
                with ctx.Pool(1) as pool:
                    rows.append(pool.apply(_measure_cell, ((name, v, dataclasses.asdict(spec)),)))
            done += 1
            if progress:
                progress(done, total, name, v)
    summary = {}
    for name in spec.objectives:
        ok = [r for r in rows if r["objective"] == name and r["status"] == "ok"]
        summary[name] = {
            "objective_exponent": growth_exponent([r["views"] for r in ok], [r["objective_ms_median"] for r in ok]),
            "step_exponent": growth_exponent([r["views"] for r in ok], [r["step_ms_median"] for r in ok]),
        }
    return {
        "schema_version": COST_SCHEMA_VERSION,
        "kind": "cost",
        "spec": dataclasses.asdict(spec),
        "device": describe_device(device),
        "versions": package_versions(),
        "rows": rows,
        "exponents": summary,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_cost(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `cost__B<batch>__<device>.json` and `.csv` (one row per objective x V), atomically."""
    import pandas as pd  # heavy: pandas

    out_dir = Path(out_dir)
    stem = f"cost__B{result['spec']['batch_size']}__{result['device']['device'].replace(':', '')}"
    jpath = out_dir / f"{stem}.json"
    cpath = out_dir / f"{stem}.csv"
    atomic_write_text(jpath, json.dumps(result, indent=2) + "\n")
    frame = pd.DataFrame([{k: v for k, v in r.items() if k not in ("objective_overrides", "gemms")} for r in result["rows"]])
    atomic_write_text(cpath, frame.to_csv(index=False))
    return jpath, cpath


def plot_cost(results: list[dict[str, Any]], path: Path) -> Path:
    """Log-log plot of objective-alone and whole-step time against V for every objective."""
    import matplotlib  # heavy: matplotlib, for the plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib, for the plots only

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for result in results:
        for name, exps in result["exponents"].items():
            ok = [r for r in result["rows"] if r["objective"] == name and r["status"] == "ok"]
            v = [r["views"] for r in ok]
            for ax, key, ex in (
                (axes[0], "objective_ms_median", exps["objective_exponent"]),
                (axes[1], "step_ms_median", exps["step_exponent"]),
            ):
                label = f"{name} (slope {ex:.2f})" if ex is not None else name
                ax.plot(v, [r[key] for r in ok], marker="o", label=label)
    for ax, title in zip(axes, ("objective alone (forward + backward)", "whole training step")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("views per item V")
        ax.set_ylabel("ms (median)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    device = results[0]["device"]["device"] if results else "?"
    fig.suptitle(f"Cost against the number of views (batch {results[0]['spec']['batch_size'] if results else '?'}, {device})")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def format_cost(result: dict[str, Any]) -> str:
    lines = [f"{'objective':<12} {'V':>3} {'alone ms':>10} {'step ms':>10} {'peak MB':>9}  status"]
    for r in result["rows"]:
        if r["status"] == "ok":
            lines.append(
                f"{r['objective']:<12} {r['views']:>3} {r['objective_ms_median']:>10.2f} {r['step_ms_median']:>10.2f} {_mb(r['peak_memory_mb']):>9}  ok"
            )
        else:
            lines.append(f"{r['objective']:<12} {r['views']:>3} {'—':>10} {'—':>10} {'—':>9}  skipped: {r['reason']}")
    floors = [r for r in result["rows"] if r["status"] == "ok" and "floor_ms_median" in r]  # not in older files
    if floors:
        lines.append("whole step: FLOPs, GEMM floor (its products replayed alone), floor / step:")
        lines.append(f"{'objective':<12} {'V':>3} {'GFLOP':>8} {'GEMMs':>6} {'floor ms':>9} {'floor/step':>10}")
        for r in floors:
            lines.append(
                f"{r['objective']:<12} {r['views']:>3} {r['step_gflop']:>8.3f} {r['gemm_calls']:>6} "
                f"{r['floor_ms_median']:>9.2f} {r['efficiency']:>10.2f}"
            )
    lines.append("growth exponents (slope of log time vs log V, V >= 2):")
    for name, e in result["exponents"].items():
        fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(f"  {name:<12} objective alone {fmt(e['objective_exponent'])}   whole step {fmt(e['step_exponent'])}")
    return "\n".join(lines)
