"""elec5307's part3: a new baseline network and the appendix's 15 ablation families,
each a named family of variants of that baseline (several values, everything else
fixed), all in one stage so that every run of every family shares the sweep's workers.

    python -m orchestrator sweep elec5307 parts=3                 # baseline + all 15 families
    python -m orchestrator sweep elec5307 parts=3 sid=470123364   # Flip+Resize, Kernel size, MultiStep
    python -m orchestrator plan elec5307 parts=3 sid=470123364

The network (Net, checked by check_network when the study is built): 3 x (Conv, activation,
pooling), then 3 hidden FC layers with the activation, then the 10-way output layer that
the builder appends; at most 256 channels per convolution, 1,024 units per hidden layer;
Dropout may go anywhere. Baseline (see docs/elec5307.md for how it was chosen and
what it scored): 32-64-128 channels, 3x3 convolutions padded to keep the side, max
pooling, FC 256-256-128; CIFAR-10's normalisation; random horizontal flips and
4-pixel-padded 32x32 crops; SGD with Nesterov momentum 0.9 at 0.05, weight decay 5e-4,
batch 128, cosine decay over 6 epochs.

Groups are `FAMILY.VALUE`; `FAMILY.baseline` is the baseline itself under the family's
name (identical configs train once), and `baseline` is its own group (baseline.pt).
"Resize" is the `resize` key: every batch of every split is resized to the model's
input side after the training augmentations. What each family's values are:

  crop         RandomCrop+Resize: no crop; random 28x28 and 24x24 crops (no padding)
               resized back to 32, evaluated on the centre crop of that size, resized
               (the baseline: 32x32 crops of the 4-padded image, no resize needed)
  flip         Flip+Resize: no flip, vertical, horizontal + vertical; the baseline's
               horizontal flip with every image resized to 24 or to 40 (the model's input)
  affine       Affine+Resize: RandomAffine added to the baseline's flip and crop:
               rotation 15 degrees, scale 0.85-1.15, shear 10; and translation 0.125
               (4 pixels) instead of the crop; the baseline resized to 24 or to 40
  view         CenterCrop/FiveCrop+Resize: training on random 28 (or 24) crops resized to
               32; evaluation on the centre crop, or on the five crops with the model's
               outputs averaged (FiveCrop), each resized to 32
  normalize    Normalize+Resize: Normalize(0.5, 0.5) (the tutorial's) and none (ToTensor's
               [0, 1]) against CIFAR-10's mean and std; the baseline resized to 24 or to 40
  channels     16-32-64 and 64-128-256
  activation   tanh, sigmoid, leaky_relu (slope 0.1), elu against relu
  dropout      Dropout 0.25 after each pooling layer, 0.5 after each hidden FC layer, both
  kernel       5x5 and 7x7 (padding 2 and 3 keep the side) against 3x3
  pooling      average against max
  exponential  ExponentialLR, gamma 0.8, 0.6, 0.4 per epoch (instead of the cosine decay)
  step         StepLR: x0.1 every 3 epochs; x0.3 every 2
  multistep    MultiStepLR: x0.1 at epochs 3 and 5; x0.3 at 2, 4 and 5
  lambda       LambdaLR with the rule "linear warm-up": the rate rises linearly over the
               first 1 (or 2) epochs, then stays (workloads.components' `warmup`)
  sgd          SGD settings: momentum 0, 0.5, 0.9 without Nesterov; weight decay 0 and 5e-3
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from search_spaces.study import Stage, Variant
from workloads import metrics as M
from workloads.config import ConfigError, ModelConfig
from workloads.models import ARCHS, parse_spec

CONV_MAX, HIDDEN_MAX = 256, 1024   # the project's limits for a CPU-trainable network
STRUCTURE = "CAP" * 3 + "FA" * 3   # conv, activation, pool x 3; FC, activation x 3
_KINDS = (("C", re.compile(r"Conv-\d+x\d+x(\d+).*")), ("P", re.compile(r"(Max|Avg)Pool-.*")),
          ("F", re.compile(r"FC-(\d+).*")), ("A", re.compile(r"ReLU")), ("", re.compile(r"Dropout-.*")))


def check_network(model: ModelConfig) -> None:
    """One line (ConfigError) when `model` is not the project's part3 structure or breaks its limits."""
    tokens = parse_spec(model.spec) if model.spec else ARCHS[model.arch]
    shape, sizes = "", []
    for t in tokens:
        kind, m = next(((k, p.fullmatch(t)) for k, p in _KINDS if p.fullmatch(t)), ("?", None))
        shape += kind
        if kind in ("C", "F"):
            sizes.append((kind, t, max(1, round(int(m[1]) * model.width))))
    where = f"part3 network {','.join(tokens)!r}"
    if shape != STRUCTURE:
        raise ConfigError(f"{where}: the project asks for 3 x (Conv, ReLU, MaxPool/AvgPool) then 3 x (FC, ReLU) "
                          f"before the output layer (Dropout anywhere)")
    for kind, token, size in sizes:
        limit = CONV_MAX if kind == "C" else HIDDEN_MAX
        if size > limit:
            scaled = f" at width {model.width:g}" if model.width != 1 else ""
            raise ConfigError(f"{where}: {token} has {size} {'channels' if kind == 'C' else 'units'}{scaled}; "
                              f"the project allows at most {limit}")


