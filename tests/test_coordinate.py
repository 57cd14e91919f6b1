"""The coordinate search on a synthetic objective, by hand: which configs it asks for, in
which order; what the noise rule keeps; failures, invalid candidates; save and restore
mid-step (through Ray Tune: tests/test_coordinate_tune.py)."""
import math
import os
import subprocess
import sys
from functools import partial

import pytest
from ray import cloudpickle

from coordinate_objective import (ADAM, BASE, BEST, EFFECTS, SEED_NOISE, STEPS, asked, drive, make_objective,
                                  objective, one_step)
from orchestrator.coordinate import CURRENT, Candidate, CoordinateSearch, Step
from workloads import metrics as M
from workloads.config import ConfigError

def test_asks_step_by_step_and_reuses_the_incumbent():
    search = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked)
    assert drive(search) == [
        # First step: the base (the incumbent bs64) is trained, then the challengers.
        ("bs64", 0, {"seed": 0}), ("bs64", 1, {"seed": 1}),
        ("bs32", 0, {"batch_size": 32, "seed": 0}), ("bs32", 1, {"batch_size": 32, "seed": 1}),
        ("bs128", 0, {"batch_size": 128, "seed": 0}), ("bs128", 1, {"batch_size": 128, "seed": 1}),
        # Later steps: the challengers only, on top of the choices so far; d2 and sgd are reused.
        ("d1", 0, {"batch_size": 32, "depth": 1, "seed": 0}), ("d1", 1, {"batch_size": 32, "depth": 1, "seed": 1}),
        ("d3", 0, {"batch_size": 32, "depth": 3, "seed": 0}), ("d3", 1, {"batch_size": 32, "depth": 3, "seed": 1}),
        ("adam", 0, {"batch_size": 32, "depth": 3, **ADAM, "seed": 0}),
        ("adam", 1, {"batch_size": 32, "depth": 3, **ADAM, "seed": 1})]
    assert search.finished and search.best_config() == BEST
    history = search.history()
    assert [(h["step"], h["incumbent"], h["chosen"]) for h in history] == [
        ("batch_size", "bs64", "bs32"), ("depth", "d2", "d3"), ("optimizer", "sgd", "adam")]
    assert [h["best"] for h in history] == [{**BASE, "batch_size": 32}, {**BASE, "batch_size": 32, "depth": 3},
                                            BEST]
    d2 = history[1]["rows"][1]
    assert d2["candidate"] == "d2" and d2["reused"] and d2["values"] == history[0]["rows"][0]["values"]
    assert d2["mean"] == pytest.approx(0.52) and d2["std"] == pytest.approx(0.002 / math.sqrt(2))
    assert history[0]["noise"] == pytest.approx(0.002 / math.sqrt(2))  # sqrt(2 * (std/sqrt(2))^2)


def test_waits_for_a_step_to_finish_and_respects_max_concurrent():
    search = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked, max_concurrent=4)
    first = [search.suggest(f"t{i}") for i in range(5)]
    assert [s["ask"][:2] for s in first[:4]] == [("bs64", 0), ("bs64", 1), ("bs32", 0), ("bs32", 1)]
    assert first[4] is None  # four running
    for i in range(4):
        search.on_trial_complete(f"t{i}", {M.VAL_ACC: objective(first[i]["config"])})
    last = [search.suggest(f"t{i}") for i in (4, 5, 6)]
    assert [s["ask"][:2] for s in last[:2]] == [("bs128", 0), ("bs128", 1)] and last[2] is None
    search.on_trial_complete("t4", {M.VAL_ACC: objective(last[0]["config"])})
    assert search.suggest("t6") is None  # the next step depends on t5
    search.on_trial_complete("t5", {M.VAL_ACC: objective(last[1]["config"])})
    assert search.suggest("t6")["ask"][:2] == ("d1", 0)
    search.set_max_concurrency(1)  # as Tune's ConcurrencyLimiter passes max_concurrent_trials on
    assert search.suggest("t7") is None


