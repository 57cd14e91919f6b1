"""Pure aggregation: run records in, arrays and tables out. Every aggregate
carries its spread (mean, std, n).

    aggs = aggregate_groups(records)          # {group: GroupAggregate}
    aggs["cnn_3"].mean[M.VAL_ACC]             # (records,) averaged over repeats
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workloads import metrics as M


@dataclass(frozen=True)
class RunRecord:
    """One finished trial, as the aggregation sees it."""
    stage: str
    group: str
    repeat: int
    config: dict                 # the flat TrialConfig it ran with
    curves: pd.DataFrame         # one row per record point, column M.STEP plus metrics
    test_acc: float
    wall_s: float
    first_layer: Any = None      # np.ndarray of the first layer's weights
    state_dict: Any = None       # its final model weights (CPU tensors)


@dataclass(frozen=True)
class GroupAggregate:
    group: str
    steps: np.ndarray            # (T,)
    mean: dict                   # metric -> (T,)
    std: dict                    # metric -> (T,), sample std (0 when n == 1)
    n: int
    test_accs: np.ndarray        # (n,) in repeat order
    runs: tuple                  # RunRecords in repeat order
    best: RunRecord              # highest test accuracy; lowest repeat on ties

    @property
    def test_mean(self) -> float:
        return float(self.test_accs.mean())

    @property
    def test_std(self) -> float:
        return float(self.test_accs.std(ddof=1)) if self.n > 1 else 0.0


def curve_stats(curves: Sequence[pd.DataFrame], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) over runs, on the steps every run recorded."""
    indexed = [c.drop_duplicates(M.STEP, keep="last").set_index(M.STEP)[metric] for c in curves]
    table = pd.concat(indexed, axis=1, join="inner").sort_index()  # (T, runs)
    values = table.to_numpy(dtype=float)
    std = values.std(axis=1, ddof=1) if values.shape[1] > 1 else np.zeros(len(values))
    return table.index.to_numpy(), values.mean(axis=1), std


def aggregate_group(group: str, runs: Sequence[RunRecord], metrics=M.CURVES) -> GroupAggregate:
    runs = tuple(sorted(runs, key=lambda r: r.repeat))
    present = [m for m in metrics if all(m in r.curves.columns for r in runs)]
    mean, std, steps = {}, {}, np.array([], dtype=int)
    for metric in present:
        steps, mean[metric], std[metric] = curve_stats([r.curves for r in runs], metric)
    accs = np.array([r.test_acc for r in runs], dtype=float)
    best = runs[int(np.argmax(accs))]  # argmax takes the first of equal maxima
    return GroupAggregate(group, steps, mean, std, len(runs), accs, runs, best)


def aggregate_groups(records: Sequence[RunRecord], metrics=M.CURVES) -> dict[str, GroupAggregate]:
    """Group records by their group label, keeping the order groups first appear in."""
    by_group: dict[str, list] = {}
    for r in records:
        by_group.setdefault(r.group, []).append(r)
    return {g: aggregate_group(g, runs, metrics) for g, runs in by_group.items()}


def summary_table(aggs: dict[str, GroupAggregate], extra: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per group: test accuracy mean/std/best with n, wall time, and `extra` columns."""
    rows = []
    for g, a in aggs.items():
        walls = np.array([r.wall_s for r in a.runs], dtype=float)
        rows.append({"group": g, "n": a.n, "test_acc_mean": a.test_mean, "test_acc_std": a.test_std,
                     "test_acc_best": float(a.test_accs.max()), "best_repeat": a.best.repeat,
                     "wall_s_mean": float(walls.mean()), "wall_s_total": float(walls.sum()),
                     **(extra or {}).get(g, {})})
    return pd.DataFrame(rows)


def curves_table(aggs: dict[str, GroupAggregate]) -> pd.DataFrame:
    """Long format: group, metric, step, mean, std, n (what the plots draw)."""
    parts = [pd.DataFrame({"group": g, "metric": m, M.STEP: a.steps, "mean": a.mean[m],
                           "std": a.std[m], "n": a.n})
             for g, a in aggs.items() for m in a.mean]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
