"""The regime map's design: where in the synthetic generator's knob space the objectives are compared.

A cell is one point of a scrambled Sobol sequence (scipy.stats.qmc, seeded) over the knobs that
decide who wins, mapped to generator options and a view count:

    knob                         range              scale    why
    query_aux_fraction           [0, 0.9]           linear   how often queries name what only auxiliary views show
    aux_informativeness          [0, 1]             linear   how much item semantics the auxiliary views carry
    cross_side_overlap           [0, 1]             linear   how much the image and text sides' auxiliary views share
    views (--views)              2 .. 8             integer  how many views a step may use
    interactions                 [3,000, 100,000]   log      the training signal (queries and their items)

Everything else stays at the synthetic default (20,000 items, the standard 400-step budget). A
Sobol design of 2^m points fills the cube evenly in every projection, so a predictor fitted on the
map sees every knob's range, and held-out cells lie among fitted ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

KNOBS: tuple[tuple[str, float, float, str], ...] = (
    ("query_aux_fraction", 0.0, 0.9, "linear"),
    ("aux_informativeness", 0.0, 1.0, "linear"),
    ("cross_side_overlap", 0.0, 1.0, "linear"),
    ("views", 2, 8, "integer"),
    ("interactions", 3_000, 100_000, "log"),
)
DEFAULT_CELLS = 32
DEFAULT_DESIGN_SEED = 0


@dataclass(frozen=True)
class DesignPoint:
    """One cell of the map: a view count and the generator options that set it apart."""

    index: int
    views: int
    options: dict

    @property
    def sets(self) -> list[str]:
        """The cell's options as `--set dataset.KEY=VALUE` strings (what `ftbench run` takes)."""
        return [f"dataset.{key}={value!r}" for key, value in self.options.items()]

    @property
    def label(self) -> str:
        return f"cell {self.index:02d}"


def _map_unit(u: float, low: float, high: float, scale: str):
    if scale == "linear":
        return round(low + u * (high - low), 4)
    if scale == "log":
        return int(round(math.exp(math.log(low) + u * (math.log(high) - math.log(low)))))
    if scale == "integer":  # equal shares of [0, 1) to each integer in low..high
        return int(min(high, low + math.floor(u * (high - low + 1))))
    raise ValueError(f"unknown knob scale {scale!r}")


def regime_design(cells: int = DEFAULT_CELLS, seed: int = DEFAULT_DESIGN_SEED) -> list[DesignPoint]:
    """`cells` points of a scrambled Sobol sequence over `KNOBS`, the same for the same arguments.

    `cells` should be a power of two (Sobol's balance properties hold for 2^m points); others are
    accepted with scipy's warning.
    """
    if cells < 1:
        raise ValueError(f"the regime map needs at least one cell, got {cells}")
    from scipy.stats import qmc  # heavy: scipy

    unit = qmc.Sobol(d=len(KNOBS), scramble=True, seed=np.random.default_rng(seed)).random(cells)
    points = []
    for i, row in enumerate(unit):
        values = {name: _map_unit(float(u), low, high, scale) for (name, low, high, scale), u in zip(KNOBS, row)}
        views = int(values.pop("views"))
        points.append(DesignPoint(index=i, views=views, options=values))
    return points


def design_json(points: list[DesignPoint], seed: int) -> str:
    """The design as committed beside the map's results (knobs, ranges, seed, cells)."""
    return (
        json.dumps(
            {
                "generator": "scipy.stats.qmc.Sobol(scramble=True)",
                "seed": seed,
                "knobs": [dict(name=n, low=lo, high=hi, scale=s) for n, lo, hi, s in KNOBS],
                "cells": [asdict(p) for p in points],
            },
            indent=2,
        )
        + "\n"
    )
