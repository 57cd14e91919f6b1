"""A search stage run by Ray Tune's own searchers and schedulers, as data: a space of config
keys, a number of candidates, a searcher (random sampling, or Optuna's TPE) and optionally
ASHA, which stops candidates early (orchestrator/tune_search.py runs it).

    SPACE = (("lr", LogUniform(1e-4, 1e-1)), ("batch_size", Choice((32, 64, 128))),
             ("momentum", Uniform(0.5, 0.99)))
    Stage("search", search=TuneSearch(SPACE, num_samples=16, searcher="optuna",
                                      scheduler=ASHA(grace_period=1, reduction_factor=3)),
          fixed=(("score_test", False),))
    Stage("final", derive=best_of("search", seed_offset=100), fixed=(("score_test", True),))

A candidate is one run (repeats do not apply: the search's candidates are single runs, all
with the stage's seed, so that they differ only in what the space samples); the final
stage trains the chosen configuration with the study's repeats on new seeds (the search's
seed + 100 + repeat, whatever seed the user sets) and is the only
one that scores the test set. The choice is the best last validation score among the
candidates that completed: a candidate ASHA stopped has trained less than the others, so
its score is not comparable (it stays in the record, marked as stopped early).

Kept free of Ray and torch like every study module: orchestrator/tune_search.py turns the
space into tune.uniform/loguniform/randint/choice and the searcher and scheduler into Tune's.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, fields

from search_spaces.axes import AXIS_ALIASES
from search_spaces.search import DATA_KEYS, data_configs
from workloads import metrics as M
from workloads.config import FIELDS, SEED, ConfigError, DataConfig

SEARCHERS = ("random", "optuna")  # Tune's BasicVariantGenerator; ray.tune.search.optuna.OptunaSearch (TPE)
OPTUNA_HINT = "pip install -e '.[optuna]'"


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def __post_init__(self):
        if not self.low < self.high:
            raise ConfigError(f"uniform({self.low}, {self.high}): low must be below high")

    def describe(self) -> str:
        return f"uniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def __post_init__(self):
        if not 0 < self.low < self.high:
            raise ConfigError(f"loguniform({self.low}, {self.high}): need 0 < low < high")

    def describe(self) -> str:
        return f"loguniform({self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class Integer:
    """An integer from low to high, both included."""
    low: int
    high: int

    def __post_init__(self):
        if not self.low < self.high:
            raise ConfigError(f"integer({self.low}, {self.high}): low must be below high")

    def describe(self) -> str:
        return f"integer({self.low}..{self.high})"


@dataclass(frozen=True)
class Choice:
    values: tuple

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))
        if len(self.values) < 2 or len(set(map(repr, self.values))) != len(self.values):
            raise ConfigError(f"choice{self.values}: needs two or more distinct values")

    def describe(self) -> str:
        return "choice(" + ", ".join(map(str, self.values)) + ")"


DOMAINS = (Uniform, LogUniform, Integer, Choice)


@dataclass(frozen=True)
class ASHA:
    """Asynchronous successive halving (Tune's ASHAScheduler), in epochs: a candidate is judged
    at grace_period, grace_period x reduction_factor, ... epochs (fractions work when records
    are per step) and stopped if its validation score is below the top 1/reduction_factor of
    those judged there before it. A run is never stopped at its last record: it has trained
    as long as a finished one. max_t: the runs' epochs (the stage's `epochs`)."""
    grace_period: float = 1.0
    reduction_factor: float = 3.0

    def __post_init__(self):
        if self.grace_period <= 0 or self.reduction_factor <= 1:
            raise ConfigError(f"asha: need grace_period > 0 and reduction_factor > 1 "
                              f"(got {self.grace_period}, {self.reduction_factor})")

    def describe(self) -> str:
        return f"ASHA (grace period {self.grace_period:g} epochs, reduction factor {self.reduction_factor:g})"


@dataclass(frozen=True)
class TuneSearch:
    """`space`: ((config key, domain), ...); `num_samples` candidates from `searcher`, each one
    run; `scheduler`: None (every candidate trains to the end) or ASHA; `seed`: the searcher's
    random state, so that the same study samples the same candidates."""
    space: tuple
    num_samples: int = 8
    searcher: str = "random"
    scheduler: ASHA | None = None
    metric: str = M.VAL_ACC         # chosen on validation data, never on the test set
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "space", tuple((k, d) for k, d in self.space))
        keys = [k for k, _ in self.space]
        if not keys or len(set(keys)) != len(keys):
            raise ConfigError(f"a Tune search needs a space of distinct keys, got {keys}")
        unknown = [k for k in keys if k not in FIELDS or k == SEED]
        if unknown:
            raise ConfigError(f"search space: unknown key(s) {unknown} (the seed is the stage's)")
        wrong = [k for k, d in self.space if not isinstance(d, DOMAINS)]
        if wrong:
            raise ConfigError(f"search space: {wrong} need a domain: Uniform, LogUniform, Integer or Choice")
        continuous = [k for k, d in self.space if k in DATA_KEYS and not isinstance(d, Choice)]
        if continuous:  # every data set is prepared before the search starts
            raise ConfigError(f"search space: data settings {continuous} must be a Choice")
        if self.scheduler is not None and "epochs" in keys:
            raise ConfigError("search space: epochs with ASHA: the scheduler decides how long candidates train")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.searcher not in SEARCHERS:
            raise ConfigError(f"searcher={self.searcher!r}: choose from {', '.join(SEARCHERS)}")
        if self.searcher == "optuna" and importlib.util.find_spec("optuna") is None:
            raise ConfigError(f"searcher=optuna needs Optuna: {OPTUNA_HINT}")
        if self.metric not in (M.VAL_ACC, M.VAL_LOSS):
            raise ConfigError(f"a search chooses on validation data: metric={self.metric!r}")

    @property
    def mode(self) -> str:
        return "max" if self.metric == M.VAL_ACC else "min"

    def most_trials(self, repeats: int) -> int:
        """Every candidate is one run, whatever the study's repeats (the final stage has them)."""
        return self.num_samples

    def data_configs(self, base: dict) -> set[DataConfig]:
        """Every DataConfig a candidate can have: the base's with each combination of the
        data settings' choices."""
        return data_configs(base, {k: d.values for k, d in self.space if k in DATA_KEYS})

    def values_of(self, key: str) -> set:
        """The values of `key` a candidate can have: a Choice's (e.g. the archs whose
        packages a cluster's workers need), none for a continuous domain or another key."""
        domain = dict(self.space).get(key)
        return set(domain.values) if isinstance(domain, Choice) else set()

    def describe(self) -> str:
        """What varies in the stage, for the report's table of stages."""
        how = "random search" if self.searcher == "random" else "Optuna's TPE"
        stop = f", stopped early by {self.scheduler.describe()}" if self.scheduler else ""
        return (f"{how} of {self.num_samples} candidates (one run each){stop}, chosen on {self.metric} among "
                f"those that completed: " + ", ".join(f"{k} {d.describe()}" for k, d in self.space))

    def plan_lines(self, stage: str, repeats: int) -> list[str]:
        how = {"random": "random search (Tune's BasicVariantGenerator)",
               "optuna": "Optuna's TPE (Tune's OptunaSearch)"}[self.searcher]
        lines = [f"stage {stage}: {how}, {self.num_samples} candidates of one run each (the stage's seed), "
                 f"searcher seed {self.seed}; chosen on {self.metric} among the candidates that completed",
                 "  early stop: " + (self.scheduler.describe() if self.scheduler else "none (every candidate "
                                                                                    "trains to the end)")]
        return lines + [f"  {k:<14} {d.describe()}" for k, d in self.space]


