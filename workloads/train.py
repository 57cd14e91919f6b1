"""The one training loop. Every study's variant (optimizer, schedule, loss,
augmentation, recorded metrics) is configuration; reporting and checkpointing
are callbacks, so this module never sees Ray.

    outcome = train(TrialConfig(), prepared, torch.device("cpu"),
                    report=lambda metrics, state: print(metrics))

`report(metrics, state)` is called at every record point; `state` is a
checkpoint dict (every `checkpoint_every` records and at the end) or None.
Passing such a dict back as `resume=` continues the run exactly where it was: bitwise on
a CPU, and on a GPU with deterministic=true; to float rounding on a GPU otherwise
(workloads/device.py says why). Checkpoints hold the CPU's and the GPU's random state.

The loop drives K models in lockstep through one interface (`Single` here, K = 1;
workloads.vectorized.Stacked, K repeats as one stacked model): each keeps its own
initialisation, data order, augmentation draws, records and divergence, while
one forward/backward/optimizer step serves them all. `run()` is the loop;
train() is run() with one model.

A run whose training loss stops being finite has diverged: it stops there
(in a pack, that repeat stops being recorded) and ends with status DIVERGED,
its curves kept up to its last record, and no test accuracy (NaN). A run with
score_test=False (a search's trial) skips the final test pass: its test accuracy is NaN too.
"""
from __future__ import annotations

import contextlib
import copy
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from workloads import metrics as M
from workloads.augment import eval_transform, train_transform
from workloads.components import LOSSES, OPTIMIZERS, SCHEDULERS, build_optimizer
from workloads.config import PRECISIONS, ConfigError, TrainConfig, TrialConfig
from workloads.data import PreparedData
from workloads.device import cuda_rng_state, set_cuda_rng_state, set_numerics
from workloads.models import count_parameters, first_layer

Report = Callable[[dict, Optional[dict]], None]
PackReport = Callable[[list, Optional[list]], None]
JITTER_OFFSET = 1_000_003  # a run's augmentation generator is seeded with seed + this


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


@dataclass
class Outcome:
    test_acc: float        # NaN when the run diverged or did not score the test set
    records: list          # one metrics dict per record point
    state_dict: dict       # final model weights (CPU tensors)
    first_layer: np.ndarray
    status: str = M.FINISHED
    final: dict | None = None  # the final report's metrics (parameters, training time, ...)


@dataclass(frozen=True)
class Accel:
    """Speed options. The defaults (the data's precision, eager) keep results comparable
    with the assignments'."""
    # None: the config's TrainConfig.precision; else one of workloads.config.PRECISIONS for this call.
    precision: str | None = None
    # torch.compile mode for the forward passes: "default", "reduce-overhead" (CUDA graphs),
    # "max-autotune". Costs tens of seconds of compiling per architecture (docs/benchmarks.md).
    compile: str = ""
    # Stacked models: evaluation through vmap (one call for all repeats) or a loop over the
    # repeats. None: vmap on GPUs, the loop on CPUs (measured faster there, docs/benchmarks.md).
    vmap_eval: bool | None = None
    # Steps between reads of the divergence flag (a read syncs a GPU with the host); 0: every
    # step on a CPU, every 50 on a GPU. Either way a run reports the first non-finite step.
    check_every: int = 0

    def __post_init__(self):
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}: choose {', '.join(PRECISIONS)}")
        if self.compile not in ("", "default", "reduce-overhead", "max-autotune"):
            raise ConfigError(f"compile={self.compile!r}: choose '', default, reduce-overhead or max-autotune")
        if self.check_every < 0:
            raise ConfigError("check_every must be >= 0 (0: sized for the device)")

    def autocast(self, device: torch.device):
        if self.precision != "bfloat16":
            return contextlib.nullcontext()  # entering a disabled autocast costs microseconds a step
        return torch.autocast(device.type, dtype=torch.bfloat16)


def fresh_compile_caches() -> None:
    """Compiled code is cached per Python function, shared by every model compiled through it,
    and past torch._dynamo's recompile limit (8 versions) the rest runs eagerly, silently: a
    process that trains architecture after architecture would end up eager. A process trains
    one run at a time, so a run empties the caches before it compiles; one that still needs
    more versions fails instead of running eager unnoticed."""
    torch.compiler.reset()
    torch._dynamo.config.fail_on_recompile_limit_hit = True


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


