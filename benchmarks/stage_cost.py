"""What a full-size run of each stage of a study would cost on this machine: time a few
training steps and one evaluation batch of each distinct model and batch size the stage
trains (random images: the cost does not depend on them), with 1 and 2 torch threads,
then project every run's steps and evaluated images (TrialConfig.work()).

    PYTHONPATH=. python -m benchmarks.stage_cost resnet coordinate --threads 1,2

A search stage is projected from its base config times the most trials it can ask for
(its values change the cost: a guide, not a bound). Measured steps follow one warm-up
step; the median is kept. Other processes on the machine slow every figure down: the
load average is printed beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from search_spaces import get_study
from workloads import metrics as M
from workloads.config import TrialConfig
from workloads.evaluation import DeviceData, eval_batch
from workloads.members import Single, memory_format
from workloads.train import train


def step_seconds(cfg: TrialConfig, steps: int) -> tuple[float, float]:
    """(seconds per training step, seconds per evaluated image) of `cfg` on the CPU: train()
    itself on random images for steps + 1 steps (augmentation, rates, checks included),
    then one evaluation batch of the trained model."""
    device, batch = torch.device("cpu"), cfg.train.batch_size
    n = (steps + 1) * batch
    cfg = cfg.override({"train_subset": n, "epochs": 1, "metrics": "train_loss", "record_unit": "step",
                        "record_every": 1, "checkpoint_every": 10**6, "score_test": False, "scheduler": "constant",
                        "snapshot_epochs": ()})
    x, y = torch.randn(n, *cfg.data.in_shape), torch.randint(0, 10, (n,))
    small, labels = x[:batch], y[:batch]
    data = DeviceData(x, y, torch.arange(batch), small, labels, small, labels)
    seconds = [r[M.TRAIN_SECONDS] for r in train(cfg, data, device).records]
    per_step = statistics.median(b - a for a, b in zip(seconds, seconds[1:]))  # the first step warms up
    model = Single([cfg], cfg.data.in_shape, device, torch.float32)
    model.train(False)
    images = torch.randn(eval_batch(cfg.train, device), *cfg.data.in_shape).contiguous(
        memory_format=memory_format(model.model, device))
    with torch.inference_mode():
        model.logits(images)  # warm-up
        start = time.perf_counter()
        model.logits(images)
    return per_step, (time.perf_counter() - start) / len(images)


def stage_runs(study, stage) -> list[TrialConfig]:
    if stage.search is not None:
        base = study.stage_config(stage)
        return [base] * stage.search.most_trials(study.repeats)
    return [r.config for r in study.plan[stage.name].runs]  # none for a derived stage


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up)")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    cache: dict = {}
    for name in args.studies:
        study = get_study(name)
        for stage in study.stages:
            runs = stage_runs(study, stage)
            if not runs:
                print(f"{name}/{stage.name}: derived from earlier results (the search's best config)")
                continue
            hours = {t: 0.0 for t in threads}
            for cfg in runs:
                # What sets the cost: the layers and the batch (activation, init and optimizer
                # change it by a few percent, far less than other processes on a shared machine).
                key = (cfg.model.arch, cfg.model.spec, cfg.model.width, cfg.data.in_shape, cfg.train.batch_size)
                for t in threads:
                    if (key, t) not in cache:
                        torch.set_num_threads(t)
                        cache[key, t] = step_seconds(cfg, args.steps)
                        if cache[key, t][0] < 0.05:  # a small model: a few steps are too few to time
                            cache[key, t] = step_seconds(cfg, 300)
                        print(f"  {cfg.model.arch} width {cfg.model.width:g} batch {cfg.train.batch_size} "
                              f"{t} thread(s): {cache[key, t][0]:.3f} s/step, {1e3 * cache[key, t][1]:.2f} ms per "
                              f"evaluated image (load {os.getloadavg()[0]:.1f})", flush=True)
                    step, image = cache[key, t]
                    steps, _, images = cfg.work()
                    hours[t] += (steps * step + images * image) / 3600
            print(f"{name}/{stage.name}: {len(runs)} runs, " + ", ".join(
                f"{h:,.1f} h with {t} thread(s) per run" for t, h in hours.items()), flush=True)


if __name__ == "__main__":
    main()
