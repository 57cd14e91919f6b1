"""The plateau rule: where a validation curve stops rising, as an epoch boundary.

    p = find_plateau(epochs, val_acc)                  # whole curve
    p = find_plateau(epochs, val_acc, after=7, lo=8, hi=29)   # only what follows epoch 7
    p.switch_epoch                                     # e.g. 9: change the rate when epoch 9 starts

The rule (PlateauRule holds its three numbers):
  1. Smooth: each point becomes the mean of the points within `window` epochs
     centred on it (fewer at the ends), so that one noisy evaluation neither
     counts as progress nor hides it. Only points after `after` take part.
  2. Walk forward keeping the best smoothed value. A point improves on it when
     it exceeds it by more than `min_delta`. The walk ends at the first point
     `patience` epochs after the last improvement (the curve has stalled); if no
     such point comes, the curve was still rising and the last improvement is
     the curve's best point.
  3. The switch is the first epoch boundary at or after the last improvement,
     ceil(epoch), clamped into [lo, hi] so that a schedule built from it is
     always valid (short quick-mode curves included); `clamped` says so.

Centred smoothing does not delay a gradual bend, but where a curve turns flat
abruptly it puts the last improvement up to half a window after the turn.

Pure: arrays in, a Plateau out. `stage_plateau` applies the rule to the mean
(over repeats) curve of a stage's RunRecords, which is how a later stage of a
study is derived from an earlier one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from results.aggregate import aggregate_group
from workloads import metrics as M


@dataclass(frozen=True)
class PlateauRule:
    window: float = 1.0        # epochs: width of the centred moving average
    patience: float = 3.0      # epochs without improvement that count as a plateau
    min_delta: float = 0.002   # accuracy gain (0.2 points) that counts as improvement

    def __post_init__(self):
        if self.window < 0 or self.patience <= 0 or self.min_delta < 0:
            raise ValueError(f"plateau rule needs window >= 0, patience > 0, min_delta >= 0: {self}")


RULE = PlateauRule()


@dataclass(frozen=True)
class Plateau:
    switch_epoch: int          # the epoch boundary to switch at, within [lo, hi]
    last_improvement: float    # epoch of the last improvement of the smoothed curve
    best: float                # the smoothed value there
    stalled: bool              # True: `patience` epochs without improvement were seen
    clamped: bool              # True: ceil(last_improvement) lay outside [lo, hi]
    epochs: np.ndarray         # (T',) the points considered (after `after`)
    smoothed: np.ndarray       # (T',) their smoothed values
    rule: PlateauRule = RULE


def smooth(epochs: np.ndarray, values: np.ndarray, window: float) -> np.ndarray:
    """Centred moving average over `window` epochs; points need not be evenly spaced."""
    epochs, values = np.asarray(epochs, float), np.asarray(values, float)
    if window <= 0 or len(values) == 0:
        return values.copy()
    sums = np.concatenate([[0.0], np.cumsum(values)])
    left = np.searchsorted(epochs, epochs - window / 2 - 1e-9, side="left")
    right = np.searchsorted(epochs, epochs + window / 2 + 1e-9, side="right")
    return (sums[right] - sums[left]) / (right - left)


def find_plateau(epochs: Sequence[float], values: Sequence[float], rule: PlateauRule = RULE,
                 after: float = 0.0, lo: int = 1, hi: int | None = None) -> Plateau:
    epochs, values = np.asarray(epochs, float), np.asarray(values, float)
    if epochs.shape != values.shape or epochs.ndim != 1:
        raise ValueError(f"epochs {epochs.shape} and values {values.shape} must be equal 1-d arrays")
    if np.any(np.diff(epochs) <= 0):
        raise ValueError("epochs must be strictly increasing")
    keep = epochs > after + 1e-9
    if not keep.any():
        raise ValueError(f"no points after epoch {after} (curve ends at {epochs.max(initial=0):g})")
    if hi is not None and hi < lo:
        raise ValueError(f"empty switch range [{lo}, {hi}]")
    e, s = epochs[keep], smooth(epochs[keep], values[keep], rule.window)
    best, at, stalled = s[0], e[0], False
    for epoch, value in zip(e[1:], s[1:]):
        if value > best + rule.min_delta:
            best, at = value, epoch
        elif epoch - at >= rule.patience - 1e-9:
            stalled = True
            break
    raw = math.ceil(at - 1e-9)  # records sit at step / steps_per_epoch; 3.0 is the end of epoch 3
    switch = max(lo, raw if hi is None else min(hi, raw))
    return Plateau(switch, float(at), float(best), stalled, switch != raw, e, s, rule)


def mean_curve(records, metric: str = M.VAL_ACC) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, mean of `metric` over the records' repeats) on the steps all of them recorded."""
    if not records:
        raise ValueError("no records to take a curve from")
    agg = aggregate_group(records[0].group, records, metrics=(metric, M.EPOCH), select=M.VAL_ACC)  # its mean curve only
    return agg.mean[M.EPOCH], agg.mean[metric]


def stage_plateau(records, rule: PlateauRule = RULE, after: float = 0.0, lo: int = 1,
                  hi: int | None = None, metric: str = M.VAL_ACC) -> Plateau:
    """The rule applied to the mean curve of `records` (the repeats of one group)."""
    epochs, values = mean_curve(records, metric)
    return find_plateau(epochs, values, rule, after, lo, hi)


# part5's switch points: the epochs where its stages' mean validation curves stop rising.
SCHEDULE_RATIO = 1.5          # the assignment's 30 schedule epochs for 20 constant-rate ones


def rates_of(records) -> tuple:
    """The constant-rate stage's learning rates, high to low."""
    return tuple(sorted({float(r.config["lr"]) for r in records}, reverse=True))


def schedule_epochs(records) -> int:
    return int(SCHEDULE_RATIO * int(records[0].config["epochs"]))


def first_plateau(earlier) -> Plateau:
    """Plateau of the highest constant rate's mean validation curve."""
    rates = earlier["rates"]
    high = [r for r in rates if float(r.config["lr"]) == rates_of(rates)[0]]
    return stage_plateau(high, RULE, lo=1, hi=schedule_epochs(rates) - 2)


def second_plateau(earlier) -> Plateau:
    """Plateau of the one-switch schedule's mean validation curve after its switch."""
    runs = earlier["one_switch"]
    e1 = int(runs[0].config["lr_schedule"][0][0])
    total = int(runs[0].config["epochs"])
    return stage_plateau(runs, RULE, after=e1, lo=e1 + 1, hi=total - 1)


def part5_plateaus(results) -> dict:
    return {"first": first_plateau(results), "second": second_plateau(results)}
