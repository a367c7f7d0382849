"""`ftbench advise`: which objective a catalog should train with, predicted from the regime map.

The map (`results/regime-map/`, `ftbench sweep --preset regime-map`) holds, for every cell of the
design (`ftbench.regime.design`), every objective's score over three seeds and the cell's regime
indicators (`ftbench.regime.indicators`, one `profiles/cell_NN.json` per cell). Per cell and
objective o the target is the paired gain over clip on the map's metric,

    g(c, o) = mean over seeds s of [ m(c, o, s) - m(c, clip, s) ],    m = query->item recall@10

(recall@10 because recall@100 and @500 are near 1 for every objective on the map's 20,000-item
catalogs). For each objective a Gaussian process (scikit-learn; constant x RBF kernel with one
length scale per indicator, plus white noise for the seed-to-seed spread) is fitted from the
cells' standardised indicators to g. For a new catalog, profiled the same way, it gives a mean and a
standard deviation; the advice is

- the predicted gain of each objective over clip with a 95% interval (mean +- 1.96 sd);
- the predicted ranking, with the objectives whose intervals overlap the predicted best's marked
  as tied with it;
- how far the catalog lies from the map: the standardised distance to the nearest cell, against
  the largest nearest-neighbour distance between the map's own cells; beyond `OUTSIDE_FACTOR`
  times that, the advice says "outside the map: run the comparison".

Indicators that do not vary over the map (catalog size, the query modality: constant on the
synthetic map) cannot be learned from and are left out of the fit; the advice names them when the
catalog's value differs from the map's, since the prediction then extrapolates along them.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..run.results import load_result
from ..schema import QUERY_TASK
from .design import DesignPoint, regime_design

REFERENCE = "clip"
MAP_TASK = "query->item"
MAP_METRIC = "recall@10"
Z95 = 1.959963984540054
OUTSIDE_FACTOR = 1.5
#: the regime indicators the predictor may read (also `indicators.Profile.INDICATORS`)
FEATURES = (
    "log10_items",
    "views_per_item_mean",
    "image_share",
    "query_primary_modality_share",
    "train_queries_per_item",
    "train_interactions_per_item",
    "frozen_recall",
    "aux_gain_queries",
    "aux_gain_views",
    "cross_side_overlap",
)


@dataclass
class MapCell:
    """One cell of the map: its design point, indicators and measured scores (objective -> seed -> m)."""

    point: DesignPoint
    indicators: dict[str, float | None]
    scores: dict[str, dict[int, float]]

    def gains(self) -> dict[str, dict[int, float]]:
        """objective -> seed -> m(o, s) - m(clip, s), over the seeds both have."""
        return paired_gains(self.scores)

    def mean_gains(self) -> dict[str, float]:
        return mean_paired_gains(self.scores)


def paired_gains(scores: Mapping[str, Mapping[int, float]]) -> dict[str, dict[int, float]]:
    """objective -> seed -> m(o, s) - m(clip, s), over the seeds both have."""
    ref = scores.get(REFERENCE, {})
    return {o: {s: v - ref[s] for s, v in seeds.items() if s in ref} for o, seeds in scores.items()}


def mean_paired_gains(scores: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """objective -> mean over seeds of its paired gain over clip (objectives with a paired seed)."""
    return {o: float(np.mean(list(g.values()))) for o, g in paired_gains(scores).items() if g}


@dataclass
class RegimeMap:
    """The cells of a map folder that have both a profile and scores."""

    folder: Path
    cells: list[MapCell]
    objectives: list[str]
    missing_profiles: list[int] = field(default_factory=list)
    incomplete: list[int] = field(default_factory=list)


def profile_path(folder: Path, point: DesignPoint) -> Path:
    return Path(folder) / "profiles" / f"cell_{point.index:02d}.json"


def _cell_of(config: Mapping[str, Any], points: list[DesignPoint]) -> DesignPoint | None:
    """The design point a run's config belongs to (its views and the point's dataset options)."""
    dataset = config.get("dataset_config", {})
    for p in points:
        if config.get("views") == p.views and all(dataset.get(k) == v for k, v in p.options.items()):
            return p
    return None


def load_map(folder: Path | str, points: list[DesignPoint] | None = None, min_seeds: int = 3) -> RegimeMap:
    """Scores of every run result under `folder` on a design cell, and each cell's profile.

    A cell enters the fit when it has a profile and clip plus at least one other objective with
    `min_seeds` seeds paired with clip's; the others are listed (`missing_profiles`, `incomplete`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"regime map folder {folder} does not exist (ftbench sweep --preset regime-map --out {folder})")
    points = points if points is not None else regime_design()
    scores: dict[int, dict[str, dict[int, float]]] = {}
    for path in sorted(folder.glob("*__*__v*__s*__*.json")):  # run results only (result_filename's pattern)
        result = load_result(path)
        point = _cell_of(result.config, points)
        if point is None or result.config.get("dataset") != "synthetic":
            continue
        value = result.metrics.get(MAP_TASK, {}).get(MAP_METRIC)
        if value is not None:
            scores.setdefault(point.index, {}).setdefault(result.config["objective"], {})[int(result.config["seed"])] = float(
                value
            )
    cells, missing, incomplete = [], [], []
    objectives: set[str] = set()
    for p in points:
        cell_scores = scores.get(p.index)
        if not cell_scores:
            continue
        ref = cell_scores.get(REFERENCE, {})
        paired = [o for o, s in cell_scores.items() if o != REFERENCE and len(set(s) & set(ref)) >= min_seeds]
        if len(ref) < min_seeds or not paired:
            incomplete.append(p.index)
            continue
        path = profile_path(folder, p)
        if not path.is_file():
            missing.append(p.index)
            continue
        indicators = json.loads(path.read_text(encoding="utf-8"))["indicators"]
        cells.append(MapCell(p, indicators, cell_scores))
        objectives.update(cell_scores)
    return RegimeMap(folder, cells, sorted(objectives), missing, incomplete)


