"""Statistics for reports: a mean with its t interval, Welch's comparison of two
groups, Holm's correction for several comparisons, and bands around curves
whose runs stopped at different points. Pure: numbers in, numbers out.

    s = summarize([0.712, 0.705, 0.721])          # Summary(n=3, mean=0.7127, ..., ci_low=..., ci_high=...)
    c = compare(reference_accs, variant_accs)     # c.diff = mean(variant) - mean(reference), c.p, c.effect
    holm([c.p for c in comparisons])              # adjusted p-values, same order, None passes through
    mean, low, high, n = curve_band(val_acc)      # val_acc: (runs, points), NaN after a run stopped

Where a quantity cannot be computed (one repeat, no spread) it is None, never
0 or NaN, and the result's `why` says why, so a table can show the reason.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
from scipy import stats as st


@dataclass(frozen=True)
class Summary:
    """One group's values (e.g. test accuracy over repeats). `best` is the
    maximum: every quantity the reports summarize is higher-is-better."""
    n: int
    mean: float
    std: Optional[float]          # sample std (ddof=1); None when n == 1
    sem: Optional[float]          # std / sqrt(n)
    ci_low: Optional[float]       # t interval of the mean at `confidence`
    ci_high: Optional[float]
    best: float
    confidence: float = 0.95
    why: Optional[str] = None     # set when std/sem/interval are None


@dataclass(frozen=True)
class Comparison:
    """Variant (b) against reference (a): diff = mean_b - mean_a, Welch's t."""
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float                   # mean_b - mean_a: "variant minus reference"
    ci_low: Optional[float]       # Welch t interval of diff at `confidence`
    ci_high: Optional[float]
    df: Optional[float]           # Welch-Satterthwaite degrees of freedom
    t: Optional[float]
    p: Optional[float]            # two-sided, scipy.stats.ttest_ind(b, a, equal_var=False)
    effect: Optional[float]       # Hedges' g (b - a over the pooled sd, small-sample corrected)
    effect_name: str = "Hedges' g"
    confidence: float = 0.95
    why: Optional[str] = None     # set when the interval/test/effect are None


class Band(NamedTuple):
    mean: np.ndarray              # (points,)
    low: np.ndarray               # (points,)
    high: np.ndarray              # (points,)
    n: np.ndarray                 # (points,) finite values behind each point


def _values(values, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name}: empty; a summary needs at least one value")
    if not np.isfinite(x).all():
        # A NaN test accuracy means a broken run: hiding it in a mean would hide the break.
        raise ValueError(f"{name}: {int((~np.isfinite(x)).sum())} non-finite value(s) (NaN/inf); "
                         "drop or fix the failed runs before summarizing")
    return x


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence}: must lie strictly between 0 and 1, e.g. 0.95")
    return float(confidence)


