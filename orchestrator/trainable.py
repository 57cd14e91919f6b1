"""The Ray Tune trainable: a few lines that turn Tune's config into a typed
TrialConfig and hand reporting and checkpointing callbacks to the one loop."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import ray
import torch
from ray import tune

from workloads.config import FIELDS, TrialConfig
from workloads.train import train

STATE_FILE = "state.pt"
_warned_no_cuda = False


def trial_config(param: dict) -> TrialConfig:
    return TrialConfig.from_flat({k: v for k, v in param.items() if k in FIELDS})


def pick_device() -> torch.device:
    """The GPU Ray gave this trial (Ray sets CUDA_VISIBLE_DEVICES), else the CPU."""
    global _warned_no_cuda
    if ray.get_gpu_ids():
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if not _warned_no_cuda:
            print(f"trial was given GPU {ray.get_gpu_ids()} but this torch has no CUDA: "
                  f"training on the CPU", file=sys.stderr)
            _warned_no_cuda = True
    return torch.device("cpu")


def load_state(checkpoint: tune.Checkpoint) -> dict:
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / STATE_FILE, weights_only=False)


def report(metrics: dict, state: dict | None) -> None:
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(config: dict, data: dict) -> None:
    """`data` maps each DataConfig the stage uses to its PreparedData (Ray's
    object store shares it among the trials of a node)."""
    cfg = trial_config(config["trial"])
    # Ray sets OMP_NUM_THREADS from the trial's CPUs; torch's own pool must match.
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    checkpoint = tune.get_checkpoint()
    train(cfg, data[cfg.data], pick_device(), report=report,
          resume=load_state(checkpoint) if checkpoint else None)
