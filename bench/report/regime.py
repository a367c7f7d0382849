"""The report's opening section: the regime map (who wins where, by how much, and what to train).

Read from a map folder only (one holding `design.json`: `ftbench sweep --preset regime-map`,
`ftbench advise --profile-map`, optionally `ftbench advise --validate`):

- the cells that are *complete*: every objective seen on the map with at least 3 seeds paired
  with clip's, and a profile (`ftbench.regime.advise.load_map`);
- per cell the measured tied-best set by the report's winner rule (`ftbench.report.winner`): one
  name is a clear winner, several are "no clear winner"; the *leader* (highest mean) and its
  paired gain over clip on the map's metric (query->item recall@10) with its 95% t-interval;
- a figure: the cells at their measured indicators, two at a time, coloured by the winner (grey
  and hatched in the leader's colour where no winner is clear), sized by the leader's gain;
- a decision guide fitted to the measured cells, never written by hand: a shallow decision tree
  (scikit-learn) from the indicators to the cell's outcome ("clip is tied-best", or "<leader>
  beats clip"), printed as rules with their counts and mean gains; and per objective the one
  indicator split that best separates the cells where it is tied-best from the others;
- leave-one-cell-out validation, where `validation.json` exists (`ftbench advise --validate`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..regime.advise import FEATURES, MAP_METRIC, MAP_TASK, REFERENCE, MapCell, RegimeMap, _matrix, load_map
from ..regime.design import DesignPoint
from .intervals import Interval, paired_difference, t_interval
from .load import objective_rank
from .plots import _pyplot, _save_figure, _wrap
from .tables import _slug, md_table
from .winner import MIN_SEEDS, decide_winner

DESIGN_FILE = "design.json"
VALIDATION_FILE = "validation.json"
#: short names of the indicators, for table headers and axes
SHORT = {
    "log10_items": "log10 items",
    "views_per_item_mean": "views/item",
    "image_share": "image share",
    "query_primary_modality_share": "query-modality primaries",
    "train_queries_per_item": "train queries/item",
    "train_interactions_per_item": "train interactions/item",
    "frozen_recall": "frozen R@K",
    "aux_gain_queries": "aux gain (queries)",
    "aux_gain_views": "aux gain (views)",
    "cross_side_overlap": "cross-side overlap",
}
#: the figure's panels: indicator pairs (x, y) that the design's knobs move most directly
PANELS = (
    ("aux_gain_queries", "train_interactions_per_item"),
    ("cross_side_overlap", "views_per_item_mean"),
    ("aux_gain_views", "frozen_recall"),
    ("aux_gain_queries", "cross_side_overlap"),
)
#: the per-cell table's indicator columns
TABLE_INDICATORS = (
    "views_per_item_mean",
    "aux_gain_queries",
    "aux_gain_views",
    "cross_side_overlap",
    "train_interactions_per_item",
)
CLIP_TIED = f"{REFERENCE} is tied-best"
TREE_DEPTH = 2


@dataclass
class CellOutcome:
    """What one complete cell measured: its tied-best set, its leader and the leader's gain over clip."""

    cell: MapCell
    best_set: tuple[str, ...]  # the winner alone, or the leader and the objectives tied with it
    winner: str | None
    leader: str
    gains: dict[str, Interval]  # objective -> paired gain over clip (objective - clip over seeds)

    @property
    def index(self) -> int:
        return self.cell.point.index

    @property
    def leader_gain(self) -> float:
        return self.gains[self.leader].mean if self.leader in self.gains else 0.0

    @property
    def guide_class(self) -> str:
        """The decision guide's outcome: clip tied-best, or which objective leads a map that beats clip."""
        return CLIP_TIED if REFERENCE in self.best_set else f"{self.leader} leads, clip beaten"


def find_map_folders(results_dir: Path | str) -> list[Path]:
    """Every folder under `results_dir` (outside `report/` and hidden folders) holding a `design.json`."""
    root = Path(results_dir)
    folders = []
    for path in sorted(root.rglob(DESIGN_FILE)):
        rel = path.relative_to(root).parts
        if rel[0] == "report" or any(part.startswith(".") for part in rel[:-1]):
            continue
        folders.append(path.parent)
    return folders


def design_points(folder: Path) -> list[DesignPoint]:
    """The design committed in the folder's `design.json` (the map is read against it, not a recomputed one)."""
    design = json.loads((Path(folder) / DESIGN_FILE).read_text(encoding="utf-8"))
    return [DesignPoint(int(c["index"]), int(c["views"]), dict(c["options"])) for c in design["cells"]]