@dataclass(frozen=True)
class Net:
    """The part3 network as the few numbers its families change; `spec` is its layer spec."""
    channels: tuple = (32, 64, 128)
    kernel: int = 3                # odd: padding kernel // 2 keeps the side
    pool: str = "Max"              # or "Avg"
    hidden: tuple = (256, 256, 128)
    conv_dropout: float = 0.0      # after each pooling layer
    fc_dropout: float = 0.0        # after each hidden layer's activation

    def __post_init__(self):
        if self.kernel % 2 != 1 or self.pool not in ("Max", "Avg"):
            raise ConfigError(f"Net: kernel must be odd (got {self.kernel}), pool Max or Avg (got {self.pool})")
        check_network(ModelConfig(arch=ARCH, spec=self.spec))

    @property
    def spec(self) -> str:
        k, tokens = self.kernel, []
        for c in self.channels:
            tokens += [f"Conv-{k}x{k}x{c}-p{k // 2}", "ReLU", f"{self.pool}Pool-2x2"]
            tokens += [f"Dropout-{self.conv_dropout:g}"] if self.conv_dropout else []
        for h in self.hidden:
            tokens += [f"FC-{h}", "ReLU"] + ([f"Dropout-{self.fc_dropout:g}"] if self.fc_dropout else [])
        return ",".join(tokens)


ARCH = "elec5307"                  # the label the baseline's runs carry (the spec is the model)
NET = Net()
EPOCHS = 6
RECIPE = (
    ("arch", ARCH), ("spec", NET.spec),
    ("normalize", "dataset"),      # the data set's own mean and std (trained from scratch)
    ("augment", "flip,crop"),      # RandomHorizontalFlip, RandomCrop(32, padding=4)
    ("optimizer", "sgd:momentum=0.9:nesterov=true"), ("lr", 0.05), ("weight_decay", 5e-4),
    ("batch_size", 128), ("scheduler", "cosine"), ("epochs", EPOCHS),
    ("metrics", ",".join((M.LOSS, M.TRAIN_ACC, M.VAL_ACC, M.VAL_LOSS))),
)


@dataclass(frozen=True)
class Family:
    name: str                      # the groups' prefix, FAMILY.VALUE
    title: str                     # the appendix's name
    column: str                    # the appendix's column: transformation, structure, training
    values: tuple                  # (Variant, ...) changes of the baseline
    baseline: str                  # what the baseline's value of this family is, in words


def spec(**changes) -> tuple:
    return (("spec", replace(NET, **changes).spec),)


