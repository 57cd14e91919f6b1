"""The one training loop. Every study's variant (optimizer, schedule,
activation, recorded metrics) is configuration; reporting and checkpointing
are callbacks, so this module never sees Ray.

    outcome = train(TrialConfig(), prepared, torch.device("cpu"),
                    report=lambda metrics, state: print(metrics))

`report(metrics, state)` is called at every record point; `state` is a
checkpoint dict (every `checkpoint_every` records and at the end) or None.
Passing such a dict back as `resume=` continues the run exactly where it was.
"""
from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from workloads import metrics as M
from workloads.augment import augment_batch
from workloads.config import TrainConfig, TrialConfig
from workloads.data import NUM_CLASSES, PreparedData
from workloads.models import first_layer

Report = Callable[[dict, Optional[dict]], None]


@dataclass
class DeviceData:
    """The prepared arrays as tensors on one device, moved there once."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    train_eval_x: torch.Tensor
    train_eval_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @classmethod
    def from_prepared(cls, data: PreparedData, device: torch.device) -> "DeviceData":
        def t(a):
            with warnings.catch_warnings():  # arrays from Ray's object store are read-only; we never write
                warnings.simplefilter("ignore", UserWarning)
                return torch.from_numpy(np.asarray(a)).to(device)
        train_x, train_y = t(data.train_x), t(data.train_y)
        idx = t(data.train_eval_idx)
        return cls(train_x, train_y, train_x[idx], train_y[idx],
                   t(data.val_x), t(data.val_y), t(data.test_x), t(data.test_y))


@dataclass
class Outcome:
    test_acc: float
    records: list          # one metrics dict per record point
    state_dict: dict       # final model weights (CPU tensors)
    first_layer: np.ndarray


def memory_format(model: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """The layout a model's 4-D weights (and so its convolutions' activations) take.
    On a CPU, NHWC (channels_last) is oneDNN's native layout: these small CNNs measured
    1.1-1.5x faster training steps and 1.3-2x faster evaluation with it (docs/benchmarks.md);
    the sums differ from NCHW's only in float rounding. On a GPU NCHW stays (unmeasured)."""
    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return torch.channels_last if device.type == "cpu" and convolutional else torch.contiguous_format


# Evaluation batches when TrainConfig.eval_batch_size is 0. CPU, one thread, NHWC:
# 100-250 images scored ~8,900 images/s, 500-1,000 only 4,700-6,000, because glibc hands
# each freed activation buffer of tens of MB back to the OS and the next batch faults it
# in again (docs/benchmarks.md). GPU: large batches amortise kernel launches (unmeasured).
EVAL_BATCH = {"cpu": 250, "cuda": 1000}


def eval_batch(cfg: TrainConfig, device: torch.device) -> int:
    return cfg.eval_batch_size or EVAL_BATCH.get(device.type, 250)


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    lr = cfg.lr or default_lr(cfg.optimizer)
    for start, value in cfg.lr_schedule:
        if epoch >= start:
            lr = value
    return lr


def cosine_factor(cfg: TrainConfig, step: int, total_steps: int) -> float:
    if cfg.scheduler != "cosine":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def default_lr(optimizer: str) -> float:
    return {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-2}.get(optimizer, 0.0)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    lr = lr_at(cfg, 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov)


def loss_fn(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "mse":
        return F.mse_loss(logits, F.one_hot(y, NUM_CLASSES).to(logits.dtype))
    return F.cross_entropy(logits, y)


@torch.inference_mode()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), batch_size):
        correct += (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return correct.item() / len(x)


def train(cfg: TrialConfig, data: PreparedData | DeviceData, device: torch.device,
          report: Report | None = None, resume: dict | None = None) -> Outcome:
    tc = cfg.train
    d = data if isinstance(data, DeviceData) else DeviceData.from_prepared(data, device)
    torch.manual_seed(tc.seed)
    model = cfg.model.build(tuple(d.train_x.shape[1:]))
    model = model.to(device, memory_format=memory_format(model, device))
    optimizer = make_optimizer(tc, model.parameters())
    order = torch.Generator().manual_seed(tc.seed)  # data order, independent of the device
    augment = cfg.data.augmentations
    jitter = torch.Generator().manual_seed(tc.seed + 1_000_003)  # augmentation draws, apart from the order
    n = len(d.train_x)
    steps_per_epoch = math.ceil(n / tc.batch_size)
    total_steps = steps_per_epoch * tc.epochs
    step, epoch, batch, records = 0, 0, 0, []
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    perm = None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        order.set_state(resume["order"])
        jitter.set_state(resume["jitter"])
        torch.set_rng_state(resume["torch_rng"])
        step, epoch, batch, perm = resume["step"], resume["epoch"], resume["batch"], resume["perm"]
        loss_sum += resume["loss_sum"]
        loss_count, records = resume["loss_count"], list(resume["records"])
    first = first_layer(model)
    eval_size = eval_batch(tc, device)
    started = time.perf_counter()

    def state() -> dict:
        # Copies, so that a caller holding the dict keeps this point of the run.
        return {"model": copy.deepcopy(model.state_dict()),
                "optimizer": copy.deepcopy(optimizer.state_dict()),
                "order": order.get_state(), "jitter": jitter.get_state(), "torch_rng": torch.get_rng_state(),
                "step": step, "epoch": epoch, "batch": batch, "perm": perm,
                "loss_sum": loss_sum.item(), "loss_count": loss_count, "records": list(records)}

    model.train()
    while epoch < tc.epochs:
        if perm is None or batch == 0:
            perm = torch.randperm(n, generator=order).to(device)  # reshuffled every epoch
        while batch < steps_per_epoch:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(tc, epoch) * cosine_factor(tc, step, total_steps)
            idx = perm[batch * tc.batch_size:(batch + 1) * tc.batch_size]
            x = d.train_x[idx]
            if augment:
                x = augment_batch(x, augment, jitter)
            loss = loss_fn(tc.loss, model(x), d.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step, batch = step + 1, batch + 1
            loss_sum += loss.detach()
            loss_count += 1
            if step % tc.record_every == 0:
                record = {M.STEP: step, M.EPOCH: step / steps_per_epoch,
                          M.LOSS: loss_sum.item() / loss_count,
                          M.TRAIN_ACC: accuracy(model, d.train_eval_x, d.train_eval_y, eval_size),
                          M.VAL_ACC: accuracy(model, d.val_x, d.val_y, eval_size),
                          M.LR: optimizer.param_groups[0]["lr"]}
                if tc.record_grad_norm:
                    record[M.GRAD_NORM] = first.weight.grad.norm().item()
                loss_sum.zero_()
                loss_count = 0
                records.append(record)
                if report is not None:
                    checkpoint = len(records) % tc.checkpoint_every == 0
                    report(dict(record), state() if checkpoint else None)
        epoch, batch = epoch + 1, 0

    test_acc = accuracy(model, d.test_x, d.test_y, eval_size)
    final = dict(records[-1]) if records else {M.STEP: step, M.EPOCH: float(epoch)}
    final.update({M.TEST_ACC: test_acc, M.DONE: 1, "train_seconds": time.perf_counter() - started})
    if report is not None:
        report(final, state())
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return Outcome(test_acc, records, weights, first.weight.detach().cpu().contiguous().numpy())
