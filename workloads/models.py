"""Architectures as data: layer specs in the assignment's notation, one builder,
named presets in one registry.

    build_model("cnn_3", activation="sigmoid", in_shape=(1, 32, 32))

Notation (stride-1 valid convolutions; pools use stride = size):
    FC-32           Linear to 32 units (flattens first if needed)
    FC-64-nobias    Linear without bias
    Conv-3x3x16     3x3 convolution to 16 channels
    MaxPool-2x2     2x2 max-pool, stride 2
    ReLU            "the activation": replaced by the `activation` parameter
The prediction layer FC-10 is appended to every preset.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}

ARCHS: dict[str, tuple[str, ...]] = {
    "mlp_1": ("FC-32", "ReLU"),
    "mlp_2": ("FC-32", "ReLU", "FC-64-nobias"),
    "cnn_3": ("Conv-3x3x16", "ReLU", "Conv-5x5x8", "ReLU", "MaxPool-2x2",
              "Conv-7x7x16", "MaxPool-2x2"),
    "cnn_4": ("Conv-3x3x16", "ReLU", "Conv-3x3x8", "ReLU", "Conv-5x5x16", "ReLU",
              "MaxPool-2x2", "Conv-5x5x16", "ReLU", "MaxPool-2x2"),
    "cnn_5": ("Conv-3x3x8", "ReLU", "Conv-3x3x16", "ReLU", "Conv-3x3x8", "ReLU",
              "Conv-3x3x16", "ReLU", "MaxPool-2x2", "Conv-3x3x16", "ReLU",
              "Conv-3x3x8", "ReLU", "MaxPool-2x2"),
}
PREDICTION = "FC-10"

_FC = re.compile(r"FC-(\d+)(-nobias)?$")
_CONV = re.compile(r"Conv-(\d+)x(\d+)x(\d+)$")
_POOL = re.compile(r"MaxPool-(\d+)x(\d+)$")


def spec_of(arch: str) -> tuple[str, ...]:
    return ARCHS[arch] + (PREDICTION,)


def build_from_spec(spec, activation: str = "relu", in_shape=(1, 32, 32)) -> nn.Sequential:
    """One module per token; shapes are tracked so FC layers know their fan-in."""
    layers: list[nn.Module] = []
    shape = tuple(in_shape)  # (C, H, W) or (F,)
    for token in spec:
        if m := _FC.fullmatch(token):
            if len(shape) > 1:
                layers.append(nn.Flatten())
                shape = (math.prod(shape),)
            layers.append(nn.Linear(shape[0], int(m[1]), bias=m[2] is None))
            shape = (int(m[1]),)
        elif m := _CONV.fullmatch(token):
            kh, kw, out = int(m[1]), int(m[2]), int(m[3])
            layers.append(nn.Conv2d(shape[0], out, (kh, kw)))
            shape = (out, shape[1] - kh + 1, shape[2] - kw + 1)
        elif m := _POOL.fullmatch(token):
            kh, kw = int(m[1]), int(m[2])
            layers.append(nn.MaxPool2d((kh, kw)))
            shape = (shape[0], shape[1] // kh, shape[2] // kw)
        elif token == "ReLU":
            layers.append(ACTIVATIONS[activation]())
        else:
            raise ValueError(f"unknown layer token {token!r}")
        if min(shape) < 1:
            raise ValueError(f"spec {spec}: {token} leaves an empty feature map")
    return nn.Sequential(*layers)


def build_model(arch: str, activation: str = "relu", in_shape=(1, 32, 32)) -> nn.Sequential:
    return build_from_spec(spec_of(arch), activation, in_shape)


def first_layer(model: nn.Module) -> nn.Module:
    """The first module that owns a weight: what part3 keeps and part4 measures."""
    for module in model.modules():
        if isinstance(getattr(module, "weight", None), torch.Tensor):
            return module
    raise ValueError("model has no weighted layer")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
