"""The coordinate study: its settings and values (golden), the searcher it feeds (which
configs it asks for, in which order, on a synthetic score, without Ray), the replay that
reads the search back from its records, the final stage derived from the search, and
quick sweeps through the command line: whole, and interrupted then resumed."""
from dataclasses import replace

import pandas as pd
import pytest
from ray.tune.search import Searcher

from interrupt import finished_trials, interrupted
from orchestrator.cli import main
from orchestrator.search_stage import make_searcher, replay
from results.aggregate import RunRecord
from search_spaces import get_study
from search_spaces.convnet import Net
from search_spaces.search import SearchRecords, Setting
from workloads import metrics as M
from workloads.config import ConfigError, TrialConfig
from workloads.models import ARCHS

TUTORIAL = ",".join(ARCHS["tutorial"])
SETTINGS = ["batch_size", "depth", "width", "filter_size", "dropout", "batch_norm", "pooling", "activation",
            "optimizer", "init", "weight_decay", "lr", "scheduler", "epochs", "momentum", "normalize"]


def test_the_search_is_the_reports_settings_in_order_from_the_tutorial_run():
    study = get_study("coordinate")
    search, final = study.stages
    assert [s.name for s in search.search.settings] == SETTINGS
    assert [len(s.values) for s in search.search.settings] == [6, 5, 5, 5, 8, 4, 4, 2, 5, 6, 8, 5, 4, 7, 5, 5]
    assert search.search.most_trials(3) == 3 * 85 and search.search.metric == M.VAL_ACC
    base = study.stage_config(search)
    assert (base.model.arch, base.model.spec, base.data.normalize, base.train.optimizer, base.train.lr,
            base.train.batch_size, base.train.epochs, base.train.score_test) == (
        "tutorial", TUTORIAL, "half", "sgd:momentum=0.9", 0.001, 4, 5, False)
    assert base.train.recorded == (M.LOSS, M.VAL_ACC, M.VAL_LOSS)
    assert study.repeats == 3 and dict(final.fixed) == {"score_test": True}
    # The final runs' seeds: the search's + 100, + 101, ..., whatever seed= says (search seeds 0-2 here).
    from search_spaces.search import SearchRecords
    found = SearchRecords(best={"seed": 5, "lr": 0.01}, base={"seed": 5, "lr": 0.001})
    assert final.derive({"search": found}) == {"lr": 0.01, "seed": 105}
    # Every data set the search can ask for is prepared before it starts: the normalisations.
    assert sorted(d.normalize for d in search.search.data_configs(base.to_flat())) == [
        "const:mean=0.45:std=0.45", "const:mean=0.475:std=0.475", "dataset", "half", "none"]


def test_architecture_values_rewrite_the_current_net():
    net = Net.parse(TUTORIAL)
    assert net.spec == TUTORIAL and net.fcs == (120, 84) and [c.kernel for c in net.convs] == [5, 5]
    deeper = net.with_depth(3, 1).with_first_kernel(3)
    assert deeper.spec == ("Conv-3x3x6,ReLU,MaxPool-2x2,Conv-5x5x16,ReLU,MaxPool-2x2,Conv-5x5x32-p2,ReLU,"
                           "FC-120,ReLU")
    varied = replace(deeper, pool="Avg", conv_bn=True, dropout=0.25).with_first_width(240)
    assert varied.spec == ("Conv-3x3x6,BN,ReLU,AvgPool-2x2,Conv-5x5x16,BN,ReLU,AvgPool-2x2,Conv-5x5x32-p2,BN,ReLU,"
                           "FC-240,ReLU,Dropout-0.25")
    assert Net.parse(varied.spec) == varied
    assert Net.parse(net.with_depth(1, 2).with_first_kernel(7).spec).convs[0].kernel == 7
    # Dropout after the first hidden FC layer alone, and LP pooling, read back as written.
    one = replace(net, dropout=0.25, dropout_fcs=1, pool="LP")
    assert one.spec == ("Conv-5x5x6,ReLU,LPPool-2x2,Conv-5x5x16,ReLU,LPPool-2x2,FC-120,ReLU,Dropout-0.25,"
                        "FC-84,ReLU")
    assert Net.parse(one.spec) == one and Net.parse(replace(one, dropout_fcs=None).spec).dropout_fcs is None
    with pytest.raises(ValueError, match="other hidden FC layers than the first"):
        Net.parse("Conv-5x5x6,ReLU,FC-120,ReLU,FC-84,ReLU,Dropout-0.1")
    assert replace(net.with_depth(2, 0), dropout=0.5).spec.endswith("MaxPool-2x2,Dropout-0.5")
    with pytest.raises(ValueError, match="not part of a plain"):
        Net.parse("Conv-3x3x16-s2,ReLU")


