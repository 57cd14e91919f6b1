"""Evaluation: the prepared arrays as tensors on the training device (moved there once), and
one pass of every model over a split, averaged over the test-time views.

    d = DeviceData.from_prepared(prepared, torch.device("cpu"))
    x, y = d.split("val")
    evaluate_split(Single([cfg], in_shape, device, torch.float32), x, y, views, 250, loss_fn, {"acc"})
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from workloads.config import TrainConfig
from workloads.data import PreparedData
from workloads.members import Accel


@dataclass
class DeviceData:
    """The prepared arrays as tensors on one device, moved there once. The fixed training
    sample (train_acc's images) is copied out of train_x only when a record first scores it."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    train_eval_idx: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    sample: tuple | None = field(default=None, repr=False)  # (x, y) of the training sample, once made

    @classmethod
    def from_prepared(cls, data: PreparedData, device: torch.device, dtype=torch.float32) -> "DeviceData":
        """`dtype` float64 runs the whole loop in double precision (the equivalence tests)."""
        def t(a, floating=False):
            with warnings.catch_warnings():  # arrays from Ray's object store are read-only; we never write
                warnings.simplefilter("ignore", UserWarning)
                out = torch.from_numpy(np.asarray(a)).to(device)
            return out.to(dtype) if floating else out
        return cls(t(data.train_x, True), t(data.train_y), t(data.train_eval_idx),
                   t(data.val_x, True), t(data.val_y), t(data.test_x, True), t(data.test_y))

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "train_sample":
            if self.sample is None:  # the whole split (sorted, distinct indices): the arrays, not a copy
                whole = len(self.train_eval_idx) == len(self.train_x)
                self.sample = ((self.train_x, self.train_y) if whole else
                               (self.train_x[self.train_eval_idx], self.train_y[self.train_eval_idx]))
            return self.sample
        return {"val": (self.val_x, self.val_y), "test": (self.test_x, self.test_y)}[name]



# Evaluation batches when TrainConfig.eval_batch_size is 0. CPU: small batches, because
# glibc hands each freed activation buffer of tens of MB back to the OS and the next batch
# faults it in again; GPU: large batches amortise kernel launches (unmeasured). The figures:
# docs/benchmarks.md, "Figures behind the code's choices".
EVAL_BATCH = {"cpu": 250, "cuda": 1000}


def eval_batch(cfg: TrainConfig, device: torch.device) -> int:
    return cfg.eval_batch_size or EVAL_BATCH.get(device.type, 250)


@torch.inference_mode()
def evaluate_split(models, x: torch.Tensor, y: torch.Tensor, views, batch_size: int, loss_fn, kinds,
                   accel: Accel = Accel()) -> dict:
    """{"acc": [K floats], "loss": [K floats]} (those in `kinds`) of every model, eval mode,
    on images x: the model's outputs averaged over the views (workloads.augment.VIEWS)."""
    models.train(False)
    correct = torch.zeros(models.k, dtype=torch.long, device=x.device)
    loss_sum = torch.zeros(models.k, dtype=torch.float64, device=x.device)
    for i in range(0, len(x), batch_size):
        chunk, target = views(x[i:i + batch_size]), y[i:i + batch_size]  # (V, b, C, H, W)
        with accel.autocast(x.device):
            # clone: under CUDA graphs (compile="reduce-overhead") a call's outputs are the
            # graph's buffers, which the next view's call overwrites.
            logits = models.logits(chunk[0]) if len(chunk) == 1 else \
                torch.stack([models.logits(v).clone() for v in chunk]).mean(0)  # (K, b, classes)
        if "acc" in kinds:
            correct += (logits.argmax(-1) == target).sum(1)
        if "loss" in kinds:
            wide = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bfloat16 autocast outputs
            loss_sum += torch.stack([loss_fn(wide[k], target, "sum") for k in range(models.k)]).double()
    models.train(True)
    out = {}
    if "acc" in kinds:
        out["acc"] = (correct.double() / len(x)).tolist()
    if "loss" in kinds:
        out["loss"] = (loss_sum / len(x)).tolist()
    return out
