"""Convolution kernels checked on the machine at hand: each convolution's forward and
backward passes in float32, in the layout the training loop gives them, against the
same computation in float64, within a bound derived from the computation.

    cases = cases_of(build_model("resnet18", width=0.125), (3, 32, 32), batch=32)
    results = run_cases(sorted(cases), threads=1)   # {case: Result}, each case in a subprocess
    python -m workloads.numerics 1 < cases.jsonl    # the worker run_cases starts

Why: a library kernel can be wrong on one CPU and right on another (oneDNN's AVX2
weight gradient of a strided 1x1 convolution with few input channels crashes or is
silently wrong, uxlfoundation/oneDNN#6035; workloads.models.SubsampledConv2d keeps the
loop away from it). The bound: a float32 sum of n products, in any order, is within
gamma(n) = n u / (1 - n u) (u = 2^-24) of the exact sum times the sum of the terms'
magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 3.1). That
magnitude is the same convolution of |x|, |w| and |g|, computed in float64. A wrong
kernel misses it by orders of magnitude; a correct one, in any summation order, cannot.

A case runs in a worker process: a crash or a hang (bounded by a timeout) fails that
case, names it, and a new worker goes on with the rest.
"""
from __future__ import annotations

import json
import math
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from workloads.models import conv2d

U = 2.0 ** -24          # float32's unit roundoff
MAX_MACS = 100_000_000  # a case's batch is cut so its forward pass stays under this


