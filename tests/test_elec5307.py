"""The elec5307 study: its plan (golden), the SID assignment, the part3 network's limits,
part2's table and choice rule on hand-made records, shared prefixes against separate runs,
the transforms it uses, `evaluate` end to end, and a quick sweep through Ray Tune."""
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SIZES
from orchestrator.cli import main
from results.aggregate import RunRecord, aggregate_groups
from results.elec5307 import choose, grid_table
from search_spaces import elec5307_part3 as part3
from search_spaces import get_study
from search_spaces.plan import plan_runs
from workloads import metrics as M
from workloads.config import ConfigError, ModelConfig, TrialConfig

CPU = torch.device("cpu")


def stage(study, name):
    return next(s for s in study.stages if s.name == name)


def test_plan_part1_is_part2s_tutorial_run_and_part2_is_18_runs_for_90_results(capsys):
    study = get_study("elec5307").with_overrides({})
    p1 = plan_runs(study.stage_trials(stage(study, "part1"), {}), "epochs")
    trials = study.stage_trials(stage(study, "part2"), {})
    p2 = plan_runs(trials, "epochs")
    assert len(trials) == 90 and len(p2) == 18 and len(p1) == 1
    assert [r.name for r in p2[:7]] == ["batch2_lr0.005_16ep_r0", "batch2_lr0.001_16ep_r0", "batch2_lr0.0005_16ep_r0",
                                        "batch2_lr0.0001_16ep_r0", "batch2_lr5e-05_16ep_r0", "batch2_lr1e-05_16ep_r0",
                                        "batch4_lr0.005_16ep_r0"]
    assert [t.name for t in p2[0].trials] == [f"batch2_lr0.005_{e}ep_r0" for e in (16, 8, 4, 2, 1)]
    for run in p2:
        cfg = run.config
        assert (cfg.model.arch, cfg.data.normalize, cfg.data.grayscale, cfg.train.optimizer, cfg.train.scheduler,
                cfg.train.epochs, cfg.train.snapshot_epochs, cfg.data.augment) == (
            "tutorial", "half", False, "sgd:momentum=0.9", "constant", 16, (1, 2, 4, 8), "")
        assert cfg.train.recorded == (M.LOSS, M.TRAIN_ACC, M.VAL_ACC, M.VAL_LOSS)
    assert {(r.config.train.batch_size, r.config.train.lr) for r in p2} == {
        (b, lr) for b in (2, 4, 8) for lr in (0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001)}
    # part1's run is part2's (batch 4, lr 0.001) run: one config, so the driver trains it once.
    assert p1[0].config == next(r.config for r in p2 if r.name == "batch4_lr0.001_16ep_r0")
    assert [t.group for t in p1[0].trials] == [f"tutorial_{e}ep" for e in (16, 8, 4, 2, 1)]
    assert main(["plan", "elec5307"]) == 0
    out = capsys.readouterr().out
    assert "stage part1: 1 trials, 5 results" in out and "stage part2: 18 trials, 90 results" in out


