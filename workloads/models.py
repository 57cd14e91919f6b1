"""Architectures as data: layer specs in the assignment's notation, one builder,
named presets in one registry.

    build_model("tutorial")                                   # RGB 3x32x32 by default
    build_model("cnn_3", activation="sigmoid", in_shape=(1, 32, 32))
    build_model("vgg_a_bn", width=0.5, init="kaiming_normal")
    build_from_spec(parse_spec("Conv-5x5x32-p2,ReLU,MaxPool-2x2,Dropout-0.25,FC-10"))

Notation (convolutions default to stride 1 and valid padding; pools use stride = size):
    FC-32 / FC-64-nobias      Linear (flattens first if needed), optionally without bias
    Conv-3x3x16[-p1][-s2]     convolution to 16 channels, padding 1, stride 2
    MaxPool-2x2 / AvgPool-2x2 pooling, stride 2; LPPool-2x2: power-2 pooling, nn.LPPool2d(2, 2)
    GAP                       global average pool to (C,)
    BN                        batch normalisation (2d or 1d, from the shape)
    Dropout-0.5               dropout with p = 0.5
    Res-128[-s2]              ResNet basic block (two 3x3 convs with BN, shortcut)
    ReLU                      "the activation": the `activation` parameter (ACTIVATIONS)
Widths (Conv, Res and hidden FC) scale with `width`; the prediction layer FC-10
is appended to every preset and never scaled. `init` (INITS) re-draws the
weights of every Conv and Linear layer after PyTorch's own initialisation (of the
Conv layers alone for kaiming_uniform_conv).
"""
from __future__ import annotations

import functools
import math
import re
from functools import partial

import torch
from torch import nn

from workloads.imported import build_imported, check_output, is_imported
from workloads.registry import Registry

ACTIVATIONS = Registry("activation")
ACTIVATIONS.add("relu", nn.ReLU)
ACTIVATIONS.add("sigmoid", nn.Sigmoid)
ACTIVATIONS.add("tanh", nn.Tanh)
ACTIVATIONS.add("gelu", nn.GELU)
ACTIVATIONS.add("leaky_relu", nn.LeakyReLU, {"negative_slope": 0.01})
ACTIVATIONS.add("elu", nn.ELU, {"alpha": 1.0})
ACTIVATIONS.add("identity", nn.Identity)  # no non-linearity: hw2's MLP "without ReLU"

