"""What workloads.models.SubsampledConv2d costs: ResNet-18 training steps on the CPU with
every strided 1x1 convolution (the shortcuts) computed as subsample + stride-1 1x1,
against the same model with nn.Conv2d's strided kernel, one thread, same weights,
interleaved so that the machine's drift falls on both alike.

    PYTHONPATH=. python -m benchmarks.strided_1x1 --widths 0.125,0.25,1 --batch 128 --steps 10

Run it where oneDNN's strided kernel is right (AVX-512, or cin >= 8 on AVX2): with fewer
than 8 input channels on AVX2 the plain model crashes (uxlfoundation/oneDNN#6035).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch

from workloads.models import SubsampledConv2d, build_model


def plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, SubsampledConv2d):
            m.__class__ = torch.nn.Conv2d  # same parameters, nn.Conv2d's strided forward
    return out


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, opt) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.125,0.25,1")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"ResNet-18, batch {args.batch}, {args.steps} steps each after one warm-up, 1 thread, NHWC; "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}, load {os.getloadavg()[0]:.1f}")
    print("width | subsample + 1x1 (s/step) | strided 1x1 (s/step) | ratio")
    for width in (float(w) for w in args.widths.split(",")):
        torch.manual_seed(0)
        ours = build_model("resnet18", width=width).to(memory_format=torch.channels_last)
        plain = plain_copy(ours)
        x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch,))
        opts = {m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (ours, plain)}
        times = {ours: [], plain: []}
        for i in range(args.steps + 1):
            for m in (ours, plain) if i % 2 else (plain, ours):
                t = step_time(m, x, y, opts[m])
                if i:
                    times[m].append(t)
        a, b = statistics.median(times[ours]), statistics.median(times[plain])
        print(f"{width:g} | {a:.4f} | {b:.4f} | {a / b:.3f}")


if __name__ == "__main__":
    main()
