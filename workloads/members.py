"""The training loop's K models behind one interface (`Single`: one nn.Module, K = 1;
workloads.vectorized.Stacked: K repeats as one stacked model), and the speed options
(`Accel`) that say how they compute: precision, compiling, evaluation through vmap,
how often the loop reads the divergence flag.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from workloads.config import PRECISIONS, ConfigError, TrainConfig, TrialConfig
from workloads.models import count_parameters, first_layer


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

    def weights(self, k: int) -> dict:
        """Model k's state_dict on the CPU."""
        return {n: v.detach().cpu() for n, v in self.model.state_dict().items()}

    def first_weights(self, k: int) -> np.ndarray:
        """Model k's first-layer weight (workloads.metrics.FIRST_LAYER)."""
        return self.first.weight.detach().cpu().contiguous().numpy()

    def parameters(self) -> int:
        return count_parameters(self.model)

