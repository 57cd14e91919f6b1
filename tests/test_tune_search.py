"""The tune study: a search stage run by Tune's own searchers (random, Optuna's TPE) and ASHA.
Its definition and checks (golden, without Ray), the space as Tune's sample domains, the
scheduler that never stops a run at its last record and writes down whom it stopped, and two
quick sweeps through the command line: random search to the end, and Optuna with ASHA."""
import importlib.util
import json
from dataclasses import replace

import pandas as pd
import pytest
from ray import tune
from ray.tune.schedulers import TrialScheduler

from browser import check_page, chromium_or_skip
from interrupt import finished_trials, interrupted
from orchestrator.cli import main
from orchestrator.driver import own_models
from orchestrator.tune_search import EarlyStops, param_space, read_stops
from search_spaces import get_study
from search_spaces.search import Search, SearchRecords, Setting, best_of
from search_spaces.study import Stage, Study
from search_spaces.tune_search import (ASHA, Choice, Integer, LogUniform, TuneSearch, Uniform, check_searches,
                                       parse_early_stop)
from workloads import metrics as M
from workloads.config import ConfigError

SPACE = (("lr", LogUniform(1e-3, 0.2)), ("batch_size", Choice((32, 64, 128))))


def test_the_tune_study_and_its_options():
    study = get_study("tune")
    search, final = study.stages
    assert (search.search.searcher, search.search.num_samples, search.search.scheduler) == ("random", 20, ASHA(1.0, 3.0))
    assert [k for k, _ in search.search.space] == ["lr", "batch_size", "weight_decay", "optimizer"]
    assert dict(search.fixed) == {"score_test": False} and dict(final.fixed) == {"score_test": True}
    assert search.search.most_trials(study.repeats) == 20  # candidates are single runs; the final stage repeats
    quick = study.with_quick()
    assert quick.stages[0].search.num_samples == 6 and quick.stages[0].search.scheduler == ASHA(0.5, 2.0)
    changed = study.with_overrides({"searcher": "optuna", "early_stop": "none", "samples": "4"}) \
        if importlib.util.find_spec("optuna") else study.with_overrides({"early_stop": "none", "samples": "4"})
    assert changed.stages[0].search.scheduler is None and changed.stages[0].search.num_samples == 4
    lines = study.with_quick().plan.lines()
    assert lines[1].startswith("stage search: random search (Tune's BasicVariantGenerator), 6 candidates")
    assert "ASHA (grace period 0.5 epochs, reduction factor 2)" in lines[2]
    assert "  lr             loguniform(0.001, 0.2)" in lines
    for bad, match in ((("searcher", "grid"), "choose from random, optuna"), (("samples", "0"), "samples must be"),
                       (("early_stop", "hyperband"), "choose none or asha"),
                       (("early_stop", "asha:grace=1"), "asha takes grace_period")):
        with pytest.raises(ConfigError, match=match):
            study.with_overrides(dict([bad]))


