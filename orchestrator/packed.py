"""Packed repeats on Ray Tune: consecutive repeats of one group share a trial and
train as one vectorized model (workloads.vectorized); their results are unpacked
into one RunRecord per repeat, so aggregation and saved results are the same
whether a repeat was packed or not.

    run_study(study, Options(out=..., data_dir=..., repeats_per_trial=5))  # 10 repeats: 2 trials a group

A group whose config the vectorized path cannot serve (workloads.vectorized.
why_not_vectorized: BatchNorm, Dropout, ...) keeps one trial per repeat, and the
sweep's log says why. A packed trial is named after its first repeat; its
checkpoints hold every repeat's state in train()'s own format.
"""
from __future__ import annotations

import itertools
import os
from functools import partial
import sys
import time

import torch
from ray import tune
from ray.tune.result import TIME_TOTAL_S

from orchestrator.trainable import (FINISHED, device_data, load_meta, load_state, load_weights, pick_device,
                                    placement, run_trial,
                                    send, trial_config, trial_name)
from workloads import metrics as M
from workloads.state import Checkpoint
from workloads.vectorized import train_repeats, why_not_vectorized

PACK = "pack"          # a packed trial's param: the member trials' params, in repeat order
REPEATS = "repeats"    # a packed checkpoint: the members' Checkpoints (train()'s format), same order


def pack_params(runs: list[dict], per_trial: int, log: bool = False) -> list[dict]:
    """Tune params for `runs` (run params, in plan order): consecutive repeats of one group,
    up to `per_trial` each, become one packed param; the rest stay single."""
    params = []
    for (_, group), members in itertools.groupby(runs, key=lambda p: (p["stage"], p["group"])):
        members = list(members)
        reason = why_not_vectorized(trial_config(members[0])) if per_trial > 1 and len(members) > 1 else None
        if reason and log:
            print(f"[packed] {group}: one model per trial ({reason})", file=sys.stderr, flush=True)
        size = 1 if reason else per_trial
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            param = dict(chunk[0])
            if len(chunk) > 1:
                param[PACK] = [dict(p) for p in chunk]
            params.append(param)
    return params


def trial_names(runs: list[dict], per_trial: int) -> set[str]:
    """The names Tune's trials get: a pack is named after its first repeat."""
    return {trial_name(p) for p in pack_params(runs, per_trial)}


def test_acc_key(repeat: int) -> str:
    return f"{M.TEST_ACC}_r{repeat}"


def repeat_key(repeat: int, metric: str) -> str:
    return f"repeat_{repeat}/{metric}"


def pack_metrics(metrics: list[dict], repeats: list[int]) -> dict:
    """What Tune sees of a pack: the members' mean of every number, each one's test accuracy,
    and each one's recorded metrics (repeat_key), for trackers to draw a series per repeat.
    The RunRecords come from the checkpoints (collect), not from these."""
    shared = [key for key in metrics[0] if all(key in m for m in metrics)]
    out = {key: sum(m[key] for m in metrics) / len(metrics) for key in shared
           if isinstance(metrics[0][key], (int, float))}
    out[M.STEP] = max(m[M.STEP] for m in metrics)
    out.update({repeat_key(r, key): value for r, m in zip(repeats, metrics) for key, value in m.items()
                if key in M.RECORDABLE and isinstance(value, (int, float))})
    if M.DONE in metrics[0]:
        out.update({test_acc_key(r): m[M.TEST_ACC] for r, m in zip(repeats, metrics)})
    return out


def run_pack(config: dict, data: dict) -> None:
    """The trainable for a packed trial (a single trial goes to run_trial)."""
    param = config["trial"]
    if PACK not in param:
        return run_trial(config, data)
    members = param[PACK]
    cfgs = [trial_config(p) for p in members]
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    checkpoint = tune.get_checkpoint()
    resume = load_state(checkpoint, REPEATS) if checkpoint else None
    device = pick_device()
    d = device_data(data, cfgs[0].data, device)
    where = placement(device, d, resume[0] if resume else None, cfgs[0])
    repeats = [p["repeat"] for p in members]

    def report(metrics: list[dict], states: list[Checkpoint] | None) -> None:
        summary = pack_metrics(metrics, repeats)
        if M.DONE in summary:
            summary.update(where, **{FINISHED: time.time()})
        send(summary, states, REPEATS)

    train_repeats(cfgs, d, device, report=report, resume=resume)


def collect(grid) -> tuple[dict, list[str]]:
    """{run name: RunRecord} of every ended repeat (packed or not), and one line per failed trial."""
    from orchestrator.collect import collect as collect_single, failure, run_record
    results = list(grid)
    records, failed = collect_single([r for r in results if PACK not in r.config["trial"]])
    for result in results:
        param = result.config["trial"]
        if PACK not in param:
            continue
        members = param[PACK]
        reason = failure(result)
        if reason:
            failed.append(f"{trial_name(param)} (repeats {', '.join(str(p['repeat']) for p in members)}): "
                          f"{reason}")
            continue
        metas = load_meta(result.checkpoint, REPEATS)
        # Each repeat's share of the pack's time, so that summed trial time stays true.
        wall = float(result.metrics.get(TIME_TOTAL_S, 0.0)) / len(members)
        for i, (p, meta) in enumerate(zip(members, metas)):
            records[trial_name(p)] = run_record(p, meta, wall, partial(load_weights, result.checkpoint, i, REPEATS))
    return records, failed
