"""part5: the plateau rule on hand-made curves, the study's grid and checks,
learning-rate switches that keep model and optimizer state, the report, and a
quick sweep through real Ray Tune."""
import json
import pickle
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from conftest import SIZES, TINY, timeless
from orchestrator.cli import main
from results.plateau import PlateauRule, find_plateau, smooth
from results.reports import lr_tag
from search_spaces import get_study
from workloads import metrics as M
from workloads.config import ConfigError, TrialConfig
from workloads.models import build_model
from workloads.train import train

CPU = torch.device("cpu")
E = np.arange(1, 201) / 10            # 20 epochs, 10 points an epoch
RAW = PlateauRule(window=0)           # no smoothing: the walk alone


# --- the plateau rule -------------------------------------------------------

def test_smooth_is_a_centred_window_over_epochs():
    epochs, values = [0.0, 0.2, 1.0, 1.1, 3.0], [0.0, 1.0, 2.0, 3.0, 7.0]
    np.testing.assert_allclose(smooth(epochs, values, 0.5), [0.5, 0.5, 2.5, 2.5, 7.0])
    np.testing.assert_allclose(smooth(epochs, values, 0), values)


def test_rise_then_flat_switches_where_it_flattens():
    curve = 0.1 * np.minimum(E, 5)
    p = find_plateau(E, curve, RAW)
    assert (p.switch_epoch, p.last_improvement, p.stalled, p.clamped) == (5, 5.0, True, False)
    # Smoothed: the centred 1-epoch mean keeps rising until half a window past the kink.
    p = find_plateau(E, curve)
    assert (p.switch_epoch, p.last_improvement, p.stalled) == (6, 5.5, True)
    # A fractional last improvement goes to the next epoch boundary.
    assert find_plateau(E, 0.1 * np.minimum(E, 5.3), RAW).switch_epoch == 6


def test_smoothing_ignores_one_noisy_point():
    curve = 0.1 * np.minimum(E, 5) + (E == 6.5) * 0.015   # one evaluation 1.5 points high
    assert find_plateau(E, curve, RAW).last_improvement == 6.5   # raw: counted as progress
    assert find_plateau(E, curve).last_improvement == 5.5        # smoothed: 0.0014 < min_delta


def test_a_pause_shorter_than_patience_is_not_a_plateau():
    # Up to 3, flat for 1.5 epochs, up again to 8, then flat.
    curve = np.interp(E, [0, 3, 4.5, 8, 20], [0.1, 0.4, 0.4, 0.6, 0.6])
    assert find_plateau(E, curve, RAW).switch_epoch == 8
    assert find_plateau(E, curve, PlateauRule(window=0, patience=1)).switch_epoch == 3


def test_min_delta_decides_what_counts_as_rising():
    slow = 0.3 + 0.00045 * E          # 0.001 takes 2.2 epochs, 0.002 takes 4.4
    p = find_plateau(E, slow, RAW)    # min_delta 0.002 never reached within patience
    assert (p.switch_epoch, p.last_improvement, p.stalled) == (1, 0.1, True)
    p = find_plateau(E, slow, PlateauRule(window=0, min_delta=0.001))  # a gain every 2.3 epochs
    assert (p.switch_epoch, p.last_improvement, p.stalled) == (19, pytest.approx(18.5), False)


def test_still_rising_at_the_end_and_clamping():
    curve = 0.02 * E
    p = find_plateau(E, curve, RAW)
    assert (p.switch_epoch, p.stalled, p.clamped) == (20, False, False)
    p = find_plateau(E, curve, RAW, hi=18)
    assert (p.switch_epoch, p.last_improvement, p.clamped) == (18, 20.0, True)
    falling = 0.5 - 0.01 * E          # best at the first point (0.1): switch at 1
    assert find_plateau(E, falling, RAW).switch_epoch == 1
    assert find_plateau(E, falling, RAW, lo=3).switch_epoch == 3


def test_after_only_looks_at_what_follows():
    curve = np.where(E <= 10, 0.9, 0.3 + 0.1 * (np.minimum(E, 12) - 10))
    assert find_plateau(E, curve, RAW, after=10, lo=11).switch_epoch == 12
    assert find_plateau(E, curve, RAW).switch_epoch == 1   # the 0.9 stretch wins when included


def test_bad_curves_are_one_clear_error():
    with pytest.raises(ValueError, match="strictly increasing"):
        find_plateau([1, 3, 2], [0, 0, 0])
    with pytest.raises(ValueError, match="no points after epoch 5"):
        find_plateau([1, 2, 3], [0, 0, 0], after=5)
    with pytest.raises(ValueError, match="patience > 0"):
        PlateauRule(patience=0)


# --- the study --------------------------------------------------------------

