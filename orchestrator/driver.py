"""Runs a study on Ray Tune: one Tuner per stage, stages in order (a later
stage's grid may be computed from earlier results), then the study's report.

    run_study(get_study("part3").with_quick(), Options(out=Path("runs/x"), data_dir=Path("data")))

Where things go. Tune's trial folders (checkpoints, progress) live at
experiment_path(): under the out folder, or with `storage` (a folder every node
mounts, or a pyarrow URI such as s3://bucket/runs) under STORAGE/<out's name>.
The out folder gets trials.csv (each trial's status and where it ran) and
the records (runs.parquet, curves.parquet, records.json: results/records.py) as stages end, then the
study's report, report.html and report.md (orchestrator/report.py), and
provenance.json, written last: a folder without it holds an unfinished sweep,
and `resume` restores every stage from Tune's saved state, so finished trials
are kept and unfinished ones continue from their last checkpoint.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import time

import pandas as pd

from orchestrator.collect import collect, failures, serve, trial_rows
from orchestrator.cost import longest_first, trial_work
from orchestrator.experiment import (TRIALS_FILE, Options, SweepError, TuneAdvice, experiment_path,
                                     raise_if_interrupted, stage_tuner, trials_at_once)
from orchestrator.provenance import provenance
from orchestrator.report import DONE_FILE, report_unfinished, save_records, write_study_report
from results.io import write_csv, write_json
from search_spaces.files import loaded_modules
from search_spaces.plan import Run
from search_spaces.study import Study
from search_spaces.tune_search import TuneSearch
from workloads import metrics as M
from workloads.config import ConfigError
from workloads.imported import is_imported, module_of
from workloads.data import load_cifar10, prepare

def check_fresh(study: Study, opts: Options) -> None:
    from ray import tune
    for stage in study.stages:
        path = experiment_path(opts, stage.name)
        if tune.Tuner.can_restore(path):
            raise ConfigError(f"{path} already holds a sweep's trials; choose another --out "
                              f"(or --resume to finish that sweep)")


def own_models(study: Study) -> list:
    """The packages of the study's own models (`arch=package.module:factory`) for a cluster's
    workers (Ray's py_modules); a local Ray's workers import from the driver's folder. A search
    stage's archs are those it can ask for (a later stage's derive picks among them)."""
    archs = {study.stage_config(s).model.arch for s in study.stages} \
        | {r.config.model.arch for p in study.plan.stages for r in p.runs} \
        | {a for s in study.stages if s.search is not None for a in s.search.values_of("arch")}
    modules = {module_of(a) for a in archs if is_imported(a)}
    return [m for m in modules if getattr(m, "__file__", None)]


def ship_study_files() -> None:
    """Python study files are modules no Ray worker can import (search_spaces/files.py):
    Ray's pickler sends what they define (a derive, a search's computed values) by value."""
    from ray import cloudpickle
    for module in loaded_modules():
        cloudpickle.register_pickle_by_value(module)


def init_ray(opts: Options, study: Study | None = None) -> bool:
    """Start or join Ray; True when this call started it (and so should stop it)."""
    import ray
    ship_study_files()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's newer console output ignores the progress reporter: keep the compact table.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Short trials checkpoint often; each forces a state snapshot, which is what resuming needs.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's and Tune's INFO lines, and the trials' own (Tune's "Checkpoint successfully
    # created", forwarded until after the sweep's last lines), only with -v.
    chatter = {"log_to_driver": opts.verbose >= 2, "logging_level": logging.INFO if opts.verbose >= 2
               else logging.WARNING}
    logging.getLogger("ray.tune").setLevel(chatter["logging_level"])
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        log = logging.getLogger(name)
        if not any(isinstance(f, TuneAdvice) for f in log.filters):  # once, however many sweeps a process runs
            log.addFilter(TuneAdvice())
    if ray.is_initialized():
        return False
    if opts.address:
        try:
            shipped = own_models(study) if study is not None else []
            ray.init(address=opts.address, **({"runtime_env": {"py_modules": shipped}} if shipped else {}),
                     **chatter)
        except ConnectionError as e:  # e.g. "auto" with no cluster on this machine
            raise ConfigError(f"--address {opts.address}: {str(e).strip().splitlines()[0]}") from None
    else:  # "local": never join a cluster that `ray start` left on this machine
        ray.init(address="local", num_cpus=opts.num_cpus, num_gpus=opts.num_gpus, include_dashboard=False,
                 **chatter)
    return True


def check_resources(opts: Options) -> None:
    """A local Ray that can never fit one trial would leave Tune waiting forever.
    (A cluster's autoscaler may still add what it lacks now.)"""
    import ray
    if opts.address:
        return
    have = ray.cluster_resources()
    for key, need in (("CPU", opts.cpus_per_trial), ("GPU", opts.gpus_per_trial)):
        if need > have.get(key, 0):
            raise ConfigError(f"a trial asks for {need:g} {key} but this Ray has {have.get(key, 0):g}: "
                              f"lower --{key.lower()}s-per-trial or raise --num-{key.lower()}s")


class DataSets:
    """Each data set prepared once, in a background thread, and stored once in Ray's
    object store. The data of every stage known before any result (no `derive`) is
    prepared while Ray starts: both take seconds, and the thread's work is in numpy and
    torch kernels that release the GIL. Configs that differ only in augmentations share
    one copy (DataConfig.arrays)."""

    def __init__(self, raw, study: Study | None = None):
        from concurrent.futures import ThreadPoolExecutor
        self.raw, self.pool = raw, ThreadPoolExecutor(1, thread_name_prefix="prepare")
        self.futures: dict = {}  # DataConfig.arrays -> Future of PreparedData, until stored
        self.refs: dict = {}     # DataConfig.arrays -> ObjectRef, kept for later stages
        for cfg in study.plan.data_configs() if study else ():
            self.prepared(cfg)

    def prepared(self, cfg):
        key = cfg.arrays
        if key not in self.futures and key not in self.refs:
            self.futures[key] = self.pool.submit(prepare, key, self.raw)
        return self.futures.get(key)

    def stage_data(self, configs) -> dict:
        """{DataConfig: ObjectRef} for the runs' configs; a trial fetches only its own."""
        import ray
        out = {}
        for cfg in {c.data for c in configs}:
            if cfg.arrays not in self.refs:  # stored; the driver's copy is dropped
                self.refs[cfg.arrays] = ray.put(self.prepared(cfg).result())
                del self.futures[cfg.arrays]
            out[cfg] = self.refs[cfg.arrays]
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def run_param(run: Run) -> dict:
    """The dict Tune stores as a run's config: its first trial's names, the run's flat config."""
    t = run.trials[0]
    return {"stage": t.stage, "group": t.group, "repeat": t.repeat, **run.config.to_flat()}


def run_stage(study: Study, runs: list[Run], data: dict, opts: Options):
    from ray import tune

    from orchestrator.progress import Progress
    params = [run_param(r) for r in runs]
    if opts.repeats_per_trial > 1:  # packed repeats: orchestrator/packed.py
        from orchestrator.packed import pack_params, run_pack as trial_fn
        params = pack_params(params, opts.repeats_per_trial, log=True)
    else:
        from orchestrator.trainable import run_trial as trial_fn
    work = trial_work(params)
    params = longest_first(params, work)
    stage = runs[0].trials[0].stage
    tuner = stage_tuner(
        trial_fn, data, opts, stage, resume_errored=True,
        columns={M.EPOCH: "epoch", M.LOSS: "loss", M.VAL_ACC: "val_acc", M.TEST_ACC: "test_acc"},
        callbacks=[Progress(f"[{study.name}] {stage}", work)], param_space={"trial": tune.grid_search(params)},
        trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        # On a cluster no cap: an autoscaler adds nodes only for trials that wait.
        max_concurrent_trials=None if opts.address else trials_at_once(opts))
    grid = tuner.fit()
    raise_if_interrupted(grid, len(params))
    return grid


def _trial_name(trial) -> str:
    from orchestrator.trainable import trial_name
    return trial_name(trial.config["trial"])


def run_study(study: Study, opts: Options, argv: list[str] | None = None, raw=None) -> dict:
    started = time.time()
    raw = raw if raw is not None else load_cifar10(opts.data_dir)  # fails with one line before Ray starts
    # While Ray starts (seconds of waiting on its processes), the background thread
    # prepares the data and imports Tune (a second), which check_fresh needs first.
    datasets = DataSets(raw, study)
    tune_imported = datasets.pool.submit(importlib.import_module, "ray.tune")
    ours = False
    try:
        ours = init_ray(opts, study)
        tune_imported.result()
        if not opts.resume:
            check_fresh(study, opts)
        opts.out.mkdir(parents=True, exist_ok=True)
        # Re-reporting a finished sweep: unfinished again until the new report is complete.
        (opts.out / DONE_FILE).unlink(missing_ok=True)
        check_resources(opts)
        return _run_stages(study, opts, argv, datasets, started)
    finally:
        datasets.close()
        if ours:  # now, not at exit: Ray's own notices (a worker that died) then come before the sweep's last lines
            import ray
            ray.shutdown()


def _run_stages(study: Study, opts: Options, argv: list[str] | None, datasets: DataSets, started: float) -> dict:
    results, plans, rows = {}, {}, []
    done: dict = {}       # run config -> RunRecord: a trial asking for it again reuses it
    for planned in study.plan.stages:
        stage = planned.stage
        if planned.kind == "search":  # trials asked for as results come in
            if isinstance(stage.search, TuneSearch):  # Tune's searchers and schedulers
                from orchestrator.tune_search import run_tune_search as run_search
            else:                                     # one setting at a time
                from orchestrator.search_stage import run_search
            results[stage.name] = run_search(study, stage, opts, datasets, done, rows)
            plans[stage.name] = [{"stage": r.stage, "group": r.group, "repeat": r.repeat, **r.config}
                                 for r in results[stage.name]]
            continue
        planned = planned.given(study, results)  # a derived stage's grid, from the stages before it (checked)
        trials, runs = list(planned.trials), list(planned.runs)
        todo = [r for r in runs if r.config not in done]
        plans[stage.name] = [run_param(r) for r in runs]
        reused = len(runs) - len(todo)
        print(f"[{study.name}] stage {stage.name}: {len(trials)} results from {len(runs)} runs"
              + (f" ({reused} reused from earlier stages)" if reused else "")
              + f" -> {experiment_path(opts, stage.name)}", file=sys.stderr, flush=True)
        try:
            if todo:
                _run_todo(study, stage.name, todo, opts, datasets, done, rows)
        except SweepError as e:  # what finished, and what failed, in a partial report
            results[stage.name] = [r for run in runs if run.config in done for r in serve(done[run.config], run)]
            report_unfinished(study, results, opts.out, provenance(study, opts, plans, argv, started, rows),
                              e.failed, e.headline)
            raise
        results[stage.name] = [r for run in runs for r in serve(done[run.config], run)]
        order = {t.name: i for i, t in enumerate(trials)}  # the plan's order
        results[stage.name].sort(key=lambda r: order[f"{r.group}_r{r.repeat}"])
        save_records(opts.out, results)  # `report RUN` rebuilds the report from these, without Ray
    prov = provenance(study, opts, plans, argv, started, rows)
    extras, seconds = write_study_report(study, results, opts.out, prov)
    write_json(opts.out / DONE_FILE, {**prov, "report_s": round(seconds, 2)})
    diverged = [f"{r.group}_r{r.repeat} (step {r.diverged_at})" for recs in results.values()
                for r in recs if r.status == M.DIVERGED]
    return {"results": results, "diverged": diverged, "report_s": seconds, **extras}


def _run_todo(study: Study, stage: str, runs: list[Run], opts: Options, datasets: DataSets, done: dict,
              rows: list) -> None:
    """Train `runs` as one Tune experiment: their records go into `done`, their rows into
    `rows` and trials.csv (also when some failed, which then ends the sweep)."""
    grid = run_stage(study, runs, datasets.stage_data([r.config for r in runs]), opts)
    order = {r.name: i for i, r in enumerate(runs)}
    planned, collector = set(order), collect
    if opts.repeats_per_trial > 1:  # packed repeats: orchestrator/packed.py
        from orchestrator import packed
        planned = packed.trial_names([run_param(r) for r in runs], opts.repeats_per_trial)
        collector = packed.collect
    ran = {row["trial"] for row in trial_rows(grid)}
    if ran != planned:  # a restored stage whose trials are not this study's
        raise ConfigError(f"{experiment_path(opts, stage)} holds trials {sorted(ran - planned)[:3]} "
                          f"that this study does not plan (and lacks {sorted(planned - ran)[:3]}): "
                          f"resume with the study, --quick and overrides it was started with")
    records, failed = collector(grid)
    ran_rows = sorted(trial_rows(grid), key=lambda row: order.get(row["trial"], len(order)))
    rows += ran_rows
    write_csv(opts.out / TRIALS_FILE, pd.DataFrame(rows))
    # Each trial process says so too, but its lines reach this terminal only with -v.
    from orchestrator.trainable import DEVICE, GPU_IDS
    on_cpu = [row["trial"] for row in ran_rows if row.get(GPU_IDS) and row.get(DEVICE) == "cpu"]
    if on_cpu:
        print(f"[{study.name}] {len(on_cpu)} trials were given a GPU but their node has no GPU device: "
              f"they trained on the CPU ({', '.join(on_cpu[:3])}{', ...' if len(on_cpu) > 3 else ''})",
              file=sys.stderr, flush=True)
    for run in runs:
        if run.name in records:
            done[run.config] = records[run.name]
    if failed:
        raise SweepError(f"stage {stage}: {len(failed)} of {len(planned)} trials failed "
                         f"(rerun with --resume to retry them)", "; ".join(failed[:3]), failures(grid, stage))