#: indicators that are undefined (None) when a catalog has nothing they could measure, read as
#: their neutral value: no auxiliary view to add (V = 2) gains nothing, and no auxiliary views on
#: both sides (V <= 3) share nothing
NEUTRAL_WHEN_UNDEFINED = {"aux_gain_queries": 0.0, "aux_gain_views": 0.0, "cross_side_overlap": 0.0}


def _matrix(rows: list[Mapping[str, float | None]], names: tuple[str, ...]) -> np.ndarray:
    def value(row: Mapping[str, float | None], name: str) -> float:
        v = row.get(name)
        if v is None:
            return NEUTRAL_WHEN_UNDEFINED.get(name, np.nan)
        return float(v)

    return np.array([[value(r, n) for n in names] for r in rows], dtype=float)


@dataclass
class Prediction:
    objective: str
    gain: float  # predicted paired gain over clip on the map's metric
    low: float
    high: float
    tied_with_best: bool = False
    rank: int = 0


@dataclass
class Advice:
    predictions: list[Prediction]
    best: str
    distance: float  # standardised distance to the nearest map cell
    nearest_cell: int
    map_spread: float  # the largest nearest-neighbour distance among the map's cells
    inside: bool
    features: list[str]
    extrapolated: dict[str, tuple[float, float]]  # constant-on-the-map indicators that differ: (catalog, map)
    cells: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Advisor:
    """Gaussian-process regressors from a map's indicators to each objective's gain over clip."""

    def __init__(self, cells: list[MapCell], objectives: list[str] | None = None, seed: int = 0) -> None:
        from sklearn.exceptions import ConvergenceWarning  # heavy: scikit-learn
        from sklearn.gaussian_process import GaussianProcessRegressor  # heavy: scikit-learn
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel  # heavy: scikit-learn

        if len(cells) < 3:
            raise ValueError(f"the regime map has {len(cells)} complete cell(s); the predictor needs at least 3")
        self.cells = cells
        raw = _matrix([c.indicators for c in cells], FEATURES)
        usable = [i for i, n in enumerate(FEATURES) if not np.isnan(raw[:, i]).any() and np.ptp(raw[:, i]) > 1e-9]
        self.constant = {FEATURES[i]: float(np.nanmean(raw[:, i])) for i in range(len(FEATURES)) if i not in usable}
        self.features = [FEATURES[i] for i in usable]
        x = raw[:, usable]
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0)
        self.x = (x - self.mean) / self.scale
        gains = [c.mean_gains() for c in cells]
        self.objectives = [o for o in (objectives or sorted({o for g in gains for o in g})) if o != REFERENCE]
        self.models: dict[str, Any] = {}
        for o in self.objectives:
            rows = [i for i, g in enumerate(gains) if o in g]
            if len(rows) < 3:
                continue
            y = np.array([gains[i][o] for i in rows])
            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(len(self.features)), (1e-2, 1e3)) + WhiteKernel(
                1e-2, (1e-8, 1e1)
            )
            model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=seed)
            with warnings.catch_warnings():
                # a length scale at its upper bound is the fit's way of saying "this indicator does
                # not matter for this objective": expected, not a failure
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(self.x[rows], y)
            self.models[o] = model
        nn = [np.sort(np.linalg.norm(self.x - row, axis=1))[1] for row in self.x] if len(self.x) > 1 else [0.0]
        self.spread = float(max(nn))

    def standardise(self, indicators: Mapping[str, float | None]) -> np.ndarray:
        row = _matrix([indicators], tuple(self.features))[0]
        missing = [n for n, v in zip(self.features, row) if np.isnan(v)]
        if missing:
            raise ValueError(f"the catalog's profile lacks indicator(s) {', '.join(missing)} that the map's predictor reads")
        return (row - self.mean) / self.scale

    def advise(self, indicators: Mapping[str, float | None]) -> Advice:
        z = self.standardise(indicators)
        distances = np.linalg.norm(self.x - z, axis=1)
        nearest = int(np.argmin(distances))
        preds = [Prediction(REFERENCE, 0.0, 0.0, 0.0)]
        for o, model in self.models.items():
            mean, sd = model.predict(z[None, :], return_std=True)
            m, s = float(mean[0]), float(sd[0])
            preds.append(Prediction(o, m, m - Z95 * s, m + Z95 * s))
        preds.sort(key=lambda p: (-p.gain, p.objective))
        best = preds[0]
        for rank, p in enumerate(preds, start=1):
            p.rank = rank
            p.tied_with_best = p is best or p.high >= best.low
        extrapolated = {}
        for name, value in self.constant.items():
            mine = indicators.get(name)
            if mine is not None and not math.isclose(float(mine), value, rel_tol=0.05, abs_tol=0.05):
                extrapolated[name] = (float(mine), value)
        distance = float(distances[nearest])
        return Advice(
            preds,
            best.objective,
            distance,
            self.cells[nearest].point.index,
            self.spread,
            distance <= OUTSIDE_FACTOR * self.spread,
            list(self.features),
            extrapolated,
            len(self.cells),
        )


