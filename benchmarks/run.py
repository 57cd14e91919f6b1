"""The throughput benchmark: one command, one table, every row the same work
(the same runs, steps, record points and evaluated images) on the same machine.

    PYTHONPATH=. python -m benchmarks --size quick --data-dir ../shared/data
    PYTHONPATH=. python -m benchmarks --size full --steps 200 --repeats 2 --baseline-repeats 1
    PYTHONPATH=. python -m benchmarks --study hw2 --repeats 10 --data-dir ../shared/data

Rows (all of the study's runs unless noted):
  1 baseline     benchmarks.baseline.run_baseline, one run after another (torchvision
                 per-sample transforms, DataLoaders, evaluation batches of 1,000)
  2 train()      the project's loop, one run after another in this process (data
                 loaded and prepared once, inside the row's time)
  3 vectorized   workloads.vectorized.train_repeats: each arch's repeats as one model
  4 sweep        orchestrator.driver.run_study through Ray Tune on a local Ray with
                 every core: start-up, data, trials, collection and the report
  5 sweep packed the same, repeats_per_trial = repeats (one vectorized trial per arch)
Rows 1-3 run with one torch thread (the baseline's own setting); sweep trials get
one CPU each.

Columns: wall seconds, training steps/s, evaluated images/s (training sample and
validation split at every record, plus the test set), the speed-up against row 1
(row 1's wall / this row's wall), `busy` (rows 1-3: process CPU time / wall, which
falls below 1 when other processes compete for the cores; sweeps: summed trial time
/ (wall x cores), the core utilisation), and the 1-minute load average when the row
ended (this machine's cores are shared with whatever else runs).

Studies: part3 (its five architectures) or hw2 (the PyTorch tutorial's net and recipe:
batch 4, SGD, the tutorial's normalisation; a per-step-overhead job).
Sizes: quick = part3 --quick (2 repeats, 1 epoch of a 5,000-image subset, records every
20 steps); for hw2, --steps steps of batch 4 (one epoch of steps x 4 images) with one
record scoring 500 training, 500 validation and 1,000 test images. full (part3) = the
assignment's per-step work (whole validation split, 5,000-image training sample, records
every 10 steps, all 10,000 test images) with every run cut to --steps steps (a training
subset of steps x 50 images, one epoch), plus a projection of the whole study (15 epochs
of 900 steps, linear in steps). --baseline-repeats times fewer baseline runs per arch and
scales that row by repeats / timed runs (labelled).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.baseline import WORKERS
from benchmarks.tables import Row, comparisons, machine, settings_line, table
from orchestrator.experiment import TRIALS_FILE
from orchestrator.trainable import FINISHED, STARTED
from search_spaces import get_study
from search_spaces.study import Stage, Study
from workloads.config import TrialConfig
from workloads.data import load_cifar10, prepare, resolve_data_dir
from workloads.evaluation import DeviceData
from workloads.train import train
from workloads.vectorized import Accel, can_vectorize, train_repeats

FULL_STEPS_PER_RUN = 15 * 900   # the assignment: 15 epochs of 45,000 images in batches of 50
PART3_ARCHS = "mlp_1,mlp_2,cnn_3,cnn_4,cnn_5"  # the assignment's five, named in case the registry grows
ROWS = ("baseline", "train", "vectorized", "sweep", "sweep_packed")


def bench_study(size: str, steps: int, repeats: int | None, archs: str | None,
                extra: dict | None = None, name: str = "part3") -> Study:
    """part3 at the chosen size, or hw2's tutorial run (plus `extra` key=value overrides):
    what every row runs."""
    if name == "hw2":
        sizes = {"epochs": 1, "train_subset": (steps or 1000) * 4, "test_subset": 1000, "train_eval_size": 500}
        hw2 = get_study("hw2")
        study = Study("hw2-tutorial", "the tutorial's net and recipe", (Stage("tutorial"),),
                      base=hw2.base, repeats=repeats or 10, select=hw2.select)  # hw2 has no validation split
        return study.with_overrides({**sizes, **(extra or {})})
    study = get_study("part3")
    overrides: dict = {}
    if size == "quick":
        study = study.with_quick()
    else:  # the assignment's per-step work, each run cut to `steps` steps
        # The training-accuracy sample these rows were first measured with (part3 now scores
        # its whole training split): the rows stay comparable with the earlier ones.
        overrides.update({"epochs": "1", "train_subset": str((steps or 200) * 50), "train_eval_size": "5000"})
    if repeats:
        overrides["repeats"] = str(repeats)
    if archs:
        overrides["arch"] = archs
    return study.with_overrides({**overrides, **(extra or {})})


def study_trials(study: Study) -> list:
    return [t for p in study.plan.stages for t in p.trials]


def add_run(row: "Row", cfg: TrialConfig, n_records: int, test_acc: float, name: str) -> None:
    """Count one finished run's work, checking it is the planned work."""
    steps, records, images = cfg.work()
    row.steps, row.images, row.runs = row.steps + steps, row.images + images, row.runs + 1
    row.extra.setdefault("test_acc", {})[name] = test_acc
    if n_records != records:
        row.note += f" {name}: {n_records} records, planned {records}!"