def test_the_values_include_every_one_the_report_tried():
    """Seed 004's values, as computed on the tutorial run the search starts from: batch 7;
    the first convolution at 3x3 (the others keep 5x5); dropout 0.25, 0.1, 0.01 after both
    hidden FC layers and 0.25, 0.01 after the first alone; LPPool2d; He on every layer and
    on the convolutions only; weight decay 0.1, 1 and 5; epochs 10, 15, 20, 25 and 50;
    momentum 0.75 and 0.95; normalisation 0.45 and 0.475; widths 180, 240, 320, 480."""
    study = get_study("coordinate")
    search = study.stages[0]
    base = study.stage_config(search).to_flat()
    settings = {s.name: s for s in search.search.settings}

    def values(name: str) -> dict:
        return {label: dict(ch(base)) if callable(ch) else dict(ch) for label, ch in settings[name].values}

    def of(name: str, key: str) -> list:
        return [v[key] for v in values(name).values()]

    assert of("batch_size", "batch_size") == [1, 4, 6, 7, 8, 10]
    convs = "Conv-{k}x{k}x6,ReLU,MaxPool-2x2,Conv-5x5x16,ReLU,MaxPool-2x2"
    assert of("filter_size", "spec") == [convs.format(k=k) + ",FC-120,ReLU,FC-84,ReLU" for k in (3, 4, 5, 6, 7)]
    tutorial = convs.format(k=5)
    assert values("dropout") == {
        "p0": {"spec": TUTORIAL},
        **{f"p{p:g}": {"spec": f"{tutorial},FC-120,ReLU,Dropout-{p:g},FC-84,ReLU,Dropout-{p:g}"}
           for p in (0.01, 0.1, 0.25, 0.5)},
        **{f"p{p:g}_fc1": {"spec": f"{tutorial},FC-120,ReLU,Dropout-{p:g},FC-84,ReLU"} for p in (0.01, 0.1, 0.25)}}
    assert of("pooling", "spec") == [TUTORIAL, TUTORIAL.replace("MaxPool", "AvgPool"),
                                     TUTORIAL.replace("MaxPool", "LPPool"), TUTORIAL.replace(",MaxPool-2x2", "")]
    assert of("init", "init") == ["default", "xavier_uniform", "kaiming_uniform", "kaiming_uniform_conv",
                                  "normal:std=0.01", "uniform:a=0.05"]
    assert of("weight_decay", "weight_decay") == [0.0, 1e-4, 5e-4, 1e-3, 1e-2, 0.1, 1.0, 5.0]
    assert base["epochs"] == 5 and of("epochs", "epochs") == [5, 2, 10, 15, 20, 25, 50]
    assert of("lr", "lr") == [0.001, 0.00025, 0.0005, 0.002, 0.004]
    assert of("momentum", "optimizer") == [f"sgd:momentum={m}" for m in (0.9, 0.5, 0.75, 0.95, 0.99)]
    assert of("normalize", "normalize") == ["half", "dataset", "none", "const:mean=0.45:std=0.45",
                                            "const:mean=0.475:std=0.475"]
    assert [int(v["spec"].split("FC-")[1].split(",")[0]) for v in values("width").values()] == [120, 180, 240, 320, 480]
    for spec in of("pooling", "spec") + of("dropout", "spec") + of("filter_size", "spec"):
        TrialConfig.from_flat({**base, "spec": spec}).model.build((3, 32, 32))  # every one builds


