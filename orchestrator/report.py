"""A run folder's report and the comparison of two run folders, without Ray.

    python -m orchestrator report runs/part3/20261123-141500          # report.html, report.md again
    python -m orchestrator compare runs/part3/before runs/part3/after  # per group: B minus A

The driver saves every stage's RunRecords (weights aside, first-layer weights
kept: they are small and part3 draws them) as the stage ends, in open formats
(results/records.py: runs.parquet, curves.parquet, first_layer.npz, records.json),
and writes the report when the sweep ends. `report RUN` runs the same code on
the saved records: the study's report function (its pickles, CSVs and figures,
drawn again; the best models' .pt files stay as the sweep wrote them, since the
records keep no full weights) and then results/document.py's page. A folder with
only the records.pkl of earlier code is converted to those files on the way.
"""
from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

from results.aggregate import aggregate_groups
from results.comparisons import between_runs
from results.document import study_document, versus_table
from results.html import write_report
from results.records import INDEX_FILE, OLD_FILE, RECORD_FILES, read_records, write_records
from search_spaces.search import SearchRecords
from workloads.config import SEED, ConfigError

RECORDS_FILE = INDEX_FILE       # records.json, written last of RECORD_FILES; OLD_FILE: earlier code's pickle
SWEEP_FILE = "sweep.json"       # what was asked for: lets --resume and `report` rebuild the same study
DONE_FILE = "provenance.json"   # written last: its presence means the sweep finished


def save_records(out: Path, results: dict, failed=()) -> None:
    """Every stage's RunRecords without their weights (a loader of the Tune checkpoint, which a
    report needs only for best/*.pt), the failed trials (orchestrator.collect.failures()) and
    what each search stage decided (search_spaces.search.SearchRecords)."""
    search = {stage: {"history": recs.history, "best": recs.best, "base": recs.base}
              for stage, recs in results.items() if isinstance(recs, SearchRecords)}
    write_records(out, {stage: list(recs) for stage, recs in results.items()}, failed, search)


def write_study_report(study, results: dict, out: Path, provenance: dict, failed=(),
                       unfinished: str = "") -> tuple[dict, float]:
    """The study's own outputs (unless the sweep is unfinished: its report function expects
    every stage), then report.html and report.md. Returns what the study's report function
    returned and the seconds all of it took."""
    started = time.perf_counter()
    report = study.report
    extras = report.resolve()(results, out, study, **dict(report.args)) if report and not unfinished else {}
    write_report(study_document(study, results, extras, provenance, failed, unfinished), out)
    return extras, time.perf_counter() - started


def report_unfinished(study, results: dict, out: Path, provenance: dict, failed: list, why: str) -> None:
    """The records and a report of what a failed sweep had; no provenance.json, so that
    `sweep --resume` still finishes it."""
    save_records(out, results, failed)
    try:
        write_study_report(study, results, out, provenance, failed, unfinished=why)
    except Exception as e:  # the failure is the news: a report that cannot be drawn must not hide it
        print(f"[{study.name}] no partial report: {type(e).__name__}: {e}", file=sys.stderr)


def finished_run(folder: str | Path) -> tuple[Path, dict, dict]:
    """(folder, sweep.json, provenance.json) of a finished sweep; else ConfigError in one line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such run folder")
    if not (folder / SWEEP_FILE).is_file():
        raise ConfigError(f"{folder}: not a sweep's folder (no {SWEEP_FILE})")
    if not (folder / DONE_FILE).is_file():
        raise ConfigError(f"{folder}: the sweep has not finished (no {DONE_FILE}); "
                          f"finish it with `sweep STUDY --resume --out {folder}`")
    if not (folder / RECORDS_FILE).is_file() and not (folder / OLD_FILE).is_file():
        raise ConfigError(f"{folder}: no {RECORDS_FILE} (an older sweep); `sweep STUDY --resume --out {folder}` "
                          f"reports it again and writes one")
    return folder, json.loads((folder / SWEEP_FILE).read_text()), json.loads((folder / DONE_FILE).read_text())


def load_records(folder: Path) -> tuple[dict, list]:
    """The records a sweep saved ({stage: [RunRecord] or SearchRecords}, failed trials); an
    earlier sweep's records.pkl is converted first. ConfigError in one line when they cannot be read."""
    if not (folder / RECORDS_FILE).is_file() and (folder / OLD_FILE).is_file():
        convert(folder)
    results, failed, search = read_records(folder)
    return {stage: SearchRecords(recs, **search[stage]) if stage in search else recs
            for stage, recs in results.items()}, failed


def convert(folder: Path) -> None:
    """records.pkl of earlier code as the files this code reads (the pickle stays), if this
    code's classes can load it; else ConfigError in one line."""
    try:
        with open(folder / OLD_FILE, "rb") as f:
            saved = pickle.load(f)
        results, failed = saved["results"], saved["failed"]
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{folder / OLD_FILE}: cannot be read by this code ({type(e).__name__}: {e}); "
                          f"`sweep STUDY --resume --out {folder}` writes the records again from its trial folders") from e
    save_records(folder, results, failed)
    print(f"orchestrator: converted {folder / OLD_FILE} (earlier code) to {', '.join(RECORD_FILES)}; "
          f"the pickle is no longer read", file=sys.stderr)


def rewrite(study, folder: Path, provenance: dict, argv: list) -> tuple[Path, float]:
    """report.html/.md (and the study's own outputs) again from a finished folder."""
    from orchestrator.provenance import code_version, iso
    results, failed = load_records(folder)
    again = {**provenance, "report": {"written": iso(time.time()), "argv": argv, "code_version": code_version()}}
    _, seconds = write_study_report(study, results, folder, again, failed)
    return folder / "report.html", seconds


def compare_lines(run_a: tuple, run_b: tuple, select: str) -> list[str]:
    """Per group of both runs (finished_run's tuples): B's test accuracy minus A's with its
    interval and p-values; the groups only one run has; settings that differ between them."""
    aggs, lines = [], []
    for name, (folder, sweep, prov) in (("A", run_a), ("B", run_b)):
        results, _ = load_records(folder)
        aggs.append(aggregate_groups([r for recs in results.values() for r in recs], select=select))
        asked = " ".join(["--quick"] * bool(sweep.get("quick")) + list(sweep.get("overrides", [])))
        lines.append(f"{name} = {folder}: {sweep['study']} {asked}".rstrip()
                     + f" (code {prov.get('code_version', '?')}, finished {prov.get('finished', '?')})")
    rows, only_a, only_b = between_runs(*aggs)
    for g in (r.variant for r in rows):
        a, b = (x[g].runs[0].config for x in aggs)
        differ = [f"{k} {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if k != SEED and a.get(k) != b.get(k)]
        if differ:
            lines.append(f"settings differ in {g}: " + ", ".join(differ))
    if rows:
        table = versus_table(rows, reference="in").drop(columns="in")
        table = table.rename(columns={"difference": "B - A", "n": "n (B vs A)"})
        lines += ["test accuracy, run B minus run A (Welch's 95% interval and t-test, Holm over the groups):",
                  table.astype(str).to_string(index=False).replace("\u00a0", " ")]
    lines.append("only in A: " + (", ".join(only_a) or "none"))
    lines.append("only in B: " + (", ".join(only_b) or "none"))
    return lines