def test_a_challenger_within_the_noise_does_not_replace_the_incumbent():
    # bs32 is +0.005 better on average, but each mean has a standard error of 0.01.
    step, rows = one_step({64: [0.50, 0.52], 32: [0.505, 0.525], 128: [0.40, 0.42]}, repeats=2)
    assert step["chosen"] == "bs64" and rows["bs64"]["chosen"] and not rows["bs32"]["chosen"]
    assert step["gain"] == pytest.approx(0.005) and step["noise"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))
    assert rows["bs64"]["reason"].startswith("incumbent kept") and rows["bs32"]["reason"].startswith("not taken")


def test_a_clearly_better_challenger_is_taken():
    step, rows = one_step({64: [0.50, 0.52], 32: [0.505, 0.525], 128: [0.60, 0.61]}, repeats=2)
    assert step["chosen"] == "bs128" and step["best"]["batch_size"] == 128 and rows["bs128"]["chosen"]
    assert step["gain"] == pytest.approx(0.095) and rows["bs128"]["reason"].startswith("taken")
    assert rows["bs32"]["reason"] == "below the best challenger bs128"


def test_mode_min_prefers_the_lower_mean():
    step, _ = one_step({64: [{"loss": 1.0}], 32: [{"loss": 0.9}], 128: [{"loss": 1.2}]}, repeats=1,
                       metric="loss", mode="min")
    assert step["chosen"] == "bs32" and step["gain"] == pytest.approx(0.1)


@pytest.mark.parametrize("gain, taken", [(0.004, False), (0.006, True)])
def test_with_one_repeat_the_margin_is_the_noise(gain, taken):
    values = {64: [0.5], 32: [0.5 + gain], 128: [0.4]}
    step, _ = one_step(values, repeats=1)
    assert step["noise"] == 0.005 and step["chosen"] == ("bs32" if taken else "bs64")
    step, _ = one_step(values, repeats=1, margin=0.01)
    assert step["noise"] == 0.01 and step["chosen"] == "bs64"


@pytest.mark.parametrize("failure, why", [(None, "error"), ({"loss": 1.0}, f"no {M.VAL_ACC}"),
                                          ({M.VAL_ACC: math.nan}, f"{M.VAL_ACC}=nan")])
def test_a_failed_trial_counts_as_the_worst_value(failure, why):
    # bs32 would be far best on its other repeat; one failure (an error, no metric, NaN) sinks it.
    step, rows = one_step({64: [0.50, 0.52], 32: [0.9, failure], 128: [0.55, 0.56]}, repeats=2)
    assert step["chosen"] == "bs128"
    assert rows["bs32"]["failed"] == [{"repeat": 1, "why": why}] and rows["bs32"]["mean"] == -math.inf
    assert rows["bs64"]["failed"] == rows["bs128"]["failed"] == []


def test_a_failed_incumbent_loses_to_any_challenger_and_worst_can_be_finite():
    values = {64: [None, 0.5], 32: [0.30, 0.31], 128: [0.20, 0.21]}
    step, rows = one_step(values, repeats=2)
    assert step["chosen"] == "bs32" and step["noise"] is None
    assert "failed repeats count as worst" in rows["bs32"]["reason"]
    step, rows = one_step(values, repeats=2, worst=0.0)  # accuracy's own worst: means stay finite
    assert rows["bs64"]["mean"] == 0.25 and step["chosen"] == "bs64"  # 0.305 is within the noise of 0.25


def test_an_invalid_candidate_is_skipped_with_its_reason():
    def validate(config):
        return "does not fit in memory" if config["batch_size"] * config["depth"] > 200 else None
    search = CoordinateSearch(BASE, STEPS, repeats=1, make_config=asked, validate=validate)
    asks = drive(search)
    assert all(label != "bs128" for label, _, _ in asks)
    bs = {row["candidate"]: row for row in search.history()[0]["rows"]}["bs128"]
    assert bs["reason"] == "invalid: does not fit in memory" and bs["n"] == 0 and not bs["chosen"]
    assert search.best_config() == BEST
    with pytest.raises(ConfigError, match="base config is invalid: too deep"):
        CoordinateSearch(BASE, STEPS, validate=lambda config: "too deep")


