"""A plain convolutional net (conv blocks, then hidden FC layers) as data, read from and
written back to a layer spec, so that a search can change one thing about the current
best net and keep the rest: a deeper net keeps the filter size chosen before.

    net = Net.parse("Conv-5x5x6,ReLU,MaxPool-2x2,Conv-5x5x16,ReLU,MaxPool-2x2,FC-120,ReLU,FC-84,ReLU")
    replace(net, dropout=0.25).spec  # '..., FC-120, ReLU, Dropout-0.25, FC-84, ReLU, Dropout-0.25'
    replace(net, dropout=0.25, dropout_fcs=1).spec  # '..., FC-120, ReLU, Dropout-0.25, FC-84, ReLU'

A conv block is Conv[-pP], BN?, ReLU, pooling?; a hidden FC layer is FC, BN?, ReLU,
Dropout?. BatchNorm, pooling kind and dropout are the net's, not a block's: that is
how the coordinate study varies them. Dropout follows every hidden FC layer, or the
first `dropout_fcs` of them; a net with no hidden FC layer puts its dropout after the
conv blocks (the prediction layer FC-10 is always appended by the builder).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from workloads.models import ARCHS, parse_spec

_CONV = re.compile(r"Conv-(\d+)x\1x(\d+)(?:-p(\d+))?")
_POOL = re.compile(r"(Max|Avg|LP)Pool-2x2")


@dataclass(frozen=True)
class Conv:
    kernel: int
    channels: int
    padding: int = 0       # 0: valid; kernel // 2 keeps the map's size (blocks a deeper net adds)
    pooled: bool = True    # followed by the net's 2x2 pooling


@dataclass(frozen=True)
class Net:
    convs: tuple = ()      # (Conv, ...)
    fcs: tuple = ()        # hidden FC widths
    pool: str = "Max"      # "Max", "Avg", "LP" (power-2) or "" (no pooling)
    conv_bn: bool = False
    fc_bn: bool = False
    dropout: float = 0.0
    dropout_fcs: int | None = None  # dropout after the first N hidden FC layers; None: after each

    def __post_init__(self):
        if self.dropout_fcs is not None and self.dropout_fcs < 1:
            raise ValueError(f"dropout_fcs={self.dropout_fcs}: None (every hidden FC layer) or >= 1")

    @classmethod
    def parse(cls, spec: str) -> "Net":
        convs, fcs, pool, conv_bn, fc_bn, dropout, dropped = [], [], "", False, False, 0.0, []
        for token in parse_spec(spec):
            if m := _CONV.fullmatch(token):
                convs.append(Conv(int(m[1]), int(m[2]), int(m[3] or 0), pooled=False))
            elif m := _POOL.fullmatch(token):
                if not convs or fcs:
                    raise ValueError(f"{spec}: pooling outside a conv block")
                convs[-1], pool = replace(convs[-1], pooled=True), m[1]
            elif token.startswith("FC-"):
                fcs.append(int(token[3:]))
            elif token == "BN":
                conv_bn, fc_bn = (conv_bn, True) if fcs else (True, fc_bn)
            elif token.startswith("Dropout-"):
                dropout = float(token[8:])
                dropped += [len(fcs)] if fcs else []
            elif token != "ReLU":
                raise ValueError(f"{spec}: {token} is not part of a plain conv-then-FC net")
        if dropped and dropped != list(range(1, len(dropped) + 1)):
            raise ValueError(f"{spec}: dropout after other hidden FC layers than the first ones")
        return cls(tuple(convs), tuple(fcs), pool, conv_bn, fc_bn, dropout,
                   None if len(dropped) in (0, len(fcs)) else len(dropped))

    @classmethod
    def of(cls, flat: dict) -> "Net":
        """The net a flat config trains: its spec, else its preset."""
        return cls.parse(flat["spec"] or ",".join(ARCHS[flat["arch"]]))

    @property
    def spec(self) -> str:
        drop = [f"Dropout-{self.dropout:g}"] if self.dropout else []
        tokens = []
        for c in self.convs:
            tokens += [f"Conv-{c.kernel}x{c.kernel}x{c.channels}" + (f"-p{c.padding}" if c.padding else ""),
                       *(["BN"] if self.conv_bn else []), "ReLU",
                       *([f"{self.pool}Pool-2x2"] if c.pooled and self.pool else [])]
        for i, width in enumerate(self.fcs):
            tokens += [f"FC-{width}", *(["BN"] if self.fc_bn else []), "ReLU",
                       *(drop if self.dropout_fcs is None or i < self.dropout_fcs else [])]
        return ",".join(tokens + (drop if not self.fcs else []))

    def with_depth(self, convs: int, fcs: int) -> "Net":
        """The first `convs` conv blocks and `fcs` hidden FC layers; a block added keeps the
        map's size (padding, no pooling) with twice the channels, an FC layer added has
        half the width of the one before."""
        blocks, widths = list(self.convs[:convs]), list(self.fcs[:fcs])
        while len(blocks) < convs:
            last = blocks[-1] if blocks else Conv(5, 3)
            blocks.append(Conv(last.kernel, 2 * last.channels, last.kernel // 2, pooled=False))
        while len(widths) < fcs:
            widths.append(max(10, widths[-1] // 2) if widths else 120)
        return replace(self, convs=tuple(blocks), fcs=tuple(widths))

    def with_first_kernel(self, kernel: int) -> "Net":
        """The first conv block's filter size (seed 004 "resized the first convolution filter");
        a block that keeps the map's size keeps doing so."""
        if not self.convs:
            return self
        first = self.convs[0]
        first = replace(first, kernel=kernel, padding=kernel // 2 if first.padding else 0)
        return replace(self, convs=(first,) + self.convs[1:])

    def with_first_width(self, width: int) -> "Net":
        """The first hidden FC layer's width (a net without one is unchanged)."""
        return replace(self, fcs=(width,) + self.fcs[1:]) if self.fcs else self
