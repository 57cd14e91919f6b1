"""A stage's progress while it runs, as one line that updates in place on a terminal
(on a file or a pipe, a line every 30 s instead), fed by Ray Tune's callbacks:

    [part3] train: 4/10 done, 2 running, 4 waiting | 47% of the work | 0:41 elapsed, ETA 0:46

The share of work weighs each trial by the driver's estimate of its cost
(orchestrator/cost.py) and counts a running trial by the steps it has done. The
ETA assumes the rest goes at this stage's pace so far; work that a resumed stage
found already done does not count towards the pace.
"""
from __future__ import annotations

import os
import sys
import time

from ray.tune import Callback

from workloads import metrics as M

DONE, RUNNING, FAILED = "TERMINATED", "RUNNING", "ERROR"   # Tune's trial states


def clock_text(seconds: float) -> str:
    """0:07, 12:34, 1:02:03."""
    seconds = int(round(max(0, seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def progress_line(label: str, total: int, done: int, running: int, failed: int, share: float,
                  elapsed: float, eta: float | None, final: bool = False, width: int = 0) -> str:
    """`final`: the stage ended, or (trials left running or waiting) was interrupted.
    `width` > 0: at most width - 1 characters (a line as wide as the terminal wraps on
    some), in words while they fit, else without the label's start."""
    text = _line(label, total, done, running, failed, share, elapsed, eta, final)
    if width <= 0 or len(text) < width:
        return text
    for long, short in ((" of the work", ""), (" elapsed, ETA", ", ETA"), (" waiting", " wait"),
                        (" running", " run")):
        text = text.replace(long, short)
        if len(text) < width:
            return text
    return "..." + text[len(text) - (width - 4):]


def _line(label, total, done, running, failed, share, elapsed, eta, final) -> str:
    waiting = max(0, total - done - running - failed)
    stopped = final and done + failed < total
    counts = f"{done}/{total} done" + ("" if final and not stopped else f", {running} running, {waiting} waiting")
    counts += f", {failed} failed" if failed else ""
    when = (f"interrupted after {clock_text(elapsed)}" if stopped else f"finished in {clock_text(elapsed)}" if final
            else f"{clock_text(elapsed)} elapsed, ETA " + (clock_text(eta) if eta is not None else "--"))
    return f"{label}: {counts} | {share:.0%} of the work | {when}"


def terminal_width(stream) -> int:
    """The columns of the terminal `stream` writes to (0, no limit, when it is none)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def state(trial) -> str:
    """Tune's status, except that a trial a Ctrl-C stopped (Tune marks it terminated all the
    same) is still running: done means its final report came."""
    if trial.status == DONE and not (trial.last_result or {}).get(M.DONE):
        return RUNNING
    return trial.status


def name_of(trial) -> str:
    from orchestrator.trainable import trial_name
    return trial_name(trial.config["trial"])


class Progress(Callback):
    """`work`: {trial name: (estimated cost, training steps)} for every trial of the stage.
    The stream is looked up when written (sys.stderr by default): Tune pickles its
    callbacks with the experiment."""

    def __init__(self, label: str, work: dict, interactive: bool | None = None,
                 every: float = 30.0, clock=time.monotonic, stream=None):
        self.label, self.work = label, dict(work)
        self.interactive, self.every, self.clock, self.stream = interactive, every, clock, stream
        self.setup()

    def setup(self, **info):
        self.started, self.shown, self.base, self.steps = self.clock(), None, None, {}

    def _out(self):
        return self.stream or sys.stderr

    def _live(self) -> bool:
        return self._out().isatty() if self.interactive is None else self.interactive

    def share(self, trials, ended_only: bool = False) -> float:
        """The estimated share of the stage's work done: ended trials whole, running ones
        by their steps (unless `ended_only`)."""
        total = sum(cost for cost, _ in self.work.values()) or 1.0
        done = 0.0
        for t in trials:
            cost, steps = self.work.get(name_of(t), (0.0, 1))
            if state(t) in (DONE, FAILED):
                done += cost
            elif not ended_only:
                done += cost * min(1.0, self.steps.get(name_of(t), 0) / max(steps, 1))
        return done / total

    def line(self, trials, final: bool = False, width: int = 0) -> str:
        status = [state(t) for t in trials]
        share, elapsed = self.share(trials), self.clock() - self.started
        if self.base is None:  # what a resumed stage found done: not this run's pace
            self.base = self.share(trials, ended_only=True)
        pace = (share - self.base) / elapsed if elapsed > 0 else 0.0
        eta = (1.0 - share) / pace if pace > 0 else None
        return progress_line(self.label, len(self.work), status.count(DONE), status.count(RUNNING),
                             status.count(FAILED), share, elapsed, eta, final, width)

    def show(self, trials, final: bool = False) -> None:
        now, live = self.clock(), self._live()
        if not final and self.shown is not None and now - self.shown < (0.5 if live else self.every):
            return
        self.shown = now
        out = self._out()
        text = self.line(trials, final, terminal_width(out) if live else 0)
        # \r and "erase to the end of the line" rewrite the line in place on a terminal
        out.write(f"\r{text}\x1b[K" + ("\n" if final else "") if live else text + "\n")
        out.flush()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.steps[name_of(trial)] = result.get(M.STEP, 0)
        self.show(trials)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.show(trials)

    def on_step_end(self, iteration, trials, **info):   # time passes between results too
        self.show(trials)

    def on_experiment_end(self, trials, **info):
        self.show(trials, final=True)


class Ended(Callback):
    """A search stage's progress, whose length is not known in advance: one line per trial
    that ends, with its name (`name(trial)`), the score the search reads, the epoch it
    reached (a candidate an early stop ended before the last), and the counts."""

    def __init__(self, label: str, metric: str, name):
        self.label, self.metric, self.name, self.ended = label, metric, name, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        last = trial.last_result or {}
        value = last.get(self.metric)
        score = f"{self.metric} {value:.4f} at epoch {last.get(M.EPOCH, 0):.2f}" if isinstance(value, float) \
            else "no score"
        running = sum(t.status == RUNNING for t in trials)
        print(f"{self.label}: {self.name(trial)} {score} ({self.ended} ended, {running} running)",
              file=sys.stderr, flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.on_trial_complete(iteration, trials, trial)
