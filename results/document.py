"""A study's report page, built the same way for every study from what a sweep
leaves: the Study, its RunRecords, what the study's report function returned
(its figures with captions; optionally "folded" figures, "tables" and "notes"),
the provenance and the trials that failed. Pure: results/html.py writes it.

    doc = study_document(study, results, extras, provenance)
    write_report(doc, out)            # out/report.html, out/report.md

Sections: what was asked (description, the settings that differ from the
components' defaults, the stages), test accuracy per group (n, mean, sd, 95% t
interval, best, parameters, training time), each group against its reference
(results/comparisons.py), the study's figures, the runs that diverged or failed
with their last record, and provenance.
"""
from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from results.aggregate import aggregate_groups
from results.comparisons import against_reference, reference_pairs, significant
from results.cells import DASH, Missing, fmt_ci, fmt_num, fmt_p
from results.blocks import Details, Document, Figure, Paragraph, Section, Table
from results.stats import summarize
from search_spaces.study import AXIS_ALIASES
from workloads import metrics as M
from workloads.config import SEED, TrialConfig

LAST = {M.STEP: "last step", M.EPOCH: "epoch", M.LOSS: "training loss", M.VAL_ACC: "validation accuracy"}


def study_document(study, results: dict, extras: dict | None = None, provenance: dict | None = None,
                   failed=(), unfinished: str = "") -> Document:
    """`results`: {stage: [RunRecord]}; `failed`: [{"stage", "run", "reason", "last": {metric: value}}]
    for trials that ended in an error; `unfinished`: why the sweep stopped, for a partial report."""
    extras = extras or {}
    records = [r for stage in results.values() for r in stage]
    aggs = aggregate_groups(records, select=study.select)
    stage_of = {r.group: r.stage for r in records}
    top = [Paragraph(f"This sweep did not finish: {unfinished}. What follows is what it had when it "
                     f"stopped; the study's own figures are missing.")] if unfinished else []
    quick, command_line = overrides_of(study)
    return Document(
        title=f"{study.name}" + (" (--quick)" if quick else "") + ": study report",
        subtitle=study.description,
        sections=[
            Section("What was asked", top + asked(study, results, quick, command_line)),
            Section("Test accuracy per group", [
                Table(group_table(study, aggs, stage_of),
                      "Test accuracy over repeats: mean, sample standard deviation and 95% t interval of the mean",
                      note=group_note(study, aggs))]
                + [Paragraph(text) for text in extras.get("notes", [])]
                + [Table(frame, caption) for frame, caption in extras.get("tables", [])]),
            Section("Comparisons", comparisons(study, aggs)),
            Section("Figures", figures(extras.get("figures", []), extras.get("folded", []), unfinished)),
            Section("Runs that diverged or failed", problems(records, failed)),
        ],
        provenance=provenance_rows(provenance or {}))


# ---- what was asked

def overrides_of(study) -> tuple[bool, tuple]:
    """(whether --quick was applied, the command line's own overrides): with_quick applies
    the study's quick overrides first, and `user` keeps both in order."""
    quick = tuple(dict(study.quick).items())
    applied = bool(quick) and study.user[:len(quick)] == quick
    return applied, study.user[len(quick):] if applied else study.user


def distinct_runs(records) -> list:
    """Each run once: a run that serves several groups (identical settings) or shorter
    prefixes of itself has a record in each; the run's own record (its full length) stands
    for it. Records saved without their run's name are told apart by their settings."""
    runs: dict = {}
    for r in records:
        key = r.run or repr(sorted(r.config.items()))
        if key not in runs or r.config.get("epochs", 0) > runs[key].config.get("epochs", 0):
            runs[key] = r
    return list(runs.values())


def nowrap(words: str) -> str:
    """A short reason that a narrow column must not break over lines."""
    return words.replace(" ", "\u00a0")


def text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def changes_from(base: dict, config: dict, skip=()) -> str:
    """'k=v, ...' of what `config` sets differently from `base` (seeds aside: repeats differ there)."""
    return ", ".join(f"{k}={text(v)}" for k, v in config.items()
                     if k != SEED and k not in skip and base.get(k) != v)