def complete_cells(regime: RegimeMap, min_seeds: int = MIN_SEEDS) -> list[MapCell]:
    """The cells where every objective seen on the map has at least `min_seeds` seeds paired with clip's."""
    out = []
    for cell in regime.cells:
        ref = set(cell.scores.get(REFERENCE, {}))
        if len(ref) >= min_seeds and all(len(set(cell.scores.get(o, {})) & ref) >= min_seeds for o in regime.objectives):
            out.append(cell)
    return out


def cell_outcome(cell: MapCell) -> CellOutcome:
    """The verdict and the gains over clip of a complete cell (`complete_cells`)."""
    verdict = decide_winner(cell.scores)
    assert verdict is not None  # a complete cell has scores
    best = (verdict.winner,) if verdict.winner else tuple(verdict.tied)
    ref = cell.scores[REFERENCE]
    gains = {}
    for o, s in cell.scores.items():
        if o != REFERENCE:
            diff = paired_difference(s, ref)
            assert diff is not None  # a complete cell pairs every objective's seeds with clip's
            gains[o] = diff.absolute
    return CellOutcome(cell, best, verdict.winner, verdict.leader, gains)


def _features(outcomes: list[CellOutcome]) -> tuple[list[str], np.ndarray]:
    """The indicators that vary over the cells (undefined ones at their neutral value, as the predictor reads them)."""
    raw = _matrix([o.cell.indicators for o in outcomes], FEATURES)
    keep = [i for i in range(len(FEATURES)) if not np.isnan(raw[:, i]).any() and np.ptp(raw[:, i]) > 1e-12]
    return [FEATURES[i] for i in keep], raw[:, keep]


def _over_cells(values: list[float]) -> str:
    """Mean and 95% t-interval over cells: `+0.0412 ± 0.0100 (n=6 cells)`."""
    iv = t_interval(values)
    text = f"{iv.mean:+.4f}" + ("" if iv.half_width is None else f" ± {iv.half_width:.4f}")
    return f"{text} (n={iv.n} cell{'s' if iv.n != 1 else ''})"


def _condition(name: str, low: float | None, high: float | None) -> str:
    label = f"`{name}`"
    if low is not None and high is not None:
        return f"{low:.3g} < {label} ≤ {high:.3g}"
    if low is not None:
        return f"{label} > {low:.3g}"
    if high is not None:
        return f"{label} ≤ {high:.3g}"
    return "every cell"


