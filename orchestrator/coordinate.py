"""One setting at a time (a coordinate search) as a Ray Tune Searcher: data in, configs out.

Start from `base` (a flat config); for each Step in order, train every candidate
value of that setting with everything else at the current best, keep the best,
move on. The searcher only hands out configs and reads back one metric; it never
imports torch or the training code.

    steps = [Step("batch_size", [Candidate("bs32", {"batch_size": 32}), Candidate("bs128", {"batch_size": 128})]),
             Step("optimizer", [Candidate("sgd", {"optimizer": "sgd"}),
                                Candidate("adam", {"optimizer": "adam", "momentum": 0.0, "lr": 0.001})])]
    search = CoordinateSearch(TrialConfig().to_flat(), steps, repeats=3, max_concurrent=4,
                              make_config=lambda changes, meta: {"trial": {**meta, **changes}})
    tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=search, num_samples=-1),
               run_config=tune.RunConfig(storage_path="/runs", name="coord")).fit()
    search.history(), search.best_config()    # plain data for a report
    # After an interruption: tune.Tuner.restore("/runs/coord", trainable=trainable).fit(), then
    # CoordinateSearch(<same arguments>).restore_from_dir("/runs/coord") reads the finished search.

A candidate's changes are a mapping, or a function of the current best config returning
one (`Candidate("conv3", add_conv)`: a depth step that keeps the width chosen before); they
are computed when the step opens, and the table rows, history and saved state hold the
computed mapping. Such a function must be importable or picklable (Tune pickles the
searcher); the plan fingerprint names it (a functools.partial: with its arguments).

The rule, per step. Repeats are seeds 0..repeats-1 under `seed_key`. The incumbent is
the first candidate whose changes the current best already satisfies, else the current
best itself (labelled "current"); its results are reused from earlier steps, so only the
first step trains the base. A candidate's score is the mean of `metric` (its trial's last
result, validation accuracy in our studies) over the repeats. The best challenger
replaces the incumbent only if its mean is better by more than the noise:
    repeats >= 2: noise = sqrt(se_incumbent^2 + se_challenger^2), se = sample std / sqrt(n)
    repeats == 1: noise = `margin` (default 0.005, half a percentage point of accuracy)
A failed trial (an error, a last result whose metric is missing or not finite, or one whose
`run_status` says the run diverged) counts
as `worst` (default -inf for mode="max", +inf for "min": a candidate with a failed repeat
never wins, a failed incumbent loses to any challenger without one) and is listed in its
row's `failed`. A candidate whose config `validate` rejects is recorded with the reason
and not trained.

Save and restore. Tune saves the searcher (`save`: a pickle of the state in STATE) with
every experiment snapshot (at most one per 10 s by default, one more when a run ends or is
interrupted); `Tuner.restore` calls `restore` on the searcher it unpickles from tuner.pkl.
Trials pending or running at the snapshot stay pending here: Tune re-queues them under the
same trial ids (resume_unfinished=True, the default) and their results count when they
finish; trials finished after the last snapshot (a killed driver) are asked for again.
Limits, from Tune: interrupt with Ctrl-C (SIGINT, SIGUSR1) or by ending the driver, not
with a Stopper's stop_all or TuneConfig(time_budget_s), which save the search as finished
and end running trials without reporting them (a restore then runs nothing);
resume_unfinished=False drops in-flight trials without telling the searcher, and Tune then
waits for it forever; a trial restarted under a new id (restart_errored) is ignored here,
its failure already counted.
"""
from __future__ import annotations

import functools
import math
import pickle
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ray.tune.search import Searcher

from workloads import metrics as M
from workloads.registry import ConfigError

CURRENT = "current"  # the incumbent's label when no candidate of a step matches the current best
MISSING = object()
STATE = ("plan", "metric", "mode", "best", "step", "table", "incumbent", "queue", "pending", "results",
         "history")


@dataclass(frozen=True)
class Candidate:
    label: str
    # key -> value (one value of a setting may change several keys), or fn(best config) -> that
    changes: Mapping | Callable[[dict], Mapping]

    def __post_init__(self):
        if not callable(self.changes):
            object.__setattr__(self, "changes", dict(self.changes))
        if not self.label or self.label == CURRENT:
            raise ConfigError(f"candidate label {self.label!r} is reserved or empty: choose another")

    @property
    def computed(self) -> bool:
        return callable(self.changes)

    def fingerprint(self):
        """What the plan fingerprint holds of the changes: the mapping, or the function's name
        (a partial's with its arguments): a repr of a function would hold its address."""
        fn = self.changes
        if not self.computed:
            return self.changes
        if isinstance(fn, functools.partial):
            return ("computed", _name(fn.func), fn.args, sorted(fn.keywords.items()))
        return ("computed", _name(fn))


def _name(fn) -> str:
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


@dataclass(frozen=True)
class Step:
    name: str
    candidates: Sequence[Candidate]

    def __post_init__(self):
        object.__setattr__(self, "candidates", tuple(self.candidates))
        labels = [c.label for c in self.candidates]
        if not labels or len(set(labels)) != len(labels):
            raise ConfigError(f"step {self.name}: candidate labels must be unique and at least one: {labels}")


