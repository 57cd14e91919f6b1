"""Runs a study on Ray Tune: one Tuner per stage, stages in order (a later
stage's grid may be computed from earlier results), then the study's report.

    run_study(get_study("part3").with_quick(), Options(out=Path("runs/x"), data_dir=Path("data")))
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from orchestrator.provenance import provenance
from results.aggregate import RunRecord
from results.io import write_json
from search_spaces.study import Study, Trial
from workloads import metrics as M
from workloads.data import load_cifar10, prepare
from workloads.models import build_model, first_layer

SWEEP_FILE = "sweep.json"       # what was asked for: lets --resume rebuild the same study
DONE_FILE = "provenance.json"   # written last: its presence means the sweep finished


class SweepError(RuntimeError):
    """Trials failed for good: exit code 1 after what finished is reported."""


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
    resume: bool = False
    verbose: int = 1

    def __post_init__(self):
        from workloads.config import ConfigError
        if self.cpus_per_trial <= 0 and self.gpus_per_trial <= 0:
            raise ConfigError("a trial needs --cpus-per-trial > 0 or --gpus-per-trial > 0")
        if self.cpus_per_trial < 0 or self.gpus_per_trial < 0:
            raise ConfigError("--cpus-per-trial and --gpus-per-trial must be >= 0")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ConfigError("--gpus-per-trial above 1 must be a whole number")
        if self.max_failures < 0:
            raise ConfigError("--max-failures must be >= 0")


def experiment_path(opts: Options, stage: str) -> str:
    root = opts.storage.rstrip("/") + "/" + opts.out.name if opts.storage else str(opts.out.resolve())
    return f"{root}/{stage}"


def init_ray(opts: Options) -> None:
    import ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's newer console output ignores the progress reporter: keep the compact table.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    if opts.address:
        ray.init(address=opts.address, log_to_driver=True)
    else:
        ray.init(num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, include_dashboard=False)


def run_stage(study: Study, trials: list[Trial], data: dict, opts: Options):
    from ray import tune

    from orchestrator.trainable import run_trial
    stage = trials[0].stage
    path = experiment_path(opts, stage)
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=data),
                                    {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})
    if opts.resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        reporter = tune.CLIReporter(
            metric_columns={M.EPOCH: "epoch", M.LOSS: "loss", M.VAL_ACC: "val_acc", M.TEST_ACC: "test_acc"},
            parameter_columns={"trial/group": "group", "trial/repeat": "repeat"},
            max_report_frequency=10, sort_by_metric=False)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([t.to_param() for t in trials])},
            tune_config=tune.TuneConfig(
                trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(
                name=stage, storage_path=path.rsplit("/", 1)[0],
                failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                progress_reporter=reporter, verbose=opts.verbose))
    return tuner.fit()


def _trial_name(trial) -> str:
    t = trial.config["trial"]
    return f"{t['group']}_r{t['repeat']}"


def collect(grid) -> tuple[list[RunRecord], list[str]]:
    """RunRecords of the finished trials, and one line for each failed one."""
    from orchestrator.trainable import load_state, trial_config
    records, failed = [], []
    for result in grid:
        param = result.config["trial"]
        name = f"{param['group']}_r{param['repeat']}"
        if result.error is not None or result.checkpoint is None or M.TEST_ACC not in result.metrics:
            failed.append(f"{name}: {str(result.error).strip().splitlines()[-1] if result.error else 'unfinished'}")
            continue
        cfg = trial_config(param)
        state = load_state(result.checkpoint)
        model = build_model(cfg.model.arch, cfg.model.activation)
        model.load_state_dict(state["model"])
        # The final checkpoint holds every record, also those from before a restore.
        curves = pd.DataFrame(state["records"])
        records.append(RunRecord(
            stage=param["stage"], group=param["group"], repeat=param["repeat"],
            config={k: v for k, v in param.items() if k not in ("stage", "group", "repeat")},
            curves=curves, test_acc=float(result.metrics[M.TEST_ACC]),
            wall_s=float(result.metrics.get("time_total_s", 0.0)),
            first_layer=first_layer(model).weight.detach().numpy().copy(),
            state_dict=state["model"]))
    return records, failed


def run_study(study: Study, opts: Options, argv: list[str] | None = None) -> dict:
    raw = load_cifar10(opts.data_dir)  # fails with one line before Ray starts
    opts.out.mkdir(parents=True, exist_ok=True)
    init_ray(opts)
    results, plans = {}, {}
    for stage in study.stages:
        trials = study.stage_trials(stage, results)
        plans[stage.name] = [t.to_param() for t in trials]
        data = {cfg: prepare(cfg, raw) for cfg in {t.config.data for t in trials}}
        print(f"[{study.name}] stage {stage.name}: {len(trials)} trials -> {experiment_path(opts, stage.name)}",
              file=sys.stderr, flush=True)
        records, failed = collect(run_stage(study, trials, data, opts))
        order = {t.name: i for i, t in enumerate(trials)}  # the plan's order, not Tune's
        records.sort(key=lambda r: order[f"{r.group}_r{r.repeat}"])
        if failed:
            raise SweepError(f"stage {stage.name}: {len(failed)} of {len(trials)} trials failed "
                             f"(rerun with --resume to retry them): " + "; ".join(failed[:3]))
        results[stage.name] = records
    summary = study.report(results, opts.out, study) if study.report else {}
    write_json(opts.out / DONE_FILE, provenance(study, opts, plans, argv))
    return {"results": results, **summary}