def test_grid_and_fixed_settings():
    study = get_study("part5").with_overrides({})
    rates = study.stage_trials(study.stages[0], {})
    assert [t.name for t in rates] == ["0.1_r0", "0.01_r0", "0.001_r0"]
    for t, lr in zip(rates, (0.1, 0.01, 0.001)):
        c = t.config
        assert (c.model.arch, c.model.activation, c.train.optimizer, c.train.lr,
                c.train.weight_decay, c.train.batch_size, c.train.epochs, c.train.record_every,
                c.train.record_unit, c.train.lr_schedule, c.data.grayscale) == (
            "cnn_4", "relu", "sgd", lr, 0.0, 50, 20, 10, "step", (), True)
    adam = study.stage_trials(study.stages[1], {})
    # "The same model trained with Adam in 3.1": part3's recipe (Adam at its default rate, 15 epochs,
    # training accuracy on the whole split), part3's 10 repeats: part3's own cnn_4 trials, so that
    # a sweep running both trains them once.
    assert [t.name for t in adam] == [f"adam_r{k}" for k in range(10)]
    assert (adam[0].config.train.optimizer, adam[0].config.train.lr, adam[0].config.train.epochs) == ("adam", 0.0, 15)
    part3 = get_study("part3").with_overrides({"arch": "cnn_4"})
    assert [t.config for t in adam] == [t.config for t in part3.stage_trials(part3.stages[0], {})]
    assert [s.name for s in study.stages] == ["rates", "adam", "one_switch", "two_switches"]
    assert [s.derive is not None for s in study.stages] == [False, False, True, True]
    quick = get_study("part5").with_quick()
    assert [t.config.train.epochs for t in quick.stage_trials(quick.stages[0], {})] == [3, 3, 3]
    assert len(quick.stage_trials(quick.stages[1], {})) == 2  # adam.repeats=2


def test_repeats_repeat_the_sgd_stages_and_adam_keeps_part3s_unless_asked():
    study = get_study("part5").with_overrides({"repeats": "3"})
    assert [t.name for t in study.stage_trials(study.stages[0], {})][:4] == ["0.1_r0", "0.1_r1", "0.1_r2", "0.01_r0"]
    assert len(study.stage_trials(study.stages[1], {})) == 10
    assert study.stage_repeats(study.stages[2]) == study.stage_repeats(study.stages[3]) == 3
    fewer = get_study("part5").with_overrides({"adam.repeats": "4"})
    assert [t.config.train.seed for t in fewer.stage_trials(fewer.stages[1], {})] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="adam.repeats must be >= 1"):
        get_study("part5").with_overrides({"adam.repeats": "0"})


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "mlp_1"}, "arch=mlp_1 is excluded by the assignment"),
    ({"lr": "0.1,0.01"}, "lr needs three rates"),
    ({"epochs": "1"}, "epochs must be >= 2"),
])
def test_bad_settings_fail_early(overrides, message, capsys):
    with pytest.raises(ConfigError, match=message):
        get_study("part5").with_overrides(overrides)
    argv = ["plan", "part5"] + [f"{k}={v}" for k, v in overrides.items()]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0


def test_other_archs_are_accepted():
    study = get_study("part5").with_overrides({"arch": "mlp_2"})
    assert {t.config.model.arch for t in study.stage_trials(study.stages[0], {})} == {"mlp_2"}


def test_lr_tags_are_the_assignments_keys():
    assert [lr_tag(x) for x in (0.1, 0.01, 0.001, 0.05, 1.5)] == ["1", "01", "001", "05", "1_5"]


# --- switching the rate keeps model and optimizer state -----------------------

def test_schedule_switches_at_exact_steps_and_keeps_state(tiny_data):
    # Momentum 0.9 (not part5's 0) so that the optimizer has state that a reset would lose.
    base = {**TINY, "arch": "mlp_2", "optimizer": "sgd:momentum=0.9", "record_every": 1}
    scheduled = train(TrialConfig().override({**base, "lr": 0.1, "epochs": 2, "lr_schedule": "1:0.01"}),
                      tiny_data, CPU)
    steps_per_epoch = 10  # 500 images, batch 50
    assert [r[M.STEP] for r in scheduled.records] == list(range(1, 21))
    assert [r[M.LR] for r in scheduled.records] == [0.1] * steps_per_epoch + [0.01] * steps_per_epoch

    # The same run in two parts: epoch 0 at 0.1, then the saved state continued at 0.01.
    states = []
    train(TrialConfig().override({**base, "lr": 0.1, "epochs": 1}), tiny_data, CPU,
          report=lambda m, s: states.append(s))
    at_switch = states[-1]
    assert at_switch.step == steps_per_epoch and at_switch.optimizer["state"]  # momentum buffers
    second = TrialConfig().override({**base, "lr": 0.01, "epochs": 2})
    continued = train(second, tiny_data, CPU, resume=at_switch)
    assert timeless(continued.records) == timeless(scheduled.records)
    for key, value in scheduled.state_dict.items():
        torch.testing.assert_close(continued.state_dict[key], value, rtol=0, atol=0)

    # Resetting the optimizer at the switch gives another model: the comparison above can tell.
    model = build_model("mlp_2", in_shape=(1, 32, 32))
    fresh = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9).state_dict()
    reset = train(second, tiny_data, CPU, resume=replace(at_switch, optimizer=fresh))
    assert not torch.equal(reset.state_dict["1.weight"], scheduled.state_dict["1.weight"])


