"""What a record point measures: one recorder per recordable metric (workloads.metrics
names them and gives their titles), each saying what it needs of the loop and how it
turns that into one value per model.

    columns = record_columns(cfg.train.recorded, point, evaluate, snapshot=False, last=True)

Needs:
  LOSSES    the running sums of the training losses since the last record (always kept)
  CORRECT   a running count of correct training predictions, kept only if a recorder needs it
  SPLIT     an evaluation pass over a split (the metric's split and kind, workloads.metrics):
            accuracy and loss of one split come from the same pass
  GRADIENT  the first layer's gradient after the latest step
  WEIGHTS   the trained model, when the run ends (a `final` metric: one array per model,
            kept beside the final record: Checkpoint.first_layer, Outcome.first_layer)

A new metric is its name and title in workloads/metrics.py and one entry here: the loop,
the trainable, packing and collecting carry whatever a record holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from workloads import metrics as M

LOSSES, CORRECT, SPLIT, GRADIENT, WEIGHTS = "losses", "correct", "split", "gradient", "weights"


@dataclass(frozen=True)
class Point:
    """What a record point offers its recorders, for K models."""
    loss_sums: list        # K sums of the training losses since the last record
    correct: list          # K counts of correct training predictions since then (CORRECT)
    count: int             # steps since the last record
    batch_size: int        # of the latest step
    last_loss: Any         # (K,) tensor: the latest step's losses (read only if asked: a GPU sync)
    record_loss: str       # TrainConfig.record_loss
    models: Any            # the loop's K models (workloads.members)


@dataclass(frozen=True)
class Recorder:
    needs: str
    # K values from the record point; None for a SPLIT recorder, whose split's pass gives them
    measure: Callable[[Point], list] | None = None


RECORDERS = {
    M.LOSS: Recorder(LOSSES, lambda p: M.recorded_loss(p.record_loss, p.loss_sums, p.count, p.last_loss)),
    M.TRAIN_ACC_RUNNING: Recorder(CORRECT, lambda p: [r / (p.count * p.batch_size) for r in p.correct]),
    M.TRAIN_ACC: Recorder(SPLIT),
    M.TRAIN_ACC_END: Recorder(SPLIT),
    M.VAL_ACC: Recorder(SPLIT),
    M.VAL_LOSS: Recorder(SPLIT),
    M.TEST_ACC: Recorder(SPLIT),
    M.TEST_LOSS: Recorder(SPLIT),
    M.GRAD_NORM: Recorder(GRADIENT, lambda p: p.models.grad_norms().tolist()),
    M.FIRST_LAYER: Recorder(WEIGHTS, lambda p: [p.models.first_weights(k) for k in range(p.models.k)]),
}


def needs(names, need: str) -> bool:
    """Whether any of the metrics `names` needs `need` of the loop."""
    return any(RECORDERS[n].needs == need for n in names)


def record_columns(names, point: Point, evaluate: Callable[[str, set], dict], snapshot: bool,
                   last: bool, lr: float) -> dict:
    """{metric: K values} of one record point: the metrics `names` (TrainConfig.recorded),
    the learning rate, and the test accuracy at a `snapshot` (the run stands in for a shorter
    one). `evaluate(split, kinds)` runs one pass; at_end metrics are scored at the `last`
    record only. Columns come in this order: running sums, splits, learning rate, gradient."""
    K = point.models.k
    columns = {n: RECORDERS[n].measure(point) for n in names if RECORDERS[n].needs in (LOSSES, CORRECT)}
    scored = M.splits_needed(names)
    if snapshot:
        scored["test"] = scored.get("test", set()) | {"acc"}
    for split, kinds in scored.items():
        for kind, values in evaluate(split, kinds).items():
            columns[M.NAMES[split, kind]] = values
    for metric in M.at_end(names) if last else ():
        columns[metric.name] = evaluate(metric.split, {metric.kind})[metric.kind]
    columns[M.LR] = [lr] * K
    columns.update({n: RECORDERS[n].measure(point) for n in names if RECORDERS[n].needs == GRADIENT})
    return columns


def final_columns(names, point: Point) -> dict:
    """{metric: K values} of the `final` metrics of `names`, measured when the run ends."""
    return {n: RECORDERS[n].measure(point) for n in names if RECORDERS[n].needs == WEIGHTS}
