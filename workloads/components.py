"""Optimizers, learning-rate schedules and losses: one table each (workloads.registry).

    OPTIMIZERS.parse("sgd:momentum=0.9:nesterov=true")
    SCHEDULERS.parse("multistep:milestones=10/20:gamma=0.1")
    LOSSES.parse("cross_entropy:label_smoothing=0.1")

Schedules are pure functions of where the run is, factor(epoch, step,
steps_per_epoch, epochs, **params), multiplying the base rate, rather than
torch.optim.lr_scheduler objects: a stateless rate is the same for a resumed
run, for K repeats sharing one optimizer, and for the prefix of a longer run.
Each is tested step by step against the torch.optim.lr_scheduler class it stands
for (tests/test_components.py). Epoch-wise schedules change at epoch starts, as
those classes do when stepped once per epoch; `length_dependent` marks the ones
whose rate at a point depends on the run's total length (a shorter run is then
not a prefix of a longer one).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workloads.data import CLASSES as NUM_CLASSES
from workloads.registry import Registry


# --- optimizers: fn(param_groups, lr, weight_decay, **params) ---------------------------
OPTIMIZERS = Registry("optimizer")


def _momentum(params: dict) -> str | None:
    if not 0 <= params.get("momentum", 0.0) < 1:
        return "momentum must be in [0, 1)"
    if params.get("nesterov") and params["momentum"] <= 0:
        return "nesterov needs momentum > 0"
    return None


# `default_lr`: what lr=0 means. `elementwise`: the update of each parameter entry
# depends on that entry alone, so one step on K stacked models is K separate steps
# (workloads.vectorized relies on it).
OPTIMIZERS.add("sgd", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}, _momentum,
               default_lr=0.01, elementwise=True)
OPTIMIZERS.add("adam", torch.optim.Adam, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
               default_lr=1e-3, elementwise=True)
OPTIMIZERS.add("adamw", torch.optim.AdamW, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
               default_lr=1e-3, elementwise=True)
OPTIMIZERS.add("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "momentum": 0.0, "eps": 1e-8}, _momentum,
               default_lr=1e-2, elementwise=True)
OPTIMIZERS.add("adagrad", torch.optim.Adagrad, {"lr_decay": 0.0, "eps": 1e-10},
               default_lr=1e-2, elementwise=True)


def build_optimizer(spec, groups, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    kwargs = dict(spec.params)
    if "beta1" in kwargs:  # torch takes the pair
        kwargs["betas"] = (kwargs.pop("beta1"), kwargs.pop("beta2"))
    # foreach: one multi-tensor kernel per update term instead of a Python loop over the
    # parameters (torch's default on GPUs only); bit-identical to the loop for every entry
    # here (tests/test_components.py), and a few percent of a batch-4 step on a CPU.
    return spec.entry.fn(groups, lr=lr, weight_decay=weight_decay, foreach=True, **kwargs)


# --- schedules: factor(epoch, step, steps_per_epoch, epochs, **params) -----------------
SCHEDULERS = Registry("scheduler")


def _increasing(params: dict) -> str | None:
    m = params["milestones"]
    if not m or list(m) != sorted(set(m)) or m[0] < 1 or any(v != int(v) for v in m):
        return "milestones must be whole epochs >= 1, increasing, e.g. milestones=10/20"
    return None


def _gamma(params: dict) -> str | None:
    return None if params["gamma"] > 0 else "gamma must be > 0"


def constant(epoch, step, spe, epochs):
    return 1.0


def step_decay(epoch, step, spe, epochs, step_size, gamma):      # StepLR
    return gamma ** (epoch // step_size)


def multistep(epoch, step, spe, epochs, milestones, gamma):      # MultiStepLR
    return gamma ** sum(epoch >= m for m in milestones)


def exponential(epoch, step, spe, epochs, gamma):                # ExponentialLR
    return gamma ** epoch


def cosine(epoch, step, spe, epochs):
    """Per step, from the base rate to 0 over the whole run: CosineAnnealingLR(T_max=total steps)."""
    total = spe * epochs
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def warmup(epoch, step, spe, epochs, warmup_epochs):
    """A LambdaLR rule: the rate rises linearly, step by step, over the first `warmup_epochs`, then stays."""
    return min(1.0, (step + 1) / (warmup_epochs * spe))


SCHEDULERS.add("constant", constant, length_dependent=False)
SCHEDULERS.add("step", step_decay, {"step_size": 10, "gamma": 0.1},
               lambda p: _gamma(p) or (None if p["step_size"] >= 1 else "step_size must be >= 1"),
               length_dependent=False)
SCHEDULERS.add("multistep", multistep, {"milestones": (), "gamma": 0.1}, lambda p: _increasing(p) or _gamma(p),
               length_dependent=False)
SCHEDULERS.add("exponential", exponential, {"gamma": 0.95}, _gamma, length_dependent=False)
SCHEDULERS.add("cosine", cosine, length_dependent=True)
SCHEDULERS.add("warmup", warmup, {"warmup_epochs": 1.0},
               lambda p: None if p["warmup_epochs"] > 0 else "warmup_epochs must be > 0", length_dependent=False)


# --- losses: fn(logits, y, reduction, **params); reduction "mean" or "sum" over images ----
LOSSES = Registry("loss")


def cross_entropy(logits, y, reduction, label_smoothing):
    return F.cross_entropy(logits, y, reduction=reduction, label_smoothing=label_smoothing)


def mse(logits, y, reduction):
    """Squared error against one-hot targets, averaged over the classes (nn.MSELoss's mean)."""
    target = F.one_hot(y, NUM_CLASSES).to(logits.dtype)
    if reduction == "mean":
        return F.mse_loss(logits, target)
    return F.mse_loss(logits, target, reduction="none").mean(-1).sum()


LOSSES.add("cross_entropy", cross_entropy, {"label_smoothing": 0.0},
           lambda p: None if 0 <= p["label_smoothing"] < 1 else "label_smoothing must be in [0, 1)")
LOSSES.add("mse", mse)