def test_the_current_best_is_the_incumbent_when_no_candidate_matches():
    steps = [Step("lr", [Candidate("lr0.1", {"lr": 0.1}), Candidate("lr0.05", {"lr": 0.05})])]
    search = CoordinateSearch(BASE, steps, repeats=1, make_config=asked)
    assert drive(search, lambda cfg: {M.VAL_ACC: {0.01: 0.5, 0.1: 0.45, 0.05: 0.49}[cfg["lr"]]}) == [
        (CURRENT, 0, {"seed": 0}), ("lr0.1", 0, {"lr": 0.1, "seed": 0}), ("lr0.05", 0, {"lr": 0.05, "seed": 0})]
    (step,) = search.history()
    assert step["incumbent"] == step["chosen"] == CURRENT and step["rows"][0]["changes"] == {}


def test_plans_are_checked_when_built():
    with pytest.raises(ConfigError, match="not settings of base"):
        CoordinateSearch(BASE, [Step("typo", [Candidate("x", {"batchsize": 32})])])
    with pytest.raises(ConfigError, match="unique"):
        Step("dup", [Candidate("a", {}), Candidate("a", {})])
    with pytest.raises(ConfigError, match="reserved"):
        Candidate(CURRENT, {})


def test_save_mid_step_and_restore_continues_the_same_search(tmp_path):
    whole = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked)
    asks = drive(whole)
    for cut in range(len(asks)):
        search = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked)
        for n in range(cut):
            suggestion = search.suggest(f"t{n}")
            search.on_trial_complete(f"t{n}", {M.VAL_ACC: objective(suggestion["config"])})
        running = {}  # the rest of the step is in flight when the experiment is saved
        while (suggestion := search.suggest(f"t{cut + len(running)}")) is not None:
            running[f"t{cut + len(running)}"] = suggestion
        search.save(tmp_path / "state.pkl")
        for trial_id in running:  # what happens after the save is lost
            search.on_trial_complete(trial_id, {M.VAL_ACC: 0.0})

        restored = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked)
        restored.restore(tmp_path / "state.pkl")
        assert restored.suggest("t99") is None  # the step is still running
        # Tune resumes the running trials under their ids; their results are taken, in any order.
        for trial_id, suggestion in reversed(running.items()):
            restored.on_trial_complete(trial_id, {M.VAL_ACC: objective(suggestion["config"])})
        resumed = [s["ask"] for s in running.values()] + drive(restored, first=100)
        assert resumed == asks[cut:], cut
        assert restored.history() == whole.history() and restored.best_config() == BEST
    with pytest.raises(ConfigError, match="different search"):
        CoordinateSearch(BASE, STEPS, repeats=3).restore(tmp_path / "state.pkl")


def test_the_searcher_never_imports_torch():
    code = "import sys, orchestrator.coordinate; sys.exit('torch' in sys.modules)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# --- candidates computed from the current best --------------------------------------------


def scaled_batch(factor, best):
    """A candidate relative to the current best: what a depth or width step of a study does."""
    return {"batch_size": int(best["batch_size"] * factor)}


def deeper(best):
    return {"depth": best["depth"] + 1}


# The batch-size step picks bs32 (above), so the relative step asks for 16 and 64, not 32 and 128.
RELATIVE = STEPS[:1] + [Step("relative_batch", [Candidate(f"x{f:g}", partial(scaled_batch, f)) for f in (0.5, 1, 2)]),
                        Step("depth", [Candidate("same", lambda best: {}), Candidate("deeper", deeper)])]