# --- the sweep, through real Ray Tune ---------------------------------------

@pytest.mark.slow
def test_quick_sweep_end_to_end(ray_local, data_dir, tmp_path):
    out = tmp_path / "part5"
    tiny = {**SIZES, "epochs": 2}  # schedules of 3 epochs: e1 = 1, e2 = 2 whatever the curves
    assert main(["sweep", "part5", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
                 *[f"{k}={v}" for k, v in tiny.items()]]) == 0

    with open(out / "part5_cnn_4.pkl", "rb") as f:
        saved = pickle.load(f)
    assert list(saved) == ["name", "loss_curve_1", "loss_curve_01", "loss_curve_001",
                           "val_acc_curve_1", "val_acc_curve_01", "val_acc_curve_001"]
    assert saved["name"] == "cnn_4"
    assert all(len(v) == 4 for k, v in saved.items() if k != "name")  # 20 steps, a record every 5

    trials = json.loads((out / "provenance.json").read_text())["trials"]
    assert [len(trials[s]) for s in ("rates", "adam", "one_switch", "two_switches")] == [3, 2, 1, 1]
    (one,), (two,) = trials["one_switch"], trials["two_switches"]
    assert one["lr"] == two["lr"] == 0.1 and one["epochs"] == two["epochs"] == 3
    assert [list(p) for p in one["lr_schedule"]] == [[1, 0.01]]
    assert [list(p) for p in two["lr_schedule"]] == [[1, 0.01], [2, 0.001]]
    assert trials["adam"][0]["optimizer"] == "adam" and trials["adam"][0]["epochs"] == 2
    switches = json.loads((out / "switches.json").read_text())
    assert (switches["e1"], switches["e2"]) == (1, 2)

    curves = pd.read_csv(out / "curves.csv")
    def curve(group, metric):
        return curves[(curves.group == group) & (curves.metric == metric)]["mean"].to_numpy()
    np.testing.assert_allclose(curve("two_switches", M.LR), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    np.testing.assert_allclose(saved["val_acc_curve_1"], curve("0.1", M.VAL_ACC))
    # Same seed, same data, same rate: the schedules repeat the 0.1 run until e1
    # and each other until e2.
    np.testing.assert_array_equal(curve("one_switch", M.VAL_ACC)[:2], curve("0.1", M.VAL_ACC)[:2])
    np.testing.assert_array_equal(curve("two_switches", M.VAL_ACC)[:4], curve("one_switch", M.VAL_ACC)[:4])

    summary = pd.read_csv(out / "summary.csv")
    assert summary["group"].tolist() == ["0.1", "0.01", "0.001", "one_switch", "two_switches", "adam"]
    compare = pd.read_csv(out / "schedule_vs_adam.csv")
    assert compare["group"].tolist() == ["two_switches", "adam"]
    acc = summary.set_index("group")["test_acc_mean"]
    assert compare["test_acc_mean"].tolist() == [acc["two_switches"], acc["adam"]]
    assert compare["minus_adam"].iloc[0] == pytest.approx(acc["two_switches"] - acc["adam"])
    # Adam's two repeats: their mean's 95% t interval, and where the schedule lies against it.
    adam = summary.set_index("group").loc["adam"]
    assert adam["n"] == 2 and compare["test_acc_best"].iloc[1] == adam["test_acc_best"]
    half = stats.t.ppf(0.975, 1) * adam["test_acc_std"] / np.sqrt(2)
    assert compare["adam_ci_low"].iloc[0] == pytest.approx(adam["test_acc_mean"] - half)
    assert compare["adam_ci_high"].iloc[0] == pytest.approx(adam["test_acc_mean"] + half)
    inside = compare["adam_ci_low"].iloc[0] <= acc["two_switches"] <= compare["adam_ci_high"].iloc[0]
    report = (out / "report.md").read_text()
    assert f"Adam, part3's recipe for cnn_4 over 2 repeats: mean {acc['adam']:.4f}" in report
    assert re.search(r"\| adam \| nothing: one group \| [^|\n]*repeats=2 \| 1 \| 2 \|", report)  # its own repeats
    assert ("within it" if inside else "above it" if acc["two_switches"] > acc["adam"] else "below it") in report
    for png in ("part5_cnn_4_rates.png", "part5_cnn_4_schedules.png"):
        assert (out / png).stat().st_size > 10000
