"""A synthetic objective for the coordinate search's tests (tests/test_coordinate*.py): each
setting adds its effect, a repeat's seed a little noise; `drive` runs a search by hand."""
from ray.tune.search import Searcher

from orchestrator.coordinate import Candidate, CoordinateSearch, Step
from workloads import metrics as M

BASE = {"batch_size": 64, "depth": 2, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "seed": 0}
ADAM = {"optimizer": "adam", "momentum": 0.0, "lr": 0.001}
STEPS = [Step("batch_size", [Candidate("bs32", {"batch_size": 32}), Candidate("bs64", {"batch_size": 64}),
                             Candidate("bs128", {"batch_size": 128})]),
         Step("depth", [Candidate(f"d{d}", {"depth": d}) for d in (1, 2, 3)]),
         Step("optimizer", [Candidate("sgd", {"optimizer": "sgd", "momentum": 0.9, "lr": 0.01}),
                            Candidate("adam", ADAM)])]
# Each setting adds its effect; a repeat's seed adds a little noise (the same for every config).
EFFECTS = {"batch_size": {32: 0.02, 64: 0.0, 128: -0.03}, "depth": {1: -0.05, 2: 0.0, 3: 0.04},
           "optimizer": {"sgd": 0.0, "adam": 0.03}}
SEED_NOISE = (0.001, -0.001, 0.0)
BEST = {**BASE, "batch_size": 32, "depth": 3, **ADAM}


def make_objective(effects, seed_noise):
    # A closure, so that cloudpickle ships it by value: Ray's workers cannot import this test module.
    def objective(config):
        return 0.5 + sum(effects[k][config[k]] for k in effects) + seed_noise[config["seed"]]
    return objective


objective = make_objective(EFFECTS, SEED_NOISE)


def asked(changes, meta):
    """make_config for the hand-driven tests: what was asked for, as (candidate, repeat, changes)."""
    return {"ask": (meta["candidate"], meta["repeat"], changes), "config": {**BASE, **changes}}


def drive(search, score=lambda cfg: {M.VAL_ACC: objective(cfg)}, first=0):
    """Runs the search to the end, one trial at a time; returns what it asked for."""
    out, n = [], first
    while (suggestion := search.suggest(f"t{n}")) != Searcher.FINISHED:
        assert suggestion is not None, "nothing running, yet no suggestion"
        out.append(suggestion["ask"])
        result = score(suggestion["config"])
        search.on_trial_complete(f"t{n}", result=result, error=result is None)
        n += 1
    return out


def one_step(values, repeats, **kwargs):
    """A single batch-size step with the given results per batch size, one per seed (a number
    is that val_acc, else the result itself, None for an error); returns its history entry."""
    def score(config):
        given = values[config["batch_size"]][config["seed"]]
        return {M.VAL_ACC: given} if isinstance(given, float) else given
    search = CoordinateSearch(BASE, STEPS[:1], repeats, make_config=asked, **kwargs)
    drive(search, score)
    (step,) = search.history()
    return step, {row["candidate"]: row for row in step["rows"]}