def score(param: dict) -> float:
    """A synthetic validation accuracy: batch 8, one FC layer fewer and a 3x3 filter help."""
    net = Net.parse(param["spec"])
    return (0.5 + 0.04 * (param["batch_size"] == 8) + 0.03 * (len(net.fcs) == 1)
            + 0.02 * (net.convs[0].kernel == 3) + 0.01 * param["seed"])


def drive(search, scores=score):
    asked, n = [], 0
    while (suggestion := search.suggest(f"t{n}")) != Searcher.FINISHED:
        param = suggestion["trial"]
        asked.append(param)
        search.on_trial_complete(f"t{n}", {M.VAL_ACC: scores(param)})
        n += 1
    return asked


def test_the_study_feeds_the_searcher_one_setting_at_a_time():
    study = get_study("coordinate").with_overrides({"repeats": "2"})
    search = make_searcher(study, study.stages[0])
    asked = drive(search)
    groups = [(p["group"], p["repeat"]) for p in asked]
    # The base (batch 4) first, then the other batch sizes; each config once, both seeds.
    assert groups[:12] == [(f"batch_size={b}", r) for b in (4, 1, 6, 7, 8, 10) for r in (0, 1)]
    # Depth on top of batch 8: the tutorial net (conv2_fc2) is not trained again.
    assert groups[12:20] == [(f"depth={d}", r) for d in ("conv1_fc2", "conv3_fc2", "conv2_fc1", "conv2_fc0")
                             for r in (0, 1)]
    assert {p["batch_size"] for p in asked[12:]} == {8}
    # Later settings keep the net chosen: the filter sizes apply to the one-FC net's first convolution.
    filters = [p for p in asked if p["group"].startswith("filter_size=")]
    assert [p["spec"] for p in filters[::2]] == [
        f"Conv-{k}x{k}x6,ReLU,MaxPool-2x2,Conv-5x5x16,ReLU,MaxPool-2x2,FC-120,ReLU" for k in (3, 4, 6, 7)]
    assert {p["seed"] for p in asked} == {0, 1} and not any(p["score_test"] for p in asked)
    assert len(asked) == len({(p["group"], p["repeat"]) for p in asked})  # nothing asked twice
    history = search.history()
    assert [h["step"] for h in history] == SETTINGS
    assert [h["chosen"] for h in history[:4]] == ["8", "conv2_fc1", "fc120", "3x3"]
    # No other setting changes the score: every later step keeps its incumbent.
    assert all(h["chosen"] == h["incumbent"] for h in history[4:])
    assert search.best_config()["spec"] == "Conv-3x3x6,ReLU,MaxPool-2x2,Conv-5x5x16,ReLU,MaxPool-2x2,FC-120,ReLU"


def record(param: dict, value: float, status: str = M.FINISHED) -> RunRecord:
    config = {k: v for k, v in param.items() if k not in ("stage", "group", "repeat")}
    curves = pd.DataFrame({M.STEP: [1], M.EPOCH: [1.0], M.VAL_ACC: [value]})
    return RunRecord(param["stage"], "whatever", 0, config, curves, float("nan"), 1.0, status=status)