def schedule(cfg: TrainConfig) -> Callable[[int, int, int], float]:
    """rate(epoch, step, steps_per_epoch): the rate of the step after `step` steps, in
    `epoch`: the base rate (lr_schedule's pairs) times the scheduler's factor. The specs
    are parsed here once, not at every step."""
    base, pairs, spec = cfg.base_lr, cfg.lr_schedule, SCHEDULERS.parse(cfg.scheduler)

    def rate(epoch: int, step: int, steps_per_epoch: int) -> float:
        lr = base
        for start, value in pairs:
            if epoch >= start:
                lr = value
        return lr * spec.entry.fn(epoch, step, steps_per_epoch, cfg.epochs, **spec.params)
    return rate


def lr_at(cfg: TrainConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    return schedule(cfg)(epoch, step, steps_per_epoch)


def param_groups(named: list, cfg: TrainConfig) -> list[dict]:
    """One group, or (decay_norm_and_bias=False with weight decay) decayed weights apart from
    biases and normalisation weights, which are the parameters of at most one dimension."""
    if cfg.decay_norm_and_bias or not cfg.weight_decay:
        return [{"params": [p for _, p, _ in named]}]
    return [{"params": [p for _, p, dim in named if dim > 1]},
            {"params": [p for _, p, dim in named if dim <= 1], "weight_decay": 0.0}]


class Single:
    """One nn.Module behind the loop's K-model interface (K = 1)."""
    k = 1

    def __init__(self, cfgs: Sequence[TrialConfig], in_shape: tuple, device: torch.device, dtype):
        (cfg,) = cfgs
        torch.manual_seed(cfg.train.seed)
        model = cfg.model.build(in_shape)
        self.model = model.to(device, dtype=dtype, memory_format=memory_format(model, device))
        self.first = first_layer(self.model)
        self.first_key = next(n for n, p in self.model.named_parameters() if p is self.first.weight)
        self.forward = self.model

    def named(self) -> list:
        """(name, parameter, its dimensions in one model) for the optimizer."""
        return [(n, p, p.dim()) for n, p in self.model.named_parameters()]

    def compile(self, mode: str) -> None:
        fresh_compile_caches()
        self.forward = torch.compile(self.model, mode=mode)

    def losses(self, x: torch.Tensor, y: torch.Tensor, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """(K,) losses and (K, B, classes) logits of a training batch x (K, B, ...)."""
        logits = self.forward(x[0])
        return loss_fn(logits, y[0]).unsqueeze(0), logits.unsqueeze(0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).unsqueeze(0)  # (1, B, classes)

    def train(self, mode: bool) -> None:
        self.model.train(mode)

    def grad_norms(self) -> torch.Tensor:
        return self.first.weight.grad.norm().unsqueeze(0)

    def state(self, k: int) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def load(self, states: Sequence[dict]) -> None:
        self.model.load_state_dict(states[0])

    def optimizer_state(self, optimizer, k: int) -> dict:
        return copy.deepcopy(optimizer.state_dict())

    def load_optimizer(self, optimizer, states: Sequence[dict]) -> None:
        optimizer.load_state_dict(states[0])

    def weights(self, k: int) -> tuple[dict, np.ndarray]:
        """(state_dict on the CPU, first-layer weight) of model k."""
        return ({n: v.detach().cpu() for n, v in self.model.state_dict().items()},
                self.first.weight.detach().cpu().contiguous().numpy())

    def parameters(self) -> int:
        return count_parameters(self.model)


def train(cfg: TrialConfig, data: PreparedData | DeviceData, device: torch.device,
          report: Report | None = None, resume: dict | None = None, accel: Accel = Accel()) -> Outcome:
    """One run: run() with one model."""
    def one(metrics: list, states: list | None) -> None:
        report(metrics[0], None if states is None else states[0])
    return run([cfg], data, device, Single, one if report else None,
               None if resume is None else [resume], accel)[0]


def run(cfgs: Sequence[TrialConfig], data: PreparedData | DeviceData, device: torch.device, members,
        report: PackReport | None = None, resume: Sequence[dict] | None = None,
        accel: Accel = Accel()) -> list[Outcome]:
    """Train `cfgs` (differing at most in seed) with `members(cfgs, in_shape, device, dtype)`:
    Single for one config, workloads.vectorized.Stacked for several."""
    cfg, K = cfgs[0], len(cfgs)   # all but the seed is shared
    tc = cfg.train
    accel = replace(accel, precision=accel.precision or tc.precision)
    set_numerics(accel.precision, tc.deterministic)
    d = data if isinstance(data, DeviceData) else DeviceData.from_prepared(data, device)
    models = members(cfgs, tuple(cfg.data.in_shape), device, d.train_x.dtype)
    if accel.compile:
        models.compile(accel.compile)
    optimizer = build_optimizer(OPTIMIZERS.parse(tc.optimizer), param_groups(models.named(), tc),
                                tc.base_lr, tc.weight_decay)
    loss_spec, rate = LOSSES.parse(tc.loss), schedule(tc)

    def loss_fn(logits, y, reduction="mean"):
        return loss_spec.entry.fn(logits, y, reduction, **loss_spec.params)

    augment, views = train_transform(cfg.data), eval_transform(cfg.data)
    transforms_batch = bool(cfg.data.augmentations) or cfg.data.resize != cfg.data.arrays.resize
    orders = [torch.Generator().manual_seed(c.train.seed) for c in cfgs]  # data order, apart from the device
    jitters = [torch.Generator().manual_seed(c.train.seed + JITTER_OFFSET) for c in cfgs]
    n, spe = len(d.train_x), cfg.steps_per_epoch
    if n != cfg.train_images:
        raise ValueError(f"data has {n} training images, the config {cfg.train_images}")
    records_at, snapshots = set(cfg.record_points()), {e * spe for e in tc.snapshot_epochs}
    last_record = max(records_at)
    wanted = tc.recorded
    splits = M.splits_needed(wanted)
    eval_size = eval_batch(tc, device)
    step, epoch, batch, perms = 0, 0, 0, None
    records: list[list] = [[] for _ in range(K)]
    loss_sum = torch.zeros(K, device=device, dtype=d.train_x.dtype)
    last_loss = loss_sum  # the latest step's (K,) losses, for record_loss="last"
    correct = torch.zeros(K, device=device, dtype=torch.long)
    loss_count, seconds = 0, 0.0
    diverged: list[int | None] = [None] * K   # the step each model's loss stopped being finite
    if resume is not None:
        if len(resume) != K or len({(s["step"], s["batch"]) for s in resume}) != 1:
            raise ValueError("resume needs one state per model, all at the same position")
        s0 = resume[0]
        models.load([s["model"] for s in resume])
        models.load_optimizer(optimizer, [s["optimizer"] for s in resume])
        for gen, key in ((orders, "order"), (jitters, "jitter")):
            for g, s in zip(gen, resume):
                g.set_state(s[key])
        torch.set_rng_state(s0["torch_rng"])
        set_cuda_rng_state(s0.get("cuda_rng"), device)
        step, epoch, batch, loss_count, seconds = (s0[k] for k in ("step", "epoch", "batch", "loss_count",
                                                                   "seconds"))
        if s0["perm"] is not None:
            perms = torch.stack([s["perm"].to(device) for s in resume])
        loss_sum += torch.tensor([s["loss_sum"] for s in resume], device=device, dtype=loss_sum.dtype)
        correct += torch.tensor([s["correct"] for s in resume], device=device)
        records = [list(s["records"]) for s in resume]
        diverged = [s["diverged"] for s in resume]
    # Reading the divergence flag syncs a GPU with the host, so a GPU reads it every 50 steps;
    # `finite` counts on the device, without a sync, the steps through which each model's loss
    # stayed finite, so both devices report the first non-finite step.
    check_every = accel.check_every or (1 if device.type == "cpu" else 50)
    finite = torch.full((K,), step, device=device, dtype=torch.long)

    def states() -> list[dict]:
        sums, rights, rng = loss_sum.tolist(), correct.tolist(), torch.get_rng_state()
        gpu_rng = cuda_rng_state(device)
        return [{"model": models.state(k), "optimizer": models.optimizer_state(optimizer, k),
                 "order": orders[k].get_state(), "jitter": jitters[k].get_state(), "torch_rng": rng.clone(),
                 "cuda_rng": gpu_rng, "step": step, "epoch": epoch, "batch": batch, "seconds": seconds,
                 # on the CPU, a copy: the driver reads this file on a machine without a GPU
                 "perm": None if perms is None else perms[k].to("cpu", copy=True),
                 "loss_sum": sums[k], "correct": rights[k],
                 "loss_count": loss_count, "records": list(records[k]), "diverged": diverged[k]}
                for k in range(K)]

    def evaluate(split: str, kinds) -> dict:
        x, y = d.split(split)
        return evaluate_split(models, x, y, views, eval_size, loss_fn, kinds, accel)

    def record_point(step: int, spe: int, batch_size: int) -> None:
        """Append a record to every model still training; reset the running sums."""
        nonlocal loss_count
        sums, rights = loss_sum.tolist(), correct.tolist()  # one host sync for every model
        columns = {M.LOSS: M.recorded_loss(tc.record_loss, sums, loss_count, last_loss)}
        if M.TRAIN_ACC_RUNNING in wanted:
            columns[M.TRAIN_ACC_RUNNING] = [r / (loss_count * batch_size) for r in rights]
        scored = dict(splits)
        if step in snapshots:  # this run stands in for a shorter one: score what it would report
            scored["test"] = scored.get("test", set()) | {"acc"}
        for split, kinds in scored.items():
            for kind, values in evaluate(split, kinds).items():
                columns[M.NAMES[split, kind]] = values
        for metric in M.at_end(wanted) if step == last_record else ():
            columns[metric.name] = evaluate(metric.split, {metric.kind})[metric.kind]
        columns[M.LR] = [optimizer.param_groups[0]["lr"]] * K
        if M.GRAD_NORM in wanted:
            columns[M.GRAD_NORM] = models.grad_norms().tolist()
        columns[M.TRAIN_SECONDS] = [seconds / K] * K  # each model's share of the training time
        loss_sum.zero_()
        correct.zero_()
        loss_count = 0
        for k in range(K):
            if diverged[k] is None:
                records[k].append({M.STEP: step, M.EPOCH: step / spe,
                                   **{key: column[k] for key, column in columns.items()}})

    clock = time.perf_counter()
    models.train(True)
    while epoch < tc.epochs:
        if perms is None or batch == 0:  # each model reshuffles every epoch with its own generator
            perms = torch.stack([torch.randperm(n, generator=o) for o in orders]).to(device)
        while batch < spe:
            for group in optimizer.param_groups:
                group["lr"] = rate(epoch, step, spe)
            idx = perms[:, batch * tc.batch_size:(batch + 1) * tc.batch_size]  # (K, B)
            x, y = d.train_x[idx], d.train_y[idx]  # (K, B, C, H, W), (K, B)
            if transforms_batch:
                x = torch.stack([augment(x[k], jitters[k]) for k in range(K)])
            with accel.autocast(device):
                losses, logits = models.losses(x, y, loss_fn)  # (K,), (K, B, classes)
            optimizer.zero_grad(set_to_none=True)
            # Model k's loss depends only on model k: the sum's gradient is each one's own.
            losses.sum().backward()
            optimizer.step()
            step, batch = step + 1, batch + 1
            last_loss = losses.detach()
            loss_sum += last_loss
            # A sum that is not finite stays so until the record point resets it, which comes
            # after a check: the count stops at the step before the first non-finite loss.
            finite += torch.isfinite(loss_sum)
            loss_count += 1
            if M.TRAIN_ACC_RUNNING in wanted:
                correct += (logits.detach().argmax(-1) == y).sum(1)
            if step % check_every == 0 or step in records_at:
                for k, through in enumerate(finite.tolist()):
                    if through < step and diverged[k] is None:
                        diverged[k] = through + 1
                if None not in diverged:
                    break
            if step in records_at:
                seconds += time.perf_counter() - clock  # after the sync of the finiteness check
                record_point(step, spe, idx.shape[1])
                if report is not None:
                    checkpoint = sum(s <= step for s in records_at) % tc.checkpoint_every == 0
                    report([dict(r[-1]) if r else {M.STEP: step, M.EPOCH: step / spe} for r in records],
                           states() if checkpoint else None)
                clock = time.perf_counter()
        if None not in diverged:
            break
        epoch, batch = epoch + 1, 0
    seconds += time.perf_counter() - clock

    alive = [k for k in range(K) if diverged[k] is None]
    tests = evaluate("test", {"acc"})["acc"] if alive and tc.score_test else [float("nan")] * K
    outcomes, finals = [], []
    for k in range(K):
        status = M.FINISHED if diverged[k] is None else M.DIVERGED
        final = dict(records[k][-1]) if records[k] else {M.STEP: step, M.EPOCH: step / spe}
        final.update({M.TEST_ACC: tests[k] if status == M.FINISHED else float("nan"), M.DONE: 1,
                      M.STATUS: status, M.TRAIN_SECONDS: seconds / K, M.PARAMETERS: models.parameters()})
        if diverged[k] is not None:
            final[M.DIVERGED_AT] = diverged[k]
        finals.append(final)
        weights, first = models.weights(k)
        outcomes.append(Outcome(final[M.TEST_ACC], records[k], weights, first, status, final))
    if report is not None:  # the final states carry the final metrics, for whoever collects them
        report(finals, [dict(state, final=final, first_layer=outcome.first_layer)
                        for state, final, outcome in zip(states(), finals, outcomes)])
    return outcomes


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
