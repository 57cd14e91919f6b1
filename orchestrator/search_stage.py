"""A search stage on Ray Tune: one experiment whose trials a CoordinateSearch
(orchestrator/coordinate.py) asks for, one setting at a time, from the stage's config.

    records = run_search(study, stage, opts, datasets, done, rows)   # a SearchRecords
    records.history, records.best                                    # what it chose, and why

A trial is a run like any other (the same trainable, checkpoints and RunRecords):
its group is SETTING=VALUE (`batch_size=6`, `lr=current`), its repeat the seed. Failed
trials count as the worst score (the searcher's rule) and are listed; they do not end
the sweep. An interrupted search (a trial unfinished, or stopped between settings)
raises orchestrator.experiment.Interrupted (exit code 130); `--resume` continues the experiment with Tuner.restore,
whose searcher picks up from its last saved state (see coordinate.py's docstring for
what Tune keeps); errored trials stay errored, as the search already counted them.
Packing repeats (--repeats-per-trial) does not apply to a search's trials.

What the search decided is read back by replaying it on the records (`replay`): the
searcher is deterministic given each trial's result, so the same rule on the same
numbers gives the same path, also after a restore, without trusting when Tune last
saved the searcher.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import pandas as pd
from ray.tune.search import Searcher

from orchestrator.coordinate import Candidate, CoordinateSearch, Step
from orchestrator.collect import collect, failure, trial_rows
from orchestrator.experiment import (TRIALS_FILE, Interrupted, experiment_path, raise_if_interrupted, stage_tuner,
                                     trials_at_once)
from orchestrator.progress import Ended
from results.aggregate import RunRecord
from results.io import write_csv
from search_spaces.search import SearchRecords, canonical
from search_spaces.study import Stage, Study
from workloads import metrics as M
from workloads.config import FIELDS, SEED, ConfigError, TrialConfig

def steps(base: dict, search) -> list[Step]:
    return [Step(s.name, [Candidate(label, changes if callable(changes) else canonical(base, changes))
                          for label, changes in s.values]) for s in search.settings]


def make_searcher(study: Study, stage: Stage, prepared=None, max_concurrent: int | None = None) -> CoordinateSearch:
    """The stage's searcher: from the study's base with the stage's fixed settings, seeds
    base seed + repeat. `prepared`: the DataConfigs trials can have (None: any)."""
    base = study.stage_config(stage).to_flat()

    def make_config(changes: dict, meta: dict) -> dict:
        flat = TrialConfig.from_flat({**base, **changes, SEED: base[SEED] + meta["repeat"]}).to_flat()
        return {"trial": {"stage": stage.name, "group": f"{meta['step']}={meta['candidate']}",
                          "repeat": meta["repeat"], **flat}}

    def validate(config: dict) -> str | None:
        try:
            cfg = TrialConfig.from_flat(config)
            cfg.model.build(cfg.data.in_shape)  # shapes: a layer that leaves an empty feature map
        except (ConfigError, ValueError) as e:
            return str(e)
        if prepared is not None and cfg.data not in prepared:
            return "its data settings were not prepared: computed values may not change data settings"
        return None

    return CoordinateSearch(base, steps(base, stage.search), study.repeats, seed_key=SEED,
                            metric=stage.search.metric, mode="max" if stage.search.metric == M.VAL_ACC else "min",
                            margin=stage.search.margin, make_config=make_config, validate=validate,
                            max_concurrent=max_concurrent)


def config_key(flat: dict) -> TrialConfig:
    return TrialConfig.from_flat({k: v for k, v in flat.items() if k in FIELDS})


def replay(searcher: CoordinateSearch, records: list[RunRecord], errored=()) -> SearchRecords:
    """The search's decisions on these records, the records in the order it asked for them.
    `errored`: the flat configs of trials that failed for good (the worst score, as the
    search counted them); a config with neither means the search stopped before its end."""
    by_config = {config_key(r.config): r for r in records}
    failed = {config_key(flat) for flat in errored}
    base, asked, n = searcher.best_config(), [], 0
    while (suggestion := searcher.suggest(f"replay_{n}")) != Searcher.FINISHED:
        if suggestion is None:
            raise RuntimeError("the replayed search waits for trials that are not running")  # cannot happen
        param = suggestion["trial"]
        key, record = config_key(param), by_config.get(config_key(param))
        if record is None and key not in failed:
            raise Interrupted(f"stage {param['stage']}: the search stopped before "
                              f"{param['group']}_r{param['repeat']}")
        result = None if record is None else {searcher.metric: record.final(searcher.metric),
                                              M.STATUS: record.status}
        searcher.on_trial_complete(f"replay_{n}", result=result, error=result is None)
        if record is not None:
            asked.append(replace(record, group=param["group"], repeat=param["repeat"],
                                 changes=", ".join(f"{k}={v}" for k, v in describe(param, base).items())
                                 or "where the search starts"))
        n += 1
    seen = {config_key(a.config) for a in asked}
    extra = [r for r in records if config_key(r.config) not in seen]
    if extra:  # the search decided otherwise when it ran: say so, keep them
        print(f"[search] {len(extra)} trials were not asked for by the replayed search: "
              f"{', '.join(f'{r.group}_r{r.repeat}' for r in extra[:3])}", file=sys.stderr)
    return SearchRecords(asked + extra, searcher.history(), searcher.best_config(), base)


def describe(param: dict, base: dict) -> dict:
    return {k: v for k, v in param.items() if k in FIELDS and k != SEED and base.get(k) != v}


def run_search(study: Study, stage: Stage, opts, datasets, done: dict, rows: list) -> SearchRecords:
    """Runs the stage as one Tune experiment (or finishes it, with --resume); records its
    runs in `done` (later stages reuse identical configs) and its trials in `rows`."""
    from orchestrator.trainable import run_trial, trial_name
    base = study.stage_config(stage).to_flat()
    prepared = stage.search.data_configs(base)
    path = experiment_path(opts, stage.name)
    print(f"[{study.name}] stage {stage.name}: a search of {len(stage.search.settings)} settings, "
          f"at most {stage.search.most_trials(study.repeats)} trials -> {path}", file=sys.stderr, flush=True)
    data = datasets.stage_data([replace(TrialConfig.from_flat(base), data=d) for d in prepared])
    at_once = None if opts.address else trials_at_once(opts)
    # The searcher comes back from its last saved state on --resume; errored trials stay
    # errored. Its progress: a line per trial that ends (how many a search asks for is not
    # known in advance, so no share of the work as a grid's stage shows).
    tuner = stage_tuner(
        run_trial, data, opts, stage.name, resume_errored=False,
        columns={M.EPOCH: "epoch", M.LOSS: "loss", M.VAL_ACC: "val_acc"},
        callbacks=[Ended(f"[{study.name}] {stage.name}", stage.search.metric, _name)],
        search_alg=make_searcher(study, stage, prepared, at_once), num_samples=-1,
        max_concurrent_trials=at_once, trial_name_creator=_name, trial_dirname_creator=_dirname)
    grid = tuner.fit()
    raise_if_interrupted(grid)
    rows += trial_rows(grid)
    write_csv(opts.out / TRIALS_FILE, pd.DataFrame(rows))
    records, _ = collect(grid)
    errored = []
    for result in grid:  # no trial is unfinished here: raise_if_interrupted saw to that
        reason, param = failure(result), result.config["trial"]
        if reason:
            errored.append(param)
            print(f"[{study.name}] stage {stage.name}: {trial_name(param)} failed ({reason}); the search "
                  f"counted it as the worst score", file=sys.stderr, flush=True)
    found = replay(make_searcher(study, stage, prepared), list(records.values()), errored)
    for r in found:
        done.setdefault(TrialConfig.from_flat(r.config), r)
    return found


def _name(trial) -> str:
    from orchestrator.trainable import trial_name
    return trial_name(trial.config["trial"])


def _dirname(trial) -> str:
    # The trial id too: after a restore the search may ask for a config again under a new id.
    return f"{_name(trial)}_{trial.trial_id}".replace("/", "-")


__all__ = ["make_searcher", "replay", "run_search"]
