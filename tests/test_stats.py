"""results.stats against scipy and hand-worked numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from results.stats import Summary, compare, curve_band, holm, summarize

A = [1.0, 2.0, 3.0, 4.0]          # mean 2.5, var 5/3
B = [2.0, 4.0, 6.0]               # mean 4.0, var 4


def test_summary_matches_scipy_t_interval():
    x = [0.712, 0.705, 0.721, 0.698, 0.716]
    s = summarize(x, confidence=0.9)
    sem = st.sem(x)
    low, high = st.t.interval(0.9, len(x) - 1, loc=np.mean(x), scale=sem)
    assert s.n == 5 and s.best == 0.721 and s.why is None
    assert s.mean == pytest.approx(np.mean(x), rel=1e-12)
    assert s.std == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert s.sem == pytest.approx(sem, rel=1e-12)
    assert (s.ci_low, s.ci_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert isinstance(s.mean, float) and isinstance(s.ci_low, float)  # plain floats: JSON and format() behave


def test_summary_of_one_value_has_no_spread_and_says_why():
    s = summarize([0.7])
    assert s == Summary(1, 0.7, None, None, None, None, 0.7, 0.95, "n = 1: no spread or interval")


def test_summary_without_spread_is_a_zero_width_interval():
    s = summarize([0.5, 0.5, 0.5])
    assert (s.std, s.ci_low, s.ci_high) == (0.0, 0.5, 0.5)


@pytest.mark.parametrize("bad", [[0.7, float("nan")], [], [0.7, float("inf")], [[0.1, 0.2]]])
def test_summary_refuses_nan_empty_and_shapes(bad):
    with pytest.raises(ValueError):
        summarize(bad)


def test_confidence_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="confidence"):
        summarize([1.0, 2.0], confidence=95)


def test_compare_welch_by_hand_and_against_scipy():
    c = compare(A, B, confidence=0.95)
    # Welch-Satterthwaite by hand: (5/12 + 4/3)^2 / ((5/12)^2/3 + (4/3)^2/2) = 1323/409
    assert c.df == pytest.approx(1323 / 409, rel=1e-12)
    assert c.diff == 1.5 and (c.mean_a, c.mean_b, c.n_a, c.n_b) == (2.5, 4.0, 4, 3)
    ref = st.ttest_ind(B, A, equal_var=False)
    assert c.t == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    se = math.sqrt(5 / 12 + 4 / 3)
    low, high = st.t.interval(0.95, 1323 / 409, loc=1.5, scale=se)
    assert (c.ci_low, c.ci_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    # scipy's own Welch interval of the same difference (scipy >= 1.10)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == (pytest.approx(ci.low, rel=1e-10), pytest.approx(ci.high, rel=1e-10))
    # Hedges' g by hand: pooled var (3*5/3 + 2*4)/5 = 2.6, J = 1 - 3/(4*7 - 9) = 16/19
    assert c.effect == pytest.approx(1.5 / math.sqrt(2.6) * 16 / 19, rel=1e-12)
    assert c.effect_name == "Hedges' g" and c.why is None


def test_compare_is_variant_minus_reference():
    forward, backward = compare(A, B), compare(B, A)
    assert forward.diff == -backward.diff and forward.t == pytest.approx(-backward.t)
    assert forward.p == pytest.approx(backward.p)
    assert (forward.ci_low, forward.ci_high) == (pytest.approx(-backward.ci_high), pytest.approx(-backward.ci_low))


@pytest.mark.parametrize("a, b", [([0.7], [0.6, 0.65, 0.7]), ([0.6, 0.7], [0.8]), ([0.7], [0.8])])
def test_compare_with_one_repeat_has_no_test(a, b):
    c = compare(a, b)
    assert c.diff == pytest.approx(np.mean(b) - np.mean(a))
    assert (c.ci_low, c.ci_high, c.df, c.t, c.p, c.effect) == (None,) * 6
    assert c.why.startswith("n = 1")


@pytest.mark.parametrize("b", [[0.5, 0.5, 0.5], [0.6, 0.6]])
def test_compare_without_spread_returns_none_not_zero_division(b):
    c = compare([0.5, 0.5, 0.5], b)
    assert c.diff == pytest.approx(np.mean(b) - 0.5)
    assert (c.ci_low, c.ci_high, c.df, c.t, c.p, c.effect) == (None,) * 6
    assert "no spread" in c.why


def test_compare_with_spread_on_one_side_only():
    c = compare([0.5, 0.5, 0.5], [0.6, 0.7, 0.8])
    assert c.df == pytest.approx(2.0)      # Welch reduces to the one side's n - 1
    # t = 0.2 / sqrt(0.01/3), two-sided on 2 df (scipy's ttest_ind would warn about the constant side)
    assert c.t == pytest.approx(0.2 / math.sqrt(0.01 / 3))
    assert c.p == pytest.approx(2 * st.t.sf(c.t, 2.0))


def test_compare_refuses_nan():
    with pytest.raises(ValueError, match="b:"):
        compare([0.1, 0.2], [0.3, float("nan")])


def test_holm_hand_worked():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_passes_none_through():
    # m = 2 (None is not a test): 0.6*2 = 1.2 -> capped at 1; 0.7*1 = 0.7 -> raised to 1 (monotone)
    assert holm([0.6, None, 0.7]) == [1.0, None, 1.0]
    assert holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]
    assert holm([]) == [] and holm([None]) == [None]


@pytest.mark.parametrize("bad", [[float("nan")], [1.5], [-0.1], ["0.1"]])
def test_holm_refuses_non_p_values(bad):
    with pytest.raises(ValueError):
        holm(bad)


def test_curve_band_with_ragged_runs():
    runs = np.array([[0.1, 0.2, 0.3, 0.4],
                     [0.2, 0.4, 0.6, np.nan],      # stopped after 3 points
                     [0.3, np.inf, np.nan, np.nan]])  # diverged at point 1
    band = curve_band(runs, confidence=0.95)
    assert band.n.tolist() == [3, 2, 2, 1]
    for j in range(3):                             # points with n >= 2 match summarize on the finite values
        column = runs[:, j][np.isfinite(runs[:, j])]
        s = summarize(column)
        assert (band.mean[j], band.low[j], band.high[j]) == (
            pytest.approx(s.mean), pytest.approx(s.ci_low), pytest.approx(s.ci_high))
    assert band.mean[3] == band.low[3] == band.high[3] == 0.4   # n == 1: collapsed onto the mean


def test_curve_band_point_without_values_is_nan():
    band = curve_band([[1.0, np.nan], [2.0, np.nan]])
    assert band.n.tolist() == [2, 0]
    assert np.isnan([band.mean[1], band.low[1], band.high[1]]).all()
    with pytest.raises(ValueError):
        curve_band([1.0, 2.0])
