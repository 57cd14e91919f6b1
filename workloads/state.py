"""A run's state as the training loop hands it out: one Checkpoint per model (everything
a resumed run needs, and what it has recorded so far) and the FinalRecord it ends with,
and the Outcome train() returns.

    state = Checkpoint.from_dict(torch.load("meta.pt") | torch.load("state.pt"))
    train(cfg, data, device, resume=state)     # continues exactly where it was
    meta, heavy = state.halves()               # what the driver reads apart from the weights

They cross process and Ray boundaries as plain dicts of tensors, arrays and numbers
(to_dict/from_dict), never as pickles of these classes (STYLE 19): the dict format is
the one the loop wrote before these classes existed, so its checkpoints still resume.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from workloads import metrics as M

# Of a checkpoint's fields, the ones only a resumed run and the best run's copy ever load
# (ResNet-18 with SGD momentum: ~90 MB); the rest is the driver's (kilobytes).
HEAVY = ("model", "optimizer")


@dataclass
class FinalRecord:
    """What a run ends with: its last record and the run's totals. As a dict it is the
    final report's metrics (`to_dict`), which Tune sees and the driver collects."""
    record: dict           # the last record's metrics ({step, epoch} alone if it recorded none)
    test_acc: float        # NaN when the run diverged or did not score the test set
    status: str            # M.FINISHED or M.DIVERGED
    train_seconds: float   # this model's share of the training time
    parameters: int        # of the model that ran
    diverged_at: int | None = None  # the step whose loss was not finite

    def to_dict(self) -> dict:
        out = dict(self.record)
        out.update({M.TEST_ACC: self.test_acc, M.DONE: 1, M.STATUS: self.status,
                    M.TRAIN_SECONDS: self.train_seconds, M.PARAMETERS: self.parameters})
        if self.diverged_at is not None:
            out[M.DIVERGED_AT] = self.diverged_at
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "FinalRecord":
        """The dict's TRAIN_SECONDS is the run's: the last record's own is not in it."""
        own = (M.TEST_ACC, M.DONE, M.STATUS, M.TRAIN_SECONDS, M.PARAMETERS, M.DIVERGED_AT)
        return cls({k: v for k, v in d.items() if k not in own}, float(d[M.TEST_ACC]), d[M.STATUS],
                   float(d[M.TRAIN_SECONDS]), int(d[M.PARAMETERS]), d.get(M.DIVERGED_AT))

    @property
    def finished(self) -> bool:
        return self.status == M.FINISHED


@dataclass
class Checkpoint:
    """One model's place in a run. `model` and `optimizer` are None when only the
    metadata half was read (`halves`: the driver collecting a finished run)."""
    # the model and its optimizer
    model: dict | None
    optimizer: dict | None
    # random state: this model's data order and augmentation draws, the process's generators
    order: torch.Tensor
    jitter: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None  # None on a CPU (and in checkpoints from before GPU runs)
    # where the run is: steps taken, the epoch and batch within it and the epoch's data order
    step: int
    epoch: int
    batch: int
    perm: torch.Tensor | None      # on the CPU: the driver may read it on a machine without a GPU
    seconds: float                 # training time so far (all K models')
    # the running sums since the last record
    loss_sum: float
    correct: int
    loss_count: int
    # what it recorded: every record point so far, the step it diverged at
    records: list = field(default_factory=list)
    diverged: int | None = None
    # at the end of the run only
    final: FinalRecord | None = None
    first_layer: np.ndarray | None = None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["records"] = list(self.records)
        for key in ("final", "first_layer"):  # absent before the end (and first_layer unless asked for)
            if out[key] is None:
                del out[key]
        if self.final is not None:
            out["final"] = self.final.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Checkpoint":
        """A checkpoint as to_dict (or the loop before these classes) wrote it; its metadata
        half alone too."""
        known = {f.name for f in fields(cls)}
        args = {k: v for k, v in d.items() if k in known}
        args.setdefault("model", None)
        args.setdefault("optimizer", None)
        args.setdefault("cuda_rng", None)  # written before checkpoints held the GPU's state
        args["records"] = list(args.get("records", []))
        if args.get("final") is not None:
            args["final"] = FinalRecord.from_dict(args["final"])
        return cls(**args)

    def halves(self) -> tuple[dict, dict]:
        """(metadata, heavy) halves of to_dict(): two files, so the driver never loads weights."""
        whole = self.to_dict()
        return ({k: v for k, v in whole.items() if k not in HEAVY}, {k: whole[k] for k in HEAVY})

    @classmethod
    def from_halves(cls, meta: dict, heavy: dict | None = None) -> "Checkpoint":
        return cls.from_dict({**meta, **(heavy or {})})


def as_checkpoint(state: Checkpoint | dict) -> Checkpoint:
    return state if isinstance(state, Checkpoint) else Checkpoint.from_dict(state)


@dataclass
class Outcome:
    """What train() returns of one model."""
    test_acc: float        # NaN when the run diverged or did not score the test set
    records: list          # one metrics dict per record point
    state_dict: dict       # final model weights (CPU tensors)
    first_layer: np.ndarray | None
    status: str = M.FINISHED
    final: FinalRecord | None = None  # the final report: last record, parameters, training time, ...