def test_replay_reads_the_same_search_back_from_the_records():
    study = get_study("coordinate").with_quick()
    stage = study.stages[0]
    live = make_searcher(study, stage)
    asked = drive(live)
    records = [record(p, score(p)) for p in asked][::-1]  # in any order
    found = replay(make_searcher(study, stage), records)
    assert isinstance(found, SearchRecords) and repr(found.history) == repr(live.history())  # NaN stds
    assert [(r.group, r.repeat) for r in found] == [(p["group"], p["repeat"]) for p in asked]
    assert found.best == live.best_config()
    changes = found.best_changes()
    assert changes == {"batch_size": 8, "spec": "Conv-3x3x6,ReLU,MaxPool-2x2,Conv-5x5x16,ReLU,MaxPool-2x2,FC-120,ReLU"}
    # The final stage trains that config again on new seeds, and scores the test set.
    final = study.stage_trials(study.stages[1], {"search": found})
    assert [(t.group, t.config.train.seed, t.config.train.score_test) for t in final] == [("final", 100, True)]
    assert {k: v for k, v in final[0].config.to_flat().items() if k in changes} == changes
    # A failed trial is the worst score (as the live search counted it); a missing one means
    # the search stopped early.
    live, n, fails, kept = make_searcher(study, stage), 0, [], []
    while (suggestion := live.suggest(f"t{n}")) != Searcher.FINISHED:
        param = suggestion["trial"]
        error = param["group"] == "depth=conv2_fc1"
        fails += [param] if error else []
        kept += [] if error else [record(param, score(param))]
        live.on_trial_complete(f"t{n}", None if error else {M.VAL_ACC: score(param)}, error=error)
        n += 1
    failed = replay(make_searcher(study, stage), kept, errored=fails)
    assert repr(failed.history) == repr(live.history()) and failed.history[1]["chosen"] == "conv2_fc2"
    assert failed.history[1]["rows"][3]["failed"] == [{"repeat": 0, "why": "error"}]
    from orchestrator.experiment import Interrupted  # the search stopped early: --resume finishes it
    with pytest.raises(Interrupted, match="stopped before depth=conv2_fc1_r0"):
        replay(make_searcher(study, stage), kept)
    # A run that diverged is a failed one, whatever validation score it had before.
    diverged = replay(make_searcher(study, stage), kept + [record(fails[0], 0.99, M.DIVERGED)])
    assert diverged.history[1]["rows"][3]["failed"] == [{"repeat": 0, "why": M.DIVERGED}]
    assert [h["chosen"] for h in diverged.history] == [h["chosen"] for h in live.history()]


def test_search_stages_are_checked():
    from search_spaces.search import Search, best_of
    from search_spaces.study import Stage
    with pytest.raises(ConfigError, match="unknown key"):
        Setting("x", (("a", (("colour", 1),)),))
    with pytest.raises(ConfigError, match="unique"):
        Setting("x", (("a", ()), ("a", ())))
    with pytest.raises(ConfigError, match="chooses on validation data"):
        Search((Setting("x", (("a", ()),)),), metric=M.TEST_ACC)
    with pytest.raises(ConfigError, match="no axes, variants"):
        Stage("s", axes=(("lr", (0.1,)),), search=Search((Setting("x", (("a", ()),)),)))
    with pytest.raises(ConfigError, match="not a search stage"):
        best_of("search")({"search": []})
    study = get_study("coordinate")
    with pytest.raises(ConfigError, match="asks for its trials as it runs"):
        study.stage_trials(study.stages[0], {})


# --- quick sweeps through the command line ------------------------------------------------

SIZES = {"train_subset": "200", "val_subset": "200", "test_subset": "200"}


def small_study():
    """The quick study cut to four settings of two values (one computed from the current
    best, one a data setting), so that a sweep takes seconds."""
    study = get_study("coordinate")
    search, final = study.stages
    settings = {s.name: s for s in search.search.settings}
    keep = [("batch_size", ("4", "8")), ("depth", ("conv2_fc2", "conv2_fc1")), ("lr", ("x1", "x2")),
            ("normalize", ("half", "dataset"))]
    cut = tuple(replace(settings[name], values=tuple(v for v in settings[name].values if v[0] in labels))
                for name, labels in keep)
    return replace(study, stages=(replace(search, search=replace(search.search, settings=cut)), final))


@pytest.fixture
def small(monkeypatch):
    import orchestrator.request
    study = small_study()
    monkeypatch.setattr(orchestrator.request, "get_study", lambda name, text=None: study)  # where a request finds it