def _t_crit(confidence: float, df) -> np.ndarray | float:
    return st.t.ppf(0.5 + confidence / 2.0, df)


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std, standard error and the t interval of the mean.

    >>> s = summarize([0.70, 0.72, 0.74])     # interval == scipy.stats.t.interval(0.95, 2, 0.72, s.sem)
    >>> round(s.ci_low, 4), round(s.ci_high, 4)
    (0.6703, 0.7697)
    >>> summarize([0.71]).why
    'n = 1: no spread or interval'
    """
    confidence = _check_confidence(confidence)
    x = _values(values)
    n, mean, best = int(x.size), float(x.mean()), float(x.max())
    if n == 1:
        return Summary(n, mean, None, None, None, None, best, confidence, "n = 1: no spread or interval")
    std = float(x.std(ddof=1))
    sem = std / math.sqrt(n)
    half = float(_t_crit(confidence, n - 1)) * sem  # zero spread gives a zero-width interval, no division
    return Summary(n, mean, std, sem, mean - half, mean + half, best, confidence)


def compare(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Welch's comparison of variant `b` against reference `a`.

    diff = mean(b) - mean(a); its interval uses the Welch-Satterthwaite df
    df = (va/na + vb/nb)^2 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1));
    p is scipy's two-sided `ttest_ind(b, a, equal_var=False)`; the effect is
    Hedges' g: diff over the pooled sd, times J = 1 - 3 / (4 (na + nb) - 9)
    (Hedges' approximation of the exact gamma-function correction).

    None instead of a number, with `why` set, when
    - either side has n < 2: no variance to estimate on that side;
    - both sides have zero variance (every repeat identical, e.g. fixed seeds):
      the standard error and pooled sd are 0, so t, df, p, g are 0/0 and a
      zero-width interval would claim a certainty no experiment gave. `diff`
      is still reported.

    >>> c = compare([0.70, 0.71, 0.69], [0.74, 0.75, 0.73])
    >>> round(c.diff, 3), c.p < 0.01
    (0.04, True)
    """
    confidence = _check_confidence(confidence)
    xa, xb = _values(a, "a"), _values(b, "b")
    na, nb = int(xa.size), int(xb.size)
    ma, mb = float(xa.mean()), float(xb.mean())
    diff = mb - ma
    none = dict(ci_low=None, ci_high=None, df=None, t=None, p=None, effect=None, confidence=confidence)
    if na < 2 or nb < 2:
        return Comparison(na, nb, ma, mb, diff, **none,
                          why=f"n = {min(na, nb)} on {'both sides' if max(na, nb) < 2 else 'one side'}: "
                              "no variance, no interval or test")
    va, vb = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    if va == 0.0 and vb == 0.0:
        return Comparison(na, nb, ma, mb, diff, **none,
                          why="no spread on either side: no interval or test")
    ua, ub = va / na, vb / nb                        # squared standard errors
    se = math.sqrt(ua + ub)
    df = (ua + ub) ** 2 / (ua ** 2 / (na - 1) + ub ** 2 / (nb - 1))
    t = diff / se
    half = float(_t_crit(confidence, df)) * se
    with warnings.catch_warnings():
        if va == 0.0 or vb == 0.0:
            # scipy warns of "catastrophic cancellation" for a constant side; Welch is
            # still well defined, the other side's variance carries the test.
            warnings.simplefilter("ignore", RuntimeWarning)
        p = float(st.ttest_ind(xb, xa, equal_var=False).pvalue)
    pooled = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    g = diff / pooled * (1.0 - 3.0 / (4.0 * (na + nb) - 9.0))
    return Comparison(na, nb, ma, mb, diff, diff - half, diff + half, df, t, p, g, confidence=confidence)


def holm(pvalues: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The k-th smallest of m p-values (k = 1..m) is multiplied by m - k + 1; a
    running maximum keeps the adjusted values in the order of the raw ones,
    and they are capped at 1. None entries (comparisons that had no test) are
    not counted in m and come back as None.

    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    for p, i in present:
        if not (isinstance(p, (int, float, np.floating)) and 0.0 <= p <= 1.0):
            raise ValueError(f"pvalues[{i}] = {p!r}: a p-value must be a number in [0, 1] or None")
    m = len(present)
    out: list[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(sorted(present)):   # ties keep input order: sorted on (p, i)
        running = max(running, min(1.0, (m - k) * float(p)))
        out[i] = running
    return out


def curve_band(values_2d, confidence: float = 0.95) -> Band:
    """Mean and t interval of the mean at each point of curves given as
    (runs, points), with NaN (or inf) where a run has no value there, e.g.
    after it diverged or stopped early. Each point uses only its finite
    values; `n` says how many.

    n == 1 at a point: the band collapses to the mean (low == high == mean),
    so a plot shows the lone run without a made-up spread; n == 0: all NaN.
    This is an interval of the mean, narrower than the +-std bands of
    results/plots.py; say which one a figure shows.

    >>> band = curve_band([[0.1, 0.2, 0.3], [0.2, 0.4, np.nan]])
    >>> band.n
    array([2, 2, 1])
    """
    confidence = _check_confidence(confidence)
    x = np.asarray(values_2d, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"values_2d: expected (runs, points), got shape {x.shape}")
    finite = np.isfinite(x)                                       # (runs, points)
    n = finite.sum(axis=0)                                        # (points,)
    filled = np.where(finite, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):          # n == 0 / n == 1 columns are masked below
        mean = filled.sum(axis=0) / n
        var = (np.where(finite, x - mean, 0.0) ** 2).sum(axis=0) / (n - 1)
        half = _t_crit(confidence, np.maximum(n - 1, 1)) * np.sqrt(var / n)
    half = np.where(n >= 2, half, 0.0)
    mean = np.where(n >= 1, mean, np.nan)
    return Band(mean, mean - half, mean + half, n)
