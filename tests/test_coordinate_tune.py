"""The coordinate search through Ray Tune, whole and interrupted + restored (the searcher
by hand: tests/test_coordinate.py)."""
import json
import os
import signal

import pytest
from ray import tune

from coordinate_objective import BASE, BEST, STEPS, asked, drive, objective
from orchestrator.coordinate import CoordinateSearch
from workloads import metrics as M

# --- through Ray Tune ------------------------------------------------------------------


def make_trainable(objective):
    def trainable(config):
        with open(config["log"], "a") as f:  # one line per start, to count runs per config
            f.write(json.dumps(config["trial"]) + "\n")
        # A partial result first: the searcher must take the last one.
        tune.report({M.VAL_ACC: 0.0})
        if config["trial"]["pause"]:
            import time
            time.sleep(1.0)  # long enough to be interrupted here
        tune.report({M.VAL_ACC: objective(config["trial"])})
    return trainable


def tune_search(log, pause=None, **kwargs):
    def make_config(changes, meta):
        trial = {**BASE, **changes}
        return {"trial": {**trial, "pause": (meta["candidate"], meta["repeat"]) == pause}, "log": str(log)}
    return CoordinateSearch(BASE, STEPS, repeats=2, make_config=make_config, **kwargs)


def runs(log) -> dict:
    """How many times the trainable started, per (config, seed)."""
    counts = {}
    for line in log.read_text().splitlines():
        key = json.dumps({k: v for k, v in json.loads(line).items() if k != "pause"}, sort_keys=True)
        counts[key] = counts.get(key, 0) + 1
    return counts


def expected_runs(pause_twice=None) -> dict:
    hand = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked)
    keys = [json.dumps({**BASE, **changes}, sort_keys=True) for _, _, changes in drive(hand)]
    return {k: 2 if k == pause_twice else 1 for k in keys}


def reference_history():
    hand = CoordinateSearch(BASE, STEPS, repeats=2, make_config=asked)
    drive(hand)
    return hand.history()


@pytest.mark.slow
def test_through_tune(ray_local, tmp_path):
    search = tune_search(tmp_path / "runs.log")
    tune.Tuner(make_trainable(objective),
               tune_config=tune.TuneConfig(search_alg=search, num_samples=-1, max_concurrent_trials=2,
                                           reuse_actors=True),
               run_config=tune.RunConfig(storage_path=str(tmp_path), name="coord", verbose=0)).fit()
    assert search.finished and search.best_config() == BEST and search.history() == reference_history()
    assert runs(tmp_path / "runs.log") == expected_runs()


class Interrupt(tune.Callback):
    """Ctrl-C once, while the paused trial is running (its first result is in)."""

    def __init__(self, marker):
        self.marker = marker

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.config["trial"]["pause"] and not os.path.exists(self.marker):
            open(self.marker, "w").close()  # Tuner.restore brings this callback back: once only
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_an_interrupted_search_continues_after_restore(ray_local, tmp_path):
    log, trainable = tmp_path / "runs.log", make_trainable(objective)
    # One trial at a time, so that exactly one is in flight at the interruption: d1, repeat 0.
    search = tune_search(log, pause=("d1", 0))
    tune.Tuner(trainable,
               tune_config=tune.TuneConfig(search_alg=search, num_samples=-1, max_concurrent_trials=1,
                                           reuse_actors=True),
               run_config=tune.RunConfig(storage_path=str(tmp_path), name="coord", verbose=0,
                                         callbacks=[Interrupt(str(tmp_path / "interrupted"))])).fit()
    # Interrupted in the second step: the first step's 6 trials done, d1 r0 running.
    assert not search.finished and [h["step"] for h in search.history()] == ["batch_size"]
    assert sum(runs(log).values()) == 7

    tune.Tuner.restore(str(tmp_path / "coord"), trainable=trainable).fit()
    # The restored searcher lives inside the restored Tuner; read its last saved state from the run.
    restored = tune_search(log)
    restored.restore_from_dir(str(tmp_path / "coord"))
    assert restored.finished and restored.best_config() == BEST and restored.history() == reference_history()
    # Finished trials ran once; the one in flight was started again (a function trainable
    # without checkpoints starts over) and its second run counted.
    d1_r0 = json.dumps({**BASE, "batch_size": 32, "depth": 1}, sort_keys=True)
    assert runs(log) == expected_runs(pause_twice=d1_r0)
