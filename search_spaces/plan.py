"""A study resolved once into what it will train: stages -> trials -> runs.

    plan = study.plan                        # built once per resolved study, then read by
    plan["part3"].runs                       # the driver, data preparation, `plan`, `list`
    plan.count(), plan.data_configs()        # "50", every data set known before anything runs

A stage is one of four kinds (KINDS): a grid over config keys, named variants of a base,
a grid derived from earlier stages' results (known only when they end), or a search that
asks for its trials as results come in. Trials with identical configs share one run, and
with a stage's `prefix="epochs"` runs that differ only in their length share the longest
one (`plan_runs`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from workloads.components import SCHEDULERS
from workloads.config import ConfigError, TrialConfig

if TYPE_CHECKING:
    from search_spaces.study import Stage, Study, Trial

# What each kind of stage knows before anything runs, in words (`plan` prints it).
KINDS = {
    "grid": "a grid over config keys, repeated with seeds",
    "variants": "named changes of the study's base, repeated with seeds",
    "derived": "a grid computed from earlier stages' results when they end",
    "search": "trials a searcher asks for as results come in",
}


def kind_of(stage: "Stage") -> str:
    if stage.search is not None:
        return "search"
    if stage.derive is not None:
        return "derived"
    return "variants" if stage.variants else "grid"


@dataclass(frozen=True)
class StagePlan:
    """One stage of a plan: its trials and runs where they are known before anything runs
    (grid, variants); empty for a derived or a search stage, whose runs come later."""
    stage: "Stage"
    kind: str
    trials: tuple = ()
    runs: tuple = ()

    @property
    def known(self) -> bool:
        return self.kind in ("grid", "variants")

    def given(self, study: "Study", earlier) -> "StagePlan":
        """This stage's trials and runs once the stages before it have ended (`earlier`: their
        results by stage): a derived stage computes its grid now; a known one is itself."""
        if self.kind != "derived":
            return self
        trials = tuple(study.stage_trials(self.stage, earlier))
        taken = {t.group: p.stage.name for p in study.plan.stages if p.known for t in p.trials}
        taken.update({r.group: name for name, records in earlier.items() for r in records})
        check_trials(study, self.stage.name, trials, taken)
        return replace(self, trials=trials, runs=tuple(plan_runs(list(trials), self.stage.prefix)))


@dataclass(frozen=True)
class Plan:
    study: "Study"
    stages: tuple           # (StagePlan, ...), in the study's order

    def __getitem__(self, name: str) -> StagePlan:
        for p in self.stages:
            if p.stage.name == name:
                return p
        raise KeyError(name)

    def count(self) -> str:
        """Runs per stage, as `list` shows them: "50", "18+4+?" (derived), "<=19" (a search)."""
        return "+".join(str(len(p.runs)) if p.known else
                        f"<={p.stage.search.most_trials(self.study.repeats)}" if p.kind == "search" else "?"
                        for p in self.stages)

    def data_configs(self) -> list:
        """Every DataConfig a run can have that is known before anything runs, in the order
        the stages need them (the first stage's data is prepared first)."""
        out: dict = {}
        for p in self.stages:
            if p.known:
                out.update(dict.fromkeys(r.config.data for r in p.runs))
            elif p.kind == "search":
                out.update(dict.fromkeys(p.stage.search.data_configs(self.study.stage_config(p.stage).to_flat())))
        return list(out)

    def lines(self) -> list[str]:
        """What `plan` prints: per stage its runs and what varies between them."""
        study = self.study
        lines = [f"{study.name}: {study.description}"]
        for p in self.stages:
            if p.kind == "search":
                lines += p.stage.search.plan_lines(p.stage.name, study.repeats)
                continue
            if not p.known:
                lines.append(f"stage {p.stage.name}: {KINDS[p.kind]}")
                continue
            n_trials, runs = len(p.trials), p.runs
            lines.append(f"stage {p.stage.name}: {len(runs)} trials" +
                         (f", {n_trials} results" if n_trials != len(runs) else ""))
            flats = [r.config.to_flat() for r in runs]
            base = flats[0]
            varying = sorted({k for flat in flats for k, v in flat.items() if v != base[k]})
            lines.append("  shared: " + ", ".join(f"{k}={v}" for k, v in base.items() if k not in varying))
            for r, flat in zip(runs, flats):
                serves = [t.name for t in r.trials[1:]]
                lines.append(f"  {r.name:<24} " + " ".join(f"{k}={flat[k]}" for k in varying)
                             + (f"  (also serves {', '.join(serves)})" if serves else ""))
        return lines


def plan_of(study: "Study") -> Plan:
    """The plan of a resolved study; a refused prefix sharing or a group name two stages
    share is refused here, before anything runs."""
    stages, groups = [], {}
    for stage in study.stages:
        kind = kind_of(stage)
        if kind == "search":
            study.stage_config(stage)  # where the search starts: checked now too
            stages.append(StagePlan(stage, kind))
            continue
        if kind == "derived":
            stages.append(StagePlan(stage, kind))
            continue
        trials = tuple(study.stage_trials(stage, {}))
        check_trials(study, stage.name, trials, groups)
        stages.append(StagePlan(stage, kind, trials, tuple(plan_runs(list(trials), stage.prefix))))
    return Plan(study, tuple(stages))


def check_trials(study: "Study", stage: str, trials, taken: dict) -> None:
    """Refuses a stage's trials whose group another stage has (`taken`: group -> stage, to
    which this stage's groups are added) or two of one name with different configs (values
    whose labels collide: `a.own_model:small` and `b.own_model:small` are both own_model.small)."""
    configs: dict = {}
    for t in trials:
        if taken.setdefault(t.group, stage) != stage:
            raise ConfigError(f"study {study.name}: group {t.group!r} is in stages {taken[t.group]} and "
                              f"{stage}; group names must be unique")
        first = configs.setdefault(t.name, t.config)
        if first != t.config:
            a, b = first.to_flat(), t.config.to_flat()
            differ = ", ".join(f"{k}={a[k]} and {k}={b[k]}" for k in a if a[k] != b[k])
            raise ConfigError(f"stage {stage}: two trials are named {t.name} ({differ}); give them names "
                              f"that differ (a stage's group_name, or modules whose last names differ)")


@dataclass(frozen=True)
class Run:
    """What trains: one config (one Tune trial, or one member of a pack) serving one or
    more trials: those with this very config, and with prefix sharing the shorter ones."""
    config: TrialConfig
    trials: tuple

    @property
    def name(self) -> str:
        return self.trials[0].name


def plan_runs(trials: list[Trial], prefix: str = "") -> list[Run]:
    """The runs that serve `trials`, in the order of each run's first trial. Identical
    configs train once. With prefix="epochs", trials that differ only in `epochs` are
    served by the longest one, which scores the others' results at the end of their
    epochs (snapshot_epochs): exact only when nothing in a run depends on its length,
    so a schedule that does is refused here."""
    def key(cfg: TrialConfig):
        return replace(cfg, train=replace(cfg.train, epochs=1, snapshot_epochs=())) if prefix else cfg
    served: dict = {}
    for t in trials:
        served.setdefault(key(t.config), []).append(t)
    runs = []
    for group in served.values():
        longest = max(group, key=lambda t: t.config.train.epochs)
        shorter = tuple(sorted({t.config.train.epochs for t in group} - {longest.config.train.epochs}))
        cfg = longest.config
        if shorter:
            _check_prefix(cfg)
            cfg = cfg.override({"snapshot_epochs": shorter})
        ordered = sorted(group, key=lambda t: -t.config.train.epochs)  # the run is named after the longest
        runs.append((trials.index(group[0]), Run(cfg, tuple(ordered))))
    return [r for _, r in sorted(runs, key=lambda p: p[0])]


def _check_prefix(cfg: TrialConfig) -> None:
    t = cfg.train
    why = None
    if SCHEDULERS.parse(t.scheduler).length_dependent:
        why = f"scheduler={t.scheduler} depends on the run's length"
    elif t.record_unit != "epoch":
        why = "its records are per step (record_unit=epoch is needed)"
    elif t.record_every != 1:
        why = f"record_every={t.record_every} skips some epochs"
    if why:
        raise ConfigError(f"cannot share prefixes of runs of different epochs: {why}")
