"""Experiment trackers through Ray Tune's own logger callbacks: `--log mlflow[:URI]` and
`--log wandb[:PROJECT]` (optional extras: pip install 'cifar-sweeps[mlflow]' or '[wandb]'),
and TensorBoard, always, with the optimizer step as its x axis.

    python -m orchestrator sweep part3 --quick --log mlflow                  # OUT/mlruns
    python -m orchestrator sweep part3 --log mlflow:http://mlflow:5000 --log wandb:cifar
    WANDB_MODE=offline python -m orchestrator sweep part3 --quick --log wandb   # OUT/wandb

One tracker run per trial (a packed trial: one run, a series per repeat, `repeat_R/METRIC`),
named as Tune names the trial, in one MLflow experiment or W&B group per sweep folder.
The values are checked here, before Ray starts (ConfigError: one line); sweep.json keeps
them, so --resume logs the same way: a stage Tune restores gets the callbacks it saved in
its tuner.pkl, a stage that starts on --resume gets them from here, and a trial that
continues from its checkpoint logs into the run it started (MLflow: found by its trial id;
W&B: resumed by it).
"""
from __future__ import annotations

import importlib.util
import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL, TRAINING_ITERATION

from orchestrator.packed import PACK
from workloads import metrics as M
from workloads.config import SEED, ConfigError

PROJECT = "cifar-sweeps"     # W&B's project when --log wandb names none


@dataclass(frozen=True)
class Kind:
    module: str              # what must import for it to work
    extra: str               # pyproject.toml's optional extra that installs it
    usage: str               # NAME[:TARGET] as --log takes it


KINDS = {"mlflow": Kind("mlflow", "mlflow", "mlflow[:URI]"),       # default URI: OUT/mlruns, a file store
         "wandb": Kind("wandb", "wandb", "wandb[:PROJECT]")}       # default project: PROJECT


@dataclass(frozen=True)
class Tracker:
    name: str                # a key of KINDS
    target: str = ""         # URI or project; "" for the default

    def __post_init__(self):
        if self.name not in KINDS:
            raise ConfigError(f"--log {self.spec}: unknown tracker {self.name!r}; choose "
                              + " or ".join(k.usage for k in KINDS.values()))
        kind = KINDS[self.name]
        if importlib.util.find_spec(kind.module) is None:
            raise ConfigError(f"--log {self.spec}: {kind.module} is not installed; "
                              f"pip install 'cifar-sweeps[{kind.extra}]'")

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.target}" if self.target else self.name


def parse(values) -> tuple[Tracker, ...]:
    """--log values ("mlflow", "mlflow:file:///tmp/m", "wandb:proj") -> Trackers, checked."""
    trackers = tuple(Tracker(*(v.strip().split(":", 1))) for v in values)
    names = [t.name for t in trackers]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise ConfigError(f"--log {twice} given twice: one --log per tracker")
    wandb = next((t for t in trackers if t.name == "wandb"), None)
    if wandb and os.environ.get("WANDB_MODE") not in ("offline", "disabled") and not wandb_key():
        raise ConfigError(f"--log {wandb.spec}: no W&B API key; run `wandb login`, set WANDB_API_KEY, "
                          f"or WANDB_MODE=offline to write the runs to OUT/wandb")
    return trackers


