"""Stages that depend on earlier results: hand-made RunRecords go into
Study.stage_trials and the derived trials must carry the values the plateau
rule finds on the *mean over repeats* of the earlier stage."""
import numpy as np
import pandas as pd
import pytest

from results.aggregate import RunRecord, aggregate_groups
from results.plateau import RULE, find_plateau
from search_spaces import get_study
from search_spaces.study import Stage, Study
from workloads import metrics as M
from workloads.config import ConfigError

POINTS_PER_EPOCH = 10


def epochs_to(n: int) -> np.ndarray:
    return np.arange(1, n * POINTS_PER_EPOCH + 1) / POINTS_PER_EPOCH  # 0.1, 0.2, ..., n


def record(trial, val: np.ndarray, test_acc: float = 0.5) -> RunRecord:
    steps = np.arange(1, len(val) + 1) * 90  # 900 steps an epoch, a record every 90
    curves = pd.DataFrame({M.STEP: steps, M.EPOCH: steps / 900, M.VAL_ACC: val, M.LOSS: 1 - val})
    return RunRecord(trial.stage, trial.group, trial.repeat, trial.config.to_flat(), curves, test_acc, 1.0)


def stage(study, name):
    return next(s for s in study.stages if s.name == name)


def bump(e, start, stop, height):
    return ((e >= start) & (e < stop)) * height


# The 0.1 runs: each repeat alone would switch at 3 and 9; their mean rises
# linearly to epoch 6 and then stays flat, which the rule (a centred 1-epoch
# average) places at 6.5, so the switch is at 7.
E20 = epochs_to(20)
RISE = 0.08 * np.minimum(E20, 6)
HIGH_RATE = (RISE + bump(E20, 2, 3, 0.35) - bump(E20, 8, 9, 0.35),
             RISE - bump(E20, 2, 3, 0.35) + bump(E20, 8, 9, 0.35))
E1 = 7
# one_switch after e1: up from 0.3 by 0.05 an epoch to epoch 13, then flat.
# Before e1 it sits at 0.9, higher than anything after: it must not count.
E30 = epochs_to(30)
AFTER_SWITCH = np.where(E30 <= E1, 0.9, 0.3 + 0.05 * (np.minimum(E30, 13) - E1))
E2 = 14   # 13 + half the smoothing window, ceil


def rate_records(study, curves_by_lr):
    trials = study.stage_trials(stage(study, "rates"), {})
    return [record(t, curves_by_lr[t.config.train.lr][t.repeat]) for t in trials]


def test_the_hand_made_curves_mean_what_the_test_says():
    singles = [find_plateau(E20, c, RULE, lo=1, hi=28).switch_epoch for c in HIGH_RATE]
    assert singles == [3, 9]
    assert find_plateau(E20, np.mean(HIGH_RATE, axis=0), RULE, lo=1, hi=28).switch_epoch == E1
    assert find_plateau(E30, AFTER_SWITCH, RULE, after=E1, lo=E1 + 1, hi=29).switch_epoch == E2


def test_part5_schedules_are_derived_from_the_mean_curves():
    study = get_study("part5").with_overrides({"repeats": "2", "arch": "cnn_5"})
    flat = np.full_like(E20, 0.3)
    rates = rate_records(study, {0.1: HIGH_RATE, 0.01: (flat, flat), 0.001: (flat * 0.5, flat * 0.5)})

    one = study.stage_trials(stage(study, "one_switch"), {"rates": rates})
    assert [(t.group, t.repeat, t.config.train.seed) for t in one] == [
        ("one_switch", 0, 0), ("one_switch", 1, 1)]
    for t in one:
        assert t.config.train.lr == 0.1 and t.config.train.lr_schedule == ((E1, 0.01),)
        assert t.config.train.epochs == 30 and t.config.train.optimizer == "sgd"
        assert t.config.train.optimizer == "sgd" and t.config.model.arch == "cnn_5"  # no momentum

    earlier = {"rates": rates, "one_switch": [record(t, AFTER_SWITCH) for t in one]}
    two = study.stage_trials(stage(study, "two_switches"), earlier)
    assert [t.name for t in two] == ["two_switches_r0", "two_switches_r1"]
    for t in two:
        assert t.config.train.lr == 0.1
        assert t.config.train.lr_schedule == ((E1, 0.01), (E2, 0.001))
        assert t.config.train.epochs == 30 and t.config.model.arch == "cnn_5"


