"""Pure aggregation: run records in, arrays and tables out. Every aggregate
carries its spread and sample size (mean, std, n).

    aggs = aggregate_groups(records, select=M.VAL_ACC)   # {group: GroupAggregate}
    aggs["cnn_3"].mean[M.VAL_ACC]                         # (T,) averaged over the repeats
    aggs["cnn_3"].count[M.VAL_ACC]                        # (T,) how many repeats each point has

A diverged run (workloads.train) keeps its curve up to its last record and has
no test accuracy: curves average, at each point, the runs that got there (with
their count), test accuracy averages the finished runs (`n`), and `n_diverged`
says how many stopped. A group whose every run diverged has no mean (None),
never NaN. A run that did not score the test set (score_test=False: a search's
trial) finished without a test accuracy: test means are over the runs that have
one (`n_test`), and a group with none says "test not scored".
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workloads import metrics as M


@dataclass(frozen=True)
class RunRecord:
    """One trial's result, as the aggregation sees it."""
    stage: str
    group: str
    repeat: int
    config: dict                 # the flat TrialConfig it asked for
    curves: pd.DataFrame         # one row per record point, column M.STEP plus metrics
    test_acc: float              # NaN when it diverged or did not score the test set
    wall_s: float
    first_layer: Any = None      # np.ndarray of the first layer's weights
    # Its final model weights: a state_dict, or a function that loads it from the run's
    # checkpoint (the driver keeps no weights in memory); None for a prefix of a longer run.
    weights: Any = None
    status: str = M.FINISHED     # or M.DIVERGED, or M.STOPPED_EARLY (a search's candidate ASHA stopped)
    parameters: int = 0          # of the model that ran
    train_seconds: float = 0.0   # training time, evaluation excluded
    changes: str = ""            # what its group changes, in words
    diverged_at: int | None = None  # the step whose loss was not finite
    # The run that trained it ("<group>_r<repeat>" of its first trial): the same for every group
    # a run serves and every shorter prefix it gives; "" in records saved before it was kept.
    run: str = ""

    def state_dict(self) -> dict:
        """The weights, loaded now if they are still on disk."""
        return self.weights() if callable(self.weights) else self.weights

    @property
    def finished(self) -> bool:
        return self.status == M.FINISHED

    def final(self, metric: str) -> float:
        """The metric at the run's last record (NaN if it never recorded it)."""
        column = self.curves[metric].dropna() if metric in self.curves else ()
        return float(column.iloc[-1]) if len(column) else float("nan")


@dataclass(frozen=True)
class GroupAggregate:
    group: str
    steps: np.ndarray            # (T,)
    mean: dict                   # metric -> (T,)
    std: dict                    # metric -> (T,), sample std (0 where fewer than 2 runs)
    count: dict                  # metric -> (T,) runs with a value at that point
    n: int                       # finished runs
    test_accs: np.ndarray        # (n_test,) of the finished runs that scored the test set, in repeat order
    runs: tuple                  # every RunRecord, in repeat order
    best: RunRecord | None       # the finished run with the highest `select` value; lowest repeat on ties
    select: str = M.TEST_ACC

    @property
    def n_diverged(self) -> int:
        return sum(r.status == M.DIVERGED for r in self.runs)

    @property
    def n_stopped(self) -> int:
        """Runs a search's scheduler (ASHA) stopped before their end."""
        return sum(r.status == M.STOPPED_EARLY for r in self.runs)

    @property
    def n_test(self) -> int:
        return len(self.test_accs)

    @property
    def test_mean(self) -> float | None:
        return float(self.test_accs.mean()) if self.n_test else None

    @property
    def test_std(self) -> float | None:
        return float(self.test_accs.std(ddof=1)) if self.n_test > 1 else None