def wandb_key() -> str | None:
    """W&B's key as its client finds one: WANDB_API_KEY, else `wandb login`'s entry in ~/.netrc
    (read here: importing wandb to ask takes seconds)."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        entry = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
    except (OSError, netrc.NetrcParseError):  # no ~/.netrc
        return None
    return entry[2] if entry else None


def at_optimizer_step(result: dict, previous: dict | None, x_axis: str = TIMESTEPS_TOTAL) -> dict | None:
    """What a tracker logs of a report: at the optimizer step (Tune's loggers take TIMESTEPS_TOTAL,
    else the report's count, as their x axis), so that curves of runs with other record_every
    line up; less what the report before, at the same step, logged with the same value (a run's
    final report repeats its last record, with test accuracy added). None: a trial that resumed
    from a checkpoint before the last logged step repeats records already logged (exactly)."""
    step = result.get(M.STEP)
    if step is None:
        return result
    last = None if previous is None else previous.get(M.STEP)
    if last is not None and step < last:
        return None
    if last == step:
        result = {k: v for k, v in result.items() if k not in previous or previous[k] != v}
    return {**result, x_axis: step}


class OptimizerSteps:
    """A mixin for Tune's logger callbacks: each trial's reports through at_optimizer_step."""
    x_axis = TIMESTEPS_TOTAL     # the key the logger takes its step from
    dropped: tuple = ()          # keys the logger would log as metrics but are not

    def log_trial_result(self, iteration: int, trial, result: dict):
        previous = getattr(self, "_reported", {})
        self._reported = previous
        logged = at_optimizer_step(result, previous.get(trial), self.x_axis)
        if logged is None:  # logged before the trial resumed from an earlier checkpoint
            return
        super().log_trial_result(iteration, trial, {k: v for k, v in logged.items() if k not in self.dropped})
        previous[trial] = result


class StepTBXLogger(OptimizerSteps, TBXLoggerCallback):
    """Tune's TensorBoard logger (events in each trial's folder) over optimizer steps.
    Passing it keeps Tune from adding its own, which would write the same series again."""


def callbacks(trackers: tuple[Tracker, ...], out: Path, stage: str) -> list:
    """Tune callbacks for a stage: TensorBoard, then one per tracker."""
    made = [StepTBXLogger()]
    for t in trackers:
        made.append(mlflow_callback(t, out, stage) if t.name == "mlflow" else wandb_callback(t, out, stage))
    return made


# Ray's integrations import mlflow and wandb (seconds) when installed: only when asked for.
def mlflow_callback(t: Tracker, out: Path, stage: str):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class MLflowLogger(OptimizerSteps, MLflowLoggerCallback):
        """One MLflow run per trial, over optimizer steps; a resumed trial goes on in its run."""
        dropped = ("config",)  # its params, logged once: not a metric per report

        def setup(self, *args, **kwargs):
            # MLflow 3 refuses its file store unless asked: the store is what --log named. Here, not
            # where the callback is made: a restored stage's callback comes from its tuner.pkl.
            if self.tracking_uri.startswith("file:") or "://" not in self.tracking_uri:
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            if trial in self._trial_runs:  # a retry in this driver: its run and params are there
                return
            client = self.mlflow_util._get_client()
            found = client.search_runs([self.mlflow_util.experiment_id],
                                       filter_string=f"tags.trial_id = '{trial.trial_id}'", max_results=1)
            if found:  # --resume: params as logged (a restored config has lists where tuples were)
                client.update_run(found[0].info.run_id, status="RUNNING")
                self._trial_runs[trial] = found[0].info.run_id
                return
            run = self.mlflow_util.start_run(run_name=str(trial), tags={
                **self.tags, "trial_name": str(trial), "trial_id": trial.trial_id})
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=params(trial.config))

    uri = t.target or os.environ.get("MLFLOW_TRACKING_URI") or (out.resolve() / "mlruns").as_uri()
    return MLflowLogger(tracking_uri=uri, experiment_name=out.resolve().name,
                        tags={"stage": stage, "sweep": str(out.resolve())})


def params(config: dict) -> dict:
    """A trial's params for a tracker: a pack's members differ only in repeat and seed, and
    their list would pass MLflow's limit on a param's length."""
    trial = dict(config.get("trial", config))
    members = trial.pop(PACK, None)
    if members:
        trial["repeat"] = ",".join(str(p["repeat"]) for p in members)
        trial[SEED] = ",".join(str(p.get(SEED, "")) for p in members)
    return {"trial": trial}


def wandb_callback(t: Tracker, out: Path, stage: str):
    from ray.air.integrations.wandb import WandbLoggerCallback

    class WandbLogger(OptimizerSteps, WandbLoggerCallback):
        """W&B's step: the optimizer step (Tune's logger takes the report's count)."""
        x_axis = TRAINING_ITERATION

    folder = out.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    # resume="allow": a trial that continues from its checkpoint goes on in its run (id: the trial's).
    # The driver's WANDB_MODE, passed on: W&B's logging actors run in Ray's worker processes,
    # whose environment is the one Ray started with.
    mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
    return WandbLogger(project=t.target or PROJECT, group=f"{folder.name}/{stage}", dir=str(folder),
                       resume="allow", **mode)