def test_second_switch_takes_e1_from_what_one_switch_ran():
    # The earlier stage's recorded config is the truth, not a recomputation.
    study = get_study("part5")
    rates = rate_records(study, {lr: (np.mean(HIGH_RATE, axis=0),) for lr in (0.1, 0.01, 0.001)})
    one = study.stage_trials(stage(study, "one_switch"), {"rates": rates})
    ran = [record(type(t)(t.stage, t.group, t.repeat, t.config.override({"lr_schedule": "5:0.01"})),
                  AFTER_SWITCH) for t in one]
    (t,) = study.stage_trials(stage(study, "two_switches"), {"rates": rates, "one_switch": ran})
    # after=5: the 0.9 stretch from 5 to 7 is the best part, so the curve never beats it.
    assert t.config.train.lr_schedule == ((5, 0.01), (6, 0.001))


def test_other_rates_move_the_schedule_with_them():
    study = get_study("part5").with_overrides({"lr": "0.2,0.05,0.002"})
    flat = np.full_like(E20, 0.3)
    rates = rate_records(study, {0.2: (np.mean(HIGH_RATE, axis=0),), 0.05: (flat,), 0.002: (flat,)})
    (t,) = study.stage_trials(stage(study, "one_switch"), {"rates": rates})
    assert t.config.train.lr == 0.2 and t.config.train.lr_schedule == ((E1, 0.05),)


def test_short_runs_clamp_the_switches_into_a_valid_schedule():
    # epochs=2 -> schedules of 3 epochs: whatever the curves say, 1 <= e1 < e2 < 3.
    study = get_study("part5").with_overrides({"epochs": "2"})
    e = epochs_to(2)
    rising = 0.1 + 0.1 * e   # still rising at its end: ceil(2.0) = 2, clamped to 1
    rates = rate_records(study, {lr: (rising,) for lr in (0.1, 0.01, 0.001)})
    (one,) = study.stage_trials(stage(study, "one_switch"), {"rates": rates})
    assert one.config.train.lr_schedule == ((1, 0.01),) and one.config.train.epochs == 3
    e3 = epochs_to(3)
    (two,) = study.stage_trials(stage(study, "two_switches"),
                                {"rates": rates, "one_switch": [record(one, 0.1 + 0.1 * e3)]})
    assert two.config.train.lr_schedule == ((1, 0.01), (2, 0.001)) and two.config.train.epochs == 3


def test_a_generic_stage_picks_from_aggregated_results():
    """Not part5: a coordinate-search style stage that takes the learning rate
    whose *mean* test accuracy over repeats was best (not the best single run)."""
    def best_lr(earlier):
        aggs = aggregate_groups(earlier["scan"], select=M.TEST_ACC)
        best = max(aggs.values(), key=lambda a: a.test_mean)
        return {"lr": best.runs[0].config["lr"], "batch_size": [25, 100]}

    study = Study("demo", "", stages=(Stage("scan", axes=(("lr", (0.1, 0.01)),)),
                                      Stage("refine", derive=best_lr)),
                  base=(("optimizer", "sgd"), ("lr", 0.1)), repeats=2)
    scan = study.stage_trials(study.stages[0], {})
    accs = {("0.1", 0): 0.9, ("0.1", 1): 0.1, ("0.01", 0): 0.6, ("0.01", 1): 0.6}  # means 0.5, 0.6
    records = [record(t, np.full(3, 0.5), accs[(t.group, t.repeat)]) for t in scan]
    refine = study.stage_trials(study.stages[1], {"scan": records})
    assert [(t.group, t.repeat, t.config.train.lr, t.config.train.batch_size) for t in refine] == [
        ("25", 0, 0.01, 25), ("25", 1, 0.01, 25), ("100", 0, 0.01, 100), ("100", 1, 0.01, 100)]


def test_check_hook_runs_on_every_override():
    calls = []

    def check(study):
        calls.append(study.base_config().train.epochs)
        if study.base_config().train.epochs > 5:
            raise ConfigError("demo: at most 5 epochs")

    study = Study("demo", "", stages=(Stage("only"),), check=check)
    study.with_overrides({"epochs": "3"})
    with pytest.raises(ConfigError, match="at most 5 epochs"):
        study.with_overrides({"epochs": "6"})
    assert calls == [3, 6]
    assert Study("plain", "", stages=(Stage("only"),)).with_overrides({}).check is None