@dataclass(frozen=True, order=True)
class ConvCase:
    """One convolution as the loop runs it: channels (all groups together), kernel, stride,
    padding, the input's spatial size and batch, and the layout (NHWC, the loop's on a CPU);
    groups > 1 is how vmap trains K stacked repeats (workloads.vectorized): one convolution
    with K groups, in NCHW (vmap cannot batch channels_last)."""
    cin: int
    cout: int
    kernel: tuple
    stride: tuple
    padding: tuple
    size: tuple
    batch: int
    bias: bool = True
    groups: int = 1
    channels_last: bool = True

    @property
    def label(self) -> str:
        k, s, p, hw = ("x".join(map(str, v)) for v in (self.kernel, self.stride, self.padding, self.size))
        extra = (f" groups={self.groups}" if self.groups > 1 else "") + ("" if self.channels_last else " nchw")
        return f"conv{self.cin}to{self.cout}-k{k}-s{s}-p{p}-in{hw}-b{self.batch}{'' if self.bias else '-nobias'}{extra}"

    def macs(self) -> int:
        (kh, kw), (sh, sw), (ph, pw), (h, w) = self.kernel, self.stride, self.padding, self.size
        out = ((h + 2 * ph - kh) // sh + 1) * ((w + 2 * pw - kw) // sw + 1)
        return self.batch * out * self.cout * self.cin // self.groups * kh * kw


def cases_of(model: nn.Module, in_shape: tuple, batch: int, groups: int = 1) -> set[ConvCase]:
    """The convolutions of `model` on `batch` images of `in_shape`, found by running it once.
    The batch is cut (to 1 at least) where a case would cost more than MAX_MACS: these
    kernels choose their blocking by channels and sizes, and float64 references are slow."""
    found = set()

    def hook(module, inputs, output):
        h, w = inputs[0].shape[-2:]
        case = ConvCase(module.in_channels * groups, module.out_channels * groups, module.kernel_size,
                        module.stride, module.padding, (h, w), batch, module.bias is not None, groups,
                        channels_last=groups == 1)
        per_image = case.macs() // batch
        found.add(ConvCase(**{**asdict(case), "batch": max(1, min(batch, MAX_MACS // per_image))}))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *in_shape)))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return found


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


def check(case: ConvCase, seed: int = 0) -> dict:
    """{quantity: largest |float32 - float64| / bound} for the output and the input, weight
    and bias gradients; every ratio <= 1 when the kernels are right."""
    got, exact, size, terms = measure(case, seed)
    return {name: error_ratio(got[name], exact[name], size[name], terms[name]) for name in got}


def error_ratio(value: torch.Tensor, exact: torch.Tensor, size: torch.Tensor, n: int) -> float:
    """max |value - exact| / (gamma(n) |size|): `size` is the sum of the terms' magnitudes."""
    bound = gamma(n) * size + n * torch.finfo(torch.float32).tiny
    return float(((value.double() - exact).abs() / bound).max())


def measure(case: ConvCase, seed: int = 0) -> tuple[dict, dict, dict, dict]:
    """(float32 results, float64 results, float64 magnitudes, terms per element) of one
    forward and backward pass, keyed output / input_grad / weight_grad / bias_grad."""
    torch.manual_seed(seed)
    conv = conv2d(case.cin, case.cout, case.kernel, case.stride, case.padding, case.bias, case.groups)
    layout = torch.channels_last if case.channels_last else torch.contiguous_format
    conv = conv.to(memory_format=layout)  # as workloads.members.memory_format lays it out
    x = torch.randn(case.batch, case.cin, *case.size).contiguous(memory_format=layout)
    x.requires_grad_()
    y = conv(x)
    g = torch.randn_like(y)
    y.backward(g)
    w, b = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    got = {"output": y.detach(), "input_grad": x.grad, "weight_grad": conv.weight.grad,
           **({"bias_grad": conv.bias.grad} if case.bias else {})}

    def reference(xv, wv, bv, gv):  # float64, NCHW: PyTorch's own kernels, not oneDNN's
        xv, wv = xv.double().contiguous().requires_grad_(), wv.double().contiguous().requires_grad_()
        bv = bv.double().requires_grad_() if bv is not None else None
        out = F.conv2d(xv, wv, bv, conv.stride, conv.padding, 1, case.groups)
        out.backward(gv.double().contiguous())
        return {"output": out.detach(), "input_grad": xv.grad, "weight_grad": wv.grad,
                **({"bias_grad": bv.grad} if bv is not None else {})}

    exact = reference(x.detach(), w, b, g)
    size = reference(x.detach().abs(), w.abs(), None if b is None else b.abs(), g.abs())
    (kh, kw), reduced = case.kernel, y[0, 0].numel() * case.batch  # a gradient sums over images x pixels
    terms = {"output": case.cin // case.groups * kh * kw + case.bias,
             "input_grad": case.cout // case.groups * kh * kw, "weight_grad": reduced, "bias_grad": reduced}
    return got, exact, size, terms


@dataclass(frozen=True)
class Result:
    case: ConvCase
    ratios: dict          # quantity -> error / bound (empty when the worker died)
    failure: str = ""     # why the case has no ratios: a crash or a hang

    @property
    def ok(self) -> bool:
        return not self.failure and all(r <= 1.0 for r in self.ratios.values())

    def describe(self) -> str:
        if self.failure:
            return f"{self.case.label}: {self.failure}"
        worst = max(self.ratios, key=self.ratios.get)
        return f"{self.case.label}: {worst} error {self.ratios[worst]:.3g}x its float32 bound"


def case_timeout(case: ConvCase) -> float:
    """Seconds a case may take: ten times a slow float64 reference, 20 s at least."""
    return 20.0 + 10 * 8 * case.macs() / 1e9


WORKER = (sys.executable, "-m", "workloads.numerics")


def run_cases(cases: list[ConvCase], threads: int, env: dict | None = None, worker=WORKER,
              timeout: float | None = None) -> dict:
    """{case: Result}: the cases in `worker` processes with `threads` torch threads each;
    a case may take `timeout` seconds (default: case_timeout) beside the worker's start."""
    results: dict = {}
    todo = list(cases)
    while todo:
        proc = subprocess.Popen([*worker, str(threads)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env)
        proc.stdin.write("".join(json.dumps(asdict(c)) + "\n" for c in todo))
        proc.stdin.close()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_forward, args=(proc.stdout, lines), daemon=True).start()
        for i, case in enumerate(list(todo)):
            limit = case_timeout(case) if timeout is None else timeout
            try:
                line = lines.get(timeout=limit + (30.0 if i == 0 else 0.0))  # + the worker's start
            except queue.Empty:
                line = None
            todo.pop(0)
            if not line:
                proc.kill()
                code = proc.wait()
                why = (f"hung (no answer in {limit:.0f} s)" if line is None
                       else f"the process died ({_exit_name(code)})")
                results[case] = Result(case, {}, why)
                break
            results[case] = Result(case, json.loads(line))
        else:
            proc.wait()
    return results


def _forward(stream, lines: queue.Queue) -> None:
    """Every line of a worker's output into `lines`, then "" for its end."""
    for line in stream:
        lines.put(line)
    lines.put("")


def _exit_name(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def case_from_json(line: str) -> ConvCase:
    return ConvCase(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(line).items()})


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]))
    for line in sys.stdin:
        ratios = check(case_from_json(line))
        print(json.dumps({k: v if math.isfinite(v) else 1e300 for k, v in ratios.items()}), flush=True)


if __name__ == "__main__":
    main()
