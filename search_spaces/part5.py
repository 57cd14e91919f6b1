"""part5: one architecture with SGD at three constant learning rates, then
learning-rate schedules derived from where the validation accuracy stops rising.

    python -m orchestrator sweep part5                # cnn_4; 3 x 20 epochs, Adam 15, 2 x 30
    python -m orchestrator sweep part5 arch=cnn_5 repeats=3
    python -m orchestrator sweep part5 --quick        # every stage, 3 / 4 epochs on subsets

Stages, in order (each a Ray Tune run; the last two computed from earlier results):
  rates         constant lr 0.1, 0.01 and 0.001, `epochs` (20) each
  adam          the assignment's comparison, "the same model trained with Adam in 3.1": part3's
                recipe for the architecture (Adam at its default rate, 15 epochs, training accuracy
                on the whole training split), part3's 10 repeats (`adam.repeats=N`); its trials
                are part3's own configs, so a sweep that runs both trains them once
  one_switch    0.1 until e1, then 0.01 until epoch 30, where e1 is the plateau
                (results/plateau.py) of the 0.1 run's mean validation curve
  two_switches  0.1 until e1, 0.01 until e2, 0.001 until epoch 30, where e2 is the
                plateau of one_switch's mean validation curve after e1

`repeats=N` repeats the other stages (1 by default, as the assignment trains one model of
each); the plateaus are read from the mean validation curve over the repeats. The report
compares the two-switch schedule's test accuracy with the Adam runs' mean, its 95% t interval
and their best (schedule_vs_adam.csv).

The schedules run SCHEDULE_RATIO x `epochs` (30 for 20), so `epochs=4` (6) makes
every stage short together; the switch epochs are clamped so that each rate
gets at least one epoch (1 <= e1 < e2 < 30). The three rates are the lr axis
sorted from high to low, so `lr=0.2,0.02,0.002` moves the schedules too.
"""
from __future__ import annotations

from results.plateau import SCHEDULE_RATIO, first_plateau, rates_of, schedule_epochs, second_plateau
from search_spaces import get_study
from search_spaces.recipes import ASSIGNMENT
from search_spaces.study import Report, Stage, Study
from workloads.config import ConfigError

RATES = (0.1, 0.01, 0.001)
# part3's settings, but plain SGD at constant rates (the assignment's) for 20 epochs.
# lr here only makes the shared config valid: every stage sets its own.
BASE = ASSIGNMENT + (("arch", "cnn_4"), ("optimizer", "sgd"), ("lr", RATES[0]), ("epochs", 20))
# The Adam stage: what part3's base sets that BASE changes or lacks (Adam, 15 epochs, training
# accuracy on the whole split) at Adam's default rate; its trials are then part3's very configs
# for the architecture (tests/test_part5.py checks that).
PART3 = get_study("part3")
PART3_RECIPE = tuple((k, v) for k, v in PART3.base if dict(BASE).get(k) != v) + (("lr", 0.0),)
EXCLUDED_ARCHS = ("mlp_1",)   # the assignment leaves it out of part5


def derive_one_switch(earlier) -> dict:
    high, mid, _ = rates_of(earlier["rates"])
    e1 = first_plateau(earlier).switch_epoch
    return {"lr": high, "lr_schedule": ((e1, mid),), "epochs": schedule_epochs(earlier["rates"])}


def derive_two_switches(earlier) -> dict:
    high, mid, low = rates_of(earlier["rates"])
    run = earlier["one_switch"][0].config
    (e1, _), = run["lr_schedule"]   # what one_switch actually ran with
    e2 = second_plateau(earlier).switch_epoch
    return {"lr": high, "lr_schedule": ((int(e1), mid), (e2, low)), "epochs": int(run["epochs"])}


def check(study: Study) -> None:
    cfg = study.base_config()
    if cfg.model.arch in EXCLUDED_ARCHS:
        raise ConfigError(f"part5: arch={cfg.model.arch} is excluded by the assignment; "
                          f"choose mlp_2, cnn_3, cnn_4 or cnn_5")
    lrs = dict(study.stages[0].axes)["lr"]
    if len(set(lrs)) != 3:
        raise ConfigError(f"part5: lr needs three rates (the schedule goes high -> middle -> low), "
                          f"got {','.join(map(str, lrs))}")
    if int(SCHEDULE_RATIO * cfg.train.epochs) < 3:
        raise ConfigError("part5: epochs must be >= 2 so that each schedule rate gets an epoch")


STUDY = Study(
    name="part5",
    description="cnn_4, SGD at 0.1/0.01/0.001 for 20 epochs, then plateau-derived schedules to 30, vs Adam",
    stages=(
        Stage("rates", axes=(("lr", RATES),)),
        # part3's recipe and repeats; the user's epochs=N shortens it with everything else.
        Stage("adam", fixed=PART3_RECIPE, repeats=PART3.repeats),
        Stage("one_switch", derive=derive_one_switch),
        Stage("two_switches", derive=derive_two_switches),
    ),
    base=BASE,
    repeats=1,
    # Every stage in about two minutes on two cores: 3 epochs (schedules 4) on subsets.
    quick=(("epochs", 3), ("train_subset", 3000), ("val_subset", 500), ("test_subset", 1000),
           ("train_eval_size", 500), ("record_every", 10), ("adam.repeats", 2)),
    report=Report("results.reports:part5_report", stages=("rates", "adam", "one_switch", "two_switches")),
    reference="adam",   # the assignment asks whether the schedules (and constant rates) match Adam
    check=check,
)
