"""The resnet study: its stages, groups and configs (golden), what weight decay applies to,
the loss-landscape band, and a quick sweep through the command line."""
import numpy as np
import pandas as pd
import pytest
import torch

from orchestrator.cli import main
from results.aggregate import RunRecord, aggregate_groups
from results.resnet import final_table, loss_band, page_final
from search_spaces import get_study
from search_spaces.plan import plan_runs
from workloads import metrics as M
from workloads.models import build_model, count_parameters
from workloads.train import Single, param_groups

ABLATIONS = ["act_relu", "act_leaky_relu", "act_elu", "wd_0", "wd_1e-4", "wd_5e-4", "wd_1e-3", "wd_5e-4_weights",
             "width_32", "width_64", "width_128", "opt_sgd", "opt_adam_base_lr", "opt_adagrad_base_lr",
             "opt_rmsprop_base_lr", "opt_adam_default_lr", "opt_adagrad_default_lr", "opt_rmsprop_default_lr"]
LANDSCAPE = [f"landscape_{a}_lr{lr}" for a in ("vgg_a", "vgg_a_bn") for lr in ("0.0001", "0.0005", "0.001", "0.002")]


def changed(trials, base) -> dict:
    flat = base.to_flat()
    return {t.group: {k: v for k, v in t.config.to_flat().items() if flat[k] != v and k != "seed"} for t in trials}


def test_stages_groups_and_what_each_changes():
    study = get_study("resnet")
    assert [s.name for s in study.stages] == ["ablations", "final", "vgg", "landscape"] and study.repeats == 3
    stages = {s.name: study.stage_trials(s, {}) for s in study.stages}
    base = study.base_config()
    assert (base.model.arch, base.model.activation, base.model.width, base.data.augment, base.data.normalize,
            base.train.optimizer, base.train.lr, base.train.batch_size, base.train.scheduler, base.train.epochs,
            base.train.weight_decay, base.train.decay_norm_and_bias) == (
        "resnet18", "leaky_relu", 1.0, "crop,flip", "dataset", "sgd:momentum=0.9", 0.1, 128, "cosine", 35, 0.0, True)
    assert base.train.recorded == (M.LOSS, M.TRAIN_ACC_RUNNING, M.VAL_ACC, M.VAL_LOSS)
    assert [t.group for t in stages["ablations"][::3]] == ABLATIONS
    assert changed(stages["ablations"][::3], base) == {
        "act_relu": {"activation": "relu"}, "act_leaky_relu": {}, "act_elu": {"activation": "elu"},
        "wd_0": {}, "wd_1e-4": {"weight_decay": 1e-4}, "wd_5e-4": {"weight_decay": 5e-4},
        "wd_1e-3": {"weight_decay": 1e-3}, "wd_5e-4_weights": {"weight_decay": 5e-4, "decay_norm_and_bias": False},
        "width_32": {"width": 0.5}, "width_64": {}, "width_128": {"width": 2.0}, "opt_sgd": {},
        "opt_adam_base_lr": {"optimizer": "adam"}, "opt_adagrad_base_lr": {"optimizer": "adagrad"},
        "opt_rmsprop_base_lr": {"optimizer": "rmsprop"},
        "opt_adam_default_lr": {"optimizer": "adam", "lr": 0.0}, "opt_adagrad_default_lr": {"optimizer": "adagrad", "lr": 0.0},
        "opt_rmsprop_default_lr": {"optimizer": "rmsprop", "lr": 0.0}}
    # The base trains once (per seed) for the four groups that name it: 15 configs x 3 seeds.
    runs = plan_runs(stages["ablations"])
    assert len(runs) == 45 and [t.group for t in runs[3].trials] == ["act_leaky_relu", "wd_0", "width_64", "opt_sgd"]
    # Seed 002's optimizer table (Adam 48.17%, Adagrad 63.91%, RMSprop 31.15% against SGD's 88.67%)
    # names no rates: each runs at the base's rate, as the report most likely ran it, and at its own.
    opts = {t.group: t.config.train for t in stages["ablations"][::3] if t.group.startswith("opt_")}
    assert {g: (c.optimizer, c.base_lr) for g, c in opts.items()} == {
        "opt_sgd": ("sgd:momentum=0.9", 0.1), "opt_adam_base_lr": ("adam", 0.1), "opt_adagrad_base_lr": ("adagrad", 0.1),
        "opt_rmsprop_base_lr": ("rmsprop", 0.1), "opt_adam_default_lr": ("adam", 1e-3),
        "opt_adagrad_default_lr": ("adagrad", 1e-2), "opt_rmsprop_default_lr": ("rmsprop", 1e-2)}
    # The final recipe, recorded so that it can be set beside the report's numbers: validation every
    # epoch, eval-mode accuracy on the whole training split at the end.
    assert changed(stages["final"][:1], base) == {"final": {
        "epochs": 120, "weight_decay": 1e-4, "train_eval_size": 0,
        "metrics": "train_loss,train_acc_running,val_acc,val_loss,train_acc_end"}}
    final = stages["final"][0].config
    assert (final.train.record_unit, final.train.record_every, final.train_images) == ("epoch", 1, 45000)
    assert final.work()[1:] == (120, 120 * 5000 + 45000 + 10000)  # validation each epoch; training split once
    vgg = changed(stages["vgg"][::3], base)
    assert vgg["vgg_a"] == {"arch": "vgg_a", "activation": "relu", "augment": "", "optimizer": "adam", "lr": 0.001,
                            "scheduler": "constant", "epochs": 20, "metrics": "train_loss,val_acc,val_loss"}
    assert vgg["vgg_a_bn"] == {**vgg["vgg_a"], "arch": "vgg_a_bn"}
    landscape = stages["landscape"][::3]
    assert [t.group for t in landscape] == LANDSCAPE
    for t in landscape:  # the training loss at every step, nothing evaluated there
        tc = t.config.train
        assert (tc.recorded, tc.record_unit, tc.record_every, tc.epochs, t.config.model.arch) == (
            (M.LOSS,), "step", 1, 10, t.group.split("_lr")[0][len("landscape_"):])
        assert not M.splits_needed(tc.recorded) and tc.optimizer == "adam" and tc.batch_size == 128
    assert sorted({t.config.train.lr for t in landscape}) == [1e-4, 5e-4, 1e-3, 2e-3]