def asked(study, results: dict, quick: bool, command_line: tuple) -> list:
    blocks = []
    if quick:
        blocks.append(Paragraph("A --quick run: the study's path on data subsets for a few steps, to check "
                                "that everything works; its numbers are not the study's results."))
    if command_line:
        blocks.append(Paragraph("Overrides on the command line: "
                                + ", ".join(f"{k}={v}" for k, v in command_line) + "."))
    default, base = TrialConfig().to_flat(), study.base_config().to_flat()
    source = {k: "--quick" for k, _ in study.quick} if quick else {}
    source.update({AXIS_ALIASES.get(k, k): "command line" for k, _ in command_line})
    rows = [{"setting": k, "default": text(default[k]), "this run": text(v), "set by": source.get(k, "study")}
            for k, v in base.items() if v != default[k]]
    rows.append({"setting": "repeats", "default": "1", "this run": str(study.repeats),
                 "set by": source.get("repeats", "study")})
    blocks.append(Table(pd.DataFrame(rows), "Settings that differ from the components' defaults (every group's "
                                            "base; repeat k trains with seed + k)"))
    stages = []
    for stage in study.stages:
        recs = results.get(stage.name, [])
        fixed = dict(stage.fixed)
        if stage.derive is not None:
            varies = "computed from earlier stages: " + (changes_from(base, recs[0].config, fixed) if recs
                                                          else "not reached")
        elif stage.search is not None:
            varies = stage.search.describe()
        elif stage.variants:
            varies = f"{len(stage.variants)} named variants of the base"
        else:
            varies = "; ".join(f"{k}: {', '.join(map(text, v))}" for k, v in stage.axes) or "nothing: one group"
        here = [f"{k}={text(v)}" for k, v in fixed.items()] + ([f"repeats={stage.repeats}"] if stage.repeats else [])
        stages.append({"stage": stage.name, "what varies": varies, "set here": ", ".join(here) or DASH,
                       "groups": len({r.group for r in recs}),
                       "runs trained": len(distinct_runs(recs))})
    blocks.append(Table(pd.DataFrame(stages), "Stages, in the order they ran",
                        note="Groups with identical settings share their runs: a run trains once and serves "
                             "every group that asks for it."))
    return blocks


# ---- results

def group_table(study, aggs: dict, stage_of: dict) -> pd.DataFrame:
    """One row per group, as text: what it changes, n, test accuracy mean, sd, 95% interval, best,
    parameters, training seconds per run."""
    base = study.base_config().to_flat()
    any_diverged = any(a.n_diverged for a in aggs.values())
    rows = []
    for g, a in aggs.items():
        if unscored(a):  # a search's groups: their validation accuracy is in the study's own tables
            continue
        first = a.runs[0]
        s = summarize(a.test_accs) if a.n_test else None  # none when no finished run scored the test set
        row = {"group": g}
        if len(set(stage_of.values())) > 1:
            row["stage"] = stage_of[g]
        row["what it changes"] = first.changes or changes_from(base, first.config) or "the base"
        row["n"] = a.n
        if any_diverged:
            row["diverged"] = f"{a.n_diverged} of {len(a.runs)}" if a.n_diverged else "0"
        row.update({
            "mean": fmt_num(s.mean) if s else Missing(nowrap("no finished run")),
            "sd": fmt_num(s.std) if s else Missing(),
            "95% CI": fmt_ci(s.ci_low, s.ci_high, why=nowrap("n = 1: none")) if s else Missing(),
            "best": fmt_num(s.best) if s else Missing(),
            "parameters": f"{first.parameters:,}",
            "training s": format(float(np.mean([r.train_seconds for r in a.runs])), ".3g")})
        rows.append(row)
    return pd.DataFrame(rows)


def unscored(agg) -> bool:
    """A group whose runs finished (or were stopped early by a search's scheduler) and left the
    test set alone (`score_test=false`)."""
    return (bool(agg.n) or any(r.status == M.STOPPED_EARLY for r in agg.runs)) and not agg.n_test


def compact_table(study, results: dict) -> pd.DataFrame:
    """The group table's test-accuracy columns, for a terminal."""
    records = [r for stage in results.values() for r in stage]
    full = group_table(study, aggregate_groups(records, select=study.select), {r.group: r.stage for r in records})
    table = full[[c for c in ("group", "stage", "n", "diverged", "mean", "95% CI", "best") if c in full]]
    table = table.map(lambda v: "-" if isinstance(v, Missing) else v)  # the page says why; a terminal is narrow
    return table.rename(columns={"mean": "test acc", "95% CI": "its 95% CI"})


