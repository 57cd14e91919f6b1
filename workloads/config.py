"""Typed, frozen configuration: one dataclass per concern, one record per trial.

    cfg = TrialConfig()                       # every component's defaults: a general CIFAR-10 run
    cfg = cfg.override({"epochs": "1"})       # strings from the command line
    flat = cfg.to_flat(); TrialConfig.from_flat(flat) == cfg

Field names are unique across the dataclasses, so a command-line override is a
bare `key=value` and a trial's whole config is one flat, printable dict.
Components (optimizer, scheduler, loss, activation, init, normalize, augment,
eval_view) are spec strings checked against their registries and stored in
canonical form, so that equal settings are equal configs.

The defaults are those of a general CIFAR-10 run: RGB with the data set's
normalisation, the PyTorch tutorial's net, SGD with momentum 0.9 at 0.01,
batch 64, 10 epochs, a record at the end of every epoch. A study states what
it changes, and why (search_spaces/).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, replace

from workloads import metrics as M
from workloads.augment import AUGMENTATIONS, VIEWS
from workloads.components import LOSSES, OPTIMIZERS, SCHEDULERS
from workloads.data import CLASSES, NORMALIZATIONS, TEST_IMAGES, TRAIN_IMAGES
from workloads.imported import factory_of, is_imported
from workloads.models import ACTIVATIONS, ARCHS, INITS, build_model, check_shapes, parse_spec
from workloads.registry import ConfigError, split_list

__all__ = ["LIST_FIELDS", "ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "TrialConfig", "coerce"]

PRECISIONS = ("float32", "tf32", "bfloat16")  # TrainConfig.precision
# str fields whose one value is a comma-separated list (`augment=flip,crop` is one setting): a
# comma in any other key's value lists values of a grid axis (search_spaces.study.with_overrides).
LIST_FIELDS = ("metrics", "augment", "spec")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"
    grayscale: bool = False
    normalize: str = "dataset"        # workloads.data.NORMALIZATIONS
    val_per_class: int = 500          # 10% of the training set, balanced; 0: no validation split
    split_seed: int = 0               # independent of the repeat seed
    train_subset: int = 0             # 0 = whole training split; else first N of a fixed shuffle
    val_subset: int = 0               # 0 = whole validation split
    test_subset: int = 0              # 0 = all 10,000 test images
    # Training images scored at each record (metric train_acc): a fixed sample of this many,
    # or 0 for the whole training split (part3's assignment: training accuracy; a costly pass).
    train_eval_size: int = 5000
    augment: str = ""                 # training batches only: comma-separated workloads.augment.AUGMENTATIONS
    resize: int = 32                  # the model's input side: every batch is resized to it (all splits)
    eval_view: str = "full"           # what evaluation scores: workloads.augment.VIEWS

    def __post_init__(self):
        _check(self.dataset == "cifar10", f"dataset={self.dataset!r}: only 'cifar10' is known")
        _check(0 <= self.val_per_class <= 2500, "val_per_class must be in 0..2500 (0 = no validation split)")
        for name in ("train_subset", "val_subset", "test_subset"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0 (0 = all)")
        _check(self.train_eval_size >= 0, "train_eval_size must be >= 0 (0 = the whole training split)")
        _check(4 <= self.resize <= 256, "resize must be in 4..256 (pixels a side)")
        _canonical(self, "normalize", NORMALIZATIONS.canonical)
        _canonical(self, "augment", AUGMENTATIONS.canonical_list)
        _canonical(self, "eval_view", VIEWS.canonical)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (1 if self.grayscale else 3, self.resize, self.resize)

    @property
    def arrays(self) -> "DataConfig":
        """What prepare() depends on: augmentations, resizing and views apply to batches
        on the device, so configs that differ only in them share one prepared copy."""
        return replace(self, augment="", resize=32, eval_view="full")

    @property
    def augmentations(self) -> tuple[str, ...]:
        return tuple(split_list(self.augment))


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "tutorial"
    activation: str = "relu"          # replaces every ReLU of the spec: workloads.models.ACTIVATIONS
    width: float = 1.0                # scales conv/residual/hidden widths (not the prediction layer)
    spec: str = ""                    # a layer spec used instead of the preset; `arch` then only labels it
    init: str = "default"             # weight initialisation: workloads.models.INITS

    def __post_init__(self):
        _check(self.arch in ARCHS or bool(self.spec) or is_imported(self.arch),
               f"arch={self.arch!r}: choose from {', '.join(ARCHS)}, or name one's own as package.module:factory")
        if is_imported(self.arch):
            factory_of(self.arch)  # importable, and a callable: one line now, before anything runs
        _canonical(self, "activation", ACTIVATIONS.canonical)
        _canonical(self, "init", INITS.canonical)
        _check(self.width > 0, "width must be > 0")
        try:
            parse_spec(self.spec)
        except ValueError as e:
            raise ConfigError(f"spec: {e}") from None

    def build(self, in_shape=(3, 32, 32)):
        return build_model(self.arch, self.activation, in_shape, self.width, self.spec, self.init)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd:momentum=0.9"  # workloads.components.OPTIMIZERS, with its parameters
    lr: float = 0.0                   # 0 = the optimizer's default (sgd 0.01, adam 1e-3, ...)
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = True  # False: weight decay skips BatchNorm weights and all biases
    batch_size: int = 64
    epochs: int = 10
    # ((epoch, lr), ...): from the start of that epoch on, the base rate is that lr.
    lr_schedule: tuple = ()
    scheduler: str = "constant"       # multiplies the base rate: workloads.components.SCHEDULERS
    loss: str = "cross_entropy"       # workloads.components.LOSSES
    seed: int = 0
    record_every: int = 1             # record points every N `record_unit`s
    record_unit: str = "epoch"        # "epoch" (the run's end is always one) or "step"
    metrics: str = ",".join(M.DEFAULT)  # what a record point scores: workloads.metrics.RECORDABLE
    record_loss: str = "mean"         # the recorded training loss: mean since the last record, or "last" step's
    # Epochs (record points) at whose end a run also scores the test set, so that one
    # run serves as shorter runs too (a stage's shared prefixes; workloads.train).
    snapshot_epochs: tuple = ()
    eval_batch_size: int = 0          # 0: sized for the device (workloads.evaluation.eval_batch)
    checkpoint_every: int = 1         # record points between checkpoints
    # False: the run never touches the test set (a search's trials, which choose on validation
    # data); its test accuracy is then absent (NaN), reported as "not scored".
    score_test: bool = True
    # How float32 is computed (workloads/device.py): "float32" IEEE on every device (torch's own
    # default runs GPU convolutions in TF32), "tf32" TF32 matmuls and convolutions on GPUs that
    # have it, "bfloat16" autocast forward passes.
    precision: str = "float32"
    deterministic: bool = False       # deterministic CUDA kernels: bitwise-equal GPU reruns, slower

    def __post_init__(self):
        _check(self.precision in PRECISIONS,
               f"precision={self.precision!r}: choose {', '.join(PRECISIONS)}")
        _canonical(self, "optimizer", OPTIMIZERS.canonical)
        _canonical(self, "scheduler", SCHEDULERS.canonical)
        _canonical(self, "loss", LOSSES.canonical)
        _check(self.lr >= 0, "lr must be >= 0 (0 = the optimizer's default)")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(self.batch_size >= 1, "batch_size must be >= 1")
        _check(self.epochs >= 1, "epochs must be >= 1")
        _check(self.record_every >= 1, "record_every must be >= 1")
        _check(self.record_unit in ("epoch", "step"), f"record_unit={self.record_unit!r}: choose epoch or step")
        _check(self.eval_batch_size >= 0, "eval_batch_size must be >= 0 (0 = sized for the device)")
        _check(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        _check(self.record_loss in M.LOSS_RECORDS,
               f"record_loss={self.record_loss!r}: choose {' or '.join(M.LOSS_RECORDS)}")
        names = M.split_list(self.metrics)
        _check(self.score_test or "test" not in M.splits_needed(n for n in names if n in M.RECORDABLE),
               "score_test=false never touches the test set: leave test_acc and test_loss out of metrics")
        unknown = [n for n in names if n not in M.RECORDABLE]
        _check(not unknown, f"metrics: unknown {', '.join(unknown)}; choose from {', '.join(M.RECORDABLE)}")
        object.__setattr__(self, "metrics", ",".join(dict.fromkeys((M.LOSS,) + names)))  # loss always
        sched = tuple((int(p[0]), float(p[1])) for p in _pairs(self.lr_schedule, "lr_schedule"))
        object.__setattr__(self, "lr_schedule", sched)
        for p in sched:
            _check(p[0] >= 0 and p[1] > 0, f"lr_schedule entries are (epoch >= 0, lr > 0), got {p}")
        starts = [p[0] for p in sched]
        _check(starts == sorted(set(starts)), "lr_schedule epochs must be strictly increasing")
        snaps = tuple(sorted({int(e) for e in self.snapshot_epochs}))
        object.__setattr__(self, "snapshot_epochs", snaps)
        _check(all(1 <= e < self.epochs for e in snaps), "snapshot_epochs must lie in 1..epochs-1")
        _check(not snaps or self.score_test, "snapshot_epochs score the test set: they need score_test=true")
        _check(not snaps or (self.record_unit == "epoch" and all(e % self.record_every == 0 for e in snaps)),
               "snapshot_epochs must be record points (record_unit=epoch, multiples of record_every)")

    @property
    def recorded(self) -> tuple[str, ...]:
        return M.split_list(self.metrics)

    @property
    def base_lr(self) -> float:
        return starting_lr(self.lr, self.optimizer)


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        m = self.model
        try:  # a spec that shrinks the image to nothing: refused here, before anything runs
            check_shapes(m.arch, m.activation, self.data.in_shape, m.width, m.spec)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        # A run with no record point would have no curves to report.
        t = self.train
        _check(self.data.val_per_class or "val" not in M.splits_needed(t.recorded),
               "val_per_class=0 leaves no validation split: leave val_acc and val_loss out of metrics")
        if t.record_unit == "step":
            steps = self.steps_per_epoch * t.epochs
            _check(steps >= t.record_every,
                   f"record_every={t.record_every} exceeds the run's {steps} steps "
                   f"({self.train_images} images, batch {t.batch_size}, {t.epochs} epochs): "
                   f"nothing would be recorded")

    @property
    def train_images(self) -> int:
        return _kept(self.data.train_subset, TRAIN_IMAGES - CLASSES * self.data.val_per_class)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.train_images // self.train.batch_size)

    def record_points(self) -> list[int]:
        """The steps after which the run records (its curves' x values)."""
        t, spe = self.train, self.steps_per_epoch
        if t.record_unit == "step":
            return list(range(t.record_every, spe * t.epochs + 1, t.record_every))
        return [e * spe for e in range(1, t.epochs + 1) if e % t.record_every == 0 or e == t.epochs]

    def work(self) -> tuple[int, int, int]:
        """(training steps, record points, evaluated images) of one run: what train() does."""
        d, t = self.data, self.train
        sizes = {"train_sample": _kept(d.train_eval_size, self.train_images),
                 "val": _kept(d.val_subset, CLASSES * d.val_per_class), "test": _kept(d.test_subset, TEST_IMAGES)}
        views = VIEWS.parse(d.eval_view).views
        records = len(self.record_points())
        per_record = sum(sizes[s] for s in M.splits_needed(t.recorded))
        snapshots = len(t.snapshot_epochs) * sizes["test"] * ("test" not in M.splits_needed(t.recorded))
        end = sum(sizes[m.split] for m in M.at_end(t.recorded))
        images = views * (records * per_record + snapshots + end + sizes["test"] * t.score_test)
        return self.steps_per_epoch * t.epochs, records, images

    def to_flat(self) -> dict:
        return {f.name: getattr(part, f.name)
                for part in (self.data, self.model, self.train) for f in fields(part)}

    @classmethod
    def from_flat(cls, flat: dict) -> "TrialConfig":
        unknown = set(flat) - set(FIELDS)
        _check(not unknown, f"unknown config key(s): {', '.join(sorted(unknown))}")
        parts = {}
        for section, klass in SECTIONS.items():
            parts[section] = klass(**{f.name: flat[f.name] for f in fields(klass) if f.name in flat})
        return cls(**parts)

    def override(self, values: dict) -> "TrialConfig":
        """New config with `values` (typed, or strings to parse) applied."""
        changes: dict[str, dict] = {s: {} for s in SECTIONS}
        for key, raw in values.items():
            _check(key in FIELDS, f"unknown key {key!r}; known keys: {', '.join(sorted(FIELDS))}")
            changes[FIELDS[key]][key] = coerce(key, raw, FIELD_TYPES[key])
        parts = {}
        for section, changed in changes.items():
            # One replace per section, so that related keys (optimizer and lr) are checked together.
            try:
                parts[section] = replace(getattr(self, section), **changed)
            except TypeError as e:
                raise ConfigError(str(e)) from None
        return TrialConfig(**parts)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
FIELDS = {f.name: s for s, k in SECTIONS.items() for f in fields(k)}
SEED = M.SEED  # the config key a repeat changes (workloads/metrics.py, where torch-free readers take it)

FIELD_TYPES = {name: typ for k in SECTIONS.values() for name, typ in typing.get_type_hints(k).items()}


def starting_lr(lr: float, optimizer: str) -> float:
    """The rate a run starts with: `lr`, or where it is 0 the optimizer's own default."""
    return lr or OPTIMIZERS.parse(optimizer).default_lr


def _kept(subset: int, whole: int) -> int:
    """Images a split keeps: the subset (0 = all), at most the whole split."""
    return min(subset, whole) if subset else whole


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _canonical(obj, name: str, canonical) -> None:
    """Store a spec string in its registry's canonical form (frozen dataclass)."""
    object.__setattr__(obj, name, canonical(getattr(obj, name)))


def _pairs(value, key: str) -> tuple:
    try:
        return tuple(tuple(p) for p in value)
    except TypeError:
        raise ConfigError(f"{key}: expected (epoch, lr) pairs, got {value!r}") from None


def coerce(key: str, raw, typ):
    """Parse a command-line string (or check a typed value) into `typ`."""
    if not isinstance(raw, str):
        if typ is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if typ is tuple and isinstance(raw, list):
            return tuple(raw)
        _check(isinstance(raw, typ) and not (typ is int and isinstance(raw, bool)),
               f"{key}: expected {typ.__name__}, got {raw!r}")
        return raw
    text = raw.strip()
    try:
        if typ is bool:
            low = text.lower()
            _check(low in ("true", "false", "1", "0", "yes", "no"), f"{key}: expected true/false, got {raw!r}")
            return low in ("true", "1", "yes")
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        if typ is tuple:
            return _parse_tuple(key, text)
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{key}: expected {typ.__name__}, got {raw!r}") from None
    return text


def _parse_tuple(key: str, text: str) -> tuple:
    """lr_schedule '5:0.01,10:0.001' -> ((5, 0.01), (10, 0.001)); snapshot_epochs '1,2,4' -> (1, 2, 4)."""
    if not text:
        return ()
    if key == "lr_schedule":
        pairs = []
        for item in text.split(","):
            epoch, _, lr = item.partition(":")
            pairs.append((int(epoch), float(lr)))
        return tuple(pairs)
    return tuple(int(v) for v in text.split(","))
