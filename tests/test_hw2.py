"""The hw2 study: its groups and what they change (golden), identical trials run once,
and a quick sweep through Ray Tune whose lr=10 run diverges without failing the sweep."""
import pandas as pd
import pytest

from search_spaces import get_study
from search_spaces.plan import plan_runs
from workloads import metrics as M

GROUPS = ["cnn", "fc", "mlp", "mlp_linear", "batch_1", "batch_4", "batch_1000", "lr_10", "lr_0.1", "lr_0.01",
          "lr_0.001", "augment", "no_augment", "mse", "cross_entropy"]


def test_groups_are_the_homeworks_questions_as_variants_of_the_tutorial_run():
    study = get_study("hw2")
    (stage,) = study.stages
    trials = study.stage_trials(stage, {})
    assert [t.group for t in trials] == GROUPS
    base = trials[0].config
    assert (base.model.arch, base.data.normalize, base.data.grayscale, base.train.optimizer, base.train.lr,
            base.train.batch_size, base.train.epochs, base.train.loss, base.train.record_unit) == (
        "tutorial", "half", False, "sgd:momentum=0.9", 0.001, 4, 50, "cross_entropy", "epoch")
    # The tutorial trains on all 50,000 images and plots test accuracy: no validation split,
    # and so nothing of it recorded; the best run is picked by test accuracy (nothing is chosen).
    assert base.train.recorded == (M.LOSS, M.TRAIN_ACC, M.TEST_ACC)
    assert (base.data.val_per_class, base.train_images, base.steps_per_epoch) == (0, 50000, 12500)
    assert study.select == M.TEST_ACC and "no validation split" in study.select_why
    changed = {t.group: {k: v for k, v in t.config.to_flat().items() if base.to_flat()[k] != v} for t in trials}
    assert changed == {
        "cnn": {}, "fc": {"arch": "fc"}, "mlp": {"arch": "mlp_110_74"},
        "mlp_linear": {"arch": "mlp_110_74", "activation": "identity"},
        "batch_1": {"batch_size": 1}, "batch_4": {}, "batch_1000": {"batch_size": 1000},
        "lr_10": {"lr": 10.0}, "lr_0.1": {"lr": 0.1}, "lr_0.01": {"lr": 0.01}, "lr_0.001": {},
        "augment": {"augment": "resized_crop,flip"}, "no_augment": {}, "mse": {"loss": "mse"},
        "cross_entropy": {}}


def test_the_base_trains_once_for_every_group_that_names_it():
    study = get_study("hw2").with_overrides({"repeats": "2"})
    runs = plan_runs(study.stage_trials(study.stages[0], {}))
    assert len(runs) == 22  # 11 configurations x 2 seeds serve 15 groups x 2
    base = [r for r in runs if r.name in ("cnn_r0", "cnn_r1")]
    assert [[t.name for t in r.trials] for r in base] == [
        [f"{g}_r{k}" for g in ("cnn", "batch_4", "lr_0.001", "no_augment", "cross_entropy")] for k in (0, 1)]


@pytest.mark.slow
def test_quick_sweep_reports_every_question_and_the_divergence(hw2_sweep):
    out, printed = hw2_sweep  # conftest: 500 training images, 2 epochs
    assert "diverged: lr_10_r0 (step " in printed
    summary = pd.read_csv(out / "summary.csv").set_index("group")
    assert list(summary.index) == GROUPS
    assert summary.loc["lr_10", "status"].startswith("diverged 1/1") and summary.loc["lr_10", "n"] == 0
    assert pd.isna(summary.loc["lr_10", "test_acc_mean"])
    finished = summary.drop(index="lr_10")
    assert (finished["status"] == "finished").all() and (finished["n"] == 1).all()
    assert "val_acc_final_curve" not in summary  # best_epochs: test accuracy only
    assert finished["test_acc_mean"].between(0, 1).all() and finished["train_s_per_epoch"].gt(0).all()
    assert summary.loc[["fc", "mlp", "cnn"], "parameters"].tolist() == [30730, 346994, 62006]
    # The base's result is every group's that names it.
    same = summary.loc[["cnn", "batch_4", "lr_0.001", "no_augment", "cross_entropy"], "test_acc_mean"]
    assert same.nunique() == 1
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.metric) >= {M.LOSS, M.TRAIN_ACC, M.TEST_ACC} and M.VAL_ACC not in set(curves.metric)
    report = (out / "report.md").read_text()
    assert "validation accuracy" not in report  # none exists to show
    assert "| val_per_class | 500 | 0 | study |" in report  # what was asked: the default, this run
    assert "| metrics | train_loss,train_acc,val_acc | train_loss,train_acc,test_acc | study |" in report
    assert "by test_acc: hw2 has no validation split and chooses nothing" in report
    cnn_test = curves[(curves.group == "cnn") & (curves.metric == M.TEST_ACC)]
    assert len(cnn_test) == 2 and cnn_test["mean"].iloc[-1] == pytest.approx(summary.loc["cnn", "test_acc_mean"])
    for name in ("q2_fc", "q3_mlp", "q4_cnn", "q5_batch", "q6_lr", "q7_augment", "q8_loss"):
        assert (out / f"{name}.png").stat().st_size > 20000, name
