"""Typed, frozen configuration: one dataclass per concern, one record per trial.

    cfg = TrialConfig()                       # every component's defaults
    cfg = cfg.override({"epochs": "1"})       # strings from the command line
    flat = cfg.to_flat(); TrialConfig.from_flat(flat) == cfg

Field names are unique across the dataclasses, so a command-line override is a
bare `key=value` and a trial's whole config is one flat, printable dict.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, replace


class ConfigError(ValueError):
    """Bad user input: reported as one line, exit code 2."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cifar10"
    grayscale: bool = True            # the assignment's 1x32x32 inputs
    val_per_class: int = 500          # 10% of the training set, balanced
    split_seed: int = 0               # independent of the repeat seed
    train_subset: int = 0             # 0 = whole training split; else first N of a fixed shuffle
    val_subset: int = 0               # 0 = whole validation split
    test_subset: int = 0              # 0 = all 10,000 test images
    train_eval_size: int = 5000       # fixed training sample scored at each record
    augment: str = ""                 # comma-separated, from workloads.augment.AUGMENTATIONS

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (1 if self.grayscale else 3, 32, 32)

    def __post_init__(self):
        _check(self.dataset == "cifar10", f"dataset={self.dataset!r}: only 'cifar10' is known")
        _check(1 <= self.val_per_class <= 2500, "val_per_class must be in 1..2500")
        for name in ("train_subset", "val_subset", "test_subset"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0 (0 = all)")
        _check(self.train_eval_size >= 1, "train_eval_size must be >= 1")
        from workloads.augment import AUGMENTATIONS
        unknown = set(self.augmentations) - set(AUGMENTATIONS)
        _check(not unknown, f"augment: unknown {', '.join(sorted(unknown))}; choose from {', '.join(AUGMENTATIONS)}")

    @property
    def arrays(self) -> "DataConfig":
        """What prepare() depends on: augmentations are drawn per batch, during training,
        so configs that differ only in them share one prepared copy."""
        return replace(self, augment="")

    @property
    def augmentations(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.augment.split(",") if a.strip())


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "cnn_3"
    activation: str = "relu"          # replaces every ReLU of the spec
    width: float = 1.0                # scales conv/residual/hidden widths (not the prediction layer)
    spec: str = ""                    # a layer spec used instead of the preset; `arch` then only labels it

    def __post_init__(self):
        from workloads.models import ACTIVATIONS, ARCHS, parse_spec
        _check(self.arch in ARCHS or bool(self.spec), f"arch={self.arch!r}: choose from {', '.join(ARCHS)}")
        _check(self.activation in ACTIVATIONS,
               f"activation={self.activation!r}: choose from {', '.join(ACTIVATIONS)}")
        _check(self.width > 0, "width must be > 0")
        try:
            parse_spec(self.spec)
        except ValueError as e:
            raise ConfigError(f"spec: {e}") from None

    def build(self, in_shape=(1, 32, 32)):
        from workloads.models import build_model
        return build_model(self.arch, self.activation, in_shape, self.width, self.spec)


OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 0.0                   # 0 = the optimizer's default (Adam 1e-3)
    momentum: float = 0.0             # SGD and RMSprop
    nesterov: bool = False            # SGD only
    weight_decay: float = 0.0
    batch_size: int = 50
    epochs: int = 15
    # ((epoch, lr), ...): from the start of that epoch on, train with that rate.
    lr_schedule: tuple = ()
    scheduler: str = "constant"       # or "cosine": anneal per step to 0 over the run (after lr_schedule)
    loss: str = "cross_entropy"
    seed: int = 0
    record_every: int = 10            # steps between record points
    record_grad_norm: bool = False    # first-layer gradient magnitude (part4)
    eval_batch_size: int = 0          # 0: sized for the device (workloads.train.eval_batch)
    checkpoint_every: int = 20        # record points between checkpoints

    def __post_init__(self):
        _check(self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
        _check(self.optimizer != "sgd" or self.lr > 0, "sgd needs lr > 0")
        _check(not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
               "nesterov needs optimizer=sgd and momentum > 0")
        _check(self.scheduler in ("constant", "cosine"), f"scheduler={self.scheduler!r}: choose constant or cosine")
        _check(self.lr >= 0, "lr must be >= 0 (0 = optimizer default)")
        _check(0 <= self.momentum < 1, "momentum must be in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(self.batch_size >= 1, "batch_size must be >= 1")
        _check(self.epochs >= 1, "epochs must be >= 1")
        _check(self.record_every >= 1, "record_every must be >= 1")
        _check(self.eval_batch_size >= 0, "eval_batch_size must be >= 0 (0 = sized for the device)")
        _check(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        _check(self.loss in ("cross_entropy", "mse"), f"loss={self.loss!r}: choose cross_entropy or mse")
        sched = tuple(tuple(p) for p in self.lr_schedule)
        object.__setattr__(self, "lr_schedule", sched)
        for p in sched:
            _check(len(p) == 2 and p[0] >= 0 and p[1] > 0,
                   f"lr_schedule entries are (epoch >= 0, lr > 0), got {p}")
        epochs = [p[0] for p in sched]
        _check(epochs == sorted(set(epochs)), "lr_schedule epochs must be strictly increasing")


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        # A run with no record point would have no curves to report.
        steps = self.work()[0]
        _check(steps >= self.train.record_every,
               f"record_every={self.train.record_every} exceeds the run's {steps} steps "
               f"({self.train_images} images, batch {self.train.batch_size}, {self.train.epochs} epochs): "
               f"nothing would be recorded")

    @property
    def train_images(self) -> int:
        return _kept(self.data.train_subset, 50000 - 10 * self.data.val_per_class)

    def work(self) -> tuple[int, int, int]:
        """(training steps, record points, evaluated images) of one run: what train() does."""
        d, t = self.data, self.train
        n = self.train_images
        steps = -(-n // t.batch_size) * t.epochs
        records = steps // t.record_every
        images = (records * (min(d.train_eval_size, n) + _kept(d.val_subset, 10 * d.val_per_class))
                  + _kept(d.test_subset, 10000))
        return steps, records, images

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
FIELD_TYPES = {name: typ for k in SECTIONS.values() for name, typ in typing.get_type_hints(k).items()}


def _kept(subset: int, whole: int) -> int:
    """Images a split keeps: the subset (0 = all), at most the whole split."""
    return min(subset, whole) if subset else whole


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


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
            return _parse_pairs(text)
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{key}: expected {typ.__name__}, got {raw!r}") from None
    return text


def _parse_pairs(text: str) -> tuple:
    """'5:0.01,10:0.001' -> ((5, 0.01), (10, 0.001)); '' -> ()."""
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        epoch, _, lr = item.partition(":")
        pairs.append((int(epoch), float(lr)))
    return tuple(pairs)