def test_quick_keeps_the_width_ratios_and_every_stage_small():
    study = get_study("resnet").with_quick()
    trials = {t.group: t.config for s in study.stages for t in study.stage_trials(s, {})}
    assert [trials[g].model.width for g in ("width_32", "width_64", "width_128")] == [0.0625, 0.125, 0.25]
    assert {c.train.epochs for c in trials.values()} == {2} and {c.data.train_subset for c in trials.values()} == {512}
    assert study.repeats == 2


def test_resnet18_and_its_widths():
    """ResNet-18 for CIFAR: 11,173,962 parameters at 64 base channels; width 0.5 / 2 is 32 / 128."""
    assert count_parameters(build_model("resnet18")) == 11_173_962
    for width, channels in ((0.5, 32), (1.0, 64), (2.0, 128)):
        model = build_model("resnet18", width=width)
        assert model[0].out_channels == channels and model[-1].out_features == 10


def test_weight_decay_spares_batchnorm_and_biases_only_when_asked():
    """decay_norm_and_bias=true (the study's): every parameter is decayed, as torch's
    weight_decay does; false (wd_5e-4_weights): BatchNorm weights and all biases are not."""
    study = get_study("resnet")
    trials = {t.group: t.config for t in study.stage_trials(study.stages[0], {})}
    model = Single([trials["wd_5e-4"].override({"width": 0.125})], (3, 32, 32), torch.device("cpu"), torch.float32)
    named = model.named()
    (everything,) = param_groups(named, trials["wd_5e-4"].train)
    assert len(everything["params"]) == len(named) and "weight_decay" not in everything  # the optimizer's 5e-4
    weights, spared = param_groups(named, trials["wd_5e-4_weights"].train)
    norms = {id(p) for m in model.model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    biases = {id(p) for n, p, _ in named if n.endswith("bias")}
    assert {id(p) for p in spared["params"]} == norms | biases and spared["weight_decay"] == 0.0
    assert {p.dim() for p in weights["params"]} == {2, 4}  # conv and linear weights, decayed
    assert len(weights["params"]) + len(spared["params"]) == len(named)


def final_run(repeat, val, train_end, running, test):
    epochs = np.arange(1, len(val) + 1, dtype=float)
    curves = pd.DataFrame({M.STEP: epochs * 10, M.EPOCH: epochs, M.VAL_ACC: val, M.TRAIN_ACC_RUNNING: running,
                           M.TRAIN_ACC_END: [np.nan] * (len(val) - 1) + [train_end]})
    return RunRecord("final", "final", repeat, {"train_eval_size": 0}, curves, test, 1.0)


def test_the_final_table_names_where_validation_first_passed_93_and_95():
    runs = [final_run(0, [0.90, 0.931, 0.92, 0.951, 0.96], 0.9999, [0.8, 0.85, 0.9, 0.95, 0.97], 0.955),
            final_run(1, [0.91, 0.925, 0.93, 0.94, 0.945], 0.998, [0.8, 0.84, 0.9, 0.93, 0.96], 0.94)]
    table = final_table(runs).set_index("run")
    assert table["val_first_93_epoch"].tolist()[:2] == [2.0, 3.0]
    assert table.loc["r0", "val_first_95_epoch"] == 4.0 and np.isnan(table.loc["r1", "val_first_95_epoch"])
    assert table.loc["r0", ["val_best", "val_best_epoch", "val_final", "train_acc_end", "train_acc_running_last"]
                     ].tolist() == [0.96, 5.0, 0.96, 0.9999, 0.97]
    # the mean curve: 0.905, 0.928, 0.925, 0.9455, 0.9525: 93% first at epoch 4, 95% at 5
    mean = table.loc["mean of 2"]
    assert (mean["val_first_93_epoch"], mean["val_first_95_epoch"]) == (4.0, 5.0)
    assert mean["train_acc_end"] == pytest.approx(0.99895) and mean["test_acc"] == pytest.approx(0.9475)
    shown = page_final(table.reset_index()).set_index("run")
    assert shown.loc["r1", "validation first \u2265 95% (epoch)"] == "not reached"
    assert shown.loc["r0", "validation first \u2265 93% (epoch)"] == "2"
    assert shown.loc["r0", "training split, eval mode, at the end"] == "99.99%"


def curve(group, lr, losses, repeat=0, arch="vgg_a"):
    steps = list(range(1, len(losses) + 1))
    return RunRecord("landscape", group, repeat, {"arch": arch, "lr": lr},
                     pd.DataFrame({M.STEP: steps, M.LOSS: losses}), 0.5, 1.0)


def test_the_landscape_band_is_the_lowest_and_highest_mean_loss_over_rates():
    aggs = aggregate_groups([curve("a", 1e-3, [2.0, 1.5, 1.0]), curve("a", 1e-3, [2.2, 1.7, 1.2], repeat=1),
                             curve("b", 1e-4, [2.3, 2.0, 1.8]), curve("c", 2e-3, [2.5, 1.0])], select=M.TEST_ACC)  # c stopped early
    steps, low, high = loss_band(list(aggs.values()))
    np.testing.assert_array_equal(steps, [1, 2, 3])
    np.testing.assert_allclose(low, [2.1, 1.0, 1.1])   # a's mean is 2.1, 1.6, 1.1
    np.testing.assert_allclose(high, [2.5, 2.0, 1.8])


@pytest.mark.slow
def test_quick_sweep_gives_every_table_and_figure(ray_local, data_dir, tmp_path, capsys):
    out = tmp_path / "resnet"
    sizes = {"repeats": 1, "train_subset": 256, "val_subset": 100, "test_subset": 100}  # 2 steps an epoch
    assert main(["sweep", "resnet", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
                 *[f"{k}={v}" for k, v in sizes.items()]]) == 0
    summary = pd.read_csv(out / "summary.csv").set_index("group")
    assert list(summary.index) == ABLATIONS + ["final", "vgg_a", "vgg_a_bn"] + LANDSCAPE
    assert (summary["status"] == "finished").all() and summary["test_acc_mean"].between(0, 1).all()
    ablations = pd.read_csv(out / "ablations.csv")
    assert list(ablations["group"]) == ABLATIONS and ablations["train_s_per_epoch"].gt(0).all()
    assert ablations.groupby("family", sort=False).size().to_dict() == {
        "activation": 3, "weight decay": 5, "width": 3, "optimizer": 7}
    widths = summary.loc[["width_32", "width_64", "width_128"], "parameters"].tolist()
    assert widths[0] < widths[1] < widths[2]
    curves = pd.read_csv(out / "curves.csv")
    loss = curves[(curves.group == LANDSCAPE[0]) & (curves.metric == M.LOSS)]
    assert loss["step"].tolist() == [1, 2, 3, 4]  # every step of 2 epochs x 2 steps
    assert curves[curves.group.isin(LANDSCAPE) & curves.metric.isin([M.VAL_ACC, M.VAL_LOSS])].empty
    assert set(curves[curves.group == "vgg_a"].metric) >= {M.VAL_ACC, M.VAL_LOSS}
    for name in ("ablation_act", "ablation_wd", "ablation_width", "ablation_opt", "final", "vgg_bn", "landscape"):
        assert (out / f"{name}.png").stat().st_size > 20000, name
    report = (out / "report.md").read_text()
    assert "Ablations: per family and variant" in report
    # --quick's final: validation at both epochs, training accuracy on its 100-image sample at the end only
    final = pd.read_csv(out / "final.csv")
    assert final["run"].tolist() == ["r0"] and final["train_acc_end"].between(0, 1).all()
    assert final["test_acc"].iloc[0] == pytest.approx(summary.loc["final", "test_acc_mean"])
    end = curves[(curves.group == "final") & (curves.metric == M.TRAIN_ACC_END)]
    assert end["step"].tolist() == [4] and len(curves[(curves.group == "final") & (curves.metric == M.VAL_ACC)]) == 2
    assert "training accuracy in eval mode on a fixed sample of 100 training images at the end" in report
    from browser import check_page, chromium_or_skip
    seen = check_page(out / "report.html", screenshot=False, chromium=chromium_or_skip())
    assert seen["images_failed"] == 0 and not seen["overflow"] and seen["scrolled_tables"] == [], seen