def check_searches(study) -> None:
    """A Study.check for a study with TuneSearch stages, refusing what would be ignored: a
    user's value of a key the space samples (`lr=0.05`, `final.lr=0.05`: the candidates
    sample it, a later stage trains the value chosen), and ASHA whose grace period is not
    below the runs' epochs (its first rung would be the last record, which it never stops)."""
    for stage in study.stages:
        if not isinstance(stage.search, TuneSearch):
            continue
        searched = dict(stage.search.space)
        names = [s.name for s in study.stages]
        from_here = set(names[names.index(stage.name):])  # the search and the stages after it
        for raw_key, raw in study.user:
            scope, _, key = raw_key.rpartition(".")
            key = AXIS_ALIASES.get(key, key)
            if key in searched and (not scope or scope in from_here):
                raise ConfigError(f"{raw_key}={raw}: stage {stage.name} searches {key} "
                                  f"({searched[key].describe()}) and later stages train the value it chooses, "
                                  f"so a value set here would be ignored")
        asha, epochs = stage.search.scheduler, study.stage_config(stage).train.epochs
        if asha is not None and asha.grace_period >= epochs:
            raise ConfigError(f"stage {stage.name}: ASHA's grace period ({asha.grace_period:g} epochs) is not below "
                              f"the runs' {epochs} epoch(s), so it could stop no candidate; lower it "
                              f"(early_stop=asha:grace_period=G) or early_stop=none")


def parse_early_stop(text: str) -> ASHA | None:
    """'none', 'asha' or 'asha:grace_period=0.5:reduction_factor=2' (the study option
    early_stop's value; not `scheduler`, the learning-rate schedule's config key)."""
    name, *params = str(text).strip().split(":")
    if name == "none" and not params:
        return None
    if name != "asha":
        raise ConfigError(f"early_stop={text!r}: choose none or asha[:grace_period=G][:reduction_factor=R]")
    known = {f.name for f in fields(ASHA)}
    values = {}
    for p in params:
        key, eq, raw = p.partition("=")
        if not eq or key not in known:
            raise ConfigError(f"early_stop={text!r}: asha takes {', '.join(sorted(known))} as key=value")
        try:
            values[key] = float(raw)
        except ValueError:
            raise ConfigError(f"early_stop={text!r}: {key}={raw!r} is not a number") from None
        if not math.isfinite(values[key]):
            raise ConfigError(f"early_stop={text!r}: {key} must be finite")
    return ASHA(**values)


__all__ = ["ASHA", "Choice", "Integer", "LogUniform", "SEARCHERS", "TuneSearch", "Uniform", "check_searches",
           "parse_early_stop"]