def measured_verdict(cell: MapCell):
    """The report's winner rule on the cell's scores (`ftbench.report.winner`)."""
    from ..report.winner import decide_winner  # lazy: ftbench.report imports report.regime, which imports this module

    return decide_winner(cell.scores)


def best_set(verdict) -> set[str]:
    """The winner rule's best: its clear winner, else the objectives tied with the leader (none
    without a verdict)."""
    if verdict is None:
        return set()
    return {verdict.winner} if verdict.winner else set(verdict.tied)


def measured_best_set(cell: MapCell) -> set[str]:
    return best_set(measured_verdict(cell))


def leave_one_cell_out(cells: list[MapCell], seed: int = 0) -> dict[str, Any]:
    """Fit on all cells but one, advise on the held-out cell, compare with what it measured.

    Per held-out cell: whether the advised best is in the measured tied-best set (the report's
    winner rule over the cell's seeds), and the Spearman correlation between predicted and measured
    mean gains over the objectives (clip = 0 on both sides).
    """
    from scipy.stats import spearmanr  # heavy: scipy

    rows: list[dict[str, Any]] = []
    for i, held in enumerate(cells):
        advisor = Advisor(cells[:i] + cells[i + 1 :], seed=seed)
        advice = advisor.advise(held.indicators)
        measured = {REFERENCE: 0.0, **held.mean_gains()}
        predicted = {p.objective: p.gain for p in advice.predictions}
        common = sorted(set(measured) & set(predicted))
        rho = float(spearmanr([predicted[o] for o in common], [measured[o] for o in common]).statistic)
        best_set = measured_best_set(held)
        rows.append(
            {
                "cell": held.point.index,
                "advised": advice.best,
                "measured_best": sorted(best_set),
                "hit": advice.best in best_set,
                "spearman": rho,
                "inside": advice.inside,
                "predicted": predicted,
                "measured": measured,
            }
        )
    hits = [r["hit"] for r in rows]
    rhos = [r["spearman"] for r in rows if not math.isnan(r["spearman"])]
    return {
        "cells": len(rows),
        "hit_rate": float(np.mean(hits)) if hits else None,
        "median_spearman": float(np.median(rhos)) if rhos else None,
        "rows": rows,
    }


