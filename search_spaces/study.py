"""What a study is, as data: stages of grids over config keys or of named
variants of one base, repeated with seeds, grouped for aggregation.

    study = get_study("part3").with_overrides({"repeats": "2"})
    [t.name for t in study.plan["part3"].trials]   # ['mlp_1_r0', 'mlp_1_r1', 'mlp_2_r0', ...]
    study.plan["part3"].runs                       # what actually trains (search_spaces/plan.py)

A stage's grid may be computed from earlier stages' results (`derive`), which
is how learning-rate schedules follow plateaus. A trial is what a study asks
for (a group's repeat); a run is what trains: trials with identical configs
share one run, and with a stage's `prefix="epochs"` runs that differ only in
their length share the longest one, which scores the shorter ones' results at
their last epoch (`snapshot_epochs`).

Overrides (`with_overrides`, the command line's key=value): a config key sets the
base of every stage (or restricts a grid axis of that name), `STAGE.key` sets or
restricts it in that stage alone (`part3.epochs=2`; `STAGE.repeats=N` sets a stage's own
repeats, which `repeats=N` leaves alone where a stage has them), and a study may name options
of its own (`Study.options`, e.g. elec5307's `sid`), each a function of the study. A list of
values (`lr=0.01,0.001`) on a key that is no axis adds one to every stage (`STAGE.key=a,b` to
one): each group at each value, named `<group>_lr0.01` (a text value: `<group>_adam`); the
keys whose one value is a list (LIST_FIELDS: `augment=flip,crop`, `metrics`, `spec`) and
tuples (`lr_schedule`, `snapshot_epochs`) keep their meaning.

A stage with `search` (search_spaces/search.py) has no grid: a one-setting-at-a-time
search asks for its trials as results come in (orchestrator/search_stage.py), and a
later stage may derive from what it chose (`search.best_of`).
"""
from __future__ import annotations

import importlib
import itertools
from functools import cached_property
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from workloads import metrics as M
from search_spaces.axes import (AXIS_ALIASES, SEEDS_ARE_REPEATS, is_value_list, label, restrict, stage_override,
                                with_axis)
from search_spaces.plan import Plan, plan_of
from workloads.config import FIELD_TYPES, FIELDS, SEED, ConfigError, TrialConfig, coerce
from workloads.imported import importable_here

# Study-level keys a user may override beside every TrialConfig field.
STUDY_KEYS = ("repeats",)


@dataclass(frozen=True)
class Trial:
    stage: str
    group: str        # what aggregation averages over repeats within
    repeat: int
    config: TrialConfig
    changes: str = ""  # what the group changes, in words ("batch_size=1", a variant's note)

    @property
    def name(self) -> str:
        return f"{self.group}_r{self.repeat}"

    def to_param(self) -> dict:
        """The dict Tune stores as this trial's config: meta keys plus the flat config."""
        return {"stage": self.stage, "group": self.group, "repeat": self.repeat,
                **self.config.to_flat()}


@dataclass(frozen=True)
class Variant:
    """A named change of a study's base: one group of a variants stage."""
    name: str
    # ((key, value), ...), or fn(the stage's flat config) -> {key: value}: a change relative to
    # the base (resnet's widths, half and twice the base's, also when --quick narrows the base)
    changes: tuple | Callable[[dict], dict] = ()
    note: str = ""                # what it changes, in words (else the changes themselves)

    def __post_init__(self):
        if callable(self.changes):
            if not self.note:
                raise ConfigError(f"variant {self.name}: changes computed from the base need a note")
            return
        for key, _ in self.changes:
            if key not in FIELDS:
                raise ConfigError(f"variant {self.name}: unknown key {key!r}")

    def applied(self, cfg: TrialConfig) -> TrialConfig:
        return cfg.override(self.changes(cfg.to_flat()) if callable(self.changes) else dict(self.changes))

    @property
    def describes(self) -> str:
        return self.note or ", ".join(f"{k}={v}" for k, v in self.changes) or "the base"


@dataclass(frozen=True)
class Figure:
    """A figure a study's report draws: some groups' curves, one panel per metric."""
    name: str                     # the file: <name>.png
    title: str
    groups: tuple = ()            # group names, in legend order; (): every group
    metrics: tuple = (M.LOSS, M.TRAIN_ACC, M.TEST_ACC)
    log: tuple = ()               # metrics drawn on a log scale
    overlay: tuple = ()           # metrics drawn together in one more panel (training against test)


