"""One's own model: `arch=package.module:factory`, a callable that returns an nn.Module.

    # mynets.py, in the folder the sweep starts from (or anywhere on PYTHONPATH)
    def small(in_shape, settings):          # in_shape (C, H, W); settings: the model's settings
        c = in_shape[0]
        width = round(16 * settings["width"])
        return nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                             nn.Flatten(), nn.Linear(16 * width, 10))

    python -m orchestrator sweep part3 arch=mynets:small --quick
    python -m orchestrator plan hw2 arch=tutorial,mynets:small      # one's own beside the tutorial's

`settings` is a dict of the model config's other fields (`activation`, `width`, `spec`): the
factory's to honour or ignore. `init` re-draws the Conv and Linear weights after it, as for
every model. The module is imported in the driver (checked before Ray starts: importable, the
attribute a callable, an nn.Module whose output is (batch, 10) for the run's input shape)
and in every trial; Ray's workers import from the folder the sweep started in, and a
sweep that starts or joins a Ray ships the module's package to them (orchestrator/driver.py).
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Callable

import torch
from torch import nn

from workloads.registry import ConfigError

CLASSES = 10


def is_imported(arch: str) -> bool:
    return ":" in str(arch)


def importable_here() -> None:
    """Modules in the folder a command runs in import as under `python -m` (the console script
    lacks that folder on sys.path): one's own models and report functions."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())


@functools.lru_cache(maxsize=None)
def factory_of(arch: str) -> Callable:
    """The callable `package.module:factory` names; ConfigError in one line otherwise."""
    module_name, _, attr = arch.partition(":")
    if not (module_name and attr.isidentifier()):
        raise ConfigError(f"arch={arch!r}: expected package.module:factory")
    importable_here()
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"arch={arch}: cannot import {module_name} ({type(e).__name__}: {e}); run from the "
                          f"folder that holds it or put that folder on PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"arch={arch}: {module_name} has no callable {attr!r}")
    return factory


def build_imported(arch: str, in_shape, settings: dict) -> nn.Module:
    try:
        model = factory_of(arch)(tuple(in_shape), dict(settings))
    except Exception as e:  # a wrong signature, a KeyError of its own: one line, not its traceback
        raise ValueError(f"arch={arch}: the factory failed ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"arch={arch}: the factory returned {type(model).__name__}, not an nn.Module")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"arch={arch}: the model has no parameters to train")
    return model


def module_of(arch: str):
    """The top-level package (or module) a factory comes from: what Ray ships to workers."""
    factory_of(arch)
    return importlib.import_module(arch.partition(":")[0].split(".")[0])


def check_output(arch: str, model: nn.Module, in_shape) -> None:
    """ValueError unless a batch of `in_shape` images comes out as (batch, 10); on the meta
    device when the model was built there (no memory), else on two zero images."""
    try:
        param = next(model.parameters())
        x = torch.zeros((2, *in_shape), device=param.device, dtype=param.dtype)
        model.eval()
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        raise ValueError(f"arch={arch}: a batch of shape {(2, *in_shape)} fails in forward "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, CLASSES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"arch={arch}: the model's output for a batch of 2 is {shape}, expected (2, {CLASSES})")
