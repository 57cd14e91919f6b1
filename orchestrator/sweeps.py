"""A sweep as a library call: what `python -m orchestrator sweep` does, from Python.

    from orchestrator import sweep
    run = sweep("part3", {"repeats": 2, "archs": ["mlp_1", "cnn_3"]}, quick=True,
                data_dir="../shared/data", out="runs/part3/mine")
    run.folder, run.results["train"][0].test_acc     # results by stage: part3's is "train"
    print("\\n".join(run.closing_lines()))

Everything a sweep owns lives here: its folder (runs/STUDY/TIMESTAMP unless `out`), the
lock (one driver per folder), resuming (the request saved in sweep.json is what runs; a
request that differs is refused), the records and the report (orchestrator/driver.py).
The command line only turns arguments into a Request and prints. Bad input raises
ConfigError (one line) before anything is written; a sweep stopped by Ctrl-C raises
Interrupted, whose message names the command that finishes it.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.driver import run_study
from orchestrator.experiment import Interrupted, Options, SweepError
from orchestrator.report import DONE_FILE, SWEEP_FILE
from orchestrator.request import Request
from orchestrator.trackers import parse as parse_trackers
from results.aggregate import aggregate_groups
from results.document import compact_table, distinct_runs, unscored
from results.io import write_json
from search_spaces import is_study_file
from search_spaces.study import Study
from workloads import metrics as M
from workloads.config import ConfigError
from workloads.data import load_cifar10, resolve_data_dir


@dataclass(frozen=True)
class FinishedSweep:
    folder: Path
    study: Study
    summary: dict        # results ({stage: [RunRecord]}), diverged, report_s, the study's extras

    @property
    def results(self) -> dict:
        return self.summary["results"]

    def closing_lines(self) -> list[str]:
        return closing_lines(self.study, self.summary, self.folder)


def as_overrides(values: dict | None) -> tuple:
    """{"repeats": 2, "archs": ["a", "b"]} -> ("repeats=2", "archs=a,b"): the command line's form."""
    def text(v):
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return tuple(f"{k}={text(v)}" for k, v in (values or {}).items())


def sweep(study: str, overrides: dict | None = None, **options) -> FinishedSweep:
    """Runs (or with resume=True finishes) a study; `options` are Request's fields."""
    return run(Request(study, as_overrides(overrides), **options))


def run(request: Request) -> FinishedSweep:
    out = output_folder(request)
    saved = json.loads((out / SWEEP_FILE).read_text()) if (out / SWEEP_FILE).exists() else None
    if saved:
        request = with_saved(request, saved)
    study = request.resolve_study()
    check_report(study)
    trackers = parse_trackers(request.log)  # unknown or not installed: one line, before Ray starts
    opts = Options(out=out, data_dir=resolve_data_dir(request.data_dir), storage=resolve_storage(request.storage),
                   address=request.address, cpus_per_trial=request.cpus_per_trial,
                   gpus_per_trial=request.gpus_per_trial, num_cpus=request.num_cpus, num_gpus=request.num_gpus,
                   max_failures=request.max_failures, repeats_per_trial=request.repeats_per_trial,
                   resume=request.resume, verbose=request.verbose, log=trackers)
    check_address(opts.address)
    raw = load_cifar10(opts.data_dir)  # missing or corrupt data: one line, before anything is written
    created = not out.exists()
    with sweep_lock(out):
        if not saved:
            write_json(out / SWEEP_FILE, {"study": request.study, "quick": request.quick,
                                          "overrides": list(request.overrides), "storage": opts.storage,
                                          "log": [t.spec for t in trackers], **study_file(study)})
        try:
            summary = run_study(study, opts, list(request.argv), raw=raw)
        except ConfigError:  # refused before any trial ran (cluster, resources, storage)
            if not saved and [p.name for p in out.iterdir()] == [SWEEP_FILE]:
                (out / SWEEP_FILE).unlink()  # leave no half-started sweep to --resume
                if created:
                    out.rmdir()
            raise
        except SweepError as e:  # trials failed for good: the caller says where the partial report is
            e.folder = out
            raise
        except KeyboardInterrupt:  # Ctrl-C, or a stage that reports it (Interrupted)
            raise Interrupted(f"interrupted; finish it with: {request.resume_command(out)}") from None
    return FinishedSweep(out, study, summary)


def study_file(study: Study) -> dict:
    """What sweep.json keeps of a study file: its name, path and content (what --resume and
    `report` read, so that the file may change or move afterwards)."""
    return {"study_name": study.name, "study_file": {"path": study.source, "text": study.text}} if study.text else {}


def closing_lines(study: Study, summary: dict, out: Path) -> list[str]:
    """A sweep's last lines: test accuracy per group, what diverged, where the report is."""
    records = [r for recs in summary["results"].values() for r in recs]
    runs = distinct_runs(records)   # the runs trained: a prefix-served result is no run
    finished = sum(r.finished for r in runs)
    stopped = sum(r.status == M.STOPPED_EARLY for r in runs)  # a search's candidates ASHA stopped
    blind = sum(unscored(a) for a in aggregate_groups(records, select=study.select).values())
    table = compact_table(study, summary["results"])
    lines = [table.astype(str).to_string(index=False)] if len(table) else []
    if blind:
        lines.append(f"(and {blind} groups that left the test set alone: their validation accuracy is in the report)")
    lines.append(f"finished: {finished} of {len(runs)} runs"
                 + (f" ({len(records)} results)" if len(records) != len(runs) else "")
                 + (f", {stopped} stopped early by the search's scheduler" if stopped else "")
                 + (f", {len(runs) - finished - stopped} diverged" if finished + stopped < len(runs) else ""))
    lines += [f"diverged: {line}" for line in summary.get("diverged", [])]
    lines += [f"report: {out / 'report.html'} and report.md (written in {summary['report_s']:.1f} s)",
              f"results in {out}"]
    return lines


