"""tune: the tutorial's net tuned by Ray Tune's own searchers and schedulers, then its chosen
configuration trained again with repeats on new seeds.

    python -m orchestrator sweep tune                                 # random search, ASHA stops the weak
    python -m orchestrator sweep tune searcher=optuna samples=40      # Optuna's TPE (pip install -e '.[optuna]')
    python -m orchestrator sweep tune early_stop=none                 # every candidate trains to the end
    python -m orchestrator sweep tune early_stop=asha:grace_period=2:reduction_factor=2
    python -m orchestrator plan tune --quick                          # the space, searcher and early stopping

Stages:
  search  `samples` candidates (default 20) from the space below, each one run with the
          stage's seed, validation only (score_test=false); with ASHA (the default) a candidate
          whose validation accuracy at 1, 3, 9 epochs is below the top third of those judged
          there before it stops early. The choice: the best final validation accuracy among
          the candidates that completed (a stopped one trained less: not comparable).
  final   that configuration with the study's repeats (3) on seeds the search never used
          (the search's seed + 100, + 101, ...; with seed=5: 105, 106, ...): the only runs
          that score the test set.

Study options (key=value beside config overrides): searcher=random|optuna,
early_stop=none|asha[:grace_period=G][:reduction_factor=R], samples=N (`scheduler` stays the
learning-rate schedule's config key).
"""
from __future__ import annotations

from dataclasses import replace

from search_spaces.search import best_of, check_fresh_seeds
from search_spaces.study import Report, Stage, Study
from search_spaces.tune_search import ASHA, Choice, LogUniform, TuneSearch, check_searches, parse_early_stop
from workloads import metrics as M
from workloads.config import ConfigError, coerce

SPACE = (
    ("lr", LogUniform(1e-3, 0.2)),
    ("batch_size", Choice((32, 64, 128))),
    ("weight_decay", LogUniform(1e-6, 1e-2)),
    ("optimizer", Choice(("sgd:momentum=0.5", "sgd:momentum=0.9", "sgd:momentum=0.95"))),
)
# The final runs' seeds: the search's + 100, + 101, ..., new whatever seed= says (the
# candidates all train on the search's seed).
FINAL_SEEDS = 100


def check(study: Study) -> None:
    check_searches(study)
    check_fresh_seeds(study)


def _with_search(study: Study, **changes) -> Study:
    stages = tuple(replace(s, search=replace(s.search, **changes)) if s.search is not None else s
                   for s in study.stages)
    return replace(study, stages=stages)


def _searcher(study: Study, raw) -> Study:
    return _with_search(study, searcher=str(raw))


def _early_stop(study: Study, raw) -> Study:
    return _with_search(study, scheduler=parse_early_stop(raw))


def _samples(study: Study, raw) -> Study:
    n = coerce("samples", raw, int)
    if n < 1:
        raise ConfigError(f"samples must be >= 1, got {n}")
    return _with_search(study, num_samples=n)


STUDY = Study(
    name="tune",
    description="the tutorial's net tuned by Ray Tune's searchers (random or Optuna's TPE) with ASHA "
                "stopping weak candidates, chosen on validation accuracy; the choice with repeats on the test set",
    stages=(Stage("search", search=TuneSearch(SPACE, num_samples=20, scheduler=ASHA(1.0, 3.0)),
                  fixed=(("score_test", False),)),
            Stage("final", derive=best_of("search", seed_offset=FINAL_SEEDS), fixed=(("score_test", True),))),
    base=(("arch", "tutorial"),
          ("metrics", ",".join((M.LOSS, M.VAL_ACC, M.VAL_LOSS)))),  # what choosing needs, nothing more
    repeats=3,
    # Subsets, 2 epochs with a record every 2 steps, so that ASHA judges candidates at half an
    # epoch and at one; two final repeats.
    quick=(("repeats", 2), ("epochs", 2), ("train_subset", 500), ("val_subset", 500), ("test_subset", 500),
           ("record_unit", "step"), ("record_every", 2), ("samples", 6),
           ("early_stop", "asha:grace_period=0.5:reduction_factor=2")),
    report=Report("results.tune_search:tune_report", stages=("search", "final")),
    options=(("searcher", _searcher), ("early_stop", _early_stop), ("samples", _samples)),
    check=check,
)
