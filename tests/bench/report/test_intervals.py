"""Means, t-intervals and paired differences against hand-computed examples.

Critical values from printed t tables (two-sided 95%): t(0.975, 1) = 12.7062, t(0.975, 2) = 4.3027,
t(0.975, 4) = 2.7764. Tolerances: 1e-4 relative where the table is rounded to 4-5 digits, 1e-12
where the arithmetic is exact.
"""

import math

import pytest
from ftbench.report.intervals import paired_difference, t_interval, t_quantile


def test_t_quantiles_match_printed_tables():
    assert t_quantile(0.95, 1) == pytest.approx(12.7062, rel=1e-5)
    assert t_quantile(0.95, 2) == pytest.approx(4.3027, rel=1e-4)
    assert t_quantile(0.95, 4) == pytest.approx(2.7764, rel=1e-4)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.95, 0)


def test_three_seeds_by_hand():
    # x = 0.50, 0.52, 0.54: mean 0.52, s = sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02,
    # half-width = 4.3027 * 0.02 / sqrt(3) = 0.049683
    iv = t_interval([0.50, 0.52, 0.54])
    assert iv.n == 3
    assert iv.mean == pytest.approx(0.52, abs=1e-12)
    assert iv.sd == pytest.approx(0.02, abs=1e-12)
    assert iv.half_width == pytest.approx(0.049683, rel=1e-4)
    assert iv.low == pytest.approx(0.52 - 0.049683, rel=1e-4) and iv.high == pytest.approx(0.52 + 0.049683, rel=1e-4)
    assert iv.contains(0.56) and not iv.contains(0.58)
    assert iv.format() == "0.5200 ± 0.0497"


def test_two_seeds_by_hand():
    # x = 0.3, 0.5: mean 0.4, s = 0.1 * sqrt(2), half-width = 12.7062 * 0.1 * sqrt(2) / sqrt(2) = 1.27062
    iv = t_interval([0.3, 0.5])
    assert iv.mean == pytest.approx(0.4, abs=1e-12)
    assert iv.half_width == pytest.approx(1.27062, rel=1e-5)


def test_five_equal_values_have_zero_width():
    iv = t_interval([0.25] * 5)
    assert iv.mean == 0.25 and iv.half_width == 0.0 and iv.n == 5


def test_single_value_has_no_interval():
    iv = t_interval([0.41])
    assert iv.n == 1 and iv.mean == 0.41
    assert iv.half_width is None and iv.low is None and iv.contains(0.41) is None
    assert iv.format() == "0.4100 (n=1)"


def test_missing_values_are_refused_not_averaged():
    with pytest.raises(ValueError, match="no values"):
        t_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        t_interval([0.5, math.nan])


def test_paired_difference_by_hand():
    # a - b per seed: 0.05, 0.04, 0.06 -> mean 0.05, s = 0.01, half-width 4.3027 * 0.01 / sqrt(3) = 0.024841
    # relative 100 (a - b) / b: 10.0, 7.6923, 11.1111 -> mean 9.6011, s = 1.74395, half-width 4.33222
    a = {0: 0.55, 1: 0.56, 2: 0.60, 7: 0.99}  # seed 7 has no baseline: ignored
    b = {0: 0.50, 1: 0.52, 2: 0.54, 5: 0.01}  # seed 5 has no candidate: ignored
    d = paired_difference(a, b)
    assert d.keys == (0, 1, 2) and d.n == 3
    assert d.absolute.mean == pytest.approx(0.05, abs=1e-12)
    assert d.absolute.half_width == pytest.approx(0.024841, rel=1e-4)
    assert d.relative.mean == pytest.approx(9.60114, rel=1e-5)
    assert d.relative.sd == pytest.approx(1.74395, rel=1e-5)
    assert d.relative.half_width == pytest.approx(4.33222, rel=1e-5)
    assert d.baseline.mean == pytest.approx(0.52) and d.candidate.mean == pytest.approx(0.57)


def test_paired_difference_edge_cases():
    assert paired_difference({0: 0.5}, {1: 0.4}) is None  # nothing matched
    single = paired_difference({0: 0.5}, {0: 0.4})
    assert single.n == 1 and single.absolute.half_width is None
    assert single.relative.mean == pytest.approx(25.0)
    zero = paired_difference({0: 0.5, 1: 0.6}, {0: 0.0, 1: 0.4})
    assert zero.relative is None and zero.absolute.mean == pytest.approx(0.35)


def test_t_quantile_equals_scipy_stats():
    from scipy.stats import t as student_t

    for dof in (1, 2, 3, 9, 29):
        assert t_quantile(0.95, dof) == pytest.approx(student_t.ppf(0.975, dof), rel=1e-12)
    assert t_quantile(0.90, 4) == pytest.approx(student_t.ppf(0.95, 4), rel=1e-12)
