"""The one training loop. Every study's variant (optimizer, schedule, loss,
augmentation, recorded metrics) is configuration; reporting and checkpointing
are callbacks, so this module never sees Ray.

    outcome = train(TrialConfig(), prepared, torch.device("cpu"),
                    report=lambda metrics, state: print(metrics))

`report(metrics, state)` is called at every record point; `state` is a
workloads.state.Checkpoint (every `checkpoint_every` records and at the end) or None.
Passing it back (or its to_dict()) as `resume=` continues the run exactly where it was:
bitwise on a CPU, and on a GPU with deterministic=true; to float rounding on a GPU otherwise
(workloads/device.py says why). Checkpoints hold the CPU's and the GPU's random state.

The loop drives K models in lockstep through one interface (workloads.members.Single,
K = 1; workloads.vectorized.Stacked, K repeats as one stacked model): each keeps its own
initialisation, data order, augmentation draws, records and divergence, while one
forward/backward/optimizer step serves them all. `Loop` is the loop in parts (restore,
train_step, record, finish); what a record measures is workloads/recorders.py's table;
run() drives a Loop; train() is run() with one model.

A run whose training loss stops being finite has diverged: it stops there
(in a pack, that repeat stops being recorded) and ends with status DIVERGED,
its curves kept up to its last record, and no test accuracy (NaN). A run with
score_test=False (a search's trial) skips the final test pass: its test accuracy is NaN too.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch

from workloads import metrics as M
from workloads.augment import eval_transform, train_transform
from workloads.components import LOSSES, OPTIMIZERS, SCHEDULERS, build_optimizer
from workloads.config import TrainConfig, TrialConfig
from workloads.data import PreparedData
from workloads.device import cuda_rng_state, set_cuda_rng_state, set_numerics
from workloads.evaluation import EVAL_BATCH, DeviceData, eval_batch, evaluate_split
from workloads.members import Accel, Single, fresh_compile_caches, memory_format, param_groups
from workloads.recorders import CORRECT, WEIGHTS, Point, final_columns, needs, record_columns
from workloads.state import Checkpoint, FinalRecord, Outcome, as_checkpoint

Report = Callable[[dict, Optional[Checkpoint]], None]
PackReport = Callable[[list, Optional[list]], None]
JITTER_OFFSET = 1_000_003  # a run's augmentation generator is seeded with seed + this
# The loop's parts that lived here before the split stay importable from here.
__all__ = ["Accel", "Checkpoint", "DeviceData", "EVAL_BATCH", "FinalRecord", "Loop", "Outcome", "Single",
           "eval_batch", "evaluate_split", "fresh_compile_caches", "lr_at", "memory_format", "param_groups",
           "run", "schedule", "train"]


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


def train(cfg: TrialConfig, data: PreparedData | DeviceData, device: torch.device,
          report: Report | None = None, resume: Checkpoint | dict | None = None,
          accel: Accel = Accel()) -> Outcome:
    """One run: run() with one model."""
    def one(metrics: list, states: list | None) -> None:
        report(metrics[0], None if states is None else states[0])
    return run([cfg], data, device, Single, one if report else None,
               None if resume is None else [resume], accel)[0]


def run(cfgs: Sequence[TrialConfig], data: PreparedData | DeviceData, device: torch.device, members,
        report: PackReport | None = None, resume: Sequence[Checkpoint | dict] | None = None,
        accel: Accel = Accel()) -> list[Outcome]:
    """Train `cfgs` (differing at most in seed) with `members(cfgs, in_shape, device, dtype)`:
    Single for one config, workloads.vectorized.Stacked for several. `report(metrics, states)`
    gets K metrics dicts and K Checkpoints (or None) at every record point and at the end."""
    loop = Loop(cfgs, data, device, members, accel)
    if resume is not None:
        loop.restore([as_checkpoint(s) for s in resume])
    loop.epochs(report)
    return loop.finish(report)


class Loop:
    """K models training in lockstep, in parts: set up from the configs, restore() a
    checkpoint, epochs() of train_step(), a record() at every record point, finish()."""

    def __init__(self, cfgs: Sequence[TrialConfig], data: PreparedData | DeviceData, device: torch.device,
                 members, accel: Accel):
        cfg = cfgs[0]  # all but the seed is shared
        self.cfg, self.tc, self.k, self.device = cfg, cfg.train, len(cfgs), device
        tc, K = self.tc, self.k
        self.accel = accel = replace(accel, precision=accel.precision or tc.precision)
        set_numerics(accel.precision, tc.deterministic)
        self.data = d = data if isinstance(data, DeviceData) else DeviceData.from_prepared(data, device)
        self.models = members(cfgs, tuple(cfg.data.in_shape), device, d.train_x.dtype)
        if accel.compile:
            self.models.compile(accel.compile)
        self.optimizer = build_optimizer(OPTIMIZERS.parse(tc.optimizer), param_groups(self.models.named(), tc),
                                         tc.base_lr, tc.weight_decay)
        self.loss_spec, self.rate = LOSSES.parse(tc.loss), schedule(tc)
        self.augment, self.views = train_transform(cfg.data), eval_transform(cfg.data)
        self.transforms_batch = bool(cfg.data.augmentations) or cfg.data.resize != cfg.data.arrays.resize
        self.orders = [torch.Generator().manual_seed(c.train.seed) for c in cfgs]  # data order, apart from the device
        self.jitters = [torch.Generator().manual_seed(c.train.seed + JITTER_OFFSET) for c in cfgs]
        self.n, self.spe = len(d.train_x), cfg.steps_per_epoch
        if self.n != cfg.train_images:
            raise ValueError(f"data has {self.n} training images, the config {cfg.train_images}")
        self.records_at, self.snapshots = set(cfg.record_points()), {e * self.spe for e in tc.snapshot_epochs}
        self.last_record = max(self.records_at)
        self.wanted = tc.recorded
        self.counts_correct = needs(self.wanted, CORRECT)
        self.eval_size = eval_batch(tc, device)
        # Where the run is and what it has summed and recorded: what a Checkpoint holds.
        self.step, self.epoch, self.batch, self.perms = 0, 0, 0, None
        self.records: list[list] = [[] for _ in range(K)]
        self.loss_sum = torch.zeros(K, device=device, dtype=d.train_x.dtype)
        self.last_loss = self.loss_sum  # the latest step's (K,) losses, for record_loss="last"
        self.correct = torch.zeros(K, device=device, dtype=torch.long)
        self.loss_count, self.seconds = 0, 0.0
        self.diverged: list[int | None] = [None] * K   # the step each model's loss stopped being finite
        # Reading the divergence flag syncs a GPU with the host, so a GPU reads it every 50 steps;
        # `finite` counts on the device, without a sync, the steps through which each model's loss
        # stayed finite, so both devices report the first non-finite step.
        self.check_every = accel.check_every or (1 if device.type == "cpu" else 50)
        self.finite = torch.full((K,), 0, device=device, dtype=torch.long)

    def loss_fn(self, logits, y, reduction="mean"):
        return self.loss_spec.entry.fn(logits, y, reduction, **self.loss_spec.params)

    def restore(self, states: Sequence[Checkpoint]) -> None:
        """Continue from one checkpoint per model, all at the same position."""
        if len(states) != self.k or len({(s.step, s.batch) for s in states}) != 1:
            raise ValueError("resume needs one state per model, all at the same position")
        s0 = states[0]
        self.models.load([s.model for s in states])
        self.models.load_optimizer(self.optimizer, [s.optimizer for s in states])
        for g, s in zip(self.orders, states):
            g.set_state(s.order)
        for g, s in zip(self.jitters, states):
            g.set_state(s.jitter)
        torch.set_rng_state(s0.torch_rng)
        set_cuda_rng_state(s0.cuda_rng, self.device)
        self.step, self.epoch, self.batch, self.loss_count, self.seconds = \
            s0.step, s0.epoch, s0.batch, s0.loss_count, s0.seconds
        if s0.perm is not None:
            self.perms = torch.stack([s.perm.to(self.device) for s in states])
        self.loss_sum += torch.tensor([s.loss_sum for s in states], device=self.device, dtype=self.loss_sum.dtype)
        self.correct += torch.tensor([s.correct for s in states], device=self.device)
        self.records = [list(s.records) for s in states]
        self.diverged = [s.diverged for s in states]
        self.finite.fill_(self.step)

    def checkpoints(self) -> list[Checkpoint]:
        sums, rights, rng = self.loss_sum.tolist(), self.correct.tolist(), torch.get_rng_state()
        gpu_rng = cuda_rng_state(self.device)
        return [Checkpoint(model=self.models.state(k), optimizer=self.models.optimizer_state(self.optimizer, k),
                           order=self.orders[k].get_state(), jitter=self.jitters[k].get_state(),
                           torch_rng=rng.clone(), cuda_rng=gpu_rng, step=self.step, epoch=self.epoch,
                           batch=self.batch, seconds=self.seconds,
                           # on the CPU, a copy: the driver reads this file on a machine without a GPU
                           perm=None if self.perms is None else self.perms[k].to("cpu", copy=True),
                           loss_sum=sums[k], correct=rights[k], loss_count=self.loss_count,
                           records=list(self.records[k]), diverged=self.diverged[k])
                for k in range(self.k)]

    def epochs(self, report: PackReport | None) -> None:
        """Train to the end of the last epoch, or until every model has diverged, recording
        (and reporting) at every record point."""
        tc = self.tc
        clock = time.perf_counter()
        self.models.train(True)
        while self.epoch < tc.epochs:
            if self.perms is None or self.batch == 0:  # each model reshuffles every epoch with its own generator
                self.perms = torch.stack([torch.randperm(self.n, generator=o) for o in self.orders]).to(self.device)
            while self.batch < self.spe:
                batch_size = self.train_step()
                if self.step % self.check_every == 0 or self.step in self.records_at:
                    self.check_divergence()
                    if None not in self.diverged:
                        break
                if self.step in self.records_at:
                    self.seconds += time.perf_counter() - clock  # after the sync of the finiteness check
                    self.record(batch_size)
                    if report is not None:
                        due = sum(s <= self.step for s in self.records_at) % tc.checkpoint_every == 0
                        report([dict(r[-1]) if r else self.position() for r in self.records],
                               self.checkpoints() if due else None)
                    clock = time.perf_counter()
            if None not in self.diverged:
                break
            self.epoch, self.batch = self.epoch + 1, 0
        self.seconds += time.perf_counter() - clock

    def train_step(self) -> int:
        """One optimizer step of every model on its own next batch; returns the batch's size."""
        tc, K = self.tc, self.k
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(self.epoch, self.step, self.spe)
        idx = self.perms[:, self.batch * tc.batch_size:(self.batch + 1) * tc.batch_size]  # (K, B)
        x, y = self.data.train_x[idx], self.data.train_y[idx]  # (K, B, C, H, W), (K, B)
        if self.transforms_batch:
            x = torch.stack([self.augment(x[k], self.jitters[k]) for k in range(K)])
        with self.accel.autocast(self.device):
            losses, logits = self.models.losses(x, y, self.loss_fn)  # (K,), (K, B, classes)
        self.optimizer.zero_grad(set_to_none=True)
        # Model k's loss depends only on model k: the sum's gradient is each one's own.
        losses.sum().backward()
        self.optimizer.step()
        self.step, self.batch = self.step + 1, self.batch + 1
        self.last_loss = losses.detach()
        self.loss_sum += self.last_loss
        # A sum that is not finite stays so until the record point resets it, which comes
        # after a check: the count stops at the step before the first non-finite loss.
        self.finite += torch.isfinite(self.loss_sum)
        self.loss_count += 1
        if self.counts_correct:
            self.correct += (logits.detach().argmax(-1) == y).sum(1)
        return idx.shape[1]

    def check_divergence(self) -> None:
        for k, through in enumerate(self.finite.tolist()):
            if through < self.step and self.diverged[k] is None:
                self.diverged[k] = through + 1

    def position(self) -> dict:
        return {M.STEP: self.step, M.EPOCH: self.step / self.spe}

    def evaluate(self, split: str, kinds) -> dict:
        x, y = self.data.split(split)
        return evaluate_split(self.models, x, y, self.views, self.eval_size, self.loss_fn, kinds, self.accel)

    def point(self, batch_size: int) -> Point:
        sums, rights = self.loss_sum.tolist(), self.correct.tolist()  # one host sync for every model
        return Point(sums, rights, self.loss_count, batch_size, self.last_loss, self.tc.record_loss, self.models)

    def record(self, batch_size: int) -> None:
        """Append a record to every model still training; reset the running sums."""
        point = self.point(batch_size)
        columns = record_columns(self.wanted, point, self.evaluate, self.step in self.snapshots,
                                 self.step == self.last_record, self.optimizer.param_groups[0]["lr"])
        columns[M.TRAIN_SECONDS] = [self.seconds / self.k] * self.k  # each model's share of the training time
        self.loss_sum.zero_()
        self.correct.zero_()
        self.loss_count = 0
        for k in range(self.k):
            if self.diverged[k] is None:
                self.records[k].append({**self.position(), **{key: column[k] for key, column in columns.items()}})

    def finish(self, report: PackReport | None) -> list[Outcome]:
        """The test pass of the models that did not diverge, each model's final record, weights
        and `final` metrics; the final report carries them in its checkpoints, for whoever
        collects them."""
        K = self.k
        alive = [k for k in range(K) if self.diverged[k] is None]
        tests = self.evaluate("test", {"acc"})["acc"] if alive and self.tc.score_test else [float("nan")] * K
        ends = final_columns(self.wanted, self.point(self.tc.batch_size)) if needs(self.wanted, WEIGHTS) else {}
        firsts = ends.get(M.FIRST_LAYER, [None] * K)
        outcomes = []
        for k in range(K):
            status = M.FINISHED if self.diverged[k] is None else M.DIVERGED
            final = FinalRecord(dict(self.records[k][-1]) if self.records[k] else self.position(),
                                tests[k] if status == M.FINISHED else float("nan"), status,
                                self.seconds / K, self.models.parameters(), self.diverged[k])
            outcomes.append(Outcome(final.test_acc, self.records[k], self.models.weights(k), firsts[k], status, final))
        if report is not None:
            report([o.final.to_dict() for o in outcomes],
                   [replace(state, final=o.final, first_layer=o.first_layer)
                    for state, o in zip(self.checkpoints(), outcomes)])
        return outcomes