def crop(size: int, view: str = "center") -> tuple:
    return (("augment", f"flip,crop:size={size}:pad=0"), ("eval_view", f"{view}:size={size}"))


V = Variant
# The appendix pairs four transformations with Resize; the baseline resized to 24 and to 40
# is each +Resize family's resize values (identical configs: trained once for all of them).
RESIZED = tuple(V(f"resize{side}", (("resize", side),), f"the baseline, every image resized to {side}x{side}")
                for side in (24, 40))
FAMILIES = (
    Family("crop", "RandomCrop+Resize", "transformation", (
        V("none", (("augment", "flip"),), "no crop"),
        V("28", crop(28), "random 28x28 crops resized to 32; evaluation: the centre 28x28, resized"),
        V("24", crop(24), "random 24x24 crops resized to 32; evaluation: the centre 24x24, resized")),
        "32x32 crops of the 4-padded image"),
    Family("flip", "Flip+Resize", "transformation", (
        V("none", (("augment", "crop"),), "no flip"),
        V("vflip", (("augment", "vflip,crop"),), "vertical flips"),
        V("hvflip", (("augment", "flip,vflip,crop"),), "horizontal and vertical flips"),
        V("resize24", (("resize", 24),), "horizontal flips, every image resized to 24x24"),
        V("resize40", (("resize", 40),), "horizontal flips, every image resized to 40x40")),
        "horizontal flips at 32x32"),
    Family("affine", "Affine+Resize", "transformation", (
        V("rotate15", (("augment", "flip,crop,affine:degrees=15"),), "RandomAffine(degrees=15) added"),
        V("scale", (("augment", "flip,crop,affine:scale=0.85/1.15"),), "RandomAffine(scale=(0.85, 1.15)) added"),
        V("shear10", (("augment", "flip,crop,affine:shear=10"),), "RandomAffine(shear=10) added"),
        V("translate", (("augment", "flip,affine:translate=0.125"),),
          "RandomAffine(translate=(0.125, 0.125)) instead of the crop"),
        *RESIZED),
        "no affine map at 32x32"),
    Family("view", "CenterCrop/FiveCrop+Resize", "transformation", (
        V("center28", crop(28), "train on random 28 crops; test on the centre 28 crop, resized to 32"),
        V("five28", crop(28, "five"), "train on random 28 crops; test on the five 28 crops, outputs averaged"),
        V("center24", crop(24), "train on random 24 crops; test on the centre 24 crop, resized to 32"),
        V("five24", crop(24, "five"), "train on random 24 crops; test on the five 24 crops, outputs averaged")),
        "the whole 32x32 image"),
    Family("normalize", "Normalize+Resize", "transformation", (
        V("half", (("normalize", "half"),), "Normalize((0.5,)*3, (0.5,)*3), to [-1, 1]"),
        V("none", (("normalize", "none"),), "no normalisation: [0, 1]"),
        *RESIZED),
        "CIFAR-10's mean and std at 32x32"),
    Family("channels", "Channel number", "structure", (
        V("16-32-64", spec(channels=(16, 32, 64)), "16-32-64 channels"),
        V("64-128-256", spec(channels=(64, 128, 256)), "64-128-256 channels")),
        "32-64-128 channels"),
    Family("activation", "Activation method", "structure", (
        V("tanh", (("activation", "tanh"),)), V("sigmoid", (("activation", "sigmoid"),)),
        V("leaky_relu", (("activation", "leaky_relu:negative_slope=0.1"),)), V("elu", (("activation", "elu"),))),
        "ReLU"),
    Family("dropout", "add Dropout layers", "structure", (
        V("conv0.25", spec(conv_dropout=0.25), "Dropout(0.25) after each pooling layer"),
        V("fc0.5", spec(fc_dropout=0.5), "Dropout(0.5) after each hidden FC layer"),
        V("both", spec(conv_dropout=0.25, fc_dropout=0.5), "both")),
        "no dropout"),
    Family("kernel", "Kernel size", "structure", (
        V("5x5", spec(kernel=5), "5x5 convolutions, padding 2"),
        V("7x7", spec(kernel=7), "7x7 convolutions, padding 3")),
        "3x3 convolutions, padding 1"),
    Family("pooling", "Pooling method", "structure", (
        V("avg", spec(pool="Avg"), "average pooling"),),
        "max pooling"),
    Family("exponential", "lr scheduler: Exponential", "training", tuple(
        V(f"gamma{g:g}", (("scheduler", f"exponential:gamma={g}"),), f"ExponentialLR(gamma={g})")
        for g in (0.8, 0.6, 0.4)),
        "cosine decay"),
    Family("step", "lr scheduler: Step", "training", (
        V("3x0.1", (("scheduler", "step:step_size=3:gamma=0.1"),), "StepLR(step_size=3, gamma=0.1)"),
        V("2x0.3", (("scheduler", "step:step_size=2:gamma=0.3"),), "StepLR(step_size=2, gamma=0.3)")),
        "cosine decay"),
    Family("multistep", "lr scheduler: MultiStep", "training", (
        V("3-5x0.1", (("scheduler", "multistep:milestones=3/5:gamma=0.1"),), "MultiStepLR([3, 5], gamma=0.1)"),
        V("2-4-5x0.3", (("scheduler", "multistep:milestones=2/4/5:gamma=0.3"),),
          "MultiStepLR([2, 4, 5], gamma=0.3)")),
        "cosine decay"),
    Family("lambda", "lr scheduler: Lambda", "training", tuple(
        V(f"warmup{w}", (("scheduler", f"warmup:warmup_epochs={w}"),),
          f"LambdaLR, linear warm-up over {w} epoch{'s' * (w > 1)}, then constant") for w in (1, 2)),
        "cosine decay"),
    Family("sgd", "optimizer: SGD settings", "training", (
        V("momentum0", (("optimizer", "sgd"),), "plain SGD, no momentum"),
        V("momentum0.5", (("optimizer", "sgd:momentum=0.5:nesterov=true"),), "Nesterov momentum 0.5"),
        V("classical0.9", (("optimizer", "sgd:momentum=0.9"),), "momentum 0.9 without Nesterov"),
        V("wd0", (("weight_decay", 0.0),), "no weight decay"),
        V("wd5e-3", (("weight_decay", 5e-3),), "weight decay 5e-3")),
        "Nesterov momentum 0.9, weight decay 5e-4"),
)
BY_NAME = {f.name: f for f in FAMILIES}
COLUMNS = ("transformation", "structure", "training")  # the appendix's, by SID digit from the third last