# Weight initialisations: fn(weight) in place; biases of re-drawn layers start at 0.
INITS = Registry("init")
INITS.add("default", None)  # PyTorch's own (Kaiming-uniform with a=sqrt(5)), left as built
INITS.add("xavier_uniform", nn.init.xavier_uniform_)
INITS.add("xavier_normal", nn.init.xavier_normal_)
INITS.add("kaiming_uniform", lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"))
INITS.add("kaiming_normal", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"))
# He on the convolutions alone, the FC layers left as PyTorch built them (seed 004's second try).
INITS.add("kaiming_uniform_conv", lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"), layers=(nn.Conv2d,))
INITS.add("normal", lambda w, std: nn.init.normal_(w, 0.0, std), {"std": 0.01},
          lambda p: None if p["std"] > 0 else "std must be > 0")
INITS.add("uniform", lambda w, a: nn.init.uniform_(w, -a, a), {"a": 0.05},
          lambda p: None if p["a"] > 0 else "a must be > 0")


def _vgg(layout, bn: bool) -> tuple[str, ...]:
    """VGG's conv stack (BN after every convolution when `bn`), then the classifier of the
    course's VGG_A (seed 002 trained it): FC-512, ReLU, FC-512, ReLU before the FC-10 that
    every preset ends in. No dropout: VGG_A has none; the report adds BN to the conv layers only."""
    tokens = []
    for item in layout:
        tokens += ["MaxPool-2x2"] if item == "M" else [f"Conv-3x3x{item}-p1", *(["BN"] if bn else []), "ReLU"]
    return tuple(tokens) + ("FC-512", "ReLU", "FC-512", "ReLU")


# Configuration "A" of Simonyan & Zisserman (VGG-11)'s 8 convolutions; on a 32x32 input the
# stack ends at 512x1x1, so the classifier is 512 wide rather than ImageNet's 4096.
_VGG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

ARCHS: dict[str, tuple[str, ...]] = {
    # The PyTorch CIFAR-10 tutorial's net (hw2, elec5307, coordinate): 62,006 parameters on RGB.
    "tutorial": ("Conv-5x5x6", "ReLU", "MaxPool-2x2", "Conv-5x5x16", "ReLU", "MaxPool-2x2",
                 "FC-120", "ReLU", "FC-84", "ReLU"),
    "fc": (),                                        # one linear layer, inputs to classes (hw2)
    "mlp_110_74": ("FC-110", "ReLU", "FC-74", "ReLU"),  # hw2's MLP; activation=identity drops the ReLUs
    "mlp_1": ("FC-32", "ReLU"),
    "mlp_2": ("FC-32", "ReLU", "FC-64-nobias"),
    "cnn_3": ("Conv-3x3x16", "ReLU", "Conv-5x5x8", "ReLU", "MaxPool-2x2",
              "Conv-7x7x16", "MaxPool-2x2"),
    "cnn_4": ("Conv-3x3x16", "ReLU", "Conv-3x3x8", "ReLU", "Conv-5x5x16", "ReLU",
              "MaxPool-2x2", "Conv-5x5x16", "ReLU", "MaxPool-2x2"),
    "cnn_5": ("Conv-3x3x8", "ReLU", "Conv-3x3x16", "ReLU", "Conv-3x3x8", "ReLU",
              "Conv-3x3x16", "ReLU", "MaxPool-2x2", "Conv-3x3x16", "ReLU",
              "Conv-3x3x8", "ReLU", "MaxPool-2x2"),
    # CIFAR-style ResNet-18: 3x3 stem, no stem pooling.
    "resnet18": ("Conv-3x3x64-p1-nobias", "BN", "ReLU", "Res-64", "Res-64", "Res-128-s2", "Res-128",
                 "Res-256-s2", "Res-256", "Res-512-s2", "Res-512", "GAP"),
    "vgg_a": _vgg(_VGG_A, bn=False),
    "vgg_a_bn": _vgg(_VGG_A, bn=True),
}
PREDICTION = "FC-10"
# The five architectures of the assignment's parts 3-5.
ASSIGNMENT_ARCHS = ("mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5")

_TOKENS = {
    "fc": re.compile(r"FC-(\d+)(-nobias)?"),
    "conv": re.compile(r"Conv-(\d+)x(\d+)x(\d+)(?:-p(\d+))?(?:-s(\d+))?(-nobias)?"),
    "pool": re.compile(r"(Max|Avg|LP)Pool-(\d+)x(\d+)"),
    "res": re.compile(r"Res-(\d+)(?:-s(\d+))?"),
    "dropout": re.compile(r"Dropout-(0(?:\.\d+)?|1(?:\.0*)?)"),
    "gap": re.compile(r"GAP"),
    "bn": re.compile(r"BN"),
    "act": re.compile(r"ReLU"),
}


def parse_spec(text: str) -> tuple[str, ...]:
    """'Conv-3x3x16, ReLU, FC-10' -> ('Conv-3x3x16', 'ReLU', 'FC-10'), every token checked."""
    tokens = tuple(t.strip() for t in text.split(",") if t.strip())
    for t in tokens:
        if not any(p.fullmatch(t) for p in _TOKENS.values()):
            raise ValueError(f"unknown layer token {t!r}")
    return tokens


def spec_of(arch: str) -> tuple[str, ...]:
    return ARCHS[arch] + (PREDICTION,)


class SubsampledConv2d(nn.Conv2d):
    """A 1x1 convolution of stride s > 1, computed as the s-subsample of its (padded) input
    followed by a stride-1 1x1 convolution: the same function, since a 1x1 kernel reads
    only the pixels the stride lands on, with the same parameters and state_dict keys.

    Why: oneDNN's AVX2 kernel for the weight gradient of a strided 1x1 convolution on NHWC
    input with fewer input channels than its channel block (8) segfaults with one thread
    and returns wrong gradients (errors of 60-140% of the largest) or hangs with two
    (uxlfoundation/oneDNN#6035): ResNet shortcuts at small widths, `Conv-1x1xN-s2` specs.
    Every strided 1x1 convolution takes this path, on every device, so no CPU ever reaches
    that kernel and one path is tested (tests/test_numerics.py); its cost: docs/benchmarks.md."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        if ph or pw:
            x = nn.functional.pad(x, (pw, pw, ph, ph))
        sh, sw = self.stride
        return nn.functional.conv2d(x[..., ::sh, ::sw], self.weight, self.bias, 1, 0, 1, self.groups)


def conv2d(cin: int, cout: int, kernel, stride=1, padding=0, bias: bool = True, groups: int = 1) -> nn.Conv2d:
    """Every convolution the builder makes: nn.Conv2d, or SubsampledConv2d for a strided 1x1."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    kernel, stride = pair(kernel), pair(stride)
    cls = SubsampledConv2d if kernel == (1, 1) and stride != (1, 1) else nn.Conv2d
    return cls(cin, cout, kernel, stride, padding, bias=bias, groups=groups)


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-act-conv-BN plus a (projected) shortcut, then act."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = activation_module(activation)
        self.conv2 = conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act2 = activation_module(activation)

    def forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


def activation_module(text: str) -> nn.Module:
    spec = ACTIVATIONS.parse(text)
    return spec.entry.fn(**spec.params)


def initialise(model: nn.Module, text: str) -> nn.Module:
    """Re-draw every Conv and Linear weight (or the entry's `layers`) with the INITS entry
    `text`; the biases of the layers re-drawn start at 0."""
    spec = INITS.parse(text)
    if spec.entry.fn is None:
        return model
    layers = spec.entry.meta.get("layers", (nn.Conv2d, nn.Linear))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, layers):
                spec.entry.fn(m.weight, **spec.params)
                if m.bias is not None:
                    m.bias.zero_()
    return model


def build_from_spec(spec, activation: str = "relu", in_shape=(3, 32, 32), width: float = 1.0) -> nn.Sequential:
    """One module per token; shapes are tracked so FC layers know their fan-in."""
    layers: list[nn.Module] = []
    shape = tuple(in_shape)  # (C, H, W) or (F,)
    last = len(spec) - 1

    def scaled(n: int, i: int) -> int:
        return n if i == last else max(1, round(n * width))

    for i, token in enumerate(spec):
        if m := _TOKENS["fc"].fullmatch(token):
            if len(shape) > 1:
                layers.append(nn.Flatten())
                shape = (math.prod(shape),)
            out = scaled(int(m[1]), i)
            layers.append(nn.Linear(shape[0], out, bias=m[2] is None))
            shape = (out,)
        elif m := _TOKENS["conv"].fullmatch(token):
            kh, kw, out = int(m[1]), int(m[2]), scaled(int(m[3]), i)
            pad, stride = int(m[4] or 0), int(m[5] or 1)
            layers.append(conv2d(shape[0], out, (kh, kw), stride, pad, bias=m[6] is None))
            shape = (out, (shape[1] + 2 * pad - kh) // stride + 1, (shape[2] + 2 * pad - kw) // stride + 1)
        elif m := _TOKENS["pool"].fullmatch(token):
            kh, kw = int(m[2]), int(m[3])
            pool = {"Max": nn.MaxPool2d, "Avg": nn.AvgPool2d, "LP": partial(nn.LPPool2d, 2)}[m[1]]
            layers.append(pool((kh, kw)))
            shape = (shape[0], shape[1] // kh, shape[2] // kw)
        elif m := _TOKENS["res"].fullmatch(token):
            out, stride = scaled(int(m[1]), i), int(m[2] or 1)
            layers.append(BasicBlock(shape[0], out, stride, activation))
            shape = (out, (shape[1] - 1) // stride + 1, (shape[2] - 1) // stride + 1)
        elif _TOKENS["gap"].fullmatch(token):
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            shape = (shape[0],)
        elif _TOKENS["bn"].fullmatch(token):
            layers.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif m := _TOKENS["dropout"].fullmatch(token):
            layers.append(nn.Dropout(float(m[1])))
        elif _TOKENS["act"].fullmatch(token):
            layers.append(activation_module(activation))
        else:
            raise ValueError(f"unknown layer token {token!r}")
        if min(shape) < 1:
            raise ValueError(f"spec {','.join(spec)}: {token} leaves an empty feature map")
    return nn.Sequential(*layers)


def build_model(arch: str, activation: str = "relu", in_shape=(3, 32, 32), width: float = 1.0,
                spec: str = "", init: str = "default") -> nn.Sequential:
    """A preset by name, or `spec` (the body, without the prediction layer) when given, or one's
    own model (`arch=package.module:factory`, workloads/imported.py)."""
    if is_imported(arch):
        return initialise(build_imported(arch, in_shape, {"activation": activation, "width": width, "spec": spec}),
                          init)
    tokens = parse_spec(spec) + (PREDICTION,) if spec else spec_of(arch)
    return initialise(build_from_spec(tokens, activation, in_shape, width), init)


@functools.lru_cache(maxsize=None)
def check_shapes(arch: str, activation: str, in_shape: tuple, width: float, spec: str) -> None:
    """ValueError (with the layer) when the model cannot take `in_shape` (a feature map
    shrinks to nothing): built on the meta device, so no memory and a few ms, once per model."""
    if is_imported(arch):  # its output too; on the CPU if some layer has no meta kernel
        try:
            with torch.device("meta"):
                check_output(arch, build_model(arch, activation, tuple(in_shape), width, spec), in_shape)
        except Exception:  # whatever fails on meta, the CPU's attempt says it (one line, ValueError)
            check_output(arch, build_model(arch, activation, tuple(in_shape), width, spec), in_shape)
        return
    with torch.device("meta"):
        build_model(arch, activation, tuple(in_shape), width, spec)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def first_layer(model: nn.Module) -> nn.Module:
    """The first convolution or linear layer (else the first module that owns a weight): what
    part3 keeps and part4 measures. The presets' first weighted module is always one."""
    weighted = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
    for module in weighted:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return module
    if weighted:
        return weighted[0]
    raise ValueError(f"{type(model).__name__} has no layer with a weight (first_layer, grad_norm need one)")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def multiply_adds(model: nn.Module, in_shape=(3, 32, 32)) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and linear
    layers (what dominates these models' cost), counted on one image in eval mode
    (a meta-device pass would cost a second or more of lazy imports the first time)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()  # BatchNorm's running statistics stay as they are
        with torch.inference_mode():
            model(torch.zeros((1, *in_shape), device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
