"""A TuneSearch stage (search_spaces/tune_search.py) on Ray Tune: one experiment whose
candidates Tune's own searcher samples (BasicVariantGenerator for random search, OptunaSearch
with a seeded TPESampler), optionally stopped early by ASHA; then what it chose.

    records = run_tune_search(study, stage, opts, datasets, done, rows)   # a SearchRecords
    records.history      # per candidate: changes, validation score, status, epoch stopped at, chosen
    records.best         # the flat config the final stage trains again (search.best_of)

A candidate is a run like any other (the same trainable, checkpoints and RunRecords) with
the stage's seed; its group is cNN in the order Tune created it, its `changes` what the
space sampled. Status: finished (or diverged), stopped early (ASHA, at epoch k: its curves
up to there, no final report) or failed (an error after its retries: listed, the search
goes on). The choice is the best last validation score among the candidates that finished.

Tune marks a trial its scheduler stopped "terminated", as it does one that Ctrl-C
interrupted: EarlyStops writes down each one it stops (OUT/<stage>_stopped_early.json), so
that an interrupted search (Interrupted, exit code 130) is told apart, and `--resume`
(Tuner.restore: the searcher's saved state, trials unfinished continue from their checkpoint,
stopped ones stay stopped) finishes it.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from ray import tune
from ray.tune.result import TIME_TOTAL_S
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from orchestrator.collect import failure, param_config, run_record, trial_rows
from orchestrator.experiment import (TRIALS_FILE, Interrupted, SweepError, experiment_path, stage_tuner,
                                     trials_at_once)
from orchestrator.progress import Ended
from orchestrator.trainable import load_meta, load_weights, run_trial
from results.aggregate import RunRecord
from results.io import write_csv, write_json
from results.tune_search import changes_text
from search_spaces.search import SearchRecords
from search_spaces.study import Stage, Study
from search_spaces.tune_search import Choice, Integer, LogUniform, TuneSearch, Uniform
from workloads import metrics as M
from workloads.config import TrialConfig
from workloads.models import count_parameters

CANDIDATE = "candidate"                 # every candidate's group in Tune's config; cNN in the records
STOPS_FILE = "{stage}_stopped_early.json"  # trial id -> the epoch ASHA stopped it at
EPS = 1e-9


def domain(d):
    """A space's domain as Tune's sample domain."""
    if isinstance(d, Uniform):
        return tune.uniform(d.low, d.high)
    if isinstance(d, LogUniform):
        return tune.loguniform(d.low, d.high)
    if isinstance(d, Integer):
        return tune.randint(d.low, d.high + 1)  # Tune's upper bound is excluded
    if isinstance(d, Choice):
        return tune.choice(list(d.values))
    raise TypeError(f"not a search domain: {d!r}")


def param_space(base: dict, stage: str, search: TuneSearch) -> dict:
    """The trainable's config {"trial": flat config} with the space's keys as sample domains
    (OptunaSearch flattens the nesting to "trial/lr" and back)."""
    return {"trial": {"stage": stage, "group": CANDIDATE, "repeat": 0, **base,
                      **{k: domain(d) for k, d in search.space}}}


def searcher(search: TuneSearch, at_once: int | None, verbose: int = 1):
    if search.searcher == "random":
        return BasicVariantGenerator(random_state=search.seed, max_concurrent=at_once or 0)
    # Optuna is an optional extra (TuneSearch refused searcher=optuna without it).
    import optuna
    from ray.tune.search.optuna import OptunaSearch
    # Optuna's INFO lines ("A new study created in memory ...") only with -v, as Tune's own.
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose >= 2 else optuna.logging.WARNING)
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=search.seed))


class EarlyStops(ASHAScheduler):
    """Tune's ASHA with time in epochs, which never stops a run at its last record (it has
    trained as long as a finished one; stopping it would only skip its final report) and
    writes down every candidate it stops, with the epoch, in `log`."""

    def __init__(self, grace_period: float, reduction_factor: float, epochs: int, log: str):
        super().__init__(time_attr=M.EPOCH, max_t=epochs, grace_period=grace_period,
                         reduction_factor=reduction_factor)
        self.epochs, self.log = epochs, log

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        epoch = result.get(M.EPOCH, 0.0)
        if M.DONE in result or epoch >= self.epochs - EPS:
            return TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP:
            write_json(Path(self.log), {**read_stops(self.log), trial.trial_id: float(epoch)})
        return action


def read_stops(log) -> dict:
    path = Path(log)
    return json.loads(path.read_text()) if path.is_file() else {}


def scheduler(search: TuneSearch, base: dict, log: Path):
    s = search.scheduler
    return None if s is None else EarlyStops(s.grace_period, s.reduction_factor, base["epochs"], str(log))


def number(result) -> int:
    """The candidate's number in the order Tune created it (its folder's name says it)."""
    return int(Path(result.path).name.split("_")[0][len(CANDIDATE):])


def trial_id(result) -> str:
    return Path(result.path).name.split("_", 1)[1]


def run_tune_search(study: Study, stage: Stage, opts, datasets, done: dict, rows: list) -> SearchRecords:
    """Runs the stage as one Tune experiment (or finishes it, with --resume); records its
    finished candidates in `done` (a later stage reuses identical configs), its trials in `rows`."""
    search: TuneSearch = stage.search
    base = study.stage_config(stage).to_flat()
    prepared = search.data_configs(base)
    path = experiment_path(opts, stage.name)
    print(f"[{study.name}] stage {stage.name}: {search.searcher} search of {search.num_samples} candidates"
          + (", ASHA stops the weak ones" if search.scheduler else "") + f" -> {path}", file=sys.stderr, flush=True)
    data = datasets.stage_data([replace(TrialConfig.from_flat(base), data=d) for d in prepared])
    at_once = None if opts.address else trials_at_once(opts)
    log = opts.out / STOPS_FILE.format(stage=stage.name)
    tuner = stage_tuner(
        run_trial, data, opts, stage.name, resume_errored=False,
        columns={M.EPOCH: "epoch", M.LOSS: "loss", M.VAL_ACC: "val_acc"},
        callbacks=[Ended(f"[{study.name}] {stage.name}", search.metric, _name)],
        param_space=param_space(base, stage.name, search), search_alg=searcher(search, at_once, opts.verbose),
        scheduler=scheduler(search, base, log), metric=search.metric, mode=search.mode,
        num_samples=search.num_samples, max_concurrent_trials=None if search.searcher == "random" else at_once,
        trial_name_creator=_name, trial_dirname_creator=_dirname)
    grid = tuner.fit()
    stops = read_stops(log)
    results = sorted(grid, key=number)
    unfinished = [r for r in results if failure(r) == "unfinished" and trial_id(r) not in stops]
    if unfinished or len(results) < search.num_samples:
        raise Interrupted(f"{len(unfinished) + search.num_samples - len(results)} candidates unfinished")
    names = {number(r): f"c{i:0{len(str(len(results) - 1))}d}" for i, r in enumerate(results)}
    found = candidates(search, base, results, names, stops)
    ran = trial_rows(grid)
    for row, r in zip(ran, grid):
        row["trial"] = f"{names[number(r)]}_r0"
        row["status"] = M.STOPPED_EARLY if trial_id(r) in stops and row["status"] == "unfinished" else row["status"]
    rows += sorted(ran, key=lambda row: row["trial"])
    write_csv(opts.out / TRIALS_FILE, pd.DataFrame(rows))
    for r in found:
        if r.finished:
            done.setdefault(TrialConfig.from_flat(r.config), r)
    return found


def candidates(search: TuneSearch, base: dict, results: list, names: dict, stops: dict) -> SearchRecords:
    """The candidates' RunRecords and history, and the best that completed."""
    records, history = [], []
    sign = 1.0 if search.mode == "max" else -1.0
    for result in results:
        param, name = result.config["trial"], names[number(result)]
        changes = {k: _plain(param[k]) for k, _ in search.space}
        text = changes_text(changes)
        reason = failure(result)
        row = {"candidate": name, "changes": changes, "score": None, "status": "failed", "epochs": None,
               "stopped_at": None, "why": "", "chosen": False}
        if reason is None:
            record = run_record(param, load_meta(result.checkpoint), float(result.metrics.get(TIME_TOTAL_S, 0.0)),
                                partial(load_weights, result.checkpoint))
        elif trial_id(result) in stops:
            record = stopped_record(param, result)
            row["stopped_at"] = stops[trial_id(result)]
        else:
            row["why"] = reason
            print(f"candidate {name} ({text}) failed: {reason}", file=sys.stderr, flush=True)
            history.append(row)
            continue
        record = replace(record, group=name, run=f"{name}_r0", changes=text)
        records.append(record)
        score = record.final(search.metric)
        row.update(score=score if math.isfinite(score) else None, status=record.status,
                   epochs=record.final(M.EPOCH))
        history.append(row)
    complete = [row for row in history if row["status"] == M.FINISHED and row["score"] is not None]
    if not complete:
        raise SweepError(f"stage search: none of the {len(results)} candidates completed; nothing to choose")
    best = max(complete, key=lambda row: sign * row["score"])
    best["chosen"] = True
    chosen = TrialConfig.from_flat({**base, **best["changes"]}).to_flat()
    return SearchRecords(records, history, chosen, base)


def stopped_record(param: dict, result) -> RunRecord:
    """A candidate ASHA stopped: its records as Tune kept them (a resumed trial's repeats
    once), no test score, status stopped_early."""
    frame = result.metrics_dataframe
    columns = [c for c in (M.STEP, *M.CURVES) if c in frame]
    curves = frame[columns].drop_duplicates(M.STEP, keep="last").reset_index(drop=True)
    cfg = param_config(param)
    seconds = float(curves[M.TRAIN_SECONDS].iloc[-1]) if M.TRAIN_SECONDS in curves and len(curves) else 0.0
    return RunRecord(stage=param["stage"], group=param["group"], repeat=0, config=cfg.to_flat(), curves=curves,
                     test_acc=float("nan"), wall_s=float(result.metrics.get(TIME_TOTAL_S, 0.0)),
                     status=M.STOPPED_EARLY, parameters=count_parameters(cfg.model.build(cfg.data.in_shape)),
                     train_seconds=seconds)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _name(trial) -> str:
    return f"{CANDIDATE}{trial.experiment_tag.split('_')[0]}"


def _dirname(trial) -> str:
    return f"{_name(trial)}_{trial.trial_id}"


__all__ = ["EarlyStops", "param_space", "run_tune_search"]
