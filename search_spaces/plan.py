"""What trains: the runs that serve a stage's trials (search_spaces.study.Trial). Trials
with identical configs share one run, and with a stage's `prefix="epochs"` runs that differ
only in their length share the longest one (`plan_runs`).

    runs = plan_runs(study.stage_trials(stage, {}), stage.prefix)
    [(r.name, [t.name for t in r.trials]) for r in runs]
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from workloads.components import SCHEDULERS
from workloads.config import ConfigError, TrialConfig

if TYPE_CHECKING:
    from search_spaces.study import Trial


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
