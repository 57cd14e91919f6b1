"""What a finished Tune experiment leaves, as the records aggregation reads: one RunRecord
per ended run (curves, scores and first-layer weights from its checkpoint's metadata;
the full weights stay on disk), one row per trial for trials.csv, and why each failed
trial failed.

    records, failed = collect(grid)   # grid: the ResultGrid of one stage's Tuner.fit()
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import pandas as pd
from ray.tune.result import HOSTNAME, NODE_IP, PID, TIME_TOTAL_S

from results.aggregate import RunRecord, prefix_record
from search_spaces.plan import Run
from workloads import metrics as M
from workloads.config import TrialConfig
from workloads.state import Checkpoint


def failure(result) -> str | None:
    """Why a Tune result holds no finished run (its error's last line, or "unfinished"), else None."""
    if result.error is not None:
        return str(result.error).strip().splitlines()[-1]
    if result.checkpoint is None or not (result.metrics or {}).get(M.DONE):
        return "unfinished"
    return None


def collect(grid) -> tuple[dict[str, RunRecord], list[str]]:
    """{run name: RunRecord} of the runs that ended (finished or diverged), and one line
    for each failed one."""
    from orchestrator.trainable import load_meta, load_weights, trial_name
    records, failed = {}, []
    for result in grid:
        param = result.config["trial"]
        reason = failure(result)
        if reason:
            failed.append(f"{trial_name(param)}: {reason}")
            continue
        records[trial_name(param)] = run_record(param, load_meta(result.checkpoint),
                                                float(result.metrics.get(TIME_TOTAL_S, 0.0)),
                                                partial(load_weights, result.checkpoint))
    return records, failed


def param_config(param: dict) -> TrialConfig:
    """The config of a trial's Tune param (its names set aside), typed again: a param Tune
    restored from its saved state has lists where tuples were."""
    return TrialConfig.from_flat({k: v for k, v in param.items() if k not in ("stage", "group", "repeat")})


def run_record(param: dict, meta: Checkpoint, wall_s: float, weights) -> RunRecord:
    """An ended run as aggregation sees it, from its Tune params and final checkpoint's
    metadata (every record, also those from before a restore, the final record and
    first-layer weights). Its weights stay on disk: `weights()` loads them."""
    from orchestrator.trainable import trial_name
    final = meta.final
    return RunRecord(
        stage=param["stage"], group=param["group"], repeat=param["repeat"],
        config=param_config(param).to_flat(),
        curves=pd.DataFrame(meta.records), test_acc=final.test_acc, wall_s=wall_s,
        first_layer=meta.first_layer, weights=weights, status=final.status,
        parameters=final.parameters, train_seconds=final.train_seconds,
        diverged_at=final.diverged_at, run=trial_name(param))


def serve(record: RunRecord, run: Run) -> list[RunRecord]:
    """The results of every trial a run served: itself, identical trials, shorter prefixes."""
    out = []
    for t in run.trials:
        r = record if t.config.train.epochs == run.config.train.epochs else \
            prefix_record(record, t.config.train.epochs, t.config.to_flat())
        out.append(replace(r, stage=t.stage, group=t.group, repeat=t.repeat, config=t.config.to_flat(),
                           changes=t.changes))
    return out


def trial_rows(grid) -> list[dict]:
    """One row per trial: its status, test accuracy and where its last attempt ran."""
    from orchestrator.trainable import PLACEMENT, trial_name
    rows = []
    for result in grid:
        param, m = result.config["trial"], result.metrics or {}
        status = ("error" if result.error else "unfinished" if not m.get(M.DONE)
                  else M.DIVERGED if m.get(M.STATUS) == M.DIVERGED else "done")
        rows.append({"stage": param["stage"], "trial": trial_name(param), "status": status,
                     M.TEST_ACC: m.get(M.TEST_ACC), "wall_s": m.get(TIME_TOTAL_S),
                     **{k: m.get(k) for k in (HOSTNAME, NODE_IP, PID) + PLACEMENT}})
    return rows


def failures(grid, stage: str) -> list[dict]:
    """Each trial that did not end, with why and its last reported metrics (a pack's are its means)."""
    from orchestrator.trainable import trial_name
    return [{"stage": stage, "run": trial_name(r.config["trial"]), "reason": failure(r),
             "last": {k: (r.metrics or {}).get(k) for k in (M.STEP, M.EPOCH, M.LOSS, M.VAL_ACC)}}
            for r in grid if failure(r)]