def group_note(study, aggs: dict) -> str:
    why = f": {study.select_why}" if study.select_why else ""
    note = (f"n counts the runs that finished; best is the highest of them (the study keeps its best run by "
            f"{study.select}{why}). With n = 1 there is no spread and no interval (repeats=N gives them). Training "
            f"time (seconds per run) excludes evaluation; parameters are the model's.")
    if any(a.n_diverged for a in aggs.values()):
        note += (" Runs that diverged have no test accuracy: they are not in these means and are listed under "
                 "'Runs that diverged or failed'.")
    blind = [g for g, a in aggs.items() if unscored(a)]
    if blind:
        note += (f" Not in this table: the {len(blind)} groups that left the test set alone "
                 f"(score_test=false: {blind[0]}, ...), chosen between on validation accuracy; their "
                 f"validation accuracy is in the tables below.")
    return note


def versus_table(rows: list, variant: str = "group", reference: str = "against") -> pd.DataFrame:
    out = []
    for r in rows:
        c = r.comparison
        row = {variant: r.variant, reference: r.reference}
        # Where there is no test, the interval's cell says why; the other cells are dashes.
        if c is None:
            row.update({"n": DASH, "difference": Missing(), "95% CI": Missing(r.why), "p": Missing(),
                        "p (Holm)": Missing(), "Hedges' g": Missing()})
        else:
            why = c.why and c.why.split(":")[0] + ": no interval or test"
            row.update({"n": nowrap(f"{c.n_b} vs {c.n_a}"), "difference": fmt_num(c.diff, signed=True),
                        "95% CI": fmt_ci(c.ci_low, c.ci_high, why=why), "p": fmt_p(c.p),
                        "p (Holm)": fmt_p(r.p_holm), "Hedges' g": fmt_num(c.effect, 2)})
        out.append(row)
    return pd.DataFrame(out)


VERSUS_NOTE = ("difference: mean test accuracy of the group minus its reference's, with Welch's 95% interval; "
               "p: Welch's two-sided t-test; p (Holm): adjusted over every test in this table; Hedges' g: "
               "the difference in pooled standard deviations, corrected for small samples.")


def comparisons(study, aggs: dict) -> list:
    pairs, how = reference_pairs(aggs, study.reference)
    rows = against_reference(aggs, pairs)
    if not rows:
        return [Paragraph(f"Nothing to compare: {how}.")]
    tested = [r for r in rows if r.p_holm is not None]
    hits = significant(rows)
    if tested:
        verdict = (f"At the 5% level after Holm's correction over {len(tested)} test{'s' * (len(tested) > 1)}, "
                   + (f"{len(hits)} difference{'s are' if len(hits) > 1 else ' is'} significant: "
                      + ", ".join(f"{r.variant} ({fmt_num(r.comparison.diff, signed=True)})" for r in hits)
                      if hits else "no difference is significant") + ".")
        smallest = min(min(r.comparison.n_a, r.comparison.n_b) for r in tested)
        if smallest < 5:
            verdict += (f" With as few as {smallest} runs a group the intervals are wide: only large "
                        f"differences can be told from seed-to-seed noise.")
    else:
        verdict = ("No difference could be tested: a t-test needs at least two finished runs on each side "
                   "(repeats=N gives them).")
    return [Paragraph(f"How groups are compared: {how}."), Paragraph(verdict),
            Table(versus_table(rows), "Test accuracy: each group minus its reference", note=VERSUS_NOTE)]


def figures(items, folded=(), unfinished: str = "") -> list:
    """The study's figures, then `folded` ones, [(heading, [(path, caption)])], each group
    in a block that opens on a click (per-group figures that would make the page long)."""
    def present(group):
        return [Figure(Path(path), caption) for path, caption in group if Path(path).is_file()]
    blocks = [Paragraph("Bands around curves are 95% t intervals of the mean over repeats, not the spread of "
                        "single runs; with few repeats they are wide, and where one runs past a panel's edge "
                        "it is cut there.")] if items else []
    blocks += present(items) + [Details(heading, present(group)) for heading, group in folded]
    missing = [Path(path).name for path, _ in [*items, *(f for _, g in folded for f in g)] if not Path(path).is_file()]
    if missing:
        blocks.append(Paragraph(f"Figures the study listed but that are not on disk: {', '.join(missing)}."))
    if not items and not folded:
        blocks.append(Paragraph("The sweep stopped before the study drew its figures." if unfinished
                                else "This study defines no figures."))
    return blocks