class Timer:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall
        self.cpu_s = time.process_time() - self.cpu


def by_group(trials: list) -> dict:
    groups: dict = {}
    for t in trials:
        groups.setdefault((t.stage, t.group), []).append(t)
    return groups


def row_baseline(study: Study, data_dir: Path, timed_repeats: int | None, device: torch.device,
                 workers: int = 0) -> Row:
    """Row 1; with `timed_repeats`, each arch's wall is its timed runs' mean x its repeats."""
    from benchmarks.baseline import run_baseline
    row = Row("baseline", f"1 hand-written loop, {workers} loader workers")
    timed_wall = timed_cpu = 0.0
    for members in by_group(study_trials(study)).values():
        timed = members[:timed_repeats] if timed_repeats else members
        walls = []
        for t in timed:
            with Timer() as clock:
                r = run_baseline(data_dir, t.config, threads=1, device=str(device), workers=workers)
            walls.append(clock.wall_s)
            timed_cpu += clock.cpu_s
            add_run(row, t.config, len(r["records"]), r["test_acc"], t.name)
            steps, _, images = t.config.work()
            if r["evaluated_images"] != images or r["steps"] != steps:
                row.note += f" {t.name}: baseline work differs from the plan!"
        for t in members[len(timed):]:  # not timed: counted at the timed runs' mean
            add_run(row, t.config, t.config.work()[1], float("nan"), t.name)
        timed_wall += sum(walls)
        row.wall_s += sum(walls) / len(walls) * len(members)
        if len(timed) < len(members) and not row.note.startswith("timed"):
            row.note = f"timed {len(timed)} of {len(members)} runs per arch, scaled" + row.note
    row.busy = timed_cpu / timed_wall
    return row


def prepared_for(study: Study, data_dir: Path, device: torch.device) -> dict:
    """{DataConfig: DeviceData}: loaded, prepared and moved to the device once, as a trial does."""
    raw = load_cifar10(data_dir, download=False)
    return {cfg: DeviceData.from_prepared(prepare(cfg, raw), device)
            for cfg in {t.config.data for t in study_trials(study)}}


def row_train(study: Study, data_dir: Path, device: torch.device) -> Row:
    row = Row("train", "2 train(), one run after another")
    with Timer() as clock:
        data = prepared_for(study, data_dir, device)
        for t in study_trials(study):
            outcome = train(t.config, data[t.config.data], device)
            add_run(row, t.config, len(outcome.records), outcome.test_acc, t.name)
    row.wall_s, row.busy = clock.wall_s, clock.cpu_s / clock.wall_s
    return row


def row_vectorized(study: Study, data_dir: Path, device: torch.device, accel: Accel = Accel()) -> Row:
    row = Row("vectorized", "3 vectorized repeats, one model per arch")
    fallback = []
    with Timer() as clock:
        data = prepared_for(study, data_dir, device)
        for members in by_group(study_trials(study)).values():
            cfgs = [t.config for t in members]
            d = data[cfgs[0].data]
            if can_vectorize(cfgs[0]):
                outcomes = train_repeats(cfgs, d, device, accel=accel)
            else:  # what the packed sweep does too: one model per repeat
                fallback.append(members[0].group)
                outcomes = [train(c, d, device) for c in cfgs]
            for t, outcome in zip(members, outcomes):
                add_run(row, t.config, len(outcome.records), outcome.test_acc, t.name)
    if fallback:
        row.note += f" one model per repeat for {', '.join(fallback)}"
    row.wall_s, row.busy = clock.wall_s, clock.cpu_s / clock.wall_s
    return row


def row_sweep(study: Study, data_dir: Path, cores: int, repeats_per_trial: int = 1,
              gpus_per_trial: float = 0.0) -> Row:
    """Rows 4-5: run_study from Ray's start to the written report; Ray stopped after."""
    import ray

    from orchestrator.driver import run_study
    from orchestrator.experiment import Options
    packed = repeats_per_trial > 1
    row = Row("sweep_packed" if packed else "sweep",
              f"5 Ray Tune sweep, {repeats_per_trial} repeats a trial" if packed else "4 Ray Tune sweep")
    out = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        opts = Options(out=out / "run", data_dir=data_dir, num_cpus=cores, verbose=0,
                       gpus_per_trial=gpus_per_trial, **({"repeats_per_trial": repeats_per_trial} if packed else {}))
        with Timer() as clock:
            summary = run_study(study, opts)
        records = [r for stage in summary["results"].values() for r in stage]
        for r in records:
            add_run(row, TrialConfig.from_flat(r.config), len(r.curves), r.test_acc, f"{r.group}_r{r.repeat}")
        row.extra["trial_seconds"] = sum(r.wall_s for r in records)
        row.wall_s = clock.wall_s
        row.busy = row.extra["trial_seconds"] / (clock.wall_s * cores)
        row.extra.update(trial_phase(out / "run" / TRIALS_FILE, row.extra["trial_seconds"], cores))
    finally:
        ray.shutdown()
        shutil.rmtree(out, ignore_errors=True)
    return row