def curve_matrix(curves: Sequence[pd.DataFrame], metric: str, steps=None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `metric`: values (T, runs), NaN where a run has no value, at `steps`
    (default: every step some run recorded it)."""
    indexed = [c.drop_duplicates(M.STEP, keep="last").set_index(M.STEP)[metric].dropna()
               for c in curves if metric in c]
    table = pd.concat(indexed, axis=1, join="outer").sort_index()
    if steps is not None:
        table = table.reindex(steps)
    return table.index.to_numpy(), table.to_numpy(dtype=float)


def curve_stats(curves: Sequence[pd.DataFrame], metric: str, steps=None) -> tuple[np.ndarray, ...]:
    """(steps, mean, std, count) of `metric` over runs: at `steps` (default: every step some
    run recorded it), each point averaging the runs with a value there."""
    steps, values = curve_matrix(curves, metric, steps)
    count = np.isfinite(values).sum(axis=1)
    safe = np.where(np.isfinite(values), values, 0.0)
    mean = np.where(count > 0, safe.sum(axis=1) / np.maximum(count, 1), np.nan)
    squares = np.where(np.isfinite(values), (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
    std = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), 0.0)
    return steps, mean, std, count


def aggregate_group(group: str, runs: Sequence[RunRecord], metrics=M.CURVES, *,
                    select: str) -> GroupAggregate:
    """`select`: the metric that picks the group's best run (a study's `select`: validation
    accuracy unless its assignment says otherwise); required, so that no caller chooses on
    the test set by default."""
    runs = tuple(sorted(runs, key=lambda r: r.repeat))
    present = [m for m in metrics if any(m in r.curves and r.curves[m].notna().any() for r in runs)]
    # Every metric on the same steps; a sparse one (test snapshots) is NaN, count 0, between its points.
    steps = np.array(sorted({s for r in runs for s in r.curves.loc[
        r.curves[[m for m in present if m in r.curves]].notna().any(axis=1), M.STEP]}), dtype=int) \
        if present else np.array([], dtype=int)
    mean, std, count = {}, {}, {}
    for metric in present:
        _, mean[metric], std[metric], count[metric] = curve_stats([r.curves for r in runs], metric, steps)
    finished = [r for r in runs if r.finished]
    accs = np.array([r.test_acc for r in finished], dtype=float)
    accs = accs[np.isfinite(accs)]  # runs with score_test=False have none
    scores = np.array([r.test_acc if select == M.TEST_ACC else r.final(select) for r in finished])
    # argmax takes the first of equal maxima: the lowest repeat
    best = finished[int(np.nanargmax(scores))] if np.isfinite(scores).any() else (finished or [None])[0]
    return GroupAggregate(group, steps, mean, std, count, len(finished), accs, runs, best, select)


def aggregate_groups(records: Sequence[RunRecord], metrics=M.CURVES, *,
                     select: str) -> dict[str, GroupAggregate]:
    """Group records by their group label, keeping the order groups first appear in."""
    by_group: dict[str, list] = {}
    for r in records:
        by_group.setdefault(r.group, []).append(r)
    return {g: aggregate_group(g, runs, metrics, select=select) for g, runs in by_group.items()}


def summary_table(aggs: dict[str, GroupAggregate], extra: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per group: what it changes, status, test accuracy mean/std/best with n, the
    model's parameters, training seconds per epoch and wall time, and `extra` columns."""
    rows = []
    for g, a in aggs.items():
        walls = np.array([r.wall_s for r in a.runs], dtype=float)
        first = a.runs[0]
        epochs = np.array([r.final(M.EPOCH) for r in a.runs])
        per_epoch = np.array([r.train_seconds for r in a.runs]) / np.where(epochs > 0, epochs, np.nan)
        rows.append({"group": g, "changes": first.changes, "status": status_text(a), "n": a.n,
                     "test_acc_mean": a.test_mean, "test_acc_std": a.test_std,
                     "test_acc_best": float(a.test_accs.max()) if a.n_test else None,
                     "best_repeat": a.best.repeat if a.best else None, "parameters": first.parameters,
                     "train_s_per_epoch": float(np.nanmean(per_epoch)) if np.isfinite(per_epoch).any() else None,
                     "wall_s_mean": float(walls.mean()), "wall_s_total": float(walls.sum()),
                     **(extra or {}).get(g, {})})
    return pd.DataFrame(rows)


def status_text(a: GroupAggregate) -> str:
    if a.n_stopped:
        epochs = ", ".join(f"{r.final(M.EPOCH):.3g}" for r in a.runs if r.status == M.STOPPED_EARLY)
        return f"{M.STOPPED_EARLY} {a.n_stopped}/{len(a.runs)} (epoch {epochs})"
    if not a.n_diverged:
        return M.FINISHED if a.n_test == a.n else f"{M.FINISHED}, test not scored" + (
            f" ({a.n - a.n_test}/{a.n})" if a.n_test else "")
    steps = ", ".join(str(r.diverged_at) for r in a.runs if r.status == M.DIVERGED)
    return f"{M.DIVERGED} {a.n_diverged}/{len(a.runs)} (step {steps})"


def curves_table(aggs: dict[str, GroupAggregate]) -> pd.DataFrame:
    """Long format: group, metric, step, mean, std, n (what the plots draw); points no run reached are left out."""
    parts = [pd.DataFrame({"group": g, "metric": m, M.STEP: a.steps, "mean": a.mean[m],
                           "std": a.std[m], "n": a.count[m]})
             for g, a in aggs.items() for m in a.mean]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return table[table["n"] > 0].reset_index(drop=True) if len(table) else table


def prefix_record(record: RunRecord, epochs: int, config: dict) -> RunRecord:
    """What a run of `epochs` epochs gives, from a longer run that scored a snapshot at the
    end of that epoch (TrainConfig.snapshot_epochs): its curves up to there, the snapshot's
    test accuracy, its share of the time. No weights: only the longer run's are kept."""
    curves = record.curves[record.curves[M.EPOCH] <= epochs + 1e-9].reset_index(drop=True)
    last = curves.iloc[-1] if len(curves) else None
    diverged = not record.finished and (last is None or last[M.EPOCH] < epochs - 1e-9)
    test = float(last[M.TEST_ACC]) if last is not None and M.TEST_ACC in last and not diverged else float("nan")
    seconds = float(last[M.TRAIN_SECONDS]) if last is not None and M.TRAIN_SECONDS in last else 0.0
    share = record.wall_s * seconds / record.train_seconds if record.train_seconds else 0.0
    return replace(record, config=config, curves=curves, test_acc=test, wall_s=share, weights=None,
                   first_layer=None, train_seconds=seconds,
                   status=M.DIVERGED if diverged else M.FINISHED,
                   diverged_at=record.diverged_at if diverged else None)