def _last(values: dict) -> dict:
    return {title: (fmt_num(values[k], 0 if k == M.STEP else 3) if values.get(k) is not None
                    else Missing()) for k, title in LAST.items()}


def problems(records: list, failed) -> list:
    """Every run that did not finish, with why and its last record; the same run serving
    several groups (identical settings) is listed once."""
    rows = []
    for r in distinct_runs(records):
        if r.finished or r.status == M.STOPPED_EARLY:  # a search's choice, in its own table
            continue
        last = r.curves.iloc[-1].to_dict() if len(r.curves) else {}
        rows.append({"run": f"{r.group}_r{r.repeat}", "stage": r.stage, "status": r.status,
                     "reason": f"training loss not finite at step {r.diverged_at}"
                               + ("" if last else ", before its first record"),
                     **_last({k: v for k, v in last.items() if pd.notna(v)})})
    for f in failed:  # Ray's errors run to paragraphs: the trial's folder (error.txt) keeps them whole
        reason = f["reason"] if len(f["reason"]) <= 240 else f["reason"][:240] + "\u2026"
        rows.append({"run": f["run"], "stage": f["stage"], "status": "failed", "reason": reason,
                     **_last(f.get("last") or {})})
    if not rows:
        return [Paragraph("Every run finished: none diverged or failed.")]
    table = pd.DataFrame(rows)
    # A metric no run records (hw2 has no validation split) is no column, not a column of dashes.
    recorded = {c for r in records for c in r.curves.columns}
    table = table.drop(columns=[t for k, t in LAST.items() if k not in recorded and t in table])
    return [Table(table, "Runs that did not finish, with their last record",
                  note="A diverged run stops at the first non-finite loss; its curve is kept up to its last "
                       "record. A failed trial ended in an error after its retries.")]


# ---- provenance

def _when(iso: str | None) -> str:
    if not iso:
        return DASH
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def duration(seconds) -> str:
    seconds = int(round(float(seconds)))
    h, rest = divmod(seconds, 3600)
    return (f"{h} h " if h else "") + (f"{rest // 60} min " if seconds >= 60 else "") + f"{rest % 60} s"


def provenance_rows(p: dict) -> dict:
    """provenance.json's fields as a reader wants them, in words."""
    if not p:
        return {}
    hw, code, libs = p.get("hardware", {}), p.get("code", {}), p.get("libraries", {})
    argv = p.get("argv")  # None: run_study called from Python
    rows = {"command": shlex.join(["python", "-m", "orchestrator", *argv]) if argv is not None else
            "run_study(), from Python",
            "study": p.get("study", DASH) + (" --quick" if p.get("quick") else "")
            + "".join(f" {k}={v}" for k, v in p.get("command_line", {}).items()),
            "code version": (code.get("describe") or p.get("code_version", DASH))
            + (f" (commit {code['commit']}" + (", with uncommitted changes)" if code.get("dirty") else ")")
               if code.get("commit") else "")}
    if p.get("started"):
        rows["started, finished"] = f"{_when(p['started'])} to {_when(p.get('finished'))}"
        rows["wall time"] = duration(p.get("wall_s", 0))
    rows["hardware"] = (f"{hw.get('cpu_model') or 'CPU'}, {hw.get('cpus', '?')} cores; GPU: "
                        + (", ".join(hw.get("cuda") or []) or "none") + f"; host {hw.get('host', '?')}")
    rows["system"] = f"{hw.get('platform', '?')}, Python {hw.get('python', '?')}"
    if hw.get("ray_cluster"):
        rows["Ray cluster"] = ", ".join(f"{k} {v / 2**30:.1f} GiB" if "memory" in k else f"{k} {v:g}"
                                        for k, v in hw["ray_cluster"].items()
                                        if k in ("CPU", "GPU", "memory") or k.startswith("accelerator"))
    rows["libraries"] = ", ".join(f"{k} {v}" for k, v in libs.items() if v)
    if p.get("placement"):
        rows["where trials ran"] = "; ".join(f"{x['trials']} trial{'s' * (x['trials'] != 1)} on "
                                             f"{x['host']} ({x['device']})" for x in p["placement"])
    if p.get("options", {}).get("data_dir"):
        rows["data"] = p["options"]["data_dir"]
    if p.get("report"):
        r = p["report"]
        rows["report written"] = (f"{_when(r.get('written'))} by "
                                  + shlex.join(["python", "-m", "orchestrator", *(r.get("argv") or [])])
                                  + f" (code {r.get('code_version', '?')})")
    return rows
