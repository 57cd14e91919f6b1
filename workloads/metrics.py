"""Metric names, defined once and imported everywhere (training loop, trainable,
Tune's metric, aggregation, plots, reports).

A record point carries STEP, EPOCH, LR, LOSS and TRAIN_SECONDS, plus the
metrics a run asks for (TrainConfig.metrics, checked against RECORDABLE; how each is
measured: workloads/recorders.py). A `final` metric (FIRST_LAYER) is measured once,
when the run ends, and kept beside its final record rather than in its curves.
Each evaluation split is scored only if some asked-for metric needs it, and
accuracy and loss of a split come from the same pass.
"""
from __future__ import annotations

from dataclasses import dataclass

STEP = "step"                   # optimizer steps taken so far
# Not a metric: the config key that a repeat changes (base seed + repeat), never a choice and
# never compared; here so that readers without torch (results/records.py) name it too.
SEED = "seed"
EPOCH = "epoch"                 # fractional epochs done at a record point
LR = "lr"                       # learning rate in force at the record point
LOSS = "train_loss"             # training loss at a record point: TrainConfig.record_loss says which
TRAIN_SECONDS = "train_seconds"  # training time so far, evaluation excluded
TRAIN_ACC = "train_acc"         # eval-mode accuracy on the fixed training sample
TRAIN_ACC_RUNNING = "train_acc_running"  # accuracy of the training batches since the last record (free)
TRAIN_ACC_END = "train_acc_end"  # eval-mode accuracy on the training sample, at the run's last record only
VAL_ACC = "val_acc"             # eval-mode accuracy on the validation split
VAL_LOSS = "val_loss"           # eval-mode loss on the validation split
TEST_ACC = "test_acc"           # test accuracy: at record points if asked, always once at the end
TEST_LOSS = "test_loss"
GRAD_NORM = "grad_norm"         # L2 norm of d(loss)/d(first layer weight), last step
FIRST_LAYER = "first_layer"     # the first layer's weights at the end of the run (an array, not a curve)

# In the final report of a run only.
DONE = "done_training"          # 1 on the final report
STATUS = "run_status"           # FINISHED or DIVERGED (Tune keeps "status" for its own)
# A search's candidate that a scheduler (ASHA) stopped before its end: curves up to there, no final
# report; a RunRecord's status, never a run's own.
STOPPED_EARLY = "stopped_early"
DIVERGED_AT = "diverged_at_step"  # the step whose loss was not finite
PARAMETERS = "parameters"       # of the model that ran
FINISHED, DIVERGED = "finished", "diverged"

SPLITS = ("train_sample", "val", "test")


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    split: str | None = None     # the evaluation it needs, if any
    kind: str = ""               # "acc" or "loss" of that split
    at_end: bool = False         # scored at the run's last record point only (a costly pass)
    final: bool = False          # measured once when the run ends, kept beside its final record


RECORDABLE = {m.name: m for m in (
    Metric(LOSS, "training loss"),
    Metric(TRAIN_ACC_RUNNING, "training accuracy (running, training batches)"),
    Metric(TRAIN_ACC, "training accuracy", "train_sample", "acc"),
    # resnet's final recipe: the report's "99.99% on the training set" is a number of the trained
    # model, so one eval pass over the training split at the end (train_eval_size=0), not per epoch.
    Metric(TRAIN_ACC_END, "training accuracy at the end (eval mode)", "train_sample", "acc", at_end=True),
    Metric(VAL_ACC, "validation accuracy", "val", "acc"),
    Metric(VAL_LOSS, "validation loss", "val", "loss"),
    Metric(TEST_ACC, "test accuracy", "test", "acc"),
    Metric(TEST_LOSS, "test loss", "test", "loss"),
    Metric(GRAD_NORM, "first-layer gradient norm"),
    Metric(FIRST_LAYER, "first-layer weights", final=True),  # part3's figures of the best run's filters
)}
NAMES = {(m.split, m.kind): name for name, m in RECORDABLE.items() if m.split and not m.at_end}  # -> name
TITLES = {**{name: m.title for name, m in RECORDABLE.items()}, LR: "learning rate",
          TRAIN_SECONDS: "training seconds", EPOCH: "epoch", STEP: "step"}

# Curves aggregation averages over repeats (whatever a run recorded of these).
CURVES = tuple(name for name, m in RECORDABLE.items() if not m.final) + (LR, TRAIN_SECONDS, EPOCH)

DEFAULT = (LOSS, TRAIN_ACC, VAL_ACC)

# What a record's training loss is (TrainConfig.record_loss). "mean": the mean of the
# mini-batch losses since the previous record (the tutorial's running_loss / len(trainloader),
# smooth). "last": the loss of the record's own step, what part3-5's assignment records
# (its hint: loss.item() at every 10th step), one batch's noise included.
LOSS_RECORDS = ("mean", "last")


def recorded_loss(mode: str, sums: list, count: int, last) -> list:
    """Each model's training loss at a record point: `sums` of the `count` mini-batch losses
    since the previous record, or `last` (a (K,) tensor, read only then: a GPU sync), those
    of the latest step."""
    return [s / count for s in sums] if mode == "mean" else last.tolist()


def split_list(text) -> tuple[str, ...]:
    return tuple(t.strip() for t in str(text).split(",") if t.strip())


def splits_needed(names) -> dict[str, set]:
    """{split: {"acc", "loss"}} that the metrics `names` need scored at every record point."""
    out: dict[str, set] = {}
    for name in names:
        m = RECORDABLE[name]
        if m.split and not m.at_end:
            out.setdefault(m.split, set()).add(m.kind)
    return out


def at_end(names) -> list[Metric]:
    """The metrics of `names` scored at the run's last record point only."""
    return [RECORDABLE[n] for n in names if RECORDABLE[n].at_end]