def test_computed_candidates_change_the_current_best():
    search = CoordinateSearch(BASE, RELATIVE, repeats=1, make_config=asked)
    effects = {**EFFECTS, "batch_size": {16: 0.03, 32: 0.02, 64: 0.0, 128: -0.03}}
    score = make_objective(effects, SEED_NOISE)
    asks = drive(search, lambda cfg: {M.VAL_ACC: score(cfg)})
    assert asks == [("bs64", 0, {"seed": 0}), ("bs32", 0, {"batch_size": 32, "seed": 0}),
                    ("bs128", 0, {"batch_size": 128, "seed": 0}),
                    # computed from batch 32: x1 is the current best and x2 (64) the first step's
                    # base, both reused; only x0.5 trains
                    ("x0.5", 0, {"batch_size": 16, "seed": 0}),
                    ("deeper", 0, {"batch_size": 16, "depth": 3, "seed": 0})]
    history = search.history()
    assert [(h["incumbent"], h["chosen"]) for h in history] == [("bs64", "bs32"), ("x1", "x0.5"), ("same", "deeper")]
    assert [row["changes"] for row in history[1]["rows"]] == [{"batch_size": 16}, {"batch_size": 32},
                                                              {"batch_size": 64}]
    assert [row["reused"] for row in history[1]["rows"]] == [False, True, True]
    assert search.best_config() == {**BASE, "batch_size": 16, "depth": 3}


def test_computed_candidates_are_checked_and_fingerprinted_by_name(tmp_path):
    bad = [Step("typo", [Candidate("x", lambda best: {"batchsize": 1})])]
    with pytest.raises(ConfigError, match=r"candidate x: key\(s\) \['batchsize'\] are not settings"):
        CoordinateSearch(BASE, bad)
    search = CoordinateSearch(BASE, RELATIVE, repeats=1, make_config=asked)
    search.suggest("t0")
    search.save(tmp_path / "state.pkl")
    # A search built again (as Tuner.restore does from tuner.pkl) accepts the state: partials
    # with the same function and arguments are the same plan; other arguments are not.
    again = CoordinateSearch(BASE, RELATIVE, repeats=1, make_config=asked)
    again.restore(tmp_path / "state.pkl")
    other = [RELATIVE[0], Step("relative_batch", [Candidate(f"x{f:g}", partial(scaled_batch, 3 * f))
                                                  for f in (0.5, 1, 2)]), RELATIVE[2]]
    with pytest.raises(ConfigError, match="different search"):
        CoordinateSearch(BASE, other, repeats=1, make_config=asked).restore(tmp_path / "state.pkl")
    assert cloudpickle.loads(cloudpickle.dumps(search)).best_config() == BASE  # as Tune pickles it


def test_computed_candidates_continue_the_same_search_after_a_restore(tmp_path):
    score = make_objective({**EFFECTS, "batch_size": {16: 0.03, 32: 0.02, 64: 0.0, 128: -0.03}}, SEED_NOISE)
    whole = CoordinateSearch(BASE, RELATIVE, repeats=2, make_config=asked)
    asks = drive(whole, lambda cfg: {M.VAL_ACC: score(cfg)})
    for cut in (3, 6, 8, 10):  # in the first, second and third step
        search = CoordinateSearch(BASE, RELATIVE, repeats=2, make_config=asked)
        for n in range(cut):
            suggestion = search.suggest(f"t{n}")
            search.on_trial_complete(f"t{n}", {M.VAL_ACC: score(suggestion["config"])})
        search.save(tmp_path / "state.pkl")
        restored = CoordinateSearch(BASE, RELATIVE, repeats=2, make_config=asked)
        restored.restore(tmp_path / "state.pkl")
        assert drive(restored, lambda cfg: {M.VAL_ACC: score(cfg)}, first=100) == asks[cut:], cut
        assert restored.history() == whole.history()


def test_a_run_that_diverged_counts_as_failed():
    diverged = {M.VAL_ACC: 0.9, M.STATUS: M.DIVERGED}  # its last validation score is from before
    step, rows = one_step({64: [0.50], 32: [diverged], 128: [0.40]}, repeats=1)
    assert step["chosen"] == "bs64" and rows["bs32"]["failed"] == [{"repeat": 0, "why": M.DIVERGED}]
