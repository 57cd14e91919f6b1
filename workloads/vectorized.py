"""Vectorized repeats: the repeats of one configuration (same settings, other
seeds) trained together in one process as one stacked model (torch.func).

    cfgs = [cfg.override({"seed": s}) for s in range(4)]
    outcomes = train_repeats(cfgs, prepared, torch.device("cpu"),
                             report=lambda metrics, states: print(metrics))
    outcomes[k]    # what train(cfgs[k], prepared, device) returns, within float tolerance

Each repeat keeps what train() would give it alone:
  * its initialisation: torch.manual_seed(seed), then the same model builder;
  * its data order and augmentation draws: its own generators, seeded as train() seeds them;
  * its optimizer state: torch.optim (train()'s make_optimizer) on the stacked leaf
    tensors. Adam, AdamW, RMSprop and SGD act elementwise, so slice k of the stacked
    state is repeat k's state, step after step; the learning rate is train()'s lr_at and
    cosine_factor;
  * its records: the same keys and meanings as train()'s, one list per repeat.

The repeats stay in lockstep (same batch size, epochs, record points), so one
forward/backward/optimizer step serves them all: per-step overhead is paid once per
pack instead of once per repeat, and a record point syncs with the host once.

`report(metrics, states)` gets a list of per-repeat metrics dicts at every record
point; `states` is a list of per-repeat checkpoint dicts in train()'s own format
(every `checkpoint_every` records and at the end) or None. Passing such a list back
as `resume=` continues the pack; any one of them can also resume train() alone.

Where vmap cannot serve, `why_not_vectorized(cfg)` says why and the caller trains one
model per trial: layers with running statistics (BatchNorm: resnet18, vgg_a_bn) or
their own randomness (Dropout) would need per-repeat buffers or random streams that
train() does not have; so would any setting this module does not implement (it
refuses, rather than guesses, when TrainConfig grows a field it does not know).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from workloads import metrics as M
from workloads.augment import augment_batch
from workloads.config import SECTIONS, ConfigError, TrialConfig
from workloads.data import PreparedData
from workloads.models import first_layer
from workloads.train import (DeviceData, Outcome, cosine_factor, eval_batch, loss_fn, lr_at, make_optimizer,
                             memory_format)

PackReport = Callable[[list, Optional[list]], None]

JITTER_OFFSET = 1_000_003  # train() seeds its augmentation generator with seed + this
# Optimizers whose update is elementwise: one step on stacked tensors = K separate steps.
ELEMENTWISE_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# Every config field whose meaning this module implements. A field added later falls
# back to one model per trial (at a non-default value) until it is implemented here.
IMPLEMENTED = {
    "data": ("dataset", "grayscale", "val_per_class", "split_seed", "train_subset", "val_subset",
             "test_subset", "train_eval_size", "augment"),
    "model": ("arch", "activation", "width", "spec"),
    "train": ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "epochs",
              "lr_schedule", "scheduler", "loss", "seed", "record_every", "record_grad_norm",
              "eval_batch_size", "checkpoint_every"),
}
# Layers whose forward pass carries state or randomness vmap would have to split per repeat.
_UNVECTORIZABLE = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)


@dataclass(frozen=True)
class Accel:
    """Speed options of the vectorized path. The defaults (float32, eager) keep
    results comparable with train() and the assignment."""
    precision: str = "float32"   # "bfloat16": autocast forward passes (GPUs with bf16)
    # torch.compile mode for the training step's forward+loss and for evaluation:
    # "default", "reduce-overhead" (CUDA graphs), "max-autotune". On this project's
    # 2-core CPU it made evaluation 1.35-1.55x faster but costs ~30 s of compiling per
    # architecture, so it pays only for long runs.
    compile: str = ""
    # Evaluation through vmap (one call for all repeats) or a loop over the repeats'
    # slices. None: vmap on GPUs (one launch per layer instead of K), the loop on CPUs,
    # where vmap's grouped convolutions measured 1.3-2.4x slower than K plain ones.
    vmap_eval: bool | None = None

    def __post_init__(self):
        if self.precision not in ("float32", "bfloat16"):
            raise ConfigError(f"precision={self.precision!r}: choose float32 or bfloat16")
        if self.compile not in ("", "default", "reduce-overhead", "max-autotune"):
            raise ConfigError(f"compile={self.compile!r}: choose '', default, reduce-overhead "
                              f"or max-autotune")


def why_not_vectorized(cfg: TrialConfig) -> str | None:
    """None if the repeats of `cfg` can share one vmapped model, else the reason."""
    for section, klass in SECTIONS.items():
        part = getattr(cfg, section)
        for f in fields(klass):
            if f.name not in IMPLEMENTED[section] and getattr(part, f.name) != getattr(klass(), f.name):
                return f"{f.name}={getattr(part, f.name)!r} is not implemented by the vectorized path"
    if cfg.train.optimizer not in ELEMENTWISE_OPTIMIZERS:
        return f"optimizer={cfg.train.optimizer!r} is not known to be elementwise"
    for name, module in cfg.model.build(cfg.data.in_shape).named_modules():
        if isinstance(module, _UNVECTORIZABLE):
            return (f"{cfg.model.arch} has {type(module).__name__} ({name}): its running statistics "
                    f"or randomness are per model")
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
    base = {k: v for k, v in cfgs[0].to_flat().items() if k != "seed"}
    for cfg in cfgs[1:]:
        diff = sorted(k for k, v in cfg.to_flat().items() if k != "seed" and base[k] != v)
        if diff:
            raise ConfigError(f"repeats in one pack must differ only in seed; these differ: "
                              f"{', '.join(diff)}")


class StackedModel:
    """K copies of one architecture as stacked leaf tensors, called through vmap."""

    def __init__(self, cfgs: Sequence[TrialConfig], in_shape: tuple, device: torch.device):
        models = []
        for cfg in cfgs:
            torch.manual_seed(cfg.train.seed)  # the initialisation train() draws for this seed
            models.append(cfg.model.build(in_shape))
        self.keys = list(models[0].state_dict())  # train()'s state-dict order
        first = first_layer(models[0])
        self.first_weight = next(f"{n}.weight" if n else "weight"
                                 for n, m in models[0].named_modules() if m is first)
        params, buffers = stack_module_state(models)  # name -> (K, ...)
        self.params = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}
        self.buffers = {k: v.to(device) for k, v in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta")  # the structure; weights come stacked
        self.k = len(models)
        self.layout = memory_format(models[0], device)
        self._eval_one = self.one

    def one(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def compile(self, mode: str) -> None:
        """Evaluation through torch.compile (training compiles its own step)."""
        self._eval_one = torch.compile(self.one, mode=mode, dynamic=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, classes): every repeat on the same x (B, ...), in one vmapped call."""
        return vmap(self._eval_one, in_dims=(0, 0, None))(self.params, self.buffers, x)

    def logits_looped(self, x: torch.Tensor) -> torch.Tensor:
        """The same as logits(x), one repeat's slices at a time, in train()'s layout
        (NHWC on a CPU: 1.4-1.6x faster evaluation). The 4-D weights are cloned with
        that layout: contiguous() would keep a 1-channel filter bank's NCHW strides,
        which already count as NHWC-contiguous, and mix layouts from there on."""
        def repeat(tensors: dict, k: int) -> dict:
            return {n: t[k].clone(memory_format=self.layout) if t.dim() == 5 else t[k]
                    for n, t in tensors.items()}
        return torch.stack([self._eval_one(repeat(self.params, k), repeat(self.buffers, k), x)
                            for k in range(self.k)])

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def repeat_state(self, k: int) -> dict:
        both = {**self.params, **self.buffers}
        # clone: a view would drag the whole stacked storage into each saved state
        return {key: both[key][k].detach().clone() for key in self.keys}

    def load_repeat_states(self, states: Sequence[dict]) -> None:
        with torch.no_grad():
            for name, tensor in {**self.params, **self.buffers}.items():
                tensor.copy_(torch.stack([s[name] for s in states]).to(tensor.device))


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


