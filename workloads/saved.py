"""Saved weights scored again: the model rebuilt from the configuration saved beside
them (NAME.json next to NAME.pt, results.io.save_weights), then its test accuracy on
CIFAR-10's test split, evaluated the way its run evaluated (normalisation, resize,
test-time view).

    cfg, state = load_weights(Path("runs/elec5307/<run>/baseline.pt"))
    acc, n = test_accuracy(cfg, build(cfg, state), load_cifar10(root))

Every way the files can be wrong is one line (ConfigError): a missing file, a file that
is not weights, a configuration that is not one, weights that do not fit its model.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from workloads.augment import eval_transform
from workloads.config import ConfigError, TrialConfig
from workloads.data import RawCifar, preprocess
from workloads.evaluation import eval_batch, evaluate_split
from workloads.members import Single


def config_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def load_weights(path: Path) -> tuple[TrialConfig, dict]:
    """(the config saved beside `path`, its state_dict), each checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    beside = config_path(path)
    if not beside.is_file():
        raise ConfigError(f"{path}: no configuration beside it ({beside.name}); evaluate rebuilds the model "
                          f"from the .json a sweep saves next to its weights")
    try:
        flat = json.loads(beside.read_text())
        cfg = TrialConfig.from_flat({k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()})
    except (ValueError, TypeError, AttributeError) as e:  # ConfigError is a ValueError
        raise ConfigError(f"{beside}: not a run configuration ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a weights file saved by torch ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: holds a {type(state).__name__}, not a model's state_dict")
    return cfg, state


def build(cfg: TrialConfig, state: dict) -> Single:
    """The model of `cfg` holding `state`, refused in one line when they do not fit."""
    model = Single([cfg], tuple(cfg.data.in_shape), torch.device("cpu"), torch.float32)
    want = {k: tuple(v.shape) for k, v in model.model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in want if k not in got] + [f"unexpected {k}" for k in got if k not in want]
    problems += [f"{k} is {got[k]}, the model's {want[k]}" for k in want if k in got and got[k] != want[k]]
    if problems:
        raise ConfigError(f"the weights do not fit the saved configuration's model "
                          f"({cfg.model.spec or cfg.model.arch}): {'; '.join(problems[:3])}"
                          + (f" and {len(problems) - 3} more" if len(problems) > 3 else ""))
    model.load([state])
    return model


def test_accuracy(cfg: TrialConfig, model: Single, raw: RawCifar) -> tuple[float, int]:
    """(accuracy, images) of a built model on the whole test split, on the CPU."""
    d = cfg.data
    x = torch.from_numpy(preprocess(raw.test_x, d.grayscale, d.normalize))
    y = torch.from_numpy(raw.test_y)
    acc = evaluate_split(model, x, y, eval_transform(d), eval_batch(cfg.train, torch.device("cpu")), None,
                         {"acc"})["acc"][0]
    return acc, len(y)