@dataclass
class GuideRule:
    """One leaf of the decision tree: its region, its cells and what they measured."""

    region: str
    cells: list[int]
    classes: Counter
    best_objective: str  # the non-clip objective with the highest mean gain over the leaf's cells
    best_gains: list[float]  # its mean gain over clip per cell of the leaf
    tied_best: Counter  # objective -> cells of the leaf where it is in the tied-best set

    @property
    def majority(self) -> str:
        return sorted(self.classes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def decision_rules(outcomes: list[CellOutcome], depth: int = TREE_DEPTH, seed: int = 0) -> list[GuideRule]:
    """A depth-`depth` decision tree from the indicators to each cell's `guide_class`, as one rule per leaf."""
    from sklearn.tree import DecisionTreeClassifier  # heavy: scikit-learn

    names, x = _features(outcomes)
    labels = [o.guide_class for o in outcomes]
    leaves: dict[int, list[int]] = {}
    regions: dict[int, str] = {}
    if names and len(set(labels)) > 1:
        min_leaf = max(2, len(outcomes) // 8)
        tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=min_leaf, random_state=seed).fit(x, labels)
        for row, leaf in enumerate(tree.apply(x)):
            leaves.setdefault(int(leaf), []).append(row)
        structure = tree.tree_

        def walk(node: int, bounds: dict[str, list]) -> None:
            if structure.children_left[node] == -1:
                parts = [_condition(n, lo, hi) for n, (lo, hi) in bounds.items()]
                regions[node] = " and ".join(parts) if parts else "every cell"
                return
            name, threshold = names[structure.feature[node]], float(structure.threshold[node])
            low, high = bounds.get(name, [None, None])
            walk(structure.children_left[node], {**bounds, name: [low, threshold]})
            walk(structure.children_right[node], {**bounds, name: [threshold, high]})

        walk(0, {})
    else:
        leaves, regions = {0: list(range(len(outcomes)))}, {0: "every cell"}
    rules = []
    for leaf in sorted(leaves, key=lambda n: min(leaves[n])):
        members = [outcomes[r] for r in leaves[leaf]]
        objectives = sorted({o for m in members for o in m.gains}, key=objective_rank)
        mean_gain = {o: float(np.mean([m.gains[o].mean for m in members if o in m.gains])) for o in objectives}
        # objectives are in report order, so max keeps the first of equal means
        best = max(objectives, key=lambda o: mean_gain[o]) if objectives else REFERENCE
        rules.append(
            GuideRule(
                regions[leaf],
                [m.index for m in members],
                Counter(m.guide_class for m in members),
                best,
                [m.gains[best].mean for m in members if best in m.gains],
                Counter(o for m in members for o in m.best_set),
            )
        )
    return rules


@dataclass
class ObjectiveRegion:
    """Where one objective is in the tied-best set: its count overall and the best one-indicator split."""

    objective: str
    tied_best: int
    winner: int
    cells: int
    gains: list[float]
    split: tuple[str, float, int, int, int, int] | None  # indicator, threshold, in-set/cells at or below, above


def objective_regions(outcomes: list[CellOutcome], objectives: list[str], seed: int = 0) -> list[ObjectiveRegion]:
    """Per objective, a depth-1 tree on "is it in the tied-best set": the indicator split that separates best."""
    from sklearn.tree import DecisionTreeClassifier  # heavy: scikit-learn

    names, x = _features(outcomes)
    out = []
    for objective in objectives:
        inside = np.array([objective in o.best_set for o in outcomes])
        split = None
        if names and 0 < inside.sum() < len(inside):
            stump = DecisionTreeClassifier(max_depth=1, min_samples_leaf=max(2, len(outcomes) // 8), random_state=seed)
            stump.fit(x, inside)
            if stump.tree_.node_count == 3:
                name, threshold = names[stump.tree_.feature[0]], float(stump.tree_.threshold[0])
                below = x[:, names.index(name)] <= threshold
                split = (
                    name,
                    threshold,
                    int(inside[below].sum()),
                    int(below.sum()),
                    int(inside[~below].sum()),
                    int((~below).sum()),
                )
        out.append(
            ObjectiveRegion(
                objective,
                int(inside.sum()),
                sum(o.winner == objective for o in outcomes),
                len(outcomes),
                [o.gains[objective].mean for o in outcomes if objective in o.gains],
                split,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------
# the figure
# ----------------------------------------------------------------------------------------------
def objective_colours(objectives: list[str]) -> dict[str, tuple]:
    import matplotlib  # heavy: matplotlib, for the plots only

    palette = matplotlib.colormaps["tab10"]
    return {o: palette(i % 10) for i, o in enumerate(sorted(objectives, key=objective_rank))}


def _size(gain: float) -> float:
    """Marker area: 30 at no gain over clip, growing with the leader's gain (clip-led cells stay small)."""
    return 30.0 + 4000.0 * max(gain, 0.0)


NO_WINNER_FACE = "0.85"
NO_WINNER_HATCH = "////"


def marker_style(outcome: CellOutcome, colours: dict[str, tuple]) -> dict:
    """A clear winner fills the marker in its colour; no clear winner is grey, hatched in the leader's colour."""
    if outcome.winner is not None:
        return {"facecolor": colours[outcome.winner], "edgecolor": "black", "linewidth": 0.6, "zorder": 3}
    return {
        "facecolor": NO_WINNER_FACE,
        "edgecolor": colours.get(outcome.leader, "0.3"),
        "hatch": NO_WINNER_HATCH,
        "linewidth": 1.2,
        "zorder": 2,
    }


def plot_regime_map(outcomes: list[CellOutcome], objectives: list[str], path: Path, title: str) -> Path:
    """2x2 panels of indicator pairs; each complete cell a marker at its measured indicators."""
    plt = _pyplot()
    from matplotlib.lines import Line2D  # heavy: matplotlib, for the plots only

    colours = objective_colours(objectives)
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 8.4))
    for ax, (xname, yname) in zip(axes.flat, PANELS):
        xs = _matrix([o.cell.indicators for o in outcomes], (xname, yname))
        for (px, py), o in zip(xs, outcomes):
            ax.scatter(px, py, s=_size(o.leader_gain), **marker_style(o, colours))
            ax.annotate(f"{o.index:02d}", (px, py), fontsize=6, xytext=(4, 4), textcoords="offset points", color="0.25")
        ax.set_xlabel(f"{SHORT.get(xname, xname)} ({xname})", fontsize=8)
        ax.set_ylabel(f"{SHORT.get(yname, yname)} ({yname})", fontsize=8)
        finite = xs[:, 1][np.isfinite(xs[:, 1])]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 10:
            from matplotlib.ticker import NullFormatter, ScalarFormatter  # heavy: matplotlib, for the plots only

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    present = sorted({o.winner for o in outcomes if o.winner} | {o.leader for o in outcomes}, key=objective_rank)
    handles = [
        Line2D([], [], marker="o", linestyle="", markerfacecolor=colours[o], markeredgecolor="black", label=f"{o} wins")
        for o in present
        if any(c.winner == o for c in outcomes)
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor=NO_WINNER_FACE,
            markeredgecolor=colours[o],
            markeredgewidth=2,
            label=f"no clear winner, {o} leads",
        )
        for o in present
        if any(c.winner is None and c.leader == o for c in outcomes)
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="0.4",
            markersize=math.sqrt(_size(g)),
            label=f"leader − clip = {g:+.2f}",
        )
        for g in (0.0, 0.05)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(_wrap(title, 110), fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# the section
# ----------------------------------------------------------------------------------------------
def _best_text(outcome: CellOutcome) -> str:
    if outcome.winner is not None:
        return f"**{outcome.winner}**"
    return "no clear winner: " + ", ".join(outcome.best_set)


def _gain_text(outcome: CellOutcome) -> str:
    if outcome.leader == REFERENCE:
        others = {o: g for o, g in outcome.gains.items()}
        if not others:
            return f"{REFERENCE} leads"
        nxt = max(sorted(others, key=objective_rank), key=lambda o: others[o].mean)
        return f"{REFERENCE} leads; next {nxt} {others[nxt].format(signed=True)}"
    return f"{outcome.leader} {outcome.gains[outcome.leader].format(signed=True)}"


def _validation_lines(folder: Path, fitted: int, rel: str) -> list[str]:
    """`fitted`: the cells `ftbench advise` fits from now (clip and another objective over 3 seeds, a profile)."""
    path = folder / VALIDATION_FILE
    if not path.is_file():
        return [
            "### Leave-one-cell-out validation",
            "",
            f"Not run yet: `ftbench advise --validate --map {rel}` writes `{rel}/{VALIDATION_FILE}`.",
            "",
        ]
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows = payload["rows"]
        hit_rate, median_rho = payload["hit_rate"], payload["median_spearman"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ["### Leave-one-cell-out validation", "", f"`{rel}/{VALIDATION_FILE}` could not be read ({exc}).", ""]
    misses = [r for r in rows if not r.get("hit")]
    covered = payload.get("cells", len(rows))
    metric = payload.get("metric", f"{MAP_TASK}/{MAP_METRIC}")
    text = (
        f"`ftbench advise --validate` ({metric}): fit on all cells but one, advise on the held-out cell, compare with "
        f"what it measured. Over {covered} cells"
    )
    if hit_rate is not None:
        text += (
            f" the advised best objective is inside the measured tied-best set in "
            f"**{sum(bool(r.get('hit')) for r in rows)} of {len(rows)}** ({hit_rate:.0%})"
        )
    if median_rho is not None:
        text += f"; median Spearman correlation of predicted and measured gains over the objectives **{median_rho:+.2f}**"
    text += "."
    if covered != fitted:
        text += (
            f" The validation covers {covered} cells; `ftbench advise` now fits from {fitted}: rerun "
            f"`ftbench advise --validate --map {rel}`."
        )
    lines = ["### Leave-one-cell-out validation", "", text]
    lines.append("")
    if misses:
        lines += [f"Where the advice fails ({len(misses)} cell{'s' if len(misses) != 1 else ''}):", ""]
        for r in misses:
            measured = r.get("measured", {})
            advised = r.get("advised")
            lines.append(
                f"- cell {int(r['cell']):02d}: advised {advised}, measured tied-best {', '.join(r.get('measured_best', []))}"
                + (f" ({advised} measured {measured[advised]:+.4f} over clip)" if advised in measured else "")
                + f"; Spearman {r['spearman']:+.2f}"
                + ("" if r.get("inside", True) else "; the cell lies outside the rest of the map")
                + "."
            )
        lines.append("")
    else:
        lines += ["The advised best is inside the measured tied-best set in every held-out cell.", ""]
    return lines


def regime_map_section(folder: Path, report_dir: Path, results_dir: Path | None = None) -> tuple[list[str], list[Path]]:
    """The "Regime map" section of one map folder: figure, per-cell table, decision guide, validation."""
    folder = Path(folder)
    rel = (
        folder.relative_to(results_dir).as_posix()
        if results_dir is not None and folder.is_relative_to(results_dir)
        else str(folder)
    )
    rel_full = (Path(results_dir).name + "/" + rel) if results_dir is not None else rel
    points = design_points(folder)
    regime = load_map(folder, points)
    cells = complete_cells(regime)
    outcomes = [cell_outcome(c) for c in cells]
    objectives = sorted(regime.objectives, key=objective_rank)
    designed = len(points)
    status = "preliminary: " if len(cells) < designed else ""
    lines = [
        "## Regime map: which objective for which catalog",
        "",
        f"`{rel_full}`: {designed} synthetic cells of a Sobol design over the generator's knobs "
        f"(`{DESIGN_FILE}`), each run with every objective over 3 seeds and profiled by `ftbench data profile`'s "
        f"indicators (docs/method.md, Regime indicators). **{status}{len(cells)} of {designed} cells complete** "
        f"({len(objectives)} objectives x {MIN_SEEDS} seeds and a profile)",
    ]
    pending = sorted(set(regime.incomplete) | {c.point.index for c in regime.cells if c not in cells})
    lines[-1] += f"; {len(pending)} with runs still incomplete." if pending else "."
    lines[-1] += (
        f" Metric: {MAP_TASK} {MAP_METRIC}; gain = objective − clip, paired over seeds. Tied-best set: the winner "
        'rule (under "Your comparisons") over the cell\'s seeds; one name is a clear winner.'
    )
    lines.append("")
    if not outcomes:
        return lines + ["No complete cell yet: nothing to draw or derive.", ""], []
    plots = [
        plot_regime_map(
            outcomes,
            objectives,
            report_dir / f"regime_map__{_slug_of(rel)}.png",
            f"Who wins where: {len(cells)} of {designed} complete cells ({MAP_TASK} {MAP_METRIC}, 3 seeds)"
            + ("; preliminary" if status else ""),
        )
    ]
    n_clear = sum(o.winner is not None for o in outcomes)
    lines += [
        f"![regime map]({plots[0].name})",
        "",
        f"Each marker is a cell at its measured indicators, two at a time. Filled: a clear winner ({n_clear} cells), in "
        f"its colour; grey and hatched: no clear winner ({len(outcomes) - n_clear} cells), hatched in the colour of the "
        "leader (highest mean). Area grows with the leader's mean gain over clip; the number is the cell.",
        "",
    ]
    lines += _guide_lines(outcomes, objectives)
    header = ["cell", "tied-best set", "leader − clip (paired 95% over seeds)", "V"] + [SHORT[n] for n in TABLE_INDICATORS]
    rows = []
    for o in sorted(outcomes, key=lambda o: o.index):
        ind = o.cell.indicators
        values = [
            "—"
            if ind.get(n) is None
            else (f"{ind[n]:.2f}" if n.endswith("_per_item") or n.startswith("views") else f"{ind[n]:+.3f}")
            for n in TABLE_INDICATORS
        ]
        rows.append([f"{o.index:02d}", _best_text(o), _gain_text(o), str(o.cell.point.views), *values])
    lines += [
        "### The cells",
        "",
        "Indicators as measured (— = undefined: no auxiliary view, or none on both sides); the tied-best set in the "
        "order of the means.",
        "",
        md_table(header, rows, align_first=3),
        "",
    ]
    lines += _validation_lines(folder, len(regime.cells), rel_full)
    lines += _real_data_lines(folder)
    return lines, plots


def _real_data_lines(folder: Path) -> list[str]:
    """The advice checked on real catalogs: the `real-data__*.json` files that
    `ftbench advise --dataset ... --measured DIR --json MAP/real-data__NAME.json` writes."""
    rows = []
    for path in sorted(folder.glob("real-data__*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            advice, checked = payload["advice"], payload["measured"]
            rows.append(
                [
                    f"{payload['dataset']} ({'; '.join(s for s in payload.get('sets', []) if 'data_dir' not in s) or 'defaults'})",
                    f"`{checked['folder']}`",
                    f"{checked['task']} {checked['metric']}",
                    advice["best"],
                    ", ".join(checked["measured_tied_best"]),
                    "yes" if checked["hit"] else "**no**",
                    "yes" if checked["measured_best_inside_advised_ties"] else "**no**",
                    f"{checked['spearman']:+.2f}",
                    "inside" if advice["inside"] else "**outside**",
                ]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            rows.append([path.name, f"could not be read ({exc})", *[""] * 7])
    if not rows:
        return []
    header = [
        "catalog",
        "measured comparison",
        "metric",
        "advised best",
        "measured tied-best",
        "advised inside it",
        "measured inside advised ties",
        "Spearman",
        "map",
    ]
    return [
        "### The advice on real catalogs",
        "",
        "`ftbench advise --measured DIR` on catalogs the map never saw, against their committed three-seed comparisons "
        "(the measured ranking on the group's headline metric; the advice predicts query->item recall@10 gains, so "
        "only the order is compared).",
        "",
        md_table(header, rows, align_first=len(header)),
        "",
    ]


def _slug_of(rel: str) -> str:
    return _slug(rel) or "map"


def _guide_lines(outcomes: list[CellOutcome], objectives: list[str]) -> list[str]:
    n = len(outcomes)
    clip_tied = sum(o.guide_class == CLIP_TIED for o in outcomes)
    lines = [
        "### Decision guide (fitted to the measured cells)",
        "",
        f"A depth-{TREE_DEPTH} decision tree (scikit-learn, at least {max(2, n // 8)} cells a leaf) from the varying "
        f'indicators to each cell\'s outcome: "{CLIP_TIED}" (no objective beats clip beyond its interval) or '
        f'"X leads, clip beaten". Over all {n} cells: {REFERENCE} is tied-best in {clip_tied}, beaten in {n - clip_tied}. '
        "Gains are each cell's mean paired gain over clip, then the mean ± 95% t-interval over the rule's cells. "
        "An indicator undefined for a cell (no auxiliary view at V = 2, none on both sides at V ≤ 3) reads as 0, "
        "as `ftbench advise` reads it.",
        "",
    ]
    for rule in decision_rules(outcomes):
        k = len(rule.cells)
        classes = "; ".join(f"{c}: {m} of {k}" for c, m in sorted(rule.classes.items(), key=lambda kv: (-kv[1], kv[0])))
        tied = ", ".join(f"{o} {m}" for o, m in sorted(rule.tied_best.items(), key=lambda kv: (-kv[1], objective_rank(kv[0]))))
        lines.append(
            f"- **{rule.region}** ({k} cell{'s' if k != 1 else ''}: {', '.join(f'{c:02d}' for c in rule.cells)}): "
            f"{classes}. Best objective there: {rule.best_objective}, gain over clip {_over_cells(rule.best_gains)}. "
            f"Tied-best counts: {tied}."
        )
    lines += ["", "Per objective, where it is in the tied-best set (one split of the indicators, fitted):", ""]
    rows = []
    for region in objective_regions(outcomes, [o for o in objectives]):
        gain = "0 (reference)" if region.objective == REFERENCE else _over_cells(region.gains) if region.gains else "—"
        if region.split is None:
            where = "in every cell" if region.tied_best == region.cells else "in no cell" if region.tied_best == 0 else "no split"
        else:
            name, threshold, in_low, low, in_high, high = region.split
            where = f"`{name}` ≤ {threshold:.3g}: {in_low} of {low}; > {threshold:.3g}: {in_high} of {high}"
        rows.append([region.objective, f"{region.tied_best} of {region.cells}", str(region.winner), gain, where])
    lines += [
        md_table(
            ["objective", "tied-best in", "clear winner in", "gain over clip, over cells", "where (tied-best / cells)"], rows
        ),
        "",
    ]
    return lines


def regime_map_sections(results_dir: Path | str, report_dir: Path | str) -> tuple[list[str], list[Path]]:
    """The section of every map folder under `results_dir` (none: nothing)."""
    lines: list[str] = []
    plots: list[Path] = []
    for folder in find_map_folders(results_dir):
        section, section_plots = regime_map_section(folder, Path(report_dir), Path(results_dir))
        lines += section
        plots += section_plots
    return lines, plots