def named(text: str) -> tuple:
    """families=kernel,flip: those families; families=none: the baseline alone."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME and n != "none"]
    if unknown or not names:
        raise ConfigError(f"families={text}: choose none or from {', '.join(BY_NAME)}")
    return tuple(BY_NAME[n] for n in names if n != "none")


def assigned(sid: str) -> tuple:
    """The appendix's three families for a 9-digit SID: the third-last digit picks the
    transformation, the second-last the structure, the last the training setting
    (0/1 the first row of the table, 2/3 the second, ... 8/9 the fifth)."""
    if not re.fullmatch(r"\d{9}", sid.strip()):
        raise ConfigError(f"sid={sid}: a student ID is 9 digits")
    digits = sid.strip()[-3:]
    return tuple([f for f in FAMILIES if f.column == column][int(d) // 2] for column, d in zip(COLUMNS, digits))


def variants(families=FAMILIES) -> tuple:
    out = [V("baseline", (), "the part3 baseline")]
    for f in families:
        out.append(V(f"{f.name}.baseline", (), f"the baseline: {f.baseline}"))
        out += [replace(v, name=f"{f.name}.{v.name}") for v in f.values]
    return tuple(out)


def with_families(stage: Stage, families) -> Stage:
    return replace(stage, variants=variants(families))


STAGE = Stage("part3", fixed=RECIPE, variants=variants())