def test_a_length_dependent_schedule_is_refused_for_the_grid_in_one_line(capsys):
    assert main(["plan", "elec5307", "scheduler=cosine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot share prefixes" in err and "scheduler=cosine depends on the run's length" in err


@pytest.mark.parametrize("sid, families", [
    ("470123364", ("flip", "kernel", "multistep")),  # the appendix's example
    ("000000000", ("crop", "channels", "exponential")),
    ("123456789", ("view", "pooling", "sgd")),
    ("999999258", ("flip", "dropout", "sgd")),
])
def test_sid_runs_exactly_the_families_the_appendix_assigns(sid, families):
    assert tuple(f.name for f in part3.assigned(sid)) == families
    study = get_study("elec5307").with_overrides({"sid": sid})
    groups = [t.group for t in study.stage_trials(stage(study, "part3"), {})]
    assert groups[0] == "baseline"
    assert {g.partition(".")[0] for g in groups[1:]} == set(families)
    assert [g for g in groups if g.endswith(".baseline")] == [f"{f}.baseline" for f in families]


def test_without_sid_every_family_runs_and_the_baseline_trains_once():
    study = get_study("elec5307").with_overrides({})
    trials = study.stage_trials(stage(study, "part3"), {})
    assert {t.group.partition(".")[0] for t in trials[1:]} == {f.name for f in part3.FAMILIES} and len(part3.FAMILIES) == 15
    runs = plan_runs(trials)
    base = runs[0]
    assert base.name == "baseline_r0" and [t.group for t in base.trials] == \
        ["baseline"] + [f"{f.name}.baseline" for f in part3.FAMILIES]
    cfg = base.config
    assert (cfg.model.spec, cfg.data.augment, cfg.data.normalize, cfg.train.batch_size, cfg.train.epochs) == (
        part3.NET.spec, "flip,crop", "dataset", 128, part3.EPOCHS)
    kernel = {t.group: t.config for t in trials if t.group.startswith("kernel.")}
    assert kernel["kernel.7x7"].model.spec.startswith("Conv-7x7x32-p3,ReLU,MaxPool-2x2,Conv-7x7x64-p3")
    assert kernel["kernel.7x7"].to_flat() | {"spec": cfg.model.spec} == cfg.to_flat()  # nothing else changes


def test_every_resize_family_of_the_appendix_has_resize_values():
    """The appendix's four '+Resize' transformations (RandomCrop, Flip, Affine, CenterCrop/FiveCrop,
    Normalize) each vary the input size: Affine+Resize and Normalize+Resize run the baseline
    resized to 24 and to 40, the same configs as Flip+Resize's (one run serves all three)."""
    assert [f.title for f in part3.FAMILIES if f.title.endswith("+Resize")] == [
        "RandomCrop+Resize", "Flip+Resize", "Affine+Resize", "CenterCrop/FiveCrop+Resize", "Normalize+Resize"]
    study = get_study("elec5307").with_overrides({})
    trials = study.stage_trials(stage(study, "part3"), {})
    configs = {t.group: t.config for t in trials}
    for family in ("affine", "normalize"):
        assert [g for g in configs if g.startswith(f"{family}.resize")] == [f"{family}.resize24", f"{family}.resize40"]
        for side in (24, 40):
            cfg = configs[f"{family}.resize{side}"]
            assert cfg == configs[f"flip.resize{side}"] and cfg.data.resize == side
            assert cfg.to_flat() | {"resize": 32} == configs["baseline"].to_flat()  # nothing else changes
    resized = {t.group.partition(".")[0] for t in trials if t.config.data.resize != 32 or "size=" in t.config.data.augment}
    assert resized == {"crop", "flip", "affine", "view", "normalize"}
    runs = plan_runs(trials)
    assert len(runs) == 43 and len(trials) == 64
    assert [t.group for t in next(r for r in runs if r.name == "flip.resize40_r0").trials] == [
        "flip.resize40", "affine.resize40", "normalize.resize40"]


def test_the_part3_network_keeps_the_projects_structure_and_limits():
    part3.check_network(ModelConfig(arch="elec5307", spec=part3.NET.spec))
    assert part3.NET.spec.count("Conv-") == 3 and part3.NET.spec.count("FC-") == 3
    for bad, needle in [(dict(channels=(64, 128, 512)), "Conv-3x3x512-p1 has 512 channels; the project allows at most 256"),
                        (dict(hidden=(2048, 256, 128)), "FC-2048 has 2048 units; the project allows at most 1024"),
                        (dict(channels=(32, 64, 128, 256)), "the project asks for 3 x (Conv, ReLU"),
                        (dict(hidden=(256, 128)), "the project asks for"),
                        (dict(kernel=4), "kernel must be odd")]:
        with pytest.raises(ConfigError, match=None) as e:
            part3.Net(**bad)
        assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="at most 256"):
        get_study("elec5307").with_overrides({"part3.width": "2.5"})
    bn = part3.NET.spec.replace("ReLU,MaxPool", "BN,ReLU,MaxPool", 1)
    with pytest.raises(ConfigError, match="the project asks for"):
        get_study("elec5307").with_overrides({"part3.spec": bn})


def test_parts_and_stage_scoped_settings():
    study = get_study("elec5307").with_overrides({"parts": "2", "lr": "0.001,0.0001", "batch_size": "4,8"})
    assert [s.name for s in study.stages] == ["part2"]
    assert len(plan_runs(study.stage_trials(study.stages[0], {}), "epochs")) == 4
    study = get_study("elec5307").with_overrides({"part3.epochs": "3", "epochs": "1,2"})
    assert stage(study, "part3").fixed[-1] == ("epochs", 3)  # parsed once, where the override is read
    assert {t.config.train.epochs for t in study.stage_trials(stage(study, "part3"), {})} == {3}
    assert {t.config.train.epochs for t in study.stage_trials(stage(study, "part2"), {})} == {1, 2}
    study = get_study("elec5307").with_overrides({"parts": "3", "families": "none", "repeats": "3"})
    assert [t.name for t in study.stage_trials(study.stages[0], {})] == ["baseline_r0", "baseline_r1", "baseline_r2"]
    study = get_study("elec5307").with_overrides({"families": "pooling,sgd"})
    assert {t.group.partition(".")[0] for t in study.stage_trials(stage(study, "part3"), {})} == {
        "baseline", "pooling", "sgd"}
    with pytest.raises(ConfigError, match="families=pool: choose none or from crop, flip"):
        get_study("elec5307").with_overrides({"families": "pool"})
    with pytest.raises(ConfigError, match="parts=5: choose from 1, 2, 3"):
        get_study("elec5307").with_overrides({"parts": "5"})
    with pytest.raises(ConfigError, match="sid=4701: a student ID is 9 digits"):
        get_study("elec5307").with_overrides({"sid": "4701"})


def record(group, batch, lr, epochs, val, test, seconds, repeat=0, finished=True):
    curves = pd.DataFrame({M.STEP: [epochs * 10], M.EPOCH: [float(epochs)], M.VAL_ACC: [val]})
    config = {"batch_size": batch, "lr": lr, "epochs": epochs, "val_per_class": 500, "val_subset": 0}
    return RunRecord("part2", group, repeat, config, curves, test if finished else math.nan, seconds,
                     train_seconds=seconds, status=M.FINISHED if finished else M.DIVERGED)


def part1_record(epochs: int, upto: int) -> RunRecord:
    """The part1 group of length `epochs`, served by one run of `upto` epochs (its prefix)."""
    e = np.arange(1, epochs + 1, dtype=float)
    curves = pd.DataFrame({M.STEP: e * 10, M.EPOCH: e, M.LOSS: 2 / e, M.VAL_LOSS: 2.1 / e, M.TRAIN_ACC: 0.3 + e / 50,
                           M.VAL_ACC: 0.3 + e / 60})
    config = {"batch_size": 4, "lr": 0.001, "epochs": epochs, "val_per_class": 500, "val_subset": 0}
    return RunRecord("part1", f"tutorial_{epochs}ep", 0, config, curves, 0.4 + epochs / 100, 10.0 * upto,
                     train_seconds=10.0 * epochs, run=f"tutorial_{upto}ep_r0")


def test_part1_reports_the_notebooks_two_epochs_and_the_longer_prefixes_as_its_curve(tmp_path):
    """The course notebook trains the tutorial net for 2 epochs: that is part1's result; the
    16-epoch run that serves every length is its curve (test accuracy at each length: dots)."""
    from results.elec5307 import part1_result, report
    from search_spaces.elec5307 import PART1_EPOCHS
    assert PART1_EPOCHS == 2
    study = get_study("elec5307")
    assert [t.group for t in study.stage_trials(stage(study, "part1"), {})] == [
        f"tutorial_{e}ep" for e in (1, 2, 4, 8, 16)]
    recs = [part1_record(e, 16) for e in (1, 2, 4, 8, 16)]
    found = report({"part1": recs}, tmp_path, study, part1_epochs=PART1_EPOCHS)["summary"]
    (row,) = found.to_dict("records")
    assert (row["part"], row["group"], row["what"]) == (
        "part1", "tutorial_2ep", "the tutorial baseline: 2 epochs, as the course notebook runs it")
    assert row["test_acc_mean"] == pytest.approx(0.42) and row["val_acc_mean"] == pytest.approx(0.3 + 2 / 60)
    assert pd.read_csv(tmp_path / "part1.csv")["epochs"].tolist() == [1, 2, 4, 8, 16]
    assert (tmp_path / "part1.png").stat().st_size > 20000
    # Lengths without the notebook's (epochs=4,8): the longest, said so.
    aggs = aggregate_groups([part1_record(e, 8) for e in (4, 8)], select=M.VAL_ACC)
    chosen, what = part1_result(aggs, 2)
    assert chosen.group == "tutorial_8ep" and what == "the tutorial baseline at 8 epochs (the notebook's 2 were not run)"


def test_part2_table_and_choice_without_repeats_use_the_binomial_standard_error():
    # 5,000 validation images at p = 0.6: sqrt(0.24 / 5000) = 0.0069.
    recs = [record("a", 4, 0.001, 16, 0.600, 0.59, 160.0), record("b", 8, 0.001, 8, 0.595, 0.61, 40.0),
            record("c", 8, 0.0005, 4, 0.590, 0.62, 20.0), record("d", 2, 0.005, 16, 0.10, math.nan, 300.0, finished=False)]
    table = grid_table(aggregate_groups(recs, select=M.VAL_ACC))
    assert list(table.columns[:3]) == ["batch_size", "lr", "epochs"]
    assert table["n"].tolist() == [1, 1, 1, 0] and table["diverged"].tolist() == [0, 0, 0, 1]
    assert table["train_s_per_epoch"].tolist()[:3] == [10.0, 5.0, 5.0] and np.isnan(table["val_acc_mean"].iloc[3])
    choice = choose(table, 5000)
    assert choice["noise"] == pytest.approx(math.sqrt(0.6 * 0.4 / 5000))
    assert choice["best"]["group"] == "a" and choice["within_noise"] == ["a", "b"]  # c is 0.010 below
    assert choice["chosen"]["group"] == "b"  # within noise of the best, and the quickest of those
    assert "binomial standard error" in choice["rule"] and "5000 validation images" in choice["rule"]


def test_part2_choice_with_repeats_uses_one_standard_error_of_the_mean():
    vals = {"a": (0.60, 0.62, 0.61), "b": (0.605, 0.60, 0.595), "c": (0.59, 0.58, 0.585)}
    seconds = {"a": 100.0, "b": 50.0, "c": 10.0}
    recs = [record(g, 4, lr, 8, v, v, seconds[g], repeat=k)
            for (g, vs), lr in zip(vals.items(), (0.001, 0.0005, 0.0001)) for k, v in enumerate(vs)]
    table = grid_table(aggregate_groups(recs, select=M.VAL_ACC))
    assert table["n"].tolist() == [3, 3, 3]
    assert table["val_acc_std"].iloc[0] == pytest.approx(0.01)
    choice = choose(table, 5000)
    assert choice["noise"] == pytest.approx(0.01 / math.sqrt(3))  # a: 0.61 +- 0.0058, b: 0.600 is outside
    assert choice["within_noise"] == ["a"] and choice["chosen"]["group"] == "a"
    assert "one standard error of its mean over 3 repeats" in choice["rule"]


def test_the_grids_shared_prefixes_score_what_separate_runs_of_each_length_score(raw):
    """part2 as planned (tutorial net, batch 4, constant rate), on 400 images: the one 4-epoch
    run serves lengths 1, 2 and 4 with the validation and test accuracy separate runs give."""
    from orchestrator.collect import serve
    from workloads.data import prepare
    from workloads.train import train
    sizes = {"train_subset": 400, "val_subset": 200, "test_subset": 200, "train_eval_size": 100}
    study = get_study("elec5307").with_overrides({"parts": "2", "batch_size": "4", "lr": "0.005", "epochs": "1,2,4",
                                                  **sizes})
    trials = study.stage_trials(study.stages[0], {})
    (run,) = plan_runs(trials, "epochs")
    assert run.config.train.snapshot_epochs == (1, 2)
    data = prepare(run.config.data, raw)
    long = train(run.config, data, CPU)
    rec = RunRecord("part2", trials[-1].group, 0, run.config.to_flat(), pd.DataFrame(long.records), long.test_acc,
                    1.0, status=long.status, train_seconds=long.final.train_seconds)
    served = {r.group: r for r in serve(rec, run)}
    assert sorted(served) == sorted(t.group for t in trials)
    for t in trials:
        alone = train(t.config, data, CPU)
        got = served[t.group]
        assert got.test_acc == alone.test_acc and got.final(M.VAL_ACC) == alone.records[-1][M.VAL_ACC], t.group
        assert got.curves[M.VAL_LOSS].tolist() == [r[M.VAL_LOSS] for r in alone.records], t.group


def test_the_transforms_it_uses_resize_as_torchvision_and_never_touch_evaluation():
    """Every (augmentation, resize, view) of part3: the resize equals torchvision's antialiased
    Resize within 1e-5, the views equal CenterCrop/FiveCrop then Resize, and evaluation is the
    same with or without the training augmentations."""
    import torchvision.transforms.v2.functional as TF
    from dataclasses import replace
    from workloads.augment import eval_transform, train_transform
    study = get_study("elec5307").with_overrides({})
    configs = {t.config.data for t in study.stage_trials(stage(study, "part3"), {})}
    assert {(c.resize, c.eval_view) for c in configs} >= {(24, "full"), (40, "full"), (32, "center"),
                                                          (32, "five"), (32, "center:size=24"), (32, "five:size=24")}
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for cfg in configs:
        views = eval_transform(cfg)(x)  # (V, B, C, R, R)
        crop = {"full": None, "center": "center", "five": "five"}[cfg.eval_view.partition(":")[0]]
        size = int(cfg.eval_view.rpartition("=")[2]) if "=" in cfg.eval_view else 28
        parts = [x] if crop is None else [TF.center_crop(x, [size])] if crop == "center" else list(TF.five_crop(x, [size]))
        expected = torch.stack([TF.resize(v, [cfg.resize], antialias=True) for v in parts])
        assert views.shape == expected.shape and (views - expected).abs().max() <= 1e-5, cfg
        assert torch.equal(views, eval_transform(replace(cfg, augment=""))(x)), cfg
        out = train_transform(cfg)(x, torch.Generator().manual_seed(1))
        assert out.shape == (6, 3, cfg.resize, cfg.resize), cfg


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("orchestrator: error:") and needle in err, err


def test_evaluate_rebuilds_saved_weights_and_scores_the_test_split(raw, data_dir, tmp_path, capsys):
    """A tiny finished run's weights: evaluate prints the test accuracy the run itself scored
    (five-crop view, all 10,000 test images); bad files are one line and exit 2."""
    from results.io import save_weights
    from workloads.data import prepare
    from workloads.train import train
    cfg = TrialConfig().override({"train_subset": 500, "val_subset": 200, "test_subset": 0, "train_eval_size": 100,
                                  "epochs": 1, "batch_size": 50, "eval_view": "five:size=28", "resize": 24,
                                  "metrics": "val_acc"})
    out = train(cfg, prepare(cfg.data, raw), CPU)
    weights = tmp_path / "run" / "baseline.pt"
    save_weights(weights, out.state_dict, cfg.to_flat())
    assert json.loads(weights.with_suffix(".json").read_text())["eval_view"] == "five"
    assert main(["evaluate", str(weights), "--data-dir", str(data_dir)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and f"test accuracy {out.test_acc:.4f} on 10000 images" in line, (line, out.test_acc)

    one_line_error(capsys, ["evaluate", str(tmp_path / "none.pt")], "none.pt: no such file")
    bare = tmp_path / "bare.pt"
    torch.save(out.state_dict, bare)
    one_line_error(capsys, ["evaluate", str(bare)], "no configuration beside it (bare.json)")
    text = tmp_path / "text.pt"
    text.write_text("not weights")
    text.with_suffix(".json").write_text(weights.with_suffix(".json").read_text())
    one_line_error(capsys, ["evaluate", str(text)], "text.pt: not a weights file saved by torch")
    other = tmp_path / "other.pt"
    save_weights(other, out.state_dict, cfg.override({"spec": part3.NET.spec, "arch": "elec5307"}).to_flat())
    one_line_error(capsys, ["evaluate", str(other)], "the weights do not fit the saved configuration's model")
    broken = tmp_path / "broken.pt"
    save_weights(broken, out.state_dict, {**cfg.to_flat(), "epochs": 0})
    one_line_error(capsys, ["evaluate", str(broken)], "broken.json: not a run configuration (epochs must be >= 1)")


@pytest.mark.slow
def test_quick_sweep_runs_every_part_and_reports_them(ray_local, data_dir, tmp_path, capsys):
    out = tmp_path / "elec5307"
    tiny = {**{k: SIZES[k] for k in ("val_subset", "test_subset", "train_eval_size")}, "train_subset": 200,
            "part3.train_subset": 256, "batch_size": "4", "lr": "0.001,0.0001", "sid": "470123364"}
    assert main(["sweep", "elec5307", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
                 *[f"{k}={v}" for k, v in tiny.items()]]) == 0
    said = capsys.readouterr().out
    # a run that serves shorter prefixes counts once, beside the results it gave
    runs, results = map(int, re.search(r"finished: (\d+) of \1 runs \((\d+) results\)", said).group(1, 2))
    assert runs == len(pd.read_csv(out / "trials.csv")) and results > runs, said
    page = (out / "report.md").read_text()
    assert "part2's choice, batch4_lr" in page and "modified: the best variant on validation" in page
    assert "the tutorial baseline: 2 epochs, as the course notebook runs it" in page
    grid = pd.read_csv(out / "part2.csv")
    assert len(grid) == 4 and sorted(grid["epochs"].unique()) == [1, 2]  # 2 runs, 2 lengths each
    assert grid[["val_acc_mean", "test_acc_mean"]].notna().all().all() and (grid["train_s_total"] > 0).all()
    one = grid.set_index("group")
    assert one.loc["batch4_lr0.001_1ep", "train_s_total"] < one.loc["batch4_lr0.001_2ep", "train_s_total"]
    choice = json.loads((out / "part2_choice.json").read_text())
    assert choice["chosen"]["group"] in choice["within_noise"]
    p1 = pd.read_csv(out / "part1.csv")
    # part1's run is part2's (4, 0.001) run: the same numbers.
    assert p1["test_acc_mean"].tolist() == one.loc[["batch4_lr0.001_1ep", "batch4_lr0.001_2ep"], "test_acc_mean"].tolist()
    families = pd.read_csv(out / "part3.csv")
    assert set(families["family"]) == {"flip", "kernel", "multistep"}
    for name in ("part1", "part2_heatmaps", "part2_losses", "part3_flip", "part3_kernel", "part3_multistep"):
        assert (out / f"{name}.png").stat().st_size > 20000, name
    assert json.loads((out / "modified.json").read_text())["spec"] and (out / "modified.pt").exists()
    assert main(["evaluate", str(out / "baseline.pt"), "--data-dir", str(data_dir)]) == 0
    assert "on 10000 images (elec5307, eval_view full)" in capsys.readouterr().out
    # Last: without a browser it skips, and the checks above have run.
    from browser import check_page, chromium_or_skip
    seen = check_page(out / "report.html", screenshot=False, chromium=chromium_or_skip())
    assert seen["images_failed"] == 0 and not seen["overflow"] and seen["scrolled_tables"] == [], seen