def sweep(out, data_dir, *extra):
    return main(["sweep", "coordinate", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
                 *[f"{k}={v}" for k, v in SIZES.items()], *extra])


@pytest.mark.slow
def test_quick_sweep_searches_then_scores_only_the_final_configuration(ray_local, data_dir, tmp_path, small):
    out = tmp_path / "coordinate"
    assert sweep(out, data_dir, "repeats=2") == 0
    steps, path = pd.read_csv(out / "steps.csv", dtype={"value": str}), pd.read_csv(out / "path.csv")
    assert list(path["setting"]) == ["batch_size", "depth", "lr", "normalize", "final"]
    assert steps.groupby("setting", sort=False)["value"].apply(list).to_dict() == {
        "batch_size": ["4", "8"], "depth": ["conv2_fc2", "conv2_fc1"], "lr": ["x1", "x2"],
        "normalize": ["half", "dataset"]}
    assert (steps.groupby("step")["chosen"].sum() == 1).all() and (steps["n"] == 2).all()
    assert steps["val_acc_mean"].between(0, 1).all() and steps["val_acc_std"].notna().all()
    # Every value's final training loss beside its validation accuracy (reused rows too: the
    # incumbent's runs are found by their config), and the kept value's in path.csv.
    assert steps["train_loss_mean"].gt(0).all() and steps["train_loss_std"].notna().all()
    kept = steps[steps.chosen].set_index("setting")["train_loss_mean"]
    assert path.set_index("setting")["train_loss_mean"].drop("final").to_dict() == kept.to_dict()
    assert path["train_loss_mean"].iloc[-1] > 0
    # The incumbent of every setting after the first is reused, not trained again.
    assert steps[steps.step > 1].groupby("step")["reused"].sum().tolist() == [1, 1, 1]
    assert path["trained"].tolist() == [2, 1, 1, 1, 2]
    trials = pd.read_csv(out / "trials.csv")
    search, final = trials[trials.stage == "search"], trials[trials.stage == "final"]
    assert len(search) == 10 and search["test_acc"].isna().all()  # never touched the test set
    assert len(final) == 2 and final["test_acc"].between(0, 1).all()
    last = path.iloc[-1]
    assert last["n"] == 2 and last["test_n"] == 2 and 0 <= last["test_acc_mean"] <= 1
    assert path.iloc[:-1]["test_acc_mean"].isna().all()  # not scored: empty, never 0
    import json
    best = json.loads((out / "best_config.json").read_text())
    assert best["chosen_on"].startswith("validation") and best["test_acc"]["n"] == 2
    assert (out / "path.png").stat().st_size > 20000
    page = (out / "report.md").read_text()
    assert "groups that left the test set alone (score_test=false" in page and "The path of choices" in page
    assert page.count("final training loss") >= 2 and "trains on 200 images" in page and "40,000" in page
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0  # again from the saved records: the search's decisions are kept
    assert (out / "report.md").read_text().count("The path of choices") == 1
    assert pd.read_csv(out / "steps.csv")["train_loss_mean"].tolist() == steps["train_loss_mean"].tolist()
    from orchestrator.report import load_records
    saved, _ = load_records(out)  # records.json keeps the decisions; runs.parquet the search's runs
    assert isinstance(saved["search"], SearchRecords) and len(saved["search"]) == 10
    assert [h["step"] for h in saved["search"].history] == list(path["setting"][:-1])
    assert json.loads(json.dumps(saved["search"].best, default=str)) == best["config"]
    # Last: without a browser it skips, and the checks above have run.
    from browser import check_page, chromium_or_skip
    seen = check_page(out / "report.html", screenshot=False, chromium=chromium_or_skip())
    assert seen["images_failed"] == 0 and not seen["overflow"] and seen["scrolled_tables"] == [], seen