@dataclass(frozen=True)
class Report:
    """What a study's report is, by name: `function` ("results.reports:part3_report") is
    called as function(results, out_dir, study, **dict(args)) when the sweep ends, so that
    defining a study imports no plotting code; `stages` are those it reads (checked to exist
    when the study is built)."""
    function: str
    stages: tuple = ()
    args: tuple = ()              # ((keyword, value), ...) the study hands its report

    def __post_init__(self):
        module, colon, name = self.function.partition(":")
        if not (module and colon and name.isidentifier()):
            raise ConfigError(f"report {self.function!r}: expected 'package.module:function'")

    def resolve(self) -> Callable:
        module, _, name = self.function.partition(":")
        importable_here()
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Stage:
    name: str
    axes: tuple = ()              # ((key, (value, ...)), ...): a grid, first key outermost
    fixed: tuple = ()             # ((key, value), ...): this stage's settings
    variants: tuple = ()          # (Variant, ...): named groups; with axes, each variant at every point
    # (earlier stages' results) -> {key: value or [values]} applied on top of fixed/axes
    derive: Callable[[Mapping[str, Any]], dict] | None = None
    prefix: str = ""              # "epochs": shorter runs are prefixes of the longest (see plan_runs)
    group_name: Callable[[dict], str] | None = None  # a grid point {key: value} -> its group's name
    search: Any = None            # a search_spaces.search.Search: trials asked for as results come in
    # Repeats of each of this stage's groups; 0: the study's `repeats` (part5's Adam reference
    # keeps part3's 10 whatever the other stages take). `STAGE.repeats=N` sets it.
    repeats: int = 0

    def __post_init__(self):
        for key, _ in self.axes + self.fixed:
            if key not in FIELDS:
                raise ConfigError(f"stage {self.name}: unknown key {key!r}")
        if SEED in dict(self.axes):
            raise ConfigError(f"stage {self.name}: axis {SEED}: {SEEDS_ARE_REPEATS}")
        if self.prefix not in ("", "epochs"):
            raise ConfigError(f"stage {self.name}: prefix={self.prefix!r}: only 'epochs' can be shared")
        if self.search is not None and (self.axes or self.variants or self.derive or self.prefix or self.repeats):
            raise ConfigError(f"stage {self.name}: a search stage has no axes, variants, derive, prefix or repeats")
        if self.repeats < 0:
            raise ConfigError(f"{self.name}.repeats must be >= 1 (0 = the study's), got {self.repeats}")

    @property
    def planned(self) -> bool:
        """Its trials are known before anything runs (no derive, no search)."""
        return self.derive is None and self.search is None


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    stages: tuple
    base: tuple = ()              # ((key, value), ...): what differs from component defaults
    repeats: int = 1
    quick: tuple = ()             # overrides --quick applies before the user's
    report: Report | None = None  # the report the sweep writes when it ends
    user: tuple = ()              # the user's overrides, kept for the record
    # (study) -> None, raising ConfigError for settings this study cannot run
    # (e.g. an architecture the assignment excludes); run by with_overrides.
    check: Callable | None = None
    # What picks a group's best run (its final record's value). Validation accuracy: the
    # test set is scored to report, never to choose, unless an assignment says otherwise.
    select: str = M.VAL_ACC
    select_why: str = ""          # why a study selects by test accuracy (its report says so)
    # What the report compares each group with: a group's name (every other group against it),
    # or "key=value" (each group against the one with that setting, otherwise the same).
    reference: str = ""
    figures: tuple = ()           # (Figure, ...) the report draws besides its tables
    # ((name, fn(study, raw value) -> Study), ...): keys of this study alone, applied after
    # the config overrides of the same call (elec5307's `sid` keeps the families it assigns).
    options: tuple = ()
    source: str = ""              # the study file it was read from (search_spaces/files.py), if any
    text: str = ""                # that file's content, kept with every sweep of it

    def __post_init__(self):
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"study {self.name}: stage names repeat: {names}")
        if self.select not in (M.VAL_ACC, M.TEST_ACC):
            raise ConfigError(f"study {self.name}: select={self.select!r}: choose {M.VAL_ACC} or {M.TEST_ACC}")
        missing = [s for s in (self.report.stages if self.report else ()) if s not in names]
        if missing:
            raise ConfigError(f"study {self.name}: its report reads stages {missing} it does not have")
        hiding = [name for name, _ in self.options if name in FIELDS or name in STUDY_KEYS]
        if hiding:  # with_overrides would read `key=value` as one or the other, never both
            raise ConfigError(f"study {self.name}: option(s) {hiding} are also config keys; rename the option")

    def with_source(self, path: str, text: str) -> "Study":
        return replace(self, source=path, text=text)

    def base_config(self) -> TrialConfig:
        return TrialConfig().override(dict(self.base))

    def with_overrides(self, values: Mapping[str, str], quick: bool = False) -> "Study":
        """Apply `key=value` overrides: study keys, axis restrictions, config fields; with
        `quick`, --quick's own (`Study.quick`) first, a user's value of the same key winning.
        The result is checked and planned once (`Study.plan`)."""
        study, base = self, dict(self.base)
        axis_keys = {k for s in self.stages for k, _ in s.axes}
        stages = list(self.stages)
        options, chosen_options = dict(self.options), []
        for raw_key, raw in ({**dict(self.quick), **values} if quick else values).items():
            key = AXIS_ALIASES.get(raw_key, raw_key)
            scope, dot, scoped = key.partition(".")
            if key == "repeats":
                study = replace(study, repeats=coerce(key, raw, int))
            elif key in options:
                chosen_options.append((key, raw))
            elif dot and scope in {s.name for s in stages}:
                stages = [stage_override(s, AXIS_ALIASES.get(scoped, scoped), raw) if s.name == scope else s
                          for s in stages]
            elif key in axis_keys:
                stages = [restrict(s, key, raw) for s in stages]
            elif is_value_list(key, raw):
                stages = [with_axis(s, key, raw) for s in stages]
            elif key in FIELDS:
                base[key] = coerce(key, raw, FIELD_TYPES[key])  # parsed here, once
                # A user's value wins over what a stage fixes.
                stages = [replace(s, fixed=tuple((k, v) for k, v in s.fixed if k != key)) for s in stages]
            else:
                known = set(FIELDS) | set(STUDY_KEYS) | axis_keys | set(options)
                raise ConfigError(f"unknown key {raw_key!r} for study {self.name}; "
                                  f"known: {', '.join(sorted(known))}, or STAGE.key")
        study = replace(study, base=tuple(base.items()), stages=tuple(stages),
                        user=self.user + (tuple(dict(self.quick).items()) if quick else ()) + tuple(values.items()))
        for key, raw in chosen_options:
            study = options[key](study, raw)
        if study.select == M.VAL_ACC and not study.base_config().data.val_per_class:
            raise ConfigError(f"study {study.name}: val_per_class=0 leaves no validation split, and the "
                              f"study picks its best runs on validation accuracy")
        study.base_config()  # typed and range-checked now, before any work starts
        study.plan  # noqa: B018 (planned once: runs, prefix sharing and group names checked now)
        if study.check is not None:
            study.check(study)
        return study

    @cached_property
    def plan(self) -> Plan:
        """Stages -> trials -> runs, computed once for this (resolved, frozen) study."""
        return plan_of(self)

    def with_quick(self) -> "Study":
        return self.with_overrides({}, quick=True)

    def stage_repeats(self, stage: Stage) -> int:
        return stage.repeats or self.repeats

    def stage_config(self, stage: Stage) -> TrialConfig:
        """The study's base with what the stage fixes: a search starts from it."""
        return self.base_config().override(dict(stage.fixed))

    def stage_trials(self, stage: Stage, earlier: Mapping[str, Any]) -> list[Trial]:
        """Every trial of `stage`: grid points x repeats, seeds as the inner axis."""
        if stage.search is not None:
            raise ConfigError(f"stage {stage.name}: a search asks for its trials as it runs")
        cfg = self.stage_config(stage)
        axes = dict(stage.axes)
        if stage.derive is not None:
            for key, value in stage.derive(earlier).items():
                if isinstance(value, list):
                    axes[key] = tuple(value)
                else:
                    axes.pop(key, None)
                    cfg = cfg.override({key: value})
        keys = list(axes)
        grid = []
        for values in itertools.product(*(axes[k] for k in keys)):
            point = dict(zip(keys, values))
            name = stage.group_name(point) if stage.group_name else "_".join(label(v) for v in values)
            grid.append((name, point, ", ".join(f"{k}={v}" for k, v in point.items())))
        if stage.variants:  # each variant at every grid point (the point wins: the user asked for it)
            points = [("_".join(filter(None, (v.name, name))), ", ".join(filter(None, (v.describes, said))),
                       v.applied(cfg).override(point)) for v in stage.variants for name, point, said in grid]
        else:
            points = [(name or stage.name, said, cfg.override(point)) for name, point, said in grid]
        trials = []
        for group, changes, point_cfg in points:
            for r in range(self.stage_repeats(stage)):
                seeded = point_cfg.override({SEED: point_cfg.train.seed + r})
                trials.append(Trial(stage.name, group, r, seeded, changes))
        return trials
