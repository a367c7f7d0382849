"""Which objective wins a comparison, named only where the seeds say so.

Every table of the report that names a best objective goes through `decide_winner`; no table
picks the top mean by itself. The rule, for the cells of one comparison (objective -> seed ->
value of one metric, higher is better):

- the *leader* is the objective with the highest mean over its seeds;
- the leader is named the winner only if, against every other objective, the paired difference
  (leader - other over the seeds both have; `intervals.paired_difference`) has at least
  MIN_SEEDS = 3 matched seeds and a 95% t-interval that excludes zero. Against the runner-up (the
  second-highest mean) this is the paired test the claim needs; the others must pass it too, or
  an objective with too few seeds to judge would be silently ranked below the winner;
- otherwise there is "no clear winner", and the objectives *tied* with the leader are listed: the
  leader and every objective whose paired interval against it includes zero or that has fewer than
  MIN_SEEDS matched seeds with it (so with fewer than MIN_SEEDS seeds all objectives are tied).

One seed has no interval at all, and two give a t-interval with one degree of freedom
(t = 12.7), so a gap of a few thousandths on one seed - factorized 0.8207 against clip 0.8190 -
is never called a win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .intervals import Interval, Key, PairedDifference, paired_difference, t_interval
from .tables import cell_values, fmt_interval

MIN_SEEDS = 3
#: the rule in one sentence, for the report's readers
WINNER_RULE = (
    f"A winner is named only with at least {MIN_SEEDS} seeds and a paired 95% interval (over seeds) "
    'against the runner-up, and every other objective, that excludes 0; otherwise "no clear winner" '
    "and the objectives tied with the best mean (paired interval including 0, or too few seeds)."
)


@dataclass(frozen=True)
class Verdict:
    """The outcome of `decide_winner`.

    `winner` is the leader where the rule names it, else None; `leader` the highest mean;
    `tied` the objectives tied with the leader (leader first, then by mean; empty with a winner);
    `means` each objective's interval over its seeds; `against_leader` each other objective's
    paired difference leader - other (None without a matched seed); `runner_up` the second mean.
    """

    winner: str | None
    leader: str
    runner_up: str | None
    tied: tuple[str, ...]
    means: Mapping[str, Interval]
    against_leader: Mapping[str, PairedDifference | None]
    reason: str
    min_seeds: int = MIN_SEEDS

    def too_few_seeds(self, label: str) -> bool:
        """Whether `label` has fewer than `min_seeds` seeds paired with the leader."""
        diff = self.against_leader.get(label)
        return diff is None or diff.n < self.min_seeds


def decide_winner(cells: Mapping[str, Mapping[Key, float]], min_seeds: int = MIN_SEEDS) -> Verdict | None:
    """The verdict of the module's rule over `cells` (objective -> seed -> value); objectives
    without a value are left out; None when no objective has one."""
    if min_seeds < 2:
        raise ValueError(f"decide_winner: min_seeds must be at least 2 (one seed has no interval), got {min_seeds}")
    scored = {label: dict(values) for label, values in cells.items() if values}
    if not scored:
        return None
    means = {label: t_interval(values.values()) for label, values in scored.items()}
    # highest mean first; equal means in name order, so the verdict does not depend on dict order
    order = sorted(means, key=lambda label: (-means[label].mean, label))
    leader, others = order[0], order[1:]
    against = {other: paired_difference(scored[leader], scored[other]) for other in others}
    tied = [other for other in others if not _clearly_below(against[other], min_seeds)]
    runner_up = others[0] if others else None
    if not others:
        return Verdict(None, leader, None, (leader,), means, against, "one objective only: nothing to compare", min_seeds)
    if not tied:
        assert runner_up is not None  # there are others
        margin = against[runner_up]
        assert margin is not None  # clearly below the leader, so paired
        return Verdict(
            leader,
            leader,
            runner_up,
            (),
            means,
            against,
            f"paired 95% interval against the runner-up {runner_up}, "
            f"{margin.absolute.format(signed=True)} (n={margin.n}), excludes 0, as does every other",
            min_seeds,
        )
    return Verdict(
        None, leader, runner_up, (leader, *tied), means, against, _why_tied(leader, tied, against, min_seeds), min_seeds
    )


def _clearly_below(diff: PairedDifference | None, min_seeds: int) -> bool:
    """Whether leader - other is positive with at least `min_seeds` matched seeds and 95% confidence."""
    return diff is not None and diff.n >= min_seeds and diff.absolute.low is not None and diff.absolute.low > 0


def _why_tied(leader: str, tied: list[str], against: Mapping[str, PairedDifference | None], min_seeds: int) -> str:
    few = [label for label in tied if (diff := against[label]) is None or diff.n < min_seeds]
    overlapping = [label for label in tied if label not in few]
    parts = []
    if few:
        parts.append(f"fewer than {min_seeds} seeds paired with {leader}: {', '.join(few)}")
    if overlapping:
        parts.append(f"paired 95% interval against {leader} includes 0: {', '.join(overlapping)}")
    return "; ".join(parts)


def format_verdict(verdict: Verdict | None, digits: int = 4, missing: str = "—") -> str:
    """One table cell: `factorized 0.9150 ± 0.0083 (n=3), +0.0123 ± 0.0040 over mover (paired, n=3)`, or
    `no clear winner (n < 3); tied: full_ot 0.3968 (n=1), factorized 0.3886 (n=3)`."""
    if verdict is None:
        return missing
    if verdict.winner is not None:
        assert verdict.runner_up is not None  # a winner is clearly above its runner-up
        margin = verdict.against_leader[verdict.runner_up]
        assert margin is not None
        return (
            f"{verdict.winner} {fmt_interval(verdict.means[verdict.winner], digits)}, "
            f"{margin.absolute.format(digits, signed=True)} over {verdict.runner_up} (paired, n={margin.n})"
        )
    if verdict.runner_up is None:
        return f"{verdict.leader} {fmt_interval(verdict.means[verdict.leader], digits)} (the only objective)"
    few = [verdict.too_few_seeds(label) for label in verdict.tied[1:]]
    why = " or ".join(
        ([f"fewer than {verdict.min_seeds} paired seeds"] if any(few) else [])
        + (["paired intervals include 0"] if not all(few) else [])
    )
    tied = ", ".join(f"{label} {verdict.means[label].mean:.{digits}f} (n={verdict.means[label].n})" for label in verdict.tied)
    return f"no clear winner ({why}); tied: {tied}"


def group_verdict(frame, group: str, column: str, views: int) -> Verdict | None:
    """`decide_winner` over the trained objectives of one comparison group at `views` on `column`
    of the results frame (untrained references are scored beside them but are not objectives)."""
    data = frame[(frame["group"] == group) & (frame["views"] == views)]
    if "reference" in data.columns:
        data = data[~data["reference"].astype(bool)]
    return decide_winner({label: cell_values(frame, column, group, label, views) for label in data["objective_label"].unique()})
