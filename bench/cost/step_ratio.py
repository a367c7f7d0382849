"""Whole-step time of each objective against a reference objective's, measured side by side.

`ftbench cost` times each (objective, V) cell in a fresh process, one cell after the other: right
for peak memory and growth exponents, but a ratio of two cells measured minutes apart carries
whatever the machine did in between (the project machine's speed drifts by a quarter to a third
within minutes). Here every objective's training step is built in one process and timed in rounds:
a round runs `repeats` steps of each objective in turn, in an order rotated from round to round, so
a drift falls on all objectives alike, and each round gives one ratio per objective, its median
step over the reference's median step in that round. Reported per objective: the median step over
all rounds, and the median, quartiles and range of the per-round ratios. Beside each step, its
FLOPs and GEMM floor (`ftbench.cost.floor`: one step's matrix products, recorded, then replayed
alone in the same rounds) and the efficiency floor / step, per round.

The steps are `ftbench.cost.scaling.whole_step`: the training loop's own `Stepper` (sampling,
feature generation, towers, objective, backward, AdamW) on the cost benchmark's synthetic
marketplace, every item with V views.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from typing import Any

import numpy as np
import torch

from ..device import describe_device, resolve_device
from ..run.experiment import package_versions
from .floor import GemmReplay, profile_step
from .measure import timed_ms
from .scaling import CostSpec, objective_class, whole_step

STEP_RATIO_SCHEMA_VERSION = 1


def _measure(args: tuple) -> dict[str, Any]:
    """Run in a child process: build every objective's step, warm each up, time the rounds."""
    names, views, rounds, spec_dict = args
    spec = CostSpec(**spec_dict)

    if spec.threads:
        torch.set_num_threads(spec.threads)

    device = resolve_device(spec.device)
    total = spec.warmup + rounds * spec.repeats + 2  # + the profiled step
    steps, profiles, replays = {}, {}, {}
    for name in names:
        step, counter = whole_step(name, views, spec, device, steps=total), iter(range(1, 10**9))
        steps[name] = lambda step=step, counter=counter: step(next(counter))
        timed_ms(steps[name], 0, spec.warmup, device)  # warm-up only
        profiles[name] = profile_step(steps[name])  # one step's FLOPs and matrix products
        replays[name] = GemmReplay(profiles[name].gemms, device)
        timed_ms(replays[name].run, 0, 1, device)
    times: dict[str, list[list[float]]] = {name: [] for name in names}  # [round][repeat] milliseconds
    floors: dict[str, list[list[float]]] = {name: [] for name in names}  # [round][repeat] milliseconds of the replayed products
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed_ms(steps[name], spec.repeats, 0, device))
            floors[name].append(timed_ms(replays[name].run, spec.repeats, 0, device))
    return {
        "times_ms": times,
        "floor_ms": floors,
        "threads": torch.get_num_threads(),
        "profiles": {name: profiles[name].summary() for name in names},
    }


