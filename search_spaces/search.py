"""A search stage as data: settings tried one at a time, each value a change of the
current best configuration, chosen on validation accuracy (orchestrator/coordinate.py
is the Ray Tune searcher that runs it; orchestrator/search_stage.py the stage).

    SEARCH = Search((Setting("batch_size", (("4", (("batch_size", 4),)), ("8", (("batch_size", 8),)))),
                     Setting("depth", (("deeper", add_conv),))))      # add_conv(best flat config) -> changes
    Stage("search", search=SEARCH, fixed=(("score_test", False),))
    Stage("final", derive=best_of("search"), fixed=(("score_test", True),))

Kept free of Ray and torch, like every study module: the searcher is built from this
by the driver. A search stage's results are a SearchRecords: its RunRecords, in the
order they were asked for, with what the search decided (`history`, `best`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from workloads import metrics as M
from workloads.config import FIELDS, SEED, ConfigError, DataConfig, TrialConfig

DATA_KEYS = frozenset(k for k, section in FIELDS.items() if section == "data")


def data_configs(base: dict, options: dict) -> set[DataConfig]:
    """The base's DataConfig and that of every combination of `options` ({data key: values}):
    what a search stage prepares before it starts, as it cannot know which it will ask for."""
    out = {TrialConfig.from_flat(base).data}
    for combo in itertools.product(*options.values()):
        try:
            out.add(TrialConfig.from_flat({**base, **dict(zip(options, combo))}).data)
        except ConfigError:
            pass  # a combination no trial can have
    return out


@dataclass(frozen=True)
class Setting:
    """One step of a search: a setting and its values, tried in this order."""
    name: str
    # ((label, changes), ...): changes are ((key, value), ...), or fn(the current best flat
    # config) -> {key: value} when a value is relative to earlier choices (a deeper net keeps
    # the width chosen before). Such a function must be importable: Tune pickles the searcher.
    values: tuple

    def __post_init__(self):
        labels = [label for label, _ in self.values]
        if not labels or len(set(labels)) != len(labels):
            raise ConfigError(f"setting {self.name}: value labels must be unique and at least one: {labels}")
        for label, changes in self.values:
            if callable(changes):
                continue
            unknown = [k for k, _ in changes if k not in FIELDS or k == SEED]
            if unknown:
                raise ConfigError(f"setting {self.name}, value {label}: unknown key(s) {unknown}")


@dataclass(frozen=True)
class Search:
    """One setting at a time from the stage's config. The current value stays unless a
    challenger's mean validation accuracy beats it by more than the noise: the standard
    error of the difference of the two means (repeats >= 2), else `margin`."""
    settings: tuple                 # (Setting, ...)
    margin: float = 0.005           # the noise with one repeat: half a point of accuracy
    metric: str = M.VAL_ACC         # chosen on validation data, never on the test set

    def __post_init__(self):
        if not self.settings:
            raise ConfigError("a search needs at least one setting")
        if self.metric not in (M.VAL_ACC, M.VAL_LOSS):
            raise ConfigError(f"a search chooses on validation data: metric={self.metric!r}")

    def most_trials(self, repeats: int) -> int:
        """Trials if no value were reused: the base, then every value of every setting."""
        return repeats * (1 + sum(len(s.values) for s in self.settings))

    def data_configs(self, base: dict) -> set[DataConfig]:
        """Every DataConfig the search can ask for, prepared before it starts: the base's
        with any combination of the data settings its values name (so computed values may
        not change data settings)."""
        options: dict = {}
        for s in self.settings:
            for _, changes in s.values:
                if not callable(changes):
                    for k, v in canonical(base, changes).items():
                        if k in DATA_KEYS:
                            options.setdefault(k, [base[k]]).append(v)
        return data_configs(base, options)

    def values_of(self, key: str) -> set:
        """The values of `key` the search's values set (e.g. the archs whose packages a
        cluster's workers need); a value computed from the best so far is not known here."""
        return {v for s in self.settings for _, changes in s.values if not callable(changes)
                for k, v in changes if k == key}

    def describe(self) -> str:
        """What varies in the stage, for the report's table of stages."""
        return f"one setting at a time, chosen on {self.metric}: " + ", ".join(s.name for s in self.settings)

    def plan_lines(self, stage: str, repeats: int) -> list[str]:
        """What `plan` says of a search stage: its settings and values, in order."""
        lines = [f"stage {stage}: one setting at a time on {self.metric} (mean of {repeats} repeat(s); "
                 f"at most {self.most_trials(repeats)} trials, fewer as values are reused)"]
        return lines + [f"  {s.name:<14} " + ", ".join(label for label, _ in s.values) for s in self.settings]


def canonical(base: dict, changes) -> dict:
    """Changes as configs store them (registry specs in canonical form), so that a value
    equal to the current best is recognised as it."""
    changes = dict(changes)
    try:
        flat = TrialConfig.from_flat({**base, **changes}).to_flat()
    except ConfigError:
        return changes  # the searcher's validate refuses it, with the reason
    return {k: flat[k] for k in changes}


class SearchRecords(list):
    """A search stage's RunRecords, in the order they were asked for, with the search's
    decisions: `history` (CoordinateSearch.history(): per setting, every value's validation
    mean, spread and n, and which was chosen), `best` (the flat config it ended with) and
    `base` (the one it started from)."""

    def __init__(self, records=(), history=(), best=None, base=None):
        super().__init__(records)
        self.history, self.best, self.base = list(history), dict(best or {}), dict(base or {})

    def replaced(self, records) -> "SearchRecords":
        """The same decisions over other records (the same runs, say without their weights)."""
        return SearchRecords(records, self.history, self.best, self.base)

    def best_changes(self) -> dict:
        """What the search changed in its base (the seed is a repeat's, not a choice)."""
        return {k: v for k, v in self.best.items() if k != SEED and self.base.get(k) != v}


def _best_of(stage: str, earlier, seed_offset: int | None = None) -> dict:
    found = earlier.get(stage)
    if not isinstance(found, SearchRecords):
        raise ConfigError(f"stage {stage!r} is not a search stage that ran before this one")
    if seed_offset is None:
        return found.best_changes()
    return {**found.best_changes(), SEED: found.base[SEED] + seed_offset}


def best_of(stage: str, seed_offset: int | None = None) -> Callable[[Any], dict]:
    """A Stage.derive: the configuration the search stage `stage` chose; with `seed_offset`,
    on seeds that far above the search's own (its seed + offset + repeat), so that they stay
    new whatever seed the user sets (`check_fresh_seeds` refuses STAGE.seed= on such a stage)."""
    return partial(_best_of, stage, seed_offset=seed_offset)


def check_fresh_seeds(study) -> None:
    """A Study.check: a stage trained on seeds above its search's (best_of with seed_offset)
    refuses a seed of its own, which the derive would silently replace."""
    for stage in study.stages:
        derive = stage.derive
        offset = derive.keywords.get("seed_offset") if isinstance(derive, partial) and derive.func is _best_of \
            else None
        if offset is not None and any(key == f"{stage.name}.{SEED}" for key, _ in study.user):
            raise ConfigError(f"{stage.name}.{SEED}: stage {stage.name}'s seeds follow the search's (its seed "
                              f"+ {offset}, + {offset + 1}, ...), so that none is a candidate's; set {SEED}= "
                              f"to move both")