class CoordinateSearch(Searcher):
    """base: the starting flat config; steps: the settings, in order; repeats: seeds per config.
    make_config(changes, meta) -> the dict Tune's trainable receives, where `changes` holds every
    key in which the trial differs from base (earlier choices, the candidate's, the seed) and
    meta = {step, candidate, repeat}; by default {**base, **changes}. validate(config) -> a
    reason the flat config cannot run, or None. max_concurrent: trials handed out at once
    (Tune's max_concurrent_trials overrides it); None: a whole step."""

    def __init__(self, base: Mapping, steps: Sequence[Step], repeats: int = 1, *, seed_key: str = "seed",
                 metric: str = M.VAL_ACC, mode: str = "max", margin: float = 0.005, worst: float | None = None,
                 make_config: Callable[[dict, dict], dict] | None = None,
                 validate: Callable[[dict], str | None] | None = None, max_concurrent: int | None = None):
        if repeats < 1 or not steps or margin < 0 or mode not in ("max", "min"):
            raise ConfigError(f"need repeats >= 1, at least one step, margin >= 0 and mode max or min "
                              f"(got {repeats}, {len(steps)}, {margin}, {mode!r})")
        super().__init__(metric=metric, mode=mode)
        self._base, self._steps = dict(base), tuple(steps)
        self._seed_key = seed_key
        for step in self._steps:
            for c in step.candidates:
                if not c.computed:
                    self._check_keys(step, c, c.changes)
        self._repeats, self._seed_key, self._margin, self._worst = repeats, seed_key, margin, worst
        self._make_config, self._validate, self.max_concurrent = make_config, validate, max_concurrent
        if validate and (reason := validate(dict(self._base))):
            raise ConfigError(f"the base config is invalid: {reason}")
        # The plan fingerprint: restore refuses a state saved by a different search.
        self._plan = repr((self._base, [(s.name, [(c.label, c.fingerprint()) for c in s.candidates])
                                        for s in self._steps], repeats, seed_key))
        self._best, self._step, self._history = dict(self._base), 0, []
        self._results: dict[str, dict[int, tuple]] = {}  # config key -> repeat -> (value | None, why failed)
        self._pending: dict[str, tuple[int, int]] = {}   # trial id -> (row, repeat)
        self._open_step()

    # --- Tune's side -------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # Tune calls this only for a Tuner with a param_space (tune.py, `if config and ...`);
        # its TuneConfig(metric, mode) win when given. Tune merges the param_space into every
        # suggested config itself (search_generator.py), so there is nothing else to take.
        if mode and mode not in ("max", "min"):
            return False
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent  # Tune's max_concurrent_trials, via ConcurrencyLimiter
        return True

    def suggest(self, trial_id: str):
        if self._step >= len(self._steps):
            return Searcher.FINISHED
        if not self._queue or (self.max_concurrent and len(self._pending) >= self.max_concurrent):
            return None  # the step's last trials are running; the next step depends on them
        i, r = self._queue.pop(0)
        self._pending[trial_id] = (i, r)
        row = self._table[i]
        config = {**self._best, **row["changes"], self._seed_key: r}
        changes = {k: v for k, v in config.items() if k == self._seed_key or self._base.get(k, MISSING) != v}
        meta = {"step": self._steps[self._step].name, "candidate": row["candidate"], "repeat": r}
        return self._make_config(changes, meta) if self._make_config else {**self._base, **changes}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        job = self._pending.pop(trial_id, None)
        if job is None:  # not suggested here, or already counted (see the module docstring)
            return
        i, r = job
        self._results.setdefault(self._table[i]["key"], {})[r] = self._score(result, error)
        if not self._queue and not self._pending:
            self._decide()
            self._step += 1
            self._open_step()

    def get_state(self) -> dict:
        return pickle.loads(pickle.dumps({k: getattr(self, "_" + k) for k in STATE}))  # a deep copy

    def set_state(self, state: dict) -> None:
        if state["plan"] != self._plan:
            raise ConfigError("this searcher state was saved by a different search (base, steps or repeats "
                              "differ): restore it into a CoordinateSearch built with the same arguments")
        for k in STATE:
            setattr(self, "_" + k, state[k])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    # --- the report's side -------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._step >= len(self._steps)

    def best_config(self) -> dict:
        return dict(self._best)

    def history(self) -> list[dict]:
        """Per decided step: {step, incumbent, chosen, gain, noise, best (config after the
        step), rows: [{candidate, changes, n, mean, std, values, failed, reused, chosen, reason}]}."""
        return pickle.loads(pickle.dumps(self._history))

    # --- the search --------------------------------------------------------------------
    def _check_keys(self, step: Step, candidate: Candidate, changes: Mapping) -> None:
        unknown = [k for k in changes if k not in self._base or k == self._seed_key]
        if unknown:  # a typo would otherwise add a key the trainable never reads
            raise ConfigError(f"step {step.name}, candidate {candidate.label}: key(s) {unknown} are not "
                              f"settings of base (add them to base; the seed is set per repeat)")

    def _changes(self, step: Step, candidate: Candidate, best: dict) -> dict:
        """The candidate's changes on top of `best` (computed now if they are a function of it)."""
        if not candidate.computed:
            return candidate.changes
        changes = dict(candidate.changes(dict(best)))
        self._check_keys(step, candidate, changes)
        return changes

    def _key(self, config: Mapping) -> str:
        return repr(sorted((k, v) for k, v in config.items() if k != self._seed_key))

    def _open_step(self) -> None:
        """Lays out the current step's table and the trials it still needs; a step with
        nothing to train (all reused or invalid) is decided at once."""
        while self._step < len(self._steps):
            step, best = self._steps[self._step], self._best
            changes = {c.label: self._changes(step, c, best) for c in step.candidates}
            matches = [c for c in step.candidates
                       if all(best.get(k, MISSING) == v for k, v in changes[c.label].items())]
            incumbent = matches[0].label if matches else CURRENT
            rows = [] if matches else [{"candidate": CURRENT, "changes": {}}]
            rows += [{"candidate": c.label, "changes": dict(changes[c.label])} for c in step.candidates]
            self._table, self._queue, queued = rows, [], set()
            for i, row in enumerate(rows):
                config = {**best, **row["changes"]}
                row["key"] = key = self._key(config)
                is_incumbent = row["candidate"] == incumbent
                row["invalid"] = None if is_incumbent or not self._validate else self._validate(config)
                if is_incumbent:
                    self._incumbent = i
                known = self._results.get(key, {})
                row["reused"] = len(known) == self._repeats
                if row["invalid"] is None:
                    todo = [(i, r) for r in range(self._repeats) if r not in known and (key, r) not in queued]
                    queued.update((key, r) for _, r in todo)
                    # The incumbent first: at the first step it is the base, the reference.
                    self._queue = todo + self._queue if is_incumbent else self._queue + todo
            if self._queue:
                return
            self._decide()
            self._step += 1

    def _score(self, result: dict | None, error: bool) -> tuple:
        if error or result is None:
            return None, "error"
        if result.get(M.STATUS) == M.DIVERGED:  # its last validation score is from before it diverged
            return None, M.DIVERGED
        value = result.get(self._metric)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None, f"no {self._metric}"
        return (value, None) if math.isfinite(value) else (None, f"{self._metric}={value}")

    def _decide(self) -> None:
        sign = 1.0 if self._mode == "max" else -1.0
        worst = self._worst if self._worst is not None else -sign * math.inf
        stats = []
        for row in self._table:
            if row["invalid"] is not None:
                stats.append({"n": 0, "mean": None, "std": None, "values": [], "failed": []})
                continue
            results = self._results.get(row["key"], {})
            values = [results[r][0] if results[r][0] is not None else worst for r in range(self._repeats)]
            n, mean = len(values), sum(values) / len(values)
            std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 and math.isfinite(mean)
                   else math.nan)
            failed = [{"repeat": r, "why": results[r][1]} for r in range(self._repeats) if results[r][0] is None]
            stats.append({"n": n, "mean": mean, "std": std, "values": values, "failed": failed})
        inc, table = self._incumbent, self._table
        challengers = [i for i, row in enumerate(table) if i != inc and row["invalid"] is None]
        top = max(challengers, key=lambda i: sign * stats[i]["mean"], default=None)
        gain = noise = None
        take = False
        if top is not None:
            a, b = stats[inc], stats[top]
            gain = sign * (b["mean"] - a["mean"])  # > 0: the challenger is better
            if math.isfinite(a["mean"]) and math.isfinite(b["mean"]):
                noise = (math.sqrt((a["std"] ** 2 + b["std"] ** 2) / self._repeats) if self._repeats > 1
                         else self._margin)
                take = gain > noise
            else:  # a failure on one side decides; on both (inf - inf = nan) the incumbent stays
                take = gain > 0
        chosen = top if take else inc
        rows = []
        for i, row in enumerate(table):
            rows.append({"candidate": row["candidate"], "changes": dict(row["changes"]), **stats[i],
                         "reused": row["reused"], "chosen": i == chosen,
                         "reason": self._reason(i, row, inc, top, take, gain, noise, table)})
        self._best = {**self._best, **table[chosen]["changes"]}
        self._history.append({"step": self._steps[self._step].name, "incumbent": table[inc]["candidate"],
                              "chosen": table[chosen]["candidate"], "gain": gain, "noise": noise,
                              "best": dict(self._best), "rows": rows})

    @staticmethod
    def _reason(i, row, inc, top, take, gain, noise, table) -> str:
        if row["invalid"] is not None:
            return f"invalid: {row['invalid']}"
        if top is None:
            return "incumbent: no valid challenger"
        vs = (f"{gain:+.4f} over the incumbent, noise {noise:.4f}" if noise is not None
              else f"{gain:+.4f} over the incumbent (failed repeats count as worst)")
        if i == inc:
            return (f"incumbent, beaten by {table[top]['candidate']}" if take
                    else f"incumbent kept: best challenger {vs}")
        if i == top:
            return f"taken: {vs}" if take else f"not taken: {vs}"
        return f"below the best challenger {table[top]['candidate']}"