def summarize(
    names: list[str],
    times_ms: dict[str, list[list[float]]],
    floor_ms: dict[str, list[list[float]]] | None = None,
    profiles: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per objective: median step and its IQR over all timed steps; the per-round ratios to the
    first name's median step of the same round, with their median, quartiles and range. With
    `floor_ms` (the step's replayed matrix products, timed in the same rounds): the median floor
    and the median over rounds of floor / step (efficiency); with `profiles`, the step's FLOPs."""
    reference = [float(np.median(steps)) for steps in times_ms[names[0]]]
    out = []
    for name in names:
        every = np.concatenate([np.asarray(steps, dtype=float) for steps in times_ms[name]])
        ratios = np.array([float(np.median(steps)) / ref for steps, ref in zip(times_ms[name], reference)])
        floor: dict[str, Any] = {}
        if floor_ms is not None:
            floors = np.concatenate([np.asarray(f, dtype=float) for f in floor_ms[name]])
            efficiency = [float(np.median(f)) / float(np.median(s)) for f, s in zip(floor_ms[name], times_ms[name])]
            floor = {
                "floor_ms_median": float(np.median(floors)),
                "efficiency_median": float(np.median(efficiency)),
                "efficiency_min": float(min(efficiency)),
                "efficiency_max": float(max(efficiency)),
            }
        if profiles is not None:
            floor["gflop"] = profiles[name]["gflop"]
            floor["gemm_calls"] = profiles[name]["gemm_calls"]
        out.append(
            {
                "objective": name,
                "step_ms_median": float(np.median(every)),
                "step_ms_iqr": float(np.percentile(every, 75) - np.percentile(every, 25)),
                "ratio_median": float(np.median(ratios)),
                "ratio_q1": float(np.percentile(ratios, 25)),
                "ratio_q3": float(np.percentile(ratios, 75)),
                "ratio_min": float(ratios.min()),
                "ratio_max": float(ratios.max()),
                "round_ratios": [round(float(x), 4) for x in ratios],
                **floor,
            }
        )
    return out


def run_step_ratio(spec: CostSpec, views: int, rounds: int) -> dict[str, Any]:
    """Time `spec.objectives` (the first is the reference) at `views` views, side by side in one
    fresh process: `spec.warmup` untimed steps each, then `rounds` rounds of `spec.repeats` steps each."""
    if len(spec.objectives) < 2:
        raise ValueError("--step-ratio needs at least two objectives: the reference (the first) and one to compare")
    if len(set(spec.objectives)) != len(spec.objectives):
        raise ValueError(f"--step-ratio: an objective is named twice in {', '.join(spec.objectives)}")
    if views < 1 or rounds < 1 or spec.repeats < 1:
        raise ValueError("--step-ratio needs --views >= 1, --rounds >= 1 and --repeats >= 1")
    for name in spec.objectives:  # unknown names and steps over the memory budget fail before any work
        estimate = objective_class(name).memory_estimate(spec.batch_size, views, spec.dim)
        if estimate > spec.memory_budget_gb * 2**30:
            raise ValueError(
                f"--step-ratio: {name} at V={views} needs an estimated {estimate / 2**30:.1f} GB, over "
                f"--budget-gb {spec.memory_budget_gb}; leave it out or raise the budget"
            )
    device = resolve_device(spec.device)
    with mp.get_context("spawn").Pool(1) as pool:
        measured = pool.apply(_measure, ((list(spec.objectives), views, rounds, dataclasses.asdict(spec)),))
    return {
        "schema_version": STEP_RATIO_SCHEMA_VERSION,
        "kind": "step_ratio",
        "spec": dataclasses.asdict(spec),
        "views": views,
        "rounds": rounds,
        "reference": spec.objectives[0],
        "threads": measured["threads"],
        "device": describe_device(device),
        "versions": package_versions(),
        "objectives": summarize(list(spec.objectives), measured["times_ms"], measured["floor_ms"], measured["profiles"]),
        "times_ms": measured["times_ms"],
        "floor_ms": measured["floor_ms"],
        "profiles": measured["profiles"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def format_step_ratio(result: dict[str, Any]) -> str:
    ref = result["reference"]
    lines = [
        f"whole step at V={result['views']}, batch {result['spec']['batch_size']}: {result['rounds']} rounds x "
        f"{result['spec']['repeats']} steps, side by side ({result['threads']} threads)",
        f"{'objective':<16} {'step ms':>8} {'IQR':>6} {'x ' + ref:>8}  {'quartiles':<11}  range",
    ]
    for row in result["objectives"]:
        lines.append(
            f"{row['objective']:<16} {row['step_ms_median']:>8.2f} {row['step_ms_iqr']:>6.2f} "
            f"{row['ratio_median']:>7.2f}x  {row['ratio_q1']:.2f}-{row['ratio_q3']:.2f}  "
            f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
        )
    floors = [row for row in result["objectives"] if "floor_ms_median" in row]
    if floors:  # a second table: the rows stay within 80 columns
        lines.append("FLOPs; the step's matrix products replayed alone (GEMM floor), same rounds:")
        lines.append(f"{'objective':<16} {'GFLOP':>7} {'GEMMs':>6} {'floor ms':>9} {'floor/step':>10}  range")
        for row in floors:
            lines.append(
                f"{row['objective']:<16} {row['gflop']:>7.3f} {row['gemm_calls']:>6} {row['floor_ms_median']:>9.2f} "
                f"{row['efficiency_median']:>10.2f}  {row['efficiency_min']:.2f}-{row['efficiency_max']:.2f}"
            )
    return "\n".join(lines)
