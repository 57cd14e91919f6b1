"""One stage as one Ray Tune experiment, whatever kind of stage it is (a grid,
orchestrator/driver.py; a search, orchestrator/search_stage.py): the sweep's options,
where the experiment lives, how many trials run at once, its Tuner (new or restored),
and how it can end (trials failed for good: SweepError; Ctrl-C: Interrupted).

    tuner = stage_tuner(run_trial, data, opts, "train", columns={...}, callbacks=[...],
                        param_space={"trial": tune.grid_search(params)}, trial_name_creator=name)
    grid = tuner.fit(); raise_if_interrupted(grid, len(params))
"""
from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from orchestrator.collect import failure
from orchestrator.trackers import callbacks as tracker_callbacks
from workloads.config import ConfigError

TRIALS_FILE = "trials.csv"      # one row per trial: status, test accuracy, where it ran


class SweepError(RuntimeError):
    """Trials failed for good: exit code 1 after what finished is reported."""

    def __init__(self, headline: str, details: str = "", failed: list | None = None):
        super().__init__(headline + (f": {details}" if details else ""))
        self.headline = headline     # what failed, without the errors' text
        self.failed = failed or []   # orchestrator.collect.failures(): each failed trial, why, its last metrics
        self.folder: Path | None = None  # the sweep's folder (orchestrator.sweeps sets it)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a stage: Tune saved its state, and --resume finishes the
    sweep (orchestrator.sweeps names the command). str(): what to do. A KeyboardInterrupt,
    as the Ctrl-C it reports: no `except Exception` swallows it, and the command line
    answers it as any Ctrl-C (exit code 130)."""


def raise_if_interrupted(grid, planned: int = 0) -> None:
    """Tune's fit() returns early only on SIGINT (its state saved): then some trials never
    started (fewer than `planned` in the grid) or stopped before their final report
    (Tune marks them terminated all the same, so its statuses cannot tell)."""
    unfinished = sum(failure(r) == "unfinished" for r in grid) + max(0, planned - len(grid))
    if unfinished:
        raise Interrupted(f"{unfinished} trials unfinished")


class TuneAdvice(logging.Filter):
    """Drops Tune's lines on Ctrl-C, written for Tune's own users (`Tuner.restore(...)`):
    the sweep ends with the command that finishes it instead."""
    LINES = ("Stop signal received", "has been interrupted", "Trials did not complete",
             "Failed to fetch metrics")  # the last: trials stopped before their first report

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(line in record.getMessage() for line in self.LINES)


@dataclass(frozen=True)
class Options:
    out: Path
    data_dir: Path
    storage: str | None = None      # shared folder or URI for Tune's results (clusters)
    address: str | None = None      # None: a local Ray; "auto" or HOST:PORT: a cluster
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    num_cpus: int | None = None     # local Ray only
    num_gpus: float | None = None   # local Ray only (logical GPUs for tests)
    max_failures: int = 2
    resume: bool = False            # restore stages saved at experiment_path; else refuse to reuse it
    verbose: int = 1                # 0: quiet, 1: a progress line per stage, 2: Tune's table and trial logs
    # > 1: up to that many repeats of a group share a trial as one vectorized model
    # (orchestrator/packed.py); the RunRecords are the same either way.
    repeats_per_trial: int = 1
    log: tuple = ()                 # orchestrator.trackers.Tracker: --log's trackers, at every verbosity

    def __post_init__(self):
        if self.cpus_per_trial <= 0 and self.gpus_per_trial <= 0:
            raise ConfigError("a trial needs --cpus-per-trial > 0 or --gpus-per-trial > 0")
        if self.cpus_per_trial < 0 or self.gpus_per_trial < 0:
            raise ConfigError("--cpus-per-trial and --gpus-per-trial must be >= 0")
        if self.gpus_per_trial > 1:  # the loop trains on one device: a second GPU would sit idle
            raise ConfigError(f"--gpus-per-trial {self.gpus_per_trial:g}: a trial trains on one GPU; "
                              f"ask for 1 or a fraction (0.25: four trials share a GPU)")
        if self.max_failures < 0:
            raise ConfigError("--max-failures must be >= 0")
        if self.repeats_per_trial < 1:
            raise ConfigError("--repeats-per-trial must be >= 1")
        if self.address and not self.storage:
            raise ConfigError("--address needs --storage: a folder every node mounts, or a URI "
                              "such as s3://bucket/runs, for checkpoints written on worker nodes")
        if self.address and (self.num_cpus is not None or self.num_gpus is not None):
            raise ConfigError("--num-cpus/--num-gpus size a local Ray; a cluster (--address) has its own")


def experiment_path(opts: Options, stage: str) -> str:
    """Tune's folder for one stage: OUT/STAGE, or STORAGE/<out's name>/STAGE (so that
    --storage as the parent of --out keeps a run in one folder). A fresh sweep
    refuses a folder that already holds trials (check_fresh)."""
    out = opts.out.resolve()
    root = f"{opts.storage.rstrip('/')}/{out.name}" if opts.storage else str(out)
    return f"{root}/{stage}"


def restorable(path: str) -> bool:
    """Tune saved this stage's tuner and a readable experiment state. A state
    file that a crash cut short is moved aside, so that Tune takes the one before."""
    import pyarrow.fs
    from ray import tune
    if not tune.Tuner.can_restore(path):
        return False
    fs, root = pyarrow.fs.FileSystem.from_uri(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root))
    for state in sorted((i.path for i in infos if fnmatch.fnmatch(i.base_name, "experiment_state-*.json")),
                        reverse=True):  # Tune restores the newest by name
        try:
            with fs.open_input_stream(state) as f:
                json.loads(f.read())
            return True
        except ValueError:
            fs.move(state, state + ".corrupt")
    return False  # killed before its first snapshot: nothing to keep, start the stage over


def trials_at_once(opts: Options) -> int:
    """As many trials as the cluster's CPUs and GPUs hold now. Tune 2.60 with reuse_actors
    and no such cap was measured to run every trial in one actor, one after another."""
    import ray
    return fitting(ray.cluster_resources(), opts.cpus_per_trial, opts.gpus_per_trial)


RESOURCE_UNIT = 10_000  # Ray counts resources in fixed point, in 1/10,000ths of a unit


def fitting(have: dict, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of that size `have` (Ray's resources) holds at once, counted as Ray
    does: in whole 1/10,000ths. Float division undercounts (1.0 // 0.2 == 4.0: five trials
    of 0.2 GPU fit, and the fifth would wait)."""
    def units(x: float) -> int:
        return round(x * RESOURCE_UNIT)
    fits = [units(have.get(key, 0)) // units(need) for key, need in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial))
            if units(need) > 0]
    return max(1, min(fits))


