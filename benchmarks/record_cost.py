"""What part3's training accuracy on the whole training split costs a full run, against
the fixed 5,000-image sample it scored before: time a few record points' scoring passes
(the loop's own evaluate_split, eval batch sized for the device) over the real prepared
split and over the sample, for each architecture, and a few training steps
(benchmarks.stage_cost), then project a full run's records and steps (TrialConfig.work()).

    PYTHONPATH=. python -m benchmarks.record_cost --data-dir ../shared/data --records 2 --threads 1

Other processes on the machine slow every figure down: the load average is printed beside them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from benchmarks.stage_cost import step_seconds
from search_spaces import get_study
from workloads.augment import eval_transform
from workloads.config import TrialConfig
from workloads.data import load_cifar10, prepare
from workloads.evaluation import DeviceData, eval_batch, evaluate_split
from workloads.members import Single, memory_format


def pass_seconds(cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor, records: int) -> float:
    """Median seconds of one record's scoring pass over images x (after one warm-up pass)."""
    device = torch.device("cpu")
    model = Single([cfg], cfg.data.in_shape, device, torch.float32)
    x = x.contiguous(memory_format=memory_format(model.model, device))

    def loss_fn(logits, target, reduction="mean"):
        return torch.nn.functional.cross_entropy(logits, target, reduction=reduction)
    size, times = eval_batch(cfg.train, device), []
    for _ in range(records + 1):
        start = time.perf_counter()
        evaluate_split(model, x, y, eval_transform(cfg.data), size, loss_fn, {"acc"})
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--records", type=int, default=2, help="timed record passes per arch (after one warm-up)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--archs", default="")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    study = get_study("part3")
    if args.archs:
        study = study.with_overrides({"arch": args.archs})
    trials = study.plan.stages[0].trials
    whole_cfg = trials[0].config
    data = DeviceData.from_prepared(prepare(whole_cfg.data, load_cifar10(args.data_dir, download=False)),
                                    torch.device("cpu"))
    sample = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(1))[:5000]
    print(f"part3 full: {len(data.train_x):,} training images scored at each of "
          f"{whole_cfg.work()[1]:,} records a run ({whole_cfg.work()[0]:,} steps); {args.threads} thread(s)")
    for arch in dict.fromkeys(t.config.model.arch for t in trials):
        cfg = whole_cfg.override({"arch": arch})
        whole = pass_seconds(cfg, data.train_x, data.train_y, args.records)
        part = pass_seconds(cfg, data.train_x[sample], data.train_y[sample], args.records)
        step = step_seconds(cfg, 30)[0]
        steps, records, _ = cfg.work()
        val = part  # the validation split (5,000 images) costs what the sample does
        run_sample, run_whole = steps * step + records * (part + val), steps * step + records * (whole + val)
        print(f"  {arch}: one record's training-accuracy pass {whole:.2f} s (whole split) vs {part:.2f} s "
              f"(5,000 sample); a step {1e3 * step:.1f} ms; a full run ~{run_whole / 3600:.2f} h vs "
              f"~{run_sample / 3600:.2f} h ({run_whole / run_sample:.1f}x) (load {os.getloadavg()[0]:.1f})",
              flush=True)


if __name__ == "__main__":
    main()