def step_cost_ms(cost_dir: Path | str, views: int) -> dict[str, float]:
    """Each objective's median whole-step time at `views` from the cost benchmark's file in
    `cost_dir` (`results/cost/cost__*.json`, kind "cost"), interpolated log-log between measured
    view counts."""
    from ..report.cost_section import load_cost_results  # lazy: ftbench.report imports report.regime, which imports this module

    good, _ = load_cost_results(Path(cost_dir).parent) if Path(cost_dir).name == "cost" else ([], [])
    out: dict[str, float] = {}
    for _, payload in good[:1]:
        by_obj: dict[str, list[tuple[int, float]]] = {}
        for row in payload["rows"]:
            if row.get("status") == "ok" and row.get("step_ms_median"):
                by_obj.setdefault(row["objective"], []).append((int(row["views"]), float(row["step_ms_median"])))
        for o, pairs in by_obj.items():
            pairs.sort()
            v = np.log([p[0] for p in pairs])
            t = np.log([p[1] for p in pairs])
            out[o] = float(np.exp(np.interp(math.log(max(views, 1)), v, t)))
    return out


def measured_comparison(folder: Path | str, dataset: str, views: int, min_seeds: int = 3) -> dict[str, Any]:
    """What a comparison already run on a catalog measured, in the form the advice is checked against.

    Reads the run results under `folder` the way the report does (`ftbench.report.load`: a copy of a
    run counts once) for `dataset` at `views`, keeps the comparison group clip was trained in (one
    group: the same data, training and evaluation settings; a folder holding several is refused),
    picks its headline metric by the report's rule (`ftbench.report.headline`), and returns per
    objective and seed the score, the mean paired gains over clip, and the tied-best set by the
    report's winner rule.
    """
    from ..report.headline import choose_headline  # lazy: ftbench.report imports report.regime, which imports this module
    from ..report.load import load_results_frame  # lazy: ftbench.report imports report.regime, which imports this module
    from ..report.winner import decide_winner  # lazy: ftbench.report imports report.regime, which imports this module

    frame = load_results_frame(folder)
    if not frame.empty:
        frame = frame[(frame["dataset"] == dataset) & (frame["views"] == views) & ~frame["reference"]]
    if frame.empty:
        raise ValueError(f"{folder}: no {dataset} run result at --views {views}")
    # the comparison is the group clip was trained in (untrained references such as frozen-mean
    # form groups of their own)
    groups = set(frame.loc[frame["objective"] == REFERENCE, "group"])
    if len(groups) != 1:
        raise ValueError(
            f"{folder}: {len(groups)} comparison groups of {dataset} at --views {views} with {REFERENCE} runs; name a folder with one"
        )
    frame = frame[frame["group"].isin(groups)]
    task = frame["query_task"].iloc[0]
    if task is None:
        raise ValueError(f"{folder}: the {dataset} run results at --views {views} score no query task")
    metric, why = choose_headline(frame)  # the frame names the query task's columns query->item/...
    if metric is None:
        raise ValueError(f"{folder}: {why}")
    scores: dict[str, dict[int, float]] = {}
    for objective, seed, value in zip(frame["objective"], frame["seed"], frame[f"{QUERY_TASK}/{metric}"]):
        if not math.isnan(value):
            scores.setdefault(objective, {})[int(seed)] = float(value)
    verdict = decide_winner(scores, min_seeds=min_seeds)
    return {
        "task": task,
        "metric": metric,
        "why_metric": why,
        "scores": scores,
        "gains": {REFERENCE: 0.0, **mean_paired_gains(scores)},
        "tied_best": sorted(best_set(verdict)),
        "verdict": verdict.reason if verdict else None,
    }


def check_advice(advice: Advice, measured: Mapping[str, Any]) -> dict[str, Any]:
    """Advice against a measured comparison: whether the advised best is in the measured tied-best
    set, whether every measured tied-best objective is among those the advice marks as tied with
    its best, and the Spearman correlation between predicted and measured gains over clip."""
    from scipy.stats import spearmanr  # heavy: scipy

    predicted = {p.objective: p.gain for p in advice.predictions}
    gains = measured["gains"]
    common = sorted(set(predicted) & set(gains))
    rho = float(spearmanr([predicted[o] for o in common], [gains[o] for o in common]).statistic)
    advised_tied = {p.objective for p in advice.predictions if p.tied_with_best}
    return {
        "advised_best": advice.best,
        "measured_tied_best": measured["tied_best"],
        "hit": advice.best in set(measured["tied_best"]),
        "measured_best_inside_advised_ties": set(measured["tied_best"]) <= advised_tied,
        "spearman": rho,
        "objectives": common,
        "inside_map": advice.inside,
    }