@torch.inference_mode()
def accuracies(model: StackedModel, x: torch.Tensor, y: torch.Tensor, batch_size: int,
               accel: Accel = Accel()) -> torch.Tensor:
    """(K,) eval-mode accuracies of every repeat on the same images, left on the device."""
    model.train(False)
    batched = accel.vmap_eval if accel.vmap_eval is not None else x.device.type != "cpu"
    correct = torch.zeros(model.k, dtype=torch.long, device=x.device)
    for i in range(0, len(x), batch_size):
        chunk = x[i:i + batch_size]
        with _autocast(x.device, accel):
            logits = model.logits(chunk) if batched else model.logits_looped(chunk)  # (K, b, classes)
        correct += (logits.argmax(-1) == y[i:i + batch_size]).sum(1)
    model.train(True)
    return correct.double() / len(x)


def _autocast(device: torch.device, accel: Accel):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=accel.precision == "bfloat16")


def train_repeats(cfgs: Sequence[TrialConfig], data: PreparedData | DeviceData, device: torch.device,
                  report: PackReport | None = None, resume: Sequence[dict] | None = None,
                  accel: Accel = Accel()) -> list[Outcome]:
    """Train the repeats `cfgs` (differing only in seed) as one stacked model."""
    check_pack(cfgs)
    tc, augment = cfgs[0].train, cfgs[0].data.augmentations  # all but the seed is shared
    K = len(cfgs)
    d = data if isinstance(data, DeviceData) else DeviceData.from_prepared(data, device)
    model = StackedModel(cfgs, tuple(d.train_x.shape[1:]), device)
    stacked = list(model.params.values())
    optimizer = make_optimizer(tc, stacked)
    orders = [torch.Generator().manual_seed(c.train.seed) for c in cfgs]  # per-repeat data order
    jitters = [torch.Generator().manual_seed(c.train.seed + JITTER_OFFSET) for c in cfgs]
    n = len(d.train_x)
    steps_per_epoch = math.ceil(n / tc.batch_size)
    total_steps = steps_per_epoch * tc.epochs
    step, epoch, batch = 0, 0, 0
    records: list[list] = [[] for _ in range(K)]
    loss_sum = torch.zeros(K, device=device)
    loss_count = 0
    perms = None  # (K, n) on the device
    if resume is not None:
        if len(resume) != K:
            raise ValueError(f"resume has {len(resume)} states for {K} repeats")
        positions = {(s["step"], s["epoch"], s["batch"], s["loss_count"]) for s in resume}
        if len(positions) != 1:
            raise ValueError(f"the repeats' checkpoints are at different positions: {positions}")
        model.load_repeat_states([s["model"] for s in resume])
        optimizer.load_state_dict(stack_optimizer_states([s["optimizer"] for s in resume], stacked))
        for order, jitter, s in zip(orders, jitters, resume):
            order.set_state(s["order"])
            jitter.set_state(s["jitter"])
        torch.set_rng_state(resume[0]["torch_rng"])
        step, epoch, batch, loss_count = (resume[0][key] for key in ("step", "epoch", "batch", "loss_count"))
        if resume[0]["perm"] is not None:
            perms = torch.stack([s["perm"].to(device) for s in resume])
        loss_sum += torch.tensor([float(s["loss_sum"]) for s in resume], device=device)
        records = [list(s["records"]) for s in resume]
    eval_size = eval_batch(tc, device)
    started = time.perf_counter()

    def per_repeat_loss(params, buffers, x, y):
        return loss_fn(tc.loss, model.one(params, buffers, x), y)

    batched_loss = vmap(per_repeat_loss)  # (K,) losses from (K, B, ...) inputs
    if accel.compile:
        batched_loss = torch.compile(batched_loss, mode=accel.compile)
        model.compile(accel.compile)

    def states() -> list[dict]:
        opt_state, sums, rng = optimizer.state_dict(), loss_sum.tolist(), torch.get_rng_state()
        return [{"model": model.repeat_state(k), "optimizer": slice_optimizer_state(opt_state, stacked, k),
                 "order": orders[k].get_state(), "jitter": jitters[k].get_state(), "torch_rng": rng.clone(),
                 "step": step, "epoch": epoch, "batch": batch,
                 "perm": None if perms is None else perms[k].clone(),
                 "loss_sum": sums[k], "loss_count": loss_count, "records": list(records[k])}
                for k in range(K)]

    model.train(True)
    while epoch < tc.epochs:
        if perms is None or batch == 0:  # each repeat reshuffles with its own generator
            perms = torch.stack([torch.randperm(n, generator=o) for o in orders]).to(device)
        while batch < steps_per_epoch:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(tc, epoch) * cosine_factor(tc, step, total_steps)
            idx = perms[:, batch * tc.batch_size:(batch + 1) * tc.batch_size]  # (K, B)
            x = d.train_x[idx]  # (K, B, C, H, W)
            if augment:
                x = torch.stack([augment_batch(x[k], augment, jitters[k]) for k in range(K)])
            with _autocast(d.train_x.device, accel):
                losses = batched_loss(model.params, model.buffers, x, d.train_y[idx])  # (K,)
            optimizer.zero_grad(set_to_none=True)
            # Repeat k's loss depends only on slice k: the sum's gradient is each repeat's own.
            losses.sum().backward()
            optimizer.step()
            step, batch = step + 1, batch + 1
            loss_sum += losses.detach().float()
            loss_count += 1
            if step % tc.record_every == 0:
                # The host syncs once per record point, for all repeats' values together.
                columns = {M.LOSS: [v / loss_count for v in loss_sum.tolist()],
                           M.TRAIN_ACC: accuracies(model, d.train_eval_x, d.train_eval_y,
                                                   eval_size, accel).tolist(),
                           M.VAL_ACC: accuracies(model, d.val_x, d.val_y, eval_size, accel).tolist(),
                           M.LR: [optimizer.param_groups[0]["lr"]] * K}
                if tc.record_grad_norm:
                    grad = model.params[model.first_weight].grad  # (K, ...)
                    columns[M.GRAD_NORM] = grad.flatten(1).norm(dim=1).tolist()
                loss_sum.zero_()
                loss_count = 0
                for k in range(K):  # the same keys, in the same order, as train()'s records
                    records[k].append({M.STEP: step, M.EPOCH: step / steps_per_epoch,
                                       **{key: column[k] for key, column in columns.items()}})
                if report is not None:
                    checkpoint = len(records[0]) % tc.checkpoint_every == 0
                    report([dict(r[-1]) for r in records], states() if checkpoint else None)
        epoch, batch = epoch + 1, 0

    test_accs = accuracies(model, d.test_x, d.test_y, eval_size, accel).tolist()
    seconds = time.perf_counter() - started
    finals = []
    for k in range(K):
        final = dict(records[k][-1]) if records[k] else {M.STEP: step, M.EPOCH: float(epoch)}
        # train_seconds: this repeat's share of the pack's time, so sums over runs stay true
        final.update({M.TEST_ACC: test_accs[k], M.DONE: 1, "train_seconds": seconds / K})
        finals.append(final)
    if report is not None:
        report(finals, states())
    outcomes = []
    for k in range(K):
        weights = {key: v.cpu() for key, v in model.repeat_state(k).items()}
        outcomes.append(Outcome(test_accs[k], records[k], weights,
                                weights[model.first_weight].numpy().copy()))
    return outcomes