def trial_phase(trials_csv: Path, trial_seconds: float, cores: int) -> dict:
    """The sweep between its first trial's start and its last trial's end (trials.csv):
    how long that was, and the cores' utilisation within it. What lies outside it
    (Ray's start, the trial processes' start, the report) is the sweep's fixed cost."""
    import pandas as pd
    t = pd.read_csv(trials_csv)
    span = float(t[FINISHED].max() - t[STARTED].min())
    return {"trial_phase_s": span, "trial_phase_busy": trial_seconds / (span * cores)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", choices=("part3", "hw2"), default="part3")
    p.add_argument("--workers", type=int, help="row 1's training DataLoader processes (default: 0 for "
                                               "part3, 2 for hw2, as the tutorial's code)")
    p.add_argument("--size", choices=("quick", "full"), default="quick")
    p.add_argument("--data-dir", help="CIFAR-10 folder (else $ORCHESTRATOR_DATA, else ./data)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    p.add_argument("--steps", type=int, help="part3 full size and hw2: training steps per run "
                                              "(default 200 and 1000)")
    p.add_argument("--repeats", type=int, help="repeats per arch (default: the size's)")
    p.add_argument("--archs", default=PART3_ARCHS, help=f"comma-separated (default {PART3_ARCHS})")
    p.add_argument("--baseline-repeats", type=int, help="time only this many baseline runs per arch, scale")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="CPUs of the sweep's local Ray")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="rows 1-3 (default: cuda if available); sweeps use the GPU with --gpus-per-trial")
    p.add_argument("--gpus-per-trial", type=float, help="sweep rows (default 0.25 with --device cuda, else 0)")
    p.add_argument("--precision", default="float32", help="row 3 only: float32, tf32 or bfloat16")
    p.add_argument("--compile", default="", help="row 3 only: a torch.compile mode (default off)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every row")
    p.add_argument("--json", help="also write every figure to this file")
    a = p.parse_args(argv)
    rows_asked = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = set(rows_asked) - set(ROWS)
    if unknown:
        p.error(f"unknown rows {', '.join(sorted(unknown))}; choose from {', '.join(ROWS)}")
    rows_asked = [r for r in ROWS if r in rows_asked]  # always in table order
    data_dir = resolve_data_dir(a.data_dir)
    load_cifar10(data_dir, download=False)  # missing data: one line, before anything runs
    if any("=" not in o for o in a.overrides):
        p.error(f"expected key=value overrides, got {' '.join(a.overrides)}")
    extra = dict(o.split("=", 1) for o in a.overrides)
    if a.study == "hw2" and a.size == "full":
        p.error("--study hw2 has one size: --steps steps of batch 4")
    study = bench_study(a.size, a.steps, a.repeats, a.archs, extra, a.study)
    device = torch.device(a.device)
    gpus = a.gpus_per_trial if a.gpus_per_trial is not None else 0.25 if device.type == "cuda" else 0.0
    accel = Accel(precision=a.precision, compile=a.compile)
    trials = study_trials(study)
    repeats = study.repeats
    print(f"benchmark: {a.study} {a.size}, {len(trials)} runs ({repeats} repeats of "
          f"{len(trials) // repeats} archs), {machine()['cores']} cores, rows 1-3 on {device}; "
          f"settings: {settings_line(trials[0].config)}", flush=True)

    torch.set_num_threads(1)
    rows: list[Row] = []
    for name in rows_asked:
        started = time.time()
        if name == "baseline":
            row = row_baseline(study, data_dir, a.baseline_repeats, device,
                               a.workers if a.workers is not None else WORKERS[a.study])
        elif name == "train":
            row = row_train(study, data_dir, device)
        elif name == "vectorized":
            row = row_vectorized(study, data_dir, device, accel)
        else:
            row = row_sweep(study, data_dir, a.cores, repeats if name == "sweep_packed" else 1, gpus)
        row.load = os.getloadavg()[0]
        row.extra["started"] = started
        rows.append(row)
        print(f"  {row.label}: {row.wall_s:.1f} s", flush=True)

    print()
    print(table(rows))
    for line in comparisons(rows):
        print(line)
    if a.study == "part3" and a.size == "full":
        scale = FULL_STEPS_PER_RUN * 50  # steps of the whole study: 50 runs
        print(f"projected whole study (50 runs x {FULL_STEPS_PER_RUN} steps, linear in steps): " +
              ", ".join(f"row {r.label.split()[0]} {scale / r.steps_per_s / 3600:.1f} h" for r in rows))
    if a.json:
        Path(a.json).write_text(json.dumps({
            "argv": argv if argv is not None else sys.argv[1:], "size": a.size,
            "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
            "settings": trials[0].config.to_flat(), "runs": len(trials),
            "rows": [{**{k: v for k, v in vars(r).items()}, "steps_per_s": r.steps_per_s,
                      "images_per_s": r.images_per_s} for r in rows],
            "comparisons": comparisons(rows)}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
