"""Vectorized repeats: the repeats of one configuration (same settings, other
seeds) trained together in one process as one stacked model (torch.func), by
the one training loop (workloads.train.run) with `Stacked` as its K models.

    cfgs = [cfg.override({"seed": s}) for s in range(4)]
    outcomes = train_repeats(cfgs, prepared, torch.device("cpu"),
                             report=lambda metrics, states: print(metrics))
    outcomes[k]    # what train(cfgs[k], prepared, device) returns, up to float rounding

Each repeat keeps what train() would give it alone:
  * its initialisation: torch.manual_seed(seed), then the same model builder;
  * its data order, augmentation draws, records and divergence: the loop keeps them per model;
  * its optimizer state: torch.optim on the stacked leaf tensors. The registered
    optimizers are elementwise (workloads.components), so slice k of the stacked state
    is repeat k's state, step after step.

The repeats stay in lockstep (same batch size, epochs, record points), so one
forward/backward/optimizer step serves them all: per-step overhead is paid once per
pack instead of once per repeat, and a record point syncs with the host once.
Checkpoints are per repeat, in train()'s own format: a pack resumes from a list of
them, and any one of them can resume train() alone.

Where vmap cannot serve, `why_not_vectorized(cfg)` says why and the caller trains one
model per trial: layers with running statistics (BatchNorm: resnet18, vgg_a_bn) or
their own randomness (Dropout) would need per-repeat buffers or random streams that
train() does not have; so would any setting this module does not implement (it
refuses, rather than guesses, when a config grows a field it does not know).
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from workloads.components import OPTIMIZERS
from workloads.config import SEED, ConfigError, TrialConfig
from workloads.data import PreparedData
from workloads.models import count_parameters, first_layer
from workloads.evaluation import DeviceData
from workloads.members import Accel, fresh_compile_caches, memory_format
from workloads.state import Checkpoint, Outcome
from workloads.train import PackReport, run

__all__ = ["Accel", "Stacked", "can_vectorize", "check_pack", "train_repeats", "why_not_vectorized"]
# Layers whose forward pass carries state or randomness vmap would have to split per repeat.
_UNVECTORIZABLE = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


def why_not_vectorized(cfg: TrialConfig) -> str | None:
    """None if the repeats of `cfg` can share one vmapped model, else the reason."""
    if not OPTIMIZERS.parse(cfg.train.optimizer).elementwise:
        return f"optimizer={cfg.train.optimizer!r} is not elementwise"
    for name, module in cfg.model.build(cfg.data.in_shape).named_modules():
        if isinstance(module, _UNVECTORIZABLE):
            return (f"{cfg.model.arch} has {type(module).__name__} ({name}): its running statistics "
                    f"or randomness are per model")
        if any(True for _ in module.buffers(recurse=False)):  # one's own model's state (workloads/imported.py)
            return f"{cfg.model.arch} has {type(module).__name__} ({name}) with buffers: its state is per model"
    return None


def can_vectorize(cfg: TrialConfig) -> bool:
    return why_not_vectorized(cfg) is None


def check_pack(cfgs: Sequence[TrialConfig]) -> None:
    """Repeats share one stacked model only if they differ in nothing but the seed."""
    if not cfgs:
        raise ConfigError("a pack needs at least one repeat")
    reason = why_not_vectorized(cfgs[0])
    if reason:
        raise ConfigError(f"cannot vectorize: {reason}; train one model per trial")
    base = {k: v for k, v in cfgs[0].to_flat().items() if k != SEED}
    for cfg in cfgs[1:]:
        diff = sorted(k for k, v in cfg.to_flat().items() if k != SEED and base[k] != v)
        if diff:
            raise ConfigError(f"repeats in one pack must differ only in seed; these differ: "
                              f"{', '.join(diff)}")


class Stacked:
    """K copies of one architecture as stacked leaf tensors, called through vmap: the
    training loop's K models (workloads.members.Single is the one-model case)."""

    def __init__(self, cfgs: Sequence[TrialConfig], in_shape: tuple, device: torch.device,
                 dtype=torch.float32, vmap_eval: bool | None = None):
        models = []
        for cfg in cfgs:
            torch.manual_seed(cfg.train.seed)  # the initialisation train() draws for this seed
            models.append(cfg.model.build(in_shape).to(dtype))
        self.keys = list(models[0].state_dict())  # train()'s state-dict order
        first = first_layer(models[0])
        self.first_key = next(f"{n}.weight" if n else "weight"
                                 for n, m in models[0].named_modules() if m is first)
        params, buffers = stack_module_state(models)  # name -> (K, ...)
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; weights come stacked
        self.k = len(models)
        self.count = count_parameters(models[0])
        self.layout = memory_format(models[0], device)
        # Evaluation in one vmapped call on GPUs (one launch per layer instead of K); a loop
        # over the repeats on CPUs, where vmap's grouped convolutions are slower
        # (docs/benchmarks.md, "Figures behind the code's choices").
        self.vmap_eval = device.type != "cpu" if vmap_eval is None else vmap_eval
        self._eval_one = self.one
        self.loss_fn = None
        self._losses = vmap(self._loss)  # (K,) losses and logits from (K, B, ...) inputs

    def one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def _loss(self, params, buffers, x, y):
        logits = self.one(params, buffers, x)
        return self.loss_fn(logits, y), logits

    def named(self) -> list:
        return [(n, p, p.dim() - 1) for n, p in self.params.items()]

    def compile(self, mode: str) -> None:
        fresh_compile_caches()  # `one` is every instance's function: an architecture's own versions only
        self._losses = torch.compile(self._losses, mode=mode)
        self._eval_one = torch.compile(self.one, mode=mode, dynamic=False)

    def losses(self, x: torch.Tensor, y: torch.Tensor, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) losses, (K, B, classes) logits of repeat k on its own batch x[k] (K, B, ...)."""
        self.loss_fn = loss_fn
        return self._losses(self.params, self.buffers, x, y)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, classes): every repeat on the same images x (B, ...)."""
        if self.vmap_eval:
            return vmap(self._eval_one, in_dims=(0, 0, None))(self.params, self.buffers, x)
        # One repeat's slices at a time, in train()'s layout (NHWC on a CPU: faster, ibid.).
        # The 4-D weights are cloned with that layout: contiguous() would keep a 1-channel
        # filter bank's NCHW strides, which already count as NHWC-contiguous, and mix layouts.
        def repeat(tensors: dict, k: int) -> dict:
            return {n: t[k].clone(memory_format=self.layout) if t.dim() == 5 else t[k]
                    for n, t in tensors.items()}
        # clone: under CUDA graphs (compile="reduce-overhead") each call returns the graph's
        # output buffer, which the next repeat's call overwrites before the stack reads it.
        return torch.stack([self._eval_one(repeat(self.params, k), repeat(self.buffers, k), x).clone()
                            for k in range(self.k)])

    def train(self, mode: bool) -> None:
        self.base.train(mode)

    def grad_norms(self) -> torch.Tensor:
        return self.params[self.first_key].grad.flatten(1).norm(dim=1)  # (K,)

    def state(self, k: int) -> dict:
        both = {**self.params, **self.buffers}
        # clone: a view would drag the whole stacked storage into each saved state
        return {key: both[key][k].detach().clone() for key in self.keys}

    def load(self, states: Sequence[dict]) -> None:
        with torch.no_grad():
            for name, tensor in {**self.params, **self.buffers}.items():
                tensor.copy_(torch.stack([s[name] for s in states]).to(tensor.device))

    def optimizer_state(self, optimizer, k: int) -> dict:
        return slice_optimizer_state(optimizer.state_dict(), list(self.params.values()), k)

    def load_optimizer(self, optimizer, states: Sequence[dict]) -> None:
        optimizer.load_state_dict(stack_optimizer_states([s for s in states], list(self.params.values())))

    def weights(self, k: int) -> dict:
        return {key: v.cpu() for key, v in self.state(k).items()}

    def first_weights(self, k: int) -> np.ndarray:
        return self.params[self.first_key][k].detach().cpu().numpy().copy()

    def parameters(self) -> int:
        return self.count


