"""Study files (search_spaces/files.py), grid axes from the command line and one's own model
(workloads/imported.py): in-process for what they expand to and how they refuse, then end to
end, the example study file and a study with an imported model through real Ray Tune --quick,
their report pages opened in headless Chromium."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from browser import check_page, chromium_or_skip
from conftest import ROOT, SIZES, finished_sweep
from orchestrator.cli import main
from results.records import load_run
from search_spaces import get_study
from workloads.config import ConfigError, TrialConfig
from workloads.models import count_parameters, first_layer
from workloads.vectorized import why_not_vectorized

EXAMPLE = ROOT / "docs" / "examples" / "my_study.yaml"
OWN = "tests.fixtures.own_model"
MINIMAL = """
name: mine
stages:
  - name: train
    axes: {arch: [mlp_1, cnn_3], lr: [0.01, 0.001]}
reference: mlp_1_0.01
"""


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("orchestrator: error:") and needle in err, err


def test_a_minimal_file_is_a_grid_with_seeds(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(MINIMAL)
    study = get_study(str(path)).with_overrides({"repeats": "2"})
    names = [t.name for t in study.stage_trials(study.stages[0], {})]
    assert names[:4] == ["mlp_1_0.01_r0", "mlp_1_0.01_r1", "mlp_1_0.001_r0", "mlp_1_0.001_r1"] and len(names) == 8
    assert study.report.function == "results.reports:variants_report" and study.text == MINIMAL


def test_the_example_file(capsys):
    study = get_study(str(EXAMPLE))
    trials = study.stage_trials(study.stages[0], {})
    assert len(trials) == 27 and study.reference == "tutorial_lr0.01"
    assert sorted({t.group for t in trials})[:3] == ["bn_lr0.005", "bn_lr0.01", "bn_lr0.02"]
    assert {t.config.train.seed for t in trials} == {0, 1, 2}
    assert main(["list", str(EXAMPLE)]) == 0
    assert "27 trials (18 quick)" in capsys.readouterr().out


@pytest.mark.parametrize("text, needle", [
    ("name: x\nstages: []\ncolour: red\n", "x.yaml: unknown key 'colour'; known: name,"),
    ("name: x\nstages:\n  - {name: s, axis: {lr: [1]}}\n", "x.yaml: stages[0]: unknown key 'axis'"),
    ("name: x\nstages:\n  - {name: s, axes: {lr: [fast]}}\n", "x.yaml: stages.s.axes.lr: expected float, got 'fast'"),
    ("name: x\nstages:\n  - {name: s, axes: {colour: [red]}}\n", "x.yaml: stages.s.axes: unknown config key 'colour'"),
    ("name: x\nbase: {lr: [0.1, 0.2]}\nstages: []\n", "x.yaml: base.lr: a list; a list of values is a grid axis"),
    ("name: x\nrecipe: mine\nstages: []\n", "x.yaml: recipe: 'mine' is unknown"),
    ("stages: []\n", "x.yaml: name: missing"),
    ("name: x\nstages: [\n", "x.yaml: not valid YAML at line"),
    ("name: x\nstages:\n  - {name: s, variants: [{name: v, changes: {epochs: 0}}]}\n", "x.yaml: epochs must be >= 1"),
    ("name: x\nstages:\n  - {name: s}\nselect: train_loss\n", "x.yaml: study x: select='train_loss'"),
    ("name: x\nstages:\n  - {name: s, repeats: three}\n", "x.yaml: stages.s.repeats: expected int, got 'three'"),
    ("name: x\nstages:\n  - {name: s, repeats: 2.5}\n", "x.yaml: stages.s.repeats: expected int, got 2.5"),
    ("name: x\nrepeats: 2.5\nstages:\n  - {name: s}\n", "x.yaml: repeats: expected int, got 2.5"),
    ("name: x\nstages:\n  - {name: s, prefix: 3}\n", "x.yaml: stages.s.prefix: expected str, got 3"),
    ("name: x\nselect: [val_acc]\nstages:\n  - {name: s}\n", "x.yaml: select: expected str, got ['val_acc']"),
    ("name: x\nreference: {a: 1}\nstages:\n  - {name: s}\n", "x.yaml: reference: expected str"),
    ("name: x\nstages:\n  - {name: s, variants: [{name: v, note: 3}]}\n",
     "x.yaml: stages.s.variants[0].note: expected str"),
    ("name: ../../escape\nstages:\n  - {name: s}\n", "x.yaml: name: '../../escape': a study's name names its folder"),
    ("name: .hidden\nstages:\n  - {name: s}\n", "x.yaml: name: '.hidden'"),
    ("name: part3\nstages:\n  - {name: s}\n", "x.yaml: name: 'part3' is a built-in study's"),
    ("name: x\nstages:\n  - {name: s, axes: {lr: [0.1]}}\nreference: lr0.1\n",
     "x.yaml: reference: 'lr0.1' is no group"),
    ("name: x\nstages:\n  - {name: s, axes: {lr: [0.1]}}\nreference: lr=0.5\n", "no group of the study has lr=0.5"),
    ("name: x\nstages:\n  - {name: s}\nreference: colour=red\n", "x.yaml: reference: 'colour=red': unknown config key"),
    ("name: x\nstages:\n  - {name: s}\nfigures: [{name: f, title: t, metrics: [accuracy]}]\n",
     "x.yaml: figures[0].metrics: 'accuracy' is no curve"),
    ("name: x\nstages:\n  - {name: s}\nfigures: [{name: f, title: t, groups: [t]}]\n",
     "x.yaml: figures[0].groups: 't' is no group of the study's"),
    ("name: x\nstages:\n  - {name: s}\nreport: nowhere.mine:report\n",
     "x.yaml: report.function: 'nowhere.mine:report': no module nowhere.mine"),
])
def test_file_errors_are_one_line_naming_file_and_key(capsys, tmp_path, text, needle):
    (tmp_path / "x.yaml").write_text(text)
    one_line_error(capsys, ["plan", str(tmp_path / "x.yaml")], needle)


def test_a_report_function_that_is_not_there_is_refused_before_anything_runs(capsys, tmp_path):
    """Its module exists (checked at load), the function is not: refused when the sweep starts
    (importing the report imports plotting code, which reading a study does not)."""
    (tmp_path / "x.yaml").write_text("name: x\nstages:\n  - {name: s}\nreport: results.reports:no_such\n")
    assert main(["plan", str(tmp_path / "x.yaml")]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["sweep", str(tmp_path / "x.yaml"), "--out", str(tmp_path / "out")],
                   "report results.reports:no_such: cannot be imported (AttributeError")
    assert not (tmp_path / "out").exists()


def test_scalars_from_yaml_are_typed_and_quick_has_a_default(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text('name: mine\nrepeats: "3"\nstages:\n  - {name: s, axes: {lr: [0.1]}}\n')
    study = get_study(str(path))
    assert study.repeats == 3 and [t.name for t in study.plan["s"].trials] == ["0.1_r0", "0.1_r1", "0.1_r2"]
    quick = study.with_quick()   # no `quick:` in the file: minutes, not the full size
    assert quick.repeats == 2 and quick.base_config().train.epochs == 1
    assert quick.base_config().data.train_subset == 2000
    path.write_text("name: mine\nstages:\n  - {name: s}\n")   # one repeat: --quick keeps it one
    assert get_study(str(path)).with_quick().repeats == 1
    # --quick never asks for more than the study: its own smaller subset stays, and snapshots of a
    # longer run go with the length.
    path.write_text("name: mine\nbase: {train_subset: 300, epochs: 10, snapshot_epochs: [5]}\n"
                    "stages:\n  - {name: s}\n")
    quick = get_study(str(path)).with_quick().base_config()
    assert (quick.data.train_subset, quick.data.val_subset, quick.train.epochs, quick.train.snapshot_epochs) == (
        300, 500, 1, ())


def test_a_report_function_in_the_working_folder_is_found_without_python_m(tmp_path):
    """The console script has no working folder on sys.path (python -m has): the report's module
    is found there all the same, and a package that fails to import is one line."""
    import os
    import subprocess
    import sys
    (tmp_path / "myrep.py").write_text("def rep(results, out, study):\n    pass\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "__init__.py").write_text("raise RuntimeError('half written')\n")
    (tmp_path / "ok.yaml").write_text("name: mine\nreport: myrep:rep\nstages:\n  - {name: s}\n")
    (tmp_path / "bad.yaml").write_text("name: mine\nreport: broken.rep:rep\nstages:\n  - {name: s}\n")
    code = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            "from orchestrator.cli import main; sys.exit(main(['plan', sys.argv[1]]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, "-c", code, "ok.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-c", code, "bad.yaml"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "report.function" in bad.stderr, bad.stderr


def test_a_python_file_has_a_derived_stage(capsys, tmp_path):
    (tmp_path / "derived.py").write_text(
        "from search_spaces.study import Stage, Study\n"
        "STUDY = Study('derived', 'lr from the first stage', stages=(\n"
        "    Stage('first', axes=(('lr', (0.1, 0.01)),)),\n"
        "    Stage('second', derive=lambda earlier: {'lr': [0.05]})))\n")
    assert main(["plan", str(tmp_path / "derived.py"), "repeats=2"]) == 0
    out = capsys.readouterr().out
    assert "stage first: 4 trials" in out and "stage second: a grid computed from earlier stages' results" in out
    (tmp_path / "empty.py").write_text("x = 1\n")
    one_line_error(capsys, ["plan", str(tmp_path / "empty.py")], "empty.py: STUDY: missing")
    (tmp_path / "broken.py").write_text("x = (\n")
    one_line_error(capsys, ["plan", str(tmp_path / "broken.py")], "broken.py: SyntaxError at line 1")
    one_line_error(capsys, ["plan", str(tmp_path / "none.yaml")], "none.yaml: no such study file")


def test_a_list_on_a_key_that_is_no_axis_adds_one(capsys):
    assert main(["plan", "part3", "lr=0.001,0.0005"]) == 0
    out = capsys.readouterr().out
    assert "stage train: 100 trials" in out and "cnn_3_lr0.0005_r9" in out   # part3 alone: 50 trials
    study = get_study("hw2").with_overrides({"optimizer": "sgd:momentum=0.9,adam", "augment": "flip,crop"})
    trials = study.stage_trials(study.stages[0], {})
    assert len(trials) == 30 and trials[0].name == "cnn_sgd:momentum=0.9_r0" and trials[1].name == "cnn_adam_r0"
    # augment's one value is a list of augmentations, not an axis (the augment variant keeps its own)
    assert {t.config.data.augment for t in trials if not t.group.startswith("augment")} == {"flip,crop"}
    one = get_study("part4").with_overrides({"train.lr": "0.01,0.02", "arch": "mlp_1", "repeats": "1"})
    assert [t.name for t in one.stage_trials(one.stages[0], {})] == [
        "mlp_1_relu_lr0.01_r0", "mlp_1_relu_lr0.02_r0", "mlp_1_sigmoid_lr0.01_r0", "mlp_1_sigmoid_lr0.02_r0"]
    with pytest.raises(ConfigError, match="stage search is a search"):
        get_study("coordinate").with_overrides({"batch_size": "4,8"})


def test_a_value_twice_is_one_group_and_seeds_are_no_axis(capsys, tmp_path, monkeypatch):
    for key in ("lr", "train.lr"):                   # a new axis: one value, one group
        study = get_study("part3").with_overrides({key: "0.1,0.10", "repeats": "2"})
        names = [t.name for t in study.plan["train"].trials]
        assert names[:3] == ["mlp_1_lr0.1_r0", "mlp_1_lr0.1_r1", "mlp_2_lr0.1_r0"] and len(names) == 10
    for key in ("archs", "train.arch"):                      # an axis restricted, by study or by stage
        study = get_study("part3").with_overrides({key: "cnn_3,cnn_3", "repeats": "2"})
        assert [t.name for t in study.plan["train"].trials] == ["cnn_3_r0", "cnn_3_r1"]
    (tmp_path / "x.yaml").write_text("name: x\nstages:\n  - {name: s, axes: {lr: [0.1, 0.10]}}\n")
    assert [t.name for t in get_study(str(tmp_path / "x.yaml")).plan["s"].trials] == ["0.1_r0"]
    # seed = the group's seed + the repeat: a seed axis's groups would overlap
    one_line_error(capsys, ["plan", "part3", "--quick", "archs=cnn_3", "seed=0,1"],
                   "seed=0,1: seeds are repeats: use repeats=N (seed=S sets the first)")
    one_line_error(capsys, ["plan", "part4", "train.seed=0,5"], "seeds are repeats")
    (tmp_path / "x.yaml").write_text("name: x\nstages:\n  - {name: s, axes: {seed: [0, 1]}}\n")
    one_line_error(capsys, ["plan", str(tmp_path / "x.yaml")], "x.yaml: stage s: axis seed: seeds are repeats")
    # two modules whose factories label alike (own_model.small): refused, not two runs of one name
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "fixtures" / "own_model.py", tmp_path / "other" / "own_model.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    one_line_error(capsys, ["plan", "hw2", f"arch={OWN}:small,other.own_model:small"],
                   f"two trials are named cnn_own_model.small_r0 (arch={OWN}:small and arch=other.own_model:small)")


def test_a_derived_stage_is_checked_with_the_plan(tmp_path):
    """StagePlan.given (what the driver reads for a derived stage): group names unique across stages."""
    from types import SimpleNamespace
    (tmp_path / "derived.py").write_text(
        "from search_spaces.study import Stage, Study\n"
        "STUDY = Study('derived', 'lr from the first stage', stages=(\n"
        "    Stage('first', axes=(('lr', (0.1, 0.01)),)),\n"
        "    Stage('second', derive=lambda earlier: {'lr': [0.1]})))\n")
    study = get_study(str(tmp_path / "derived.py"))
    earlier = {"first": [SimpleNamespace(group=t.group) for t in study.plan["first"].trials]}
    with pytest.raises(ConfigError, match="group '0.1' is in stages first and second"):
        study.plan["second"].given(study, earlier)


def test_own_model_is_checked_counted_and_vectorized(capsys):
    cfg = TrialConfig().override({"arch": f"{OWN}:small", "width": 2.0})
    model = cfg.model.build(cfg.data.in_shape)
    assert count_parameters(model) == 3 * 16 * 9 + 16 + 16 * 64 * 10 + 10
    assert why_not_vectorized(cfg) is None
    tagged = TrialConfig().override({"arch": f"{OWN}:tagged"}).model.build((3, 32, 32))
    assert type(first_layer(tagged)).__name__ == "Conv2d"     # not the GroupNorm before it
    for factory, needle in (("wrong_classes", "output for a batch of 2 is (2, 7), expected (2, 10)"),
                            ("not_a_module", "the factory returned str, not an nn.Module"),
                            ("NOT_CALLABLE", "has no callable 'NOT_CALLABLE'"),
                            ("no_settings", "the factory failed (TypeError: no_settings() takes 1 positional"),
                            ("needs_depth", "the factory failed (KeyError: 'depth')")):
        one_line_error(capsys, ["plan", "part3", f"arch={OWN}:{factory}"], needle)
    one_line_error(capsys, ["plan", "part3", "arch=nowhere.mine:net"], "cannot import nowhere.mine")


def checked_page(out, tmp_path, name):
    seen = check_page(out / "report.html", width=1280, screenshot=tmp_path / f"{name}.png",
                      chromium=chromium_or_skip())
    assert seen["images"] >= 1 and seen["images_failed"] == 0 and not seen["overflow"], seen
    return seen


@pytest.mark.slow
def test_example_study_file_runs_quick_and_reports(ray_local, data_dir, tmp_path, capsys):
    """The example file, copied where a user keeps it, run --quick; then edited: `report` and
    --resume read the text the sweep kept."""
    path = tmp_path / "my_study.yaml"
    shutil.copy(EXAMPLE, path)
    sizes = [f"{k}={v}" for k, v in SIZES.items() if k != "record_every"]
    out, printed = finished_sweep(["sweep", str(path), "--quick", "--data-dir", str(data_dir), "repeats=1",
                                   "lr=0.01,0.005", *sizes], tmp_path / "run")
    assert "finished: 6 of 6 runs" in printed
    run = load_run(out)
    assert sorted(run.runs["group"]) == ["bn_lr0.005", "bn_lr0.01", "tutorial_lr0.005", "tutorial_lr0.01",
                                         "wide_lr0.005", "wide_lr0.01"]
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["study_name"] == "mynets" and saved["study_file"]["text"] == EXAMPLE.read_text()
    assert json.loads((out / "provenance.json").read_text())["study_file"]["path"] == str(path)
    seen = checked_page(out, tmp_path, "mynets")
    assert seen["images"] == 1 and "mynets" in seen["title"]
    html = (out / "report.html").read_text()
    assert "tutorial_lr0.01" in html and "wide_lr0.005" in html and (out / "curves.png").exists()
    path.write_text("name: other\nstages: [{name: s}]\n")   # the file changes: the run does not
    capsys.readouterr()
    assert main(["report", str(out)]) == 0 and "report:" in capsys.readouterr().out
    assert "wide_lr0.005" in (out / "report.html").read_text()


@pytest.mark.slow
def test_own_model_runs_quick_vectorized_and_evaluates(ray_local, data_dir, tmp_path, capsys):
    sizes = [f"{k}={v}" for k, v in SIZES.items()] + ["record_unit=step", "batch_size=50"]
    out, printed = finished_sweep(["sweep", "part3", "--quick", "--data-dir", str(data_dir), "repeats=2",
                                   f"arch={OWN}:small,mlp_1", "--repeats-per-trial", "2", *sizes],
                                  tmp_path / "own")
    assert "finished: 4 of 4 runs" in printed
    run = load_run(out)
    assert set(run.runs["group"]) == {"own_model.small", "mlp_1"}
    own = run.runs[run.runs["group"] == "own_model.small"]
    assert (own["parameters"] == 1 * 8 * 9 + 8 + 8 * 64 * 10 + 10).all()
    assert run.first_layers()[int(own["record"].iloc[0])].shape == (8, 1, 3, 3)
    checked_page(out, tmp_path, "own")
    capsys.readouterr()
    assert main(["evaluate", str(out / "best" / "own_model.small.pt"), "--data-dir", str(data_dir)]) == 0
    assert f"({OWN}:small," in capsys.readouterr().out


def test_resume_reads_the_text_the_sweep_kept(tmp_path):
    from orchestrator.request import Request
    from orchestrator.sweeps import study_file, with_saved
    path = tmp_path / "mine.yaml"
    path.write_text(MINIMAL)
    first = Request(str(path), ("repeats=2",))
    saved = {"study": str(path), "quick": False, "overrides": ["repeats=2"], "storage": None, "log": [],
             **study_file(first.resolve_study())}
    path.unlink()                                   # moved away: the kept text still runs
    again = with_saved(Request(str(tmp_path / "moved.yaml"), resume=True), saved)
    assert again.study_text == MINIMAL and len(again.resolve_study().stage_trials(
        again.resolve_study().stages[0], {})) == 8
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nstages: [{name: s}]\n")   # another study at another path: refused
    with pytest.raises(ConfigError, match="started with study"):
        with_saved(Request(str(other), resume=True), saved)


def test_resume_of_a_file_since_edited_runs_the_kept_text(tmp_path, monkeypatch):
    """The README's promise: the file may change or move after a sweep starts. A hand-written
    runs/mine/<stamp>/sweep.json: --resume finds it by the file's path, whatever the file holds now."""
    from orchestrator.request import Request
    from orchestrator.sweeps import output_folder, study_file, with_saved
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mine.yaml"
    path.write_text(MINIMAL)
    saved = {"study": "mine.yaml", "quick": False, "overrides": [], "storage": None, "log": [],
             **study_file(Request("mine.yaml").resolve_study())}
    for stamp in ("20240101-000000", "20240102-000000"):
        (tmp_path / "runs" / "mine" / stamp).mkdir(parents=True)
        (tmp_path / "runs" / "mine" / stamp / "sweep.json").write_text(json.dumps(saved))
    for text in ("name: mine\nstages: [\n",                      # half-edited: not valid YAML
                 "name: renamed\nstages: [{name: s}]\n"):         # renamed (runs/mine/ all the same)
        path.write_text(text)
        request = Request(str(path), resume=True)
        assert output_folder(request) == Path("runs", "mine", "20240102-000000")
        again = with_saved(request, saved)
        assert again.study_text == MINIMAL and again.resolve_study().name == "mine"
    (tmp_path / "copy.yaml").write_text("name: mine\nstages: [\n")  # another path, not valid now: the kept text
    assert with_saved(Request("copy.yaml", resume=True), saved).study_text == MINIMAL


def test_what_a_python_study_file_defines_reaches_ray_workers_by_value(tmp_path):
    """A .py study is a module no worker can import: Ray's pickler sends its functions by value
    (the standalone cloudpickle, which Ray does not use, is not needed)."""
    import subprocess
    import sys

    from ray import cloudpickle

    from orchestrator.driver import ship_study_files
    (tmp_path / "fn.py").write_text(
        "from search_spaces.study import Stage, Study\n"
        "def double(earlier):\n    return {'lr': [0.02]}\n"
        "STUDY = Study('fn', 'a derived stage', stages=(Stage('a'), Stage('b', derive=double)))\n")
    derive = get_study(str(tmp_path / "fn.py")).stages[1].derive
    ship_study_files()
    data = cloudpickle.dumps(derive)
    code = "import sys, pickle; print(pickle.loads(sys.stdin.buffer.read())({}))"
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.decode().strip() == "{'lr': [0.02]}", done.stderr.decode()