def test_scheduler_stays_the_learning_rate_schedule_and_no_option_may_hide_a_config_key(capsys):
    study = get_study("tune").with_overrides({"scheduler": "cosine", "early_stop": "none"})
    assert study.base_config().train.scheduler == "cosine" and study.stages[0].search.scheduler is None
    with pytest.raises(ConfigError, match=r"option\(s\) \['scheduler'\] are also config keys; rename the option"):
        replace(study, options=(("scheduler", lambda s, raw: s),))
    with pytest.raises(ConfigError, match=r"option\(s\) \['repeats'\] are also config keys"):
        replace(study, options=(("repeats", lambda s, raw: s),))
    assert main(["plan", "tune", "early_stop=cosine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "early_stop='cosine': choose none or asha" in err


def test_what_would_be_ignored_is_refused_in_one_line(capsys):
    """A value of a searched key (the final stage trains the chosen one), and ASHA that could stop
    nobody (its grace period at or past the runs' last record, which it never stops)."""
    for args, said in ((["lr=0.05"], "lr=0.05: stage search searches lr (loguniform(0.001, 0.2)) and later stages "
                                     "train the value it chooses, so a value set here would be ignored"),
                       (["final.batch_size=64"], "final.batch_size=64: stage search searches batch_size"),
                       (["epochs=1"], "ASHA's grace period (1 epochs) is not below the runs' 1 epoch(s)"),
                       (["--quick", "early_stop=asha:grace_period=2"], "grace period (2 epochs) is not below the runs' 2"),
                       (["final.seed=3"], "final.seed: stage final's seeds follow the search's")):
        assert main(["plan", "tune", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and said in err, err
    assert main(["plan", "tune", "epochs=1", "early_stop=none"]) == 0
    assert main(["plan", "tune", "--quick", "epochs=1", "early_stop=asha:grace_period=0.5"]) == 0
    # A stage before the search takes the searched key as any other.
    pre = Study("pre", "a grid, then a search", check=check_searches, stages=(
        Stage("pre", axes=(("batch_size", (32,)),)),
        Stage("search", search=TuneSearch(space=(("lr", Choice((0.1, 0.01))),), num_samples=2)),
        Stage("final", derive=best_of("search", seed_offset=100))))
    assert dict(pre.with_overrides({"pre.lr": "0.5"}).stages[0].fixed)["lr"] == 0.5
    with pytest.raises(ConfigError, match="final.lr=0.5: stage search searches lr"):
        pre.with_overrides({"final.lr": "0.5"})


def test_the_final_runs_never_reuse_the_candidates_seed():
    """seed=5 moves the candidates to seed 5 and the final runs to 105, 106, 107 (not 5, 6, 7)."""
    for overrides, candidates in (({}, 0), ({"seed": "5"}, 5), ({"search.seed": "7"}, 7)):
        study = get_study("tune").with_overrides(overrides)
        search, final = study.stages
        base = study.stage_config(search).to_flat()
        assert base["seed"] == candidates
        chosen = {**base, "lr": 0.05, "batch_size": 32}
        trials = study.stage_trials(final, {"search": SearchRecords([], [], chosen, base)})
        assert [t.config.train.seed for t in trials] == [candidates + 100 + r for r in range(3)]
        assert {(t.config.train.lr, t.config.train.batch_size, t.config.train.score_test) for t in trials} == \
            {(0.05, 32, True)}


def test_a_clusters_workers_get_the_own_models_a_search_can_ask_for(tmp_path, monkeypatch):
    """An imported arch that only a search stage names (a Choice of the space, a coordinate
    setting's value) is shipped too: the final stage trains what the search chose."""
    (tmp_path / "searched_models").mkdir()
    (tmp_path / "searched_models" / "__init__.py").write_text("from tests.fixtures.own_model import small\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    own = "searched_models:small"
    tuned = Study("t", "", (Stage("search", search=TuneSearch(SPACE + (("arch", Choice(("tutorial", own))),))),
                            Stage("final", derive=best_of("search"))))
    one_at_a_time = Study("c", "", (Stage("search", search=Search((Setting("arch", (("own", (("arch", own),)),)),))),
                                    Stage("final", derive=best_of("search"))))
    for study in (tuned, one_at_a_time):
        assert [m.__name__ for m in own_models(study)] == ["searched_models"], study.name
    assert own_models(replace(tuned, stages=(Stage("search", search=TuneSearch(SPACE)),))) == []


def test_optuna_missing_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError, match=r"searcher=optuna needs Optuna: pip install -e '\.\[optuna\]'"):
        get_study("tune").with_overrides({"searcher": "optuna"})
    assert main(["plan", "tune", "searcher=optuna"]) == 2


def test_a_space_is_checked_where_it_is_built():
    for space, match in (((("colour", Choice((1, 2))),), "unknown key"), ((("seed", Integer(0, 3)),), "unknown key"),
                         ((("lr", 0.1),), "need a domain"), ((("normalize", Choice(("half", "dataset"))),
                                                             ("train_subset", Integer(100, 200))), "must be a Choice"),
                         ((), "distinct keys")):
        with pytest.raises(ConfigError, match=match):
            TuneSearch(space)
    with pytest.raises(ConfigError, match="epochs with ASHA"):
        TuneSearch((("epochs", Integer(1, 4)),), scheduler=ASHA())
    with pytest.raises(ConfigError, match="chooses on validation data"):
        TuneSearch(SPACE, metric=M.TEST_ACC)
    for bad in (lambda: LogUniform(0, 1), lambda: Uniform(1, 1), lambda: Choice((1,)), lambda: ASHA(0, 2),
                lambda: ASHA(1, 1)):
        with pytest.raises(ConfigError):
            bad()
    assert parse_early_stop("none") is None and parse_early_stop("asha:reduction_factor=4") == ASHA(1.0, 4.0)
    # Every data set a candidate can have is prepared first: the choices of data settings.
    search = TuneSearch(SPACE + (("normalize", Choice(("half", "dataset"))),))
    base = get_study("tune").base_config().to_flat()
    assert sorted(d.normalize for d in search.data_configs(base)) == ["dataset", "half"]


def test_the_space_becomes_tunes_sample_domains_inside_the_trial_config():
    base = get_study("tune").base_config().to_flat()
    search = TuneSearch(SPACE + (("weight_decay", Uniform(0, 0.01)), ("epochs", Integer(1, 3))))
    space = param_space(base, "search", search)["trial"]
    assert (space["stage"], space["group"], space["repeat"]) == ("search", "candidate", 0)
    assert isinstance(space["lr"], tune.search.sample.Float) and space["lr"].lower == 1e-3
    assert isinstance(space["lr"].get_sampler(), tune.search.sample.LogUniform)
    assert space["batch_size"].categories == [32, 64, 128]
    assert (space["epochs"].lower, space["epochs"].upper) == (1, 4)  # Tune's upper bound is excluded
    assert {k: v for k, v in space.items() if k not in dict(search.space) and k not in ("stage", "group", "repeat")} \
        == {k: v for k, v in base.items() if k not in dict(search.space)}


class FakeTrial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def test_asha_never_stops_a_run_at_its_last_record_and_writes_down_whom_it_stops(tmp_path):
    log = tmp_path / "stops.json"
    asha = EarlyStops(grace_period=0.5, reduction_factor=2, epochs=2, log=str(log))
    asha.set_search_properties(M.VAL_ACC, "max")
    trials = [FakeTrial(f"t{i}") for i in range(3)]
    for t in trials:
        asha.on_trial_add(None, t)

    def result(t, epoch, acc, **extra):
        return asha.on_trial_result(None, t, {M.EPOCH: epoch, M.VAL_ACC: acc, **extra})

    assert result(trials[0], 0.5, 0.5) == TrialScheduler.CONTINUE   # the first judged at the rung goes on
    assert result(trials[1], 0.5, 0.2) == TrialScheduler.STOP       # below the top half of those before it
    assert read_stops(log) == {"t1": 0.5}
    # At the run's last record (and its final report) a worse score still goes on: it has finished.
    assert result(trials[0], 1.0, 0.6) == TrialScheduler.CONTINUE
    assert result(trials[2], 1.0, 0.1) == TrialScheduler.STOP
    assert result(trials[0], 2.0, 0.6) == TrialScheduler.CONTINUE
    assert result(trials[0], 2.0, 0.6, **{M.DONE: 1}) == TrialScheduler.CONTINUE
    assert read_stops(log) == {"t1": 0.5, "t2": 1.0}


# --- quick sweeps through the command line ------------------------------------------------

SIZES = {"train_subset": "600", "val_subset": "300", "test_subset": "200"}


def sweep(out, data_dir, *extra):
    return main(["sweep", "tune", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
                 *[f"{k}={v}" for k, v in SIZES.items()], *extra])


def check_final(out, n_candidates: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The final stage trains the chosen candidate's config again on new seeds, and only it
    scores the test set."""
    runs = pd.read_parquet(out / "runs.parquet")
    search, final = runs[runs.stage == "search"], runs[runs.stage == "final"]
    assert len(search) == n_candidates and search["test_acc"].isna().all()
    assert not search["config.score_test"].any() and set(search["seed"]) == {0}
    assert final["test_acc"].between(0, 1).all() and final["config.score_test"].all()
    assert sorted(final["seed"]) == [100, 101]  # seeds the search never used
    candidates = pd.read_csv(out / "candidates.csv")
    assert len(candidates) == n_candidates and candidates["chosen"].sum() == 1
    chosen = candidates[candidates.chosen].iloc[0]
    assert chosen["status"] == M.FINISHED
    complete = candidates[candidates.status == M.FINISHED]
    assert chosen["val_score"] == complete["val_score"].max()  # the best that completed
    best = json.loads((out / "best_config.json").read_text())
    assert best["candidate"] == chosen["candidate"]
    for key in ("lr", "batch_size", "weight_decay", "optimizer"):
        assert (final[f"config.{key}"] == chosen[key]).all(), key
        assert best["config"][key] == chosen[key]  # changes_from_base: where it differs from the base
    ran = search[search.group == chosen["candidate"]].iloc[0]
    same = [c for c in runs.columns if c.startswith("config.") and c not in ("config.seed", "config.score_test")]
    assert (final[same] == ran[same]).all().all()  # the candidate's config, but for seed and test scoring
    return candidates, runs


@pytest.mark.slow
def test_a_random_search_runs_every_candidate_to_the_end(ray_local, data_dir, tmp_path):
    out = tmp_path / "random"
    assert sweep(out, data_dir, "searcher=random", "early_stop=none", "samples=3") == 0
    candidates, runs = check_final(out, 3)
    assert (candidates["status"] == M.FINISHED).all() and (candidates["epochs_trained"] == 2).all()
    assert candidates["lr"].nunique() == 3 and candidates["lr"].between(1e-3, 0.2).all()
    page = (out / "report.md").read_text()
    assert "random search of 3 candidates" in page and "stopped early at" not in page


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="pip install -e '.[optuna]'")
def test_optuna_with_asha_stops_candidates_early_and_says_so(ray_local, data_dir, tmp_path):
    out = tmp_path / "optuna"
    assert sweep(out, data_dir, "searcher=optuna", "samples=8") == 0
    candidates, runs = check_final(out, 8)
    stopped = candidates[candidates.status == M.STOPPED_EARLY]
    assert len(stopped) >= 1 and (stopped["stopped_at_epoch"] < 2).all()
    assert (stopped["epochs_trained"] == stopped["stopped_at_epoch"]).all()
    saved = runs.set_index("group")
    assert (saved.loc[stopped["candidate"], "status"] == M.STOPPED_EARLY).all()
    trials = pd.read_csv(out / "trials.csv")
    assert (trials[trials.stage == "search"]["status"] == M.STOPPED_EARLY).sum() == len(stopped)
    html = (out / "report.html").read_text()
    first = stopped.iloc[0]
    assert f"stopped early at epoch {first['stopped_at_epoch']:.3g} (ASHA)" in html
    assert "Optuna&#39;s TPE" in html or "Optuna's TPE" in html
    assert (out / "candidates.png").stat().st_size > 10000
    # What a person sees: the page (with the candidates' figure) loads whole and fits the window.
    seen = check_page(out / "report.html", width=1280, screenshot=tmp_path / "optuna.png",
                      chromium=chromium_or_skip())
    assert seen["images"] >= 1 and seen["images_failed"] == 0 and not seen["overflow"], seen
    # Again from the saved records, without Ray: the same candidates and marks.
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert f"stopped early at epoch {first['stopped_at_epoch']:.3g} (ASHA)" in (out / "report.html").read_text()


@pytest.mark.slow
def test_an_interrupted_tune_search_finishes_with_resume(ray_local, data_dir, tmp_path):
    """Interrupt the search (SIGUSR1, as Ctrl-C) once a candidate has finished; --resume runs
    the rest, keeps finished and stopped candidates as they were, and asks for none twice."""
    out = tmp_path / "tune"
    # A second after the first candidate finished, so that Tune has recorded it as finished (a
    # candidate trains for seconds: the rest are still to come).
    assert interrupted(lambda: sweep(out, data_dir, "samples=6"), lambda: bool(finished_trials(out / "search")),
                       settle=1.0) == 130
    done = {p.parent.name: p.read_text() for p in finished_trials(out / "search")}
    assert 1 <= len(done) < 6 and not (out / "candidates.csv").exists()
    assert main(["sweep", "tune", "--resume", "--out", str(out), "--data-dir", str(data_dir), "--quiet"]) == 0
    for name, text in done.items():  # finished candidates were not run again
        assert (out / "search" / name / "result.json").read_text() == text, name
    folders = [p.name for p in (out / "search").iterdir() if (p / "result.json").exists()]
    assert len(folders) == 6
    check_final(out, 6)
