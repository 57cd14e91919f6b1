"""What a study is, as data: stages of grids over config keys, repeated with
seeds, grouped for aggregation.

    study = STUDIES["part3"]
    trials = study.with_overrides({"repeats": "2"}).stage_trials(study.stages[0], {})
    [t.name for t in trials]   # ['mlp_1_r0', 'mlp_1_r1', 'mlp_2_r0', ...]

A stage's grid may be computed from earlier stages' results (`derive`), which
is how learning-rate schedules follow plateaus and coordinate searches move
one key at a time.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from workloads.config import FIELD_TYPES, FIELDS, ConfigError, TrialConfig, coerce

# Study-level keys a user may override beside every TrialConfig field.
STUDY_KEYS = ("repeats",)
AXIS_ALIASES = {"archs": "arch"}


@dataclass(frozen=True)
class Trial:
    stage: str
    group: str        # what aggregation averages over repeats within
    repeat: int
    config: TrialConfig

    @property
    def name(self) -> str:
        return f"{self.group}_r{self.repeat}"

    def to_param(self) -> dict:
        """The dict Tune stores as this trial's config: meta keys plus the flat config."""
        return {"stage": self.stage, "group": self.group, "repeat": self.repeat,
                **self.config.to_flat()}


@dataclass(frozen=True)
class Stage:
    name: str
    axes: tuple = ()              # ((key, (value, ...)), ...): a grid, first key outermost
    fixed: tuple = ()             # ((key, value), ...): this stage's settings
    # (earlier stages' results) -> {key: value or [values]} applied on top of fixed/axes
    derive: Callable[[Mapping[str, Any]], dict] | None = None

    def __post_init__(self):
        for key, _ in self.axes + self.fixed:
            if key not in FIELDS:
                raise ConfigError(f"stage {self.name}: unknown key {key!r}")


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    stages: tuple
    base: tuple = ()              # ((key, value), ...): what differs from component defaults
    repeats: int = 1
    quick: tuple = ()             # overrides --quick applies before the user's
    report: Callable | None = None  # (StudyResults, out_dir, study) -> None
    user: tuple = ()              # the user's overrides, kept for the record
    # (study) -> None, raising ConfigError for settings this study cannot run
    # (e.g. an architecture the assignment excludes); run by with_overrides.
    check: Callable | None = None

    def __post_init__(self):
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name}: stage names repeat: {names}")

    def base_config(self) -> TrialConfig:
        return TrialConfig().override(dict(self.base))

    def with_overrides(self, values: Mapping[str, str]) -> "Study":
        """Apply `key=value` overrides: study keys, axis restrictions, config fields."""
        study, base = self, dict(self.base)
        axis_keys = {k for s in self.stages for k, _ in s.axes}
        stages = list(self.stages)
        for raw_key, raw in values.items():
            key = AXIS_ALIASES.get(raw_key, raw_key)
            if key == "repeats":
                study = replace(study, repeats=coerce(key, raw, int))
            elif key in axis_keys:
                chosen = tuple(coerce(key, v, FIELD_TYPES[key]) for v in _split(raw))
                stages = [replace(s, axes=tuple((k, chosen if k == key else v) for k, v in s.axes))
                          for s in stages]
            elif key in FIELDS:
                base[key] = raw
                # A user's value wins over what a stage fixes.
                stages = [replace(s, fixed=tuple((k, v) for k, v in s.fixed if k != key)) for s in stages]
            else:
                raise ConfigError(f"unknown key {raw_key!r} for study {self.name}; "
                                  f"known: {', '.join(sorted(set(FIELDS) | set(STUDY_KEYS) | axis_keys))}")
        study = replace(study, base=tuple(base.items()), stages=tuple(stages),
                        user=self.user + tuple(values.items()))
        study.base_config()  # typed and range-checked now, before any work starts
        for stage in study.stages:
            if not stage.derive:
                study.stage_trials(stage, {})
        if study.check is not None:
            study.check(study)
        return study

    def with_quick(self) -> "Study":
        return self.with_overrides(dict(self.quick))

    def stage_trials(self, stage: Stage, earlier: Mapping[str, Any]) -> list[Trial]:
        """Every trial of `stage`: grid points x repeats, seeds as the inner axis."""
        cfg = self.base_config().override(dict(stage.fixed))
        axes = dict(stage.axes)
        if stage.derive is not None:
            for key, value in stage.derive(earlier).items():
                if isinstance(value, list):
                    axes[key] = tuple(value)
                else:
                    axes.pop(key, None)
                    cfg = cfg.override({key: value})
        keys = list(axes)
        trials = []
        for point in itertools.product(*(axes[k] for k in keys)):
            point_cfg = cfg.override(dict(zip(keys, point)))
            group = "_".join(_label(v) for v in point) or stage.name
            for r in range(self.repeats):
                seeded = point_cfg.override({"seed": point_cfg.train.seed + r})
                trials.append(Trial(stage.name, group, r, seeded))
        return trials


def _split(raw) -> list:
    return raw.split(",") if isinstance(raw, str) else list(raw)


def _label(value) -> str:
    return str(value).replace("/", "-")