def slice_optimizer_state(state: dict, stacked: Sequence[torch.Tensor], k: int) -> dict:
    """Repeat k's optimizer state dict, as torch.optim would hold it for that repeat alone."""
    per_repeat = {i: {key: _take(v, stacked[i], k) for key, v in entry.items()}
                  for i, entry in state["state"].items()}
    return {"state": per_repeat, "param_groups": copy.deepcopy(state["param_groups"])}


def _take(value, stacked_param: torch.Tensor, k: int):
    if torch.is_tensor(value):
        if value.dim() > 0 and value.shape == stacked_param.shape:
            return value[k].detach().clone()
        return value.detach().clone()  # shared by all repeats (Adam's step count)
    return copy.deepcopy(value)


def stack_optimizer_states(states: Sequence[dict], stacked: Sequence[torch.Tensor]) -> dict:
    """The inverse of slice_optimizer_state: per-repeat state dicts -> one stacked one."""
    out = {}
    for i, entry in states[0]["state"].items():
        out[i] = {}
        for key, v in entry.items():
            per_param = torch.is_tensor(v) and v.dim() > 0 and v.shape == stacked[i].shape[1:]
            out[i][key] = torch.stack([s["state"][i][key] for s in states]) if per_param else v
    return {"state": out, "param_groups": copy.deepcopy(states[0]["param_groups"])}


def train_repeats(cfgs: Sequence[TrialConfig], data: PreparedData | DeviceData, device: torch.device,
                  report: PackReport | None = None, resume: Sequence[Checkpoint | dict] | None = None,
                  accel: Accel = Accel()) -> list[Outcome]:
    """Train the repeats `cfgs` (differing only in seed) as one stacked model."""
    check_pack(cfgs)

    def stacked(cfgs, in_shape, device, dtype):
        return Stacked(cfgs, in_shape, device, dtype, accel.vmap_eval)
    return run(cfgs, data, device, stacked, report, resume, accel)