def output_folder(request: Request) -> Path:
    """The sweep's folder, refused when it would overwrite a finished sweep."""
    if request.out:
        out = Path(request.out)
    elif request.resume:
        runs = earlier_runs(request)
        if not runs:
            raise ConfigError(f"--resume: no earlier run of {request.study} under runs/; "
                              f"name its folder with --out")
        out = runs[-1]
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs", request.study_name, stamp + ("-quick" if request.quick else ""))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a folder; choose another --out")
    if (out / DONE_FILE).exists() and not request.resume:
        raise ConfigError(f"{out} already holds a finished sweep; choose another --out "
                          f"(or --resume to re-report it)")
    if (out / SWEEP_FILE).exists() and not request.resume:
        raise ConfigError(f"{out} holds an unfinished sweep; add --resume to finish it")
    return out


def earlier_runs(request: Request) -> list[Path]:
    """The sweep folders of a request's study, oldest first: a study file's are those whose
    sweep.json kept this path (the file's `name` may have changed since, or not parse now)."""
    if is_study_file(request.study):
        here = Path(request.study).resolve()
        runs = [p.parent for p in Path("runs").glob(f"*/*/{SWEEP_FILE}") if kept_path(p) == here]
        if runs:
            return sorted(runs, key=lambda p: p.name)   # runs/NAME/TIMESTAMP[-quick]
    name = request.study_name
    return sorted(p for p in Path("runs", name).glob("*") if (p / SWEEP_FILE).exists())


def kept_path(sweep_json: Path) -> Path | None:
    """The path of the study file a sweep.json kept, resolved; None for a built-in's (or no sweep.json)."""
    try:
        path = json.loads(sweep_json.read_text()).get("study_file", {}).get("path")
    except (OSError, ValueError):
        return None
    return Path(path).resolve() if path else None


def with_saved(request: Request, saved: dict) -> Request:
    """A resumed sweep runs what was first asked for; a request that asks for something
    else is refused rather than silently mixed in."""
    asked = {"study": saved_name(request.study, saved), "overrides": request.overrides_dict(),
             "storage": resolve_storage(request.storage), "log": [t.spec for t in parse_trackers(request.log)]}
    first = {"study": saved["study"], "overrides": Request(saved["study"], tuple(saved["overrides"])).overrides_dict(),
             "storage": saved.get("storage"), "log": saved.get("log", [])}
    for key in asked:
        if asked[key] and asked[key] != first[key]:
            raise ConfigError(f"--resume: this sweep was started with {key} {first[key]!r}, "
                              f"not {asked[key]!r}; leave it out to finish the sweep as started")
    if request.quick and not saved["quick"]:
        raise ConfigError("--resume: this sweep was started without --quick")
    return replace(request, study=saved["study"], study_text=saved.get("study_file", {}).get("text"),
                   quick=saved["quick"], overrides=tuple(saved["overrides"]), storage=first["storage"],
                   log=tuple(first["log"]))


def saved_name(study: str, saved: dict) -> str:
    """A resumed study file may have moved or changed since (the sweep runs the text it kept):
    its own path, or any path to it, will do, unless another file there now holds another
    study. The file at its own path is not read (it may be half-edited), nor one that does not
    parse now: the kept text runs."""
    kept = saved.get("study_file")
    if not (kept and is_study_file(study)):
        return study
    if Path(study).resolve() in (Path(kept["path"]).resolve(), Path(saved["study"]).resolve()):
        return saved["study"]
    if Path(study).is_file():
        try:
            name = Request(study).study_name
        except ConfigError:
            return saved["study"]
        if name != saved["study_name"]:
            return name
    return saved["study"]


def check_report(study: Study) -> None:
    """The study's report function, imported now (it imports plotting code, which a study does
    not): a bad one is one line before anything trains, not an error after the training."""
    if study.report is None:
        return
    try:
        function = study.report.resolve()
    except Exception as e:
        raise ConfigError(f"report {study.report.function}: cannot be imported ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not callable(function):
        raise ConfigError(f"report {study.report.function}: not a function")


def resolve_storage(value: str | None) -> str | None:
    """A URI pyarrow can open, or an existing folder made absolute (every node sees the same path)."""
    if not value:
        return None
    if "://" in value:
        import pyarrow.fs
        try:
            pyarrow.fs.FileSystem.from_uri(value)
        except Exception as e:  # unknown scheme, missing credentials: one line
            raise ConfigError(f"--storage {value}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return value.rstrip("/")
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"--storage {value}: no such folder; mount the shared folder (or create it)")
    return str(folder)


def check_address(value: str | None) -> None:
    """HOST:PORT must answer now: Ray itself would retry for minutes."""
    if not value or value == "auto" or "://" in value:
        return
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {value}: expected auto or HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(f"--address {value}: no Ray cluster answers there ({e.strerror or e})") from None


@contextmanager
def sweep_lock(out: Path):
    """One driver per sweep folder: a second one (say, --resume while the first
    still runs) is refused. The OS drops the lock when the driver dies."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY)  # the folder itself: no lock file left behind
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"{out} is in use by another sweep driver") from None
        yield
    finally:
        os.close(fd)


__all__ = ["FinishedSweep", "Interrupted", "Request", "run", "sweep"]
