"""Means, 95% t-intervals over seeds, and paired differences against a baseline.

Mathematics
-----------
For n independent values x_1..x_n (one per seed) the sample mean and standard deviation are

    m = (1/n) sum_k x_k,        s = sqrt( (1/(n-1)) sum_k (x_k - m)^2 ),

and the two-sided (1 - alpha) confidence interval for the expected value, assuming the x_k are
draws from a normal distribution (Student, 1908), is

    m  +/-  t_{1 - alpha/2, n-1} * s / sqrt(n),

with t_{q, n-1} the q-quantile of Student's t distribution with n-1 degrees of freedom
(`scipy.special.stdtrit`, i.e. `scipy.stats.t.ppf`). With n = 1 there is no estimate of the spread: the mean is reported
alone ("n=1"), never with a made-up interval.

Paired differences. Two objectives trained with the same seed on the same data share the data
split, the batching order and the initial tower weights, so their results are correlated; the
paired analysis removes that shared variation. For matched pairs (a_k, b_k) - same data set,
views and seed - the differences d_k = a_k - b_k get the interval above (a paired t-interval).
The relative change of pair k is r_k = 100 * (a_k - b_k) / b_k (percent of the baseline); the
reported relative change is the t-interval of the r_k, so absolute and relative changes are both
paired and both carry their own interval. (This is the mean of per-seed ratios, which can differ
slightly from the ratio of the means; with a baseline value of 0 the relative change is
undefined and reported as missing.) Unmatched values are never used.

References: W. S. Gosset ("Student"), "The probable error of a mean", Biometrika 6(1), 1908;
any textbook treatment of the paired t-test, e.g. Wasserman, *All of Statistics*, 2004, §10.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval.

    `half_width` (and so `low`, `high`) is None when n = 1: one value has no spread estimate.
    """

    mean: float
    half_width: float | None
    n: int
    sd: float | None
    confidence: float = CONFIDENCE
    #: the metric's range (e.g. (0, 1) for recall): `low` and `high` never leave it
    bounds: tuple[float, float] | None = None

    @property
    def low(self) -> float | None:
        if self.half_width is None:
            return None
        low = self.mean - self.half_width
        return low if self.bounds is None else max(low, self.bounds[0])

    @property
    def high(self) -> float | None:
        if self.half_width is None:
            return None
        high = self.mean + self.half_width
        return high if self.bounds is None else min(high, self.bounds[1])

    @property
    def clipped(self) -> bool:
        """Whether the t-interval reached past the metric's range and was cut at its bound."""
        return self.half_width is not None and (
            self.low != self.mean - self.half_width or self.high != self.mean + self.half_width
        )

    def contains(self, value: float) -> bool | None:
        """Whether `value` lies in [low, high]; None when there is no interval (n = 1)."""
        if self.half_width is None:
            return None
        return self.low <= value <= self.high  # type: ignore[operator]  # low and high are set whenever half_width is

    def format(self, digits: int = 4, signed: bool = False, suffix: str = "") -> str:
        """`0.4123 ± 0.0120`, or `0.4123 (n=1)` without an interval."""
        sign = "+" if signed else ""
        text = f"{self.mean:{sign}.{digits}f}{suffix}"
        if self.half_width is None:
            return f"{text} (n=1)"
        if self.clipped:
            return f"{text} [{self.low:.{digits}f}, {self.high:.{digits}f}]{suffix}"
        return f"{text} ± {self.half_width:.{digits}f}{suffix}"


def t_quantile(confidence: float, dof: int) -> float:
    """t_{(1+confidence)/2, dof}: the two-sided critical value of Student's t.

    `scipy.special.stdtrit(dof, q)` is the inverse of Student's t CDF (the same function behind
    `scipy.stats.t.ppf`, without importing scipy.stats, which takes seconds).
    """
    from scipy.special import stdtrit  # heavy: scipy

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if dof < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {dof}")
    return float(stdtrit(dof, 0.5 + confidence / 2.0))


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None) -> Interval:
    """Mean and two-sided t-interval of `values` (see the module docstring for the formula).

    `bounds` is the metric's range: an interval reaching past it is cut at the bound (recall,
    nDCG and the reciprocal rank live in [0, 1]; a t-interval of 0.945 ± 0.161 would claim values
    above 1). The cut interval is shown as ``mean [low, high]`` so that it is never mistaken for a
    symmetric one.

    Raises ValueError for no values or a non-finite value (a missing cell must be left out by the
    caller, never averaged in as NaN).
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("t_interval: no values (a missing cell has no mean)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval: non-finite value(s) in {x.tolist()}")
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, None, 1, None, confidence, bounds)
    sd = float(x.std(ddof=1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return Interval(mean, half, n, sd, confidence, bounds)


@dataclass(frozen=True)
class PairedDifference:
    """Paired difference of a candidate against a baseline over matched keys (e.g. seeds).

    `absolute` is the interval of d_k = a_k - b_k; `relative` the interval of
    r_k = 100 (a_k - b_k) / b_k in percent (None if any matched b_k is 0); `keys` the matched keys.
    """

    absolute: Interval
    relative: Interval | None
    keys: tuple
    baseline: Interval
    candidate: Interval

    @property
    def n(self) -> int:
        return self.absolute.n


# the key of a per-seed mapping (a seed, or a tuple naming one): the caller's type, one for both sides
Key = TypeVar("Key", bound=Hashable)


def paired_difference(
    candidate: Mapping[Key, float], baseline: Mapping[Key, float], confidence: float = CONFIDENCE
) -> PairedDifference | None:
    """Paired t-intervals of candidate - baseline over the keys both have; None if none match.

    `candidate` and `baseline` map a matching key (e.g. the seed) to a value. Keys present in only
    one of them are ignored (never averaged in).
    """
    keys = tuple(sorted(set(candidate) & set(baseline), key=repr))
    if not keys:
        return None
    a = np.array([candidate[k] for k in keys], dtype=np.float64)
    b = np.array([baseline[k] for k in keys], dtype=np.float64)
    absolute = t_interval(a - b, confidence)
    relative = None if np.any(b == 0) else t_interval(100.0 * (a - b) / b, confidence)
    return PairedDifference(absolute, relative, keys, t_interval(b, confidence), t_interval(a, confidence))