@pytest.mark.slow
def test_an_interrupted_search_continues_with_resume(ray_local, data_dir, tmp_path, small):
    """Interrupt the sweep (SIGUSR1, as Ctrl-C) once the first setting's trials are done;
    --resume finishes the search without running any finished trial again."""
    out = tmp_path / "coordinate"
    # the search interrupted (as by Ctrl-C) once two trials are done: --resume finishes it
    assert interrupted(lambda: sweep(out, data_dir, "repeats=1"),
                       lambda: len(finished_trials(out / "search")) >= 2) == 130
    done = {p.parent.name: p.read_text() for p in finished_trials(out / "search")}
    assert 2 <= len(done) < 5 and not (out / "path.csv").exists()
    assert main(["sweep", "coordinate", "--resume", "--out", str(out), "--data-dir", str(data_dir), "--quiet"]) == 0
    for name, text in done.items():  # finished trials were not run again
        assert (out / "search" / name / "result.json").read_text() == text, name
    folders = [p.name.rsplit("_", 1)[0] for p in (out / "search").iterdir() if (p / "result.json").exists()]
    assert len(folders) == len(set(folders)) == 5  # each config asked for once: base + one value a setting
    path = pd.read_csv(out / "path.csv")
    assert list(path["setting"]) == ["batch_size", "depth", "lr", "normalize", "final"]
    assert path.iloc[-1]["test_n"] == 1


def test_the_page_tables_fit_a_page_and_keep_every_number():
    """The path and step tables as the report shows them: mean and sd in one cell, the decision
    in words, the search's rows 'not scored' (never 0), the final row's test accuracy."""
    from results.cells import Missing
    from results.coordinate import page_path, page_steps
    path = pd.DataFrame([
        {"step": 1, "setting": "batch_size", "kept": "4", "was": "4", "changed": False, "val_acc_mean": 0.5921,
         "val_acc_std": 0.0071, "train_loss_mean": 1.0304, "train_loss_std": 0.012, "n": 2, "gain": 0.0035,
         "noise": 0.0055, "trained": 5},
        {"step": 2, "setting": "final", "kept": "the search's best, new seeds", "val_acc_mean": 0.589,
         "val_acc_std": 0.005, "train_loss_mean": 1.05, "train_loss_std": None, "n": 2, "trained": 2,
         "test_acc_mean": 0.5886, "test_acc_std": 0.0026, "test_n": 2}])
    shown = page_path(path)
    assert shown.columns.tolist() == ["step", "setting", "kept", "was", "validation (mean \u00b1 sd)",
                                      "final training loss", "n", "gain", "noise", "trained", "test (mean \u00b1 sd)"]
    assert shown["final training loss"].tolist() == ["1.030 \u00b1 0.012", "1.050 \u00b1 \u2014"]
    assert shown.iloc[0]["validation (mean \u00b1 sd)"] == "0.592 \u00b1 0.007" and shown.iloc[0]["gain"] == "+0.004"
    assert shown.iloc[0]["test (mean \u00b1 sd)"] == Missing("not scored")
    assert shown.iloc[1]["test (mean \u00b1 sd)"] == "0.589 \u00b1 0.003"
    steps = pd.DataFrame([
        {"step": 1, "setting": "batch_size", "value": "4", "changes": "batch_size=4", "n": 2, "val_acc_mean": 0.59,
         "val_acc_std": 0.01, "train_loss_mean": 1.033, "train_loss_std": 0.004, "chosen": True, "reused": True,
         "failed": "", "why": "incumbent kept"},
        {"step": 1, "setting": "batch_size", "value": "1", "changes": "batch_size=1", "n": 2, "val_acc_mean": 0.47,
         "val_acc_std": None, "train_loss_mean": 1.526, "train_loss_std": None, "chosen": False, "reused": False,
         "failed": "r1: diverged", "why": "not taken"}])
    rows = page_steps(steps).to_dict("records")
    assert [r["decision"] for r in rows] == ["reused; incumbent kept", "not taken (failed: r1: diverged)"]
    assert rows[1]["validation (mean \u00b1 sd)"] == "0.470 \u00b1 \u2014"
    assert [r["final training loss"] for r in rows] == ["1.033 \u00b1 0.004", "1.526 \u00b1 \u2014"]