def stage_tuner(trial_fn, data: dict, opts: Options, stage: str, *, columns: dict, callbacks: list,
                resume_errored: bool, **tune_config):
    """The stage's Tuner: restored where --resume finds one (finished trials stay finished,
    the rest continue from their last checkpoint; errored ones again if `resume_errored`),
    else new: Tune's table of trials with -v (`columns`: metric -> heading), `callbacks` (the
    project's progress lines) otherwise; `tune_config` (a grid's param_space too) as given.
    TensorBoard over optimizer steps and --log's trackers at every verbosity; a restored
    stage has the callbacks Tune saved with it (its tuner.pkl), made from the same sweep.json."""
    from ray import tune
    path = experiment_path(opts, stage)
    trainable = tune.with_resources(tune.with_parameters(trial_fn, data=data),
                                    {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
    if opts.resume and restorable(path):
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=resume_errored)
    reporter = tune.CLIReporter(
        metric_columns=columns, parameter_columns={"trial/group": "group", "trial/repeat": "repeat"},
        max_report_frequency=10, sort_by_metric=False) if opts.verbose >= 2 else None
    param_space = tune_config.pop("param_space", None)
    return tune.Tuner(
        trainable, param_space=param_space,
        # reuse_actors: a process (and its copy of the data) serves trial after trial
        tune_config=tune.TuneConfig(reuse_actors=True, **tune_config),
        run_config=tune.RunConfig(
            name=stage, storage_path=path.rsplit("/", 1)[0],
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            progress_reporter=reporter,
            callbacks=(callbacks if opts.verbose == 1 else []) + tracker_callbacks(opts.log, opts.out, stage),
            verbose=1 if reporter else 0))
