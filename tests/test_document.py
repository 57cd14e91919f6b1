"""The report page's content on hand-made RunRecords (results/document.py,
results/comparisons.py): its numbers against scipy on fixed values, which groups
are compared with which, what the reader is told where no test is possible, and
the runs that did not finish."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from results.aggregate import RunRecord, aggregate_groups
from results.comparisons import against_reference, between_runs, reference_pairs
from results.document import compact_table, group_table, overrides_of, study_document, versus_table
from results.cells import DASH
from results.html import write_report
from search_spaces import get_study
from test_html import Page, png
from workloads import metrics as M

NAN = float("nan")
STUDY = get_study("part3").with_quick().with_overrides({"archs": "mlp_1,cnn_3,cnn_4", "repeats": "3"})
ACCS = {"mlp_1": [0.50, 0.54, 0.52], "cnn_3": [0.60, 0.66, NAN], "cnn_4": [0.58, 0.59, 0.61]}


def record(group, repeat, acc, study=STUDY, changes=None, **config) -> RunRecord:
    diverged = math.isnan(acc)
    cfg = study.base_config().override({"arch": group, "seed": repeat, **config}).to_flat()
    points = 1 if diverged else 3
    curves = pd.DataFrame({M.STEP: [20, 40, 60][:points], M.EPOCH: [0.2, 0.4, 0.6][:points],
                           M.LOSS: [2.0, 1.8, 1.6][:points], M.VAL_ACC: [0.3, 0.4, 0.45][:points]})
    return RunRecord("train", group, repeat, cfg, curves, acc, 3.0, status=M.DIVERGED if diverged else M.FINISHED,
                     parameters=33130, train_seconds=2.5, changes=f"arch={group}" if changes is None else changes,
                     diverged_at=37 if diverged else None)


RECORDS = [record(g, r, acc) for g, accs in ACCS.items() for r, acc in enumerate(accs)]


def cells(frame: pd.DataFrame, key: str = "group") -> dict:
    return {row[key]: {c: str(v) for c, v in row.items()} for row in frame.to_dict("records")}


def test_group_table_against_scipy():
    aggs = aggregate_groups(RECORDS, select=STUDY.select)
    table = cells(group_table(STUDY, aggs, {g: "train" for g in aggs}))
    x = np.array(ACCS["mlp_1"])
    low, high = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert table["mlp_1"] == {"group": "mlp_1", "what it changes": "arch=mlp_1", "n": "3", "diverged": "0",
                              "mean": f"{x.mean():.3f}", "sd": f"{x.std(ddof=1):.3f}",
                              "95% CI": f"[{low:.3f}, {high:.3f}]", "best": "0.540", "parameters": "33,130",
                              "training s": "2.5"}
    # the diverged repeat is counted, not averaged in: n is 2, the interval has 1 degree of freedom
    two = np.array(ACCS["cnn_3"][:2])
    low, high = st.t.interval(0.95, 1, loc=two.mean(), scale=st.sem(two))
    assert (table["cnn_3"]["n"], table["cnn_3"]["diverged"], table["cnn_3"]["95% CI"]) == \
        ("2", "1 of 3", f"[{low:.3f}, {high:.3f}]")


def test_comparisons_against_scipy_with_holm():
    aggs = aggregate_groups(RECORDS, select=STUDY.select)
    pairs, how = reference_pairs(aggs, STUDY.reference)
    assert pairs == {"cnn_3": "mlp_1", "cnn_4": "mlp_1"} and "mlp_1, the study's reference" in how
    rows = against_reference(aggs, pairs)
    ref = ACCS["mlp_1"]
    expected = {}
    for g in ("cnn_3", "cnn_4"):
        b = [v for v in ACCS[g] if not math.isnan(v)]
        t = st.ttest_ind(b, ref, equal_var=False)
        expected[g] = (np.mean(b) - np.mean(ref), t.confidence_interval(0.95), t.pvalue)
    (p3, p4) = (expected[g][2] for g in ("cnn_3", "cnn_4"))
    holm = {"cnn_3": max(min(p3, p4) * 2, max(p3, p4)), "cnn_4": min(p3, p4) * 2} if p4 < p3 else None
    assert holm is not None  # cnn_4's three tight repeats differ more clearly than cnn_3's two
    for r in rows:
        diff, ci, p = expected[r.variant]
        c = r.comparison
        assert c.diff == pytest.approx(diff) and c.p == pytest.approx(p)
        assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
        assert r.p_holm == pytest.approx(min(1.0, holm[r.variant]))
    table = cells(versus_table(rows))
    diff, ci, p = expected["cnn_4"]
    assert table["cnn_4"]["difference"] == f"{diff:+.3f}" and table["cnn_4"]["n"] == "3\u00a0vs\u00a03"
    assert table["cnn_4"]["95% CI"] == f"[{ci.low:.3f}, {ci.high:.3f}]"
    assert table["cnn_4"]["p"] == f"{p:.3f}" and table["cnn_4"]["p (Holm)"] == f"{2 * p:.3f}"


def test_with_one_run_the_tables_say_no_interval_instead_of_zeros():
    study = get_study("hw2").with_overrides({"epochs": "2"})
    base = dict(arch="tutorial")
    records = [record("cnn", 0, 0.41, study, "the base", **base), record("fc", 0, 0.38, study, "fc", arch="fc"),
               record("batch_4", 0, 0.41, study, "batch_size=4 (the base)", **base),
               record("lr_10", 0, NAN, study, "lr=10", arch="tutorial", lr=10.0)]
    aggs = aggregate_groups(records, select=study.select)
    table = cells(group_table(study, aggs, {g: "questions" for g in aggs}))
    assert table["fc"]["95% CI"] == "n\u00a0=\u00a01:\u00a0none" and table["fc"]["sd"] == DASH and table["fc"]["mean"] == "0.380"
    assert table["lr_10"]["mean"] == "no\u00a0finished\u00a0run" and table["lr_10"]["diverged"] == "1 of 1"
    rows = against_reference(aggs, reference_pairs(aggs, study.reference)[0])
    versus = cells(versus_table(rows))
    assert versus["fc"]["difference"] == "-0.030" and versus["fc"]["p"] == DASH
    assert versus["fc"]["95% CI"] == "n = 1 on both sides: no interval or test"
    assert versus["batch_4"]["95% CI"] == "the same runs as cnn: nothing to test"
    assert versus["lr_10"]["95% CI"] == "no finished run in lr_10"
    assert all(r.p_holm is None for r in rows)
    doc = study_document(study, {"questions": records})
    text = " ".join(b.text for b in doc.sections[2].blocks if hasattr(b, "text"))
    assert "No difference could be tested" in text
    assert compact_table(study, {"questions": records}).set_index("group").loc["fc", "its 95% CI"] == "-"


def test_reference_by_setting_pairs_groups_that_differ_only_there():
    study = get_study("part4")
    records = [record(f"{arch}_{act}", r, 0.3 + r / 10, study, arch=arch, activation=act)
               for arch in ("cnn_3", "mlp_2") for act in ("relu", "sigmoid") for r in (0, 1)]
    records = [r for r in records if r.group != "mlp_2_relu"]   # an unpaired sigmoid group is left out
    aggs = aggregate_groups(records, select=M.TEST_ACC)
    pairs, how = reference_pairs(aggs, study.reference)
    assert pairs == {"cnn_3_sigmoid": "cnn_3_relu"} and "activation=relu and otherwise the same" in how
    assert reference_pairs(aggs, "")[1] == "the study names no reference: every group against the first, cnn_3_relu"
    assert "cnn_9, is not in this run" in reference_pairs(aggs, "cnn_9")[1]


def test_between_runs_and_groups_in_one_run_only():
    aggs_a = aggregate_groups(RECORDS, select=M.TEST_ACC)
    aggs_b = aggregate_groups([r for r in RECORDS if r.group != "cnn_4"], select=M.TEST_ACC)
    rows, only_a, only_b = between_runs(aggs_a, aggs_b)
    assert [r.variant for r in rows] == ["mlp_1", "cnn_3"] and (only_a, only_b) == (["cnn_4"], [])
    assert all(r.comparison.diff == 0 and r.comparison.p == pytest.approx(1.0) for r in rows)


def test_settings_say_who_set_them():
    quick, command_line = overrides_of(STUDY)
    assert quick and command_line == (("archs", "mlp_1,cnn_3,cnn_4"), ("repeats", "3"))
    assert overrides_of(get_study("part3").with_overrides({"epochs": "2"})) == (False, (("epochs", "2"),))
    doc = study_document(STUDY, {"train": RECORDS})
    settings = cells(doc.sections[0].blocks[2].frame, "setting")
    assert settings["optimizer"] == {"setting": "optimizer", "default": "sgd:momentum=0.9", "this run": "adam",
                                     "set by": "study"}
    assert settings["epochs"]["set by"] == "--quick" and settings["repeats"]["set by"] == "command line"
    stages = cells(doc.sections[0].blocks[3].frame, "stage")["train"]
    assert stages["what varies"] == "arch: mlp_1, cnn_3, cnn_4" and stages["runs trained"] == "9"


def test_page_lists_what_did_not_finish_and_the_figures(tmp_path):
    figure = png(tmp_path / "compare.png", "curves")
    weights = png(tmp_path / "weights.png", "weights")
    failed = [{"stage": "train", "run": "cnn_4_r3", "reason": "RuntimeError: out of memory",
               "last": {M.STEP: 40, M.EPOCH: 0.4, M.LOSS: 1.9, M.VAL_ACC: None}}]
    extras = {"figures": [(figure, "Curves")], "folded": [("Weights", [(weights, "mlp_1's weights")])],
              "notes": ["A note from the study."]}
    provenance = {"argv": ["sweep", "part3", "--quick"], "study": "part3", "quick": True,
                  "code": {"describe": "abc1234-dirty", "commit": "abc1234" * 5, "dirty": True},
                  "started": "2026-11-23T10:00:00+00:00", "finished": "2026-11-23T10:02:05+00:00", "wall_s": 125,
                  "hardware": {"cpu_model": "AMD EPYC", "cpus": 2, "cuda": [], "host": "vm"},
                  "libraries": {"torch": "2.14.1"}, "placement": [{"host": "vm", "device": "cpu", "trials": 9}]}
    html, md = write_report(study_document(STUDY, {"train": RECORDS}, extras, provenance, failed), tmp_path)
    page = Page()
    page.feed(html.read_text())
    assert len(page.images) == 2 and page.tags.count("details") == 1
    assert page.captions[-2] == "Table 5. Runs that did not finish, with their last record"
    text = md.read_text()
    assert "| cnn_3_r2 | train | diverged | training loss not finite at step 37 | 20 | 0.200 | 2.000 | 0.300 |" in text
    assert f"| cnn_4_r3 | train | failed | RuntimeError: out of memory | 40 | 0.400 | 1.900 | {DASH} |" in text
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) == ["compare.png", "weights.png"]
    assert "| code version | abc1234-dirty (commit abc1234" in text and "with uncommitted changes)" in text
    assert "| wall time | 2 min 5 s |" in text and "| where trials ran | 9 trials on vm (cpu) |" in text
    assert "A note from the study." in text and "Runs that diverged have no test accuracy" in text
    # a sweep started from Python has no command line
    doc = study_document(STUDY, {"train": RECORDS}, provenance={**provenance, "argv": None})
    assert doc.provenance["command"] == "run_study(), from Python"


def test_groups_that_left_the_test_set_alone_are_counted_under_the_table_not_listed():
    """A search's groups (score_test=false) have no test accuracy to show: the table keeps the
    groups that do, and its note (and the terminal's lines) say how many were left out and why."""
    from dataclasses import replace

    from orchestrator.sweeps import closing_lines
    blind = [replace(record("mlp_1", r, 0.5, changes=f"lr={lr}", lr=lr), group=g, test_acc=NAN, stage="search")
             for g, lr in (("lr_a", 0.1), ("lr_b", 0.2)) for r in range(2)]
    records = blind + RECORDS
    aggs = aggregate_groups(records, select=STUDY.select)
    table = group_table(STUDY, aggs, {r.group: r.stage for r in records})
    assert list(table["group"]) == ["mlp_1", "cnn_3", "cnn_4"]
    note = study_document(STUDY, {"search": blind, "train": RECORDS}).sections[1].blocks[0].note
    assert "Not in this table: the 2 groups that left the test set alone (score_test=false: lr_a, ...)" in note
    lines = closing_lines(STUDY, {"results": {"search": blind, "train": RECORDS}, "report_s": 0.5}, Path("x"))
    assert "(and 2 groups that left the test set alone: their validation accuracy is in the report)" in lines
    assert not any(line.lstrip().startswith("lr_a") for line in "\n".join(lines).splitlines())


def test_a_run_that_serves_prefixes_and_groups_counts_once_by_its_own_record():
    """distinct_runs: the records a run gives (its own, shorter prefixes, other groups with the
    same settings) share its name and count once; its full-length record stands for it, so a run
    that diverged late is not hidden behind a prefix that finished."""
    from dataclasses import replace

    from results.aggregate import prefix_record
    from results.document import distinct_runs
    own = replace(record("cnn_3", 0, NAN, epochs=4), run="cnn_3_r0")   # diverged
    own = replace(own, curves=pd.DataFrame({M.STEP: [10, 20], M.EPOCH: [1.0, 2.0], M.LOSS: [2.0, 1.9],
                                            M.TEST_ACC: [0.3, 0.35], M.TRAIN_SECONDS: [1.0, 2.0]}),
                  train_seconds=2.0)
    short = replace(prefix_record(own, 1, {**own.config, "epochs": 1}), group="cnn_3_1ep")
    other = replace(record("cnn_4", 0, 0.5), run="cnn_4_r0")
    assert short.run == "cnn_3_r0" and short.finished and not own.finished
    runs = distinct_runs([short, own, other])
    assert [(r.run, r.config["epochs"], r.finished) for r in runs] == [("cnn_3_r0", 4, False), ("cnn_4_r0", 1, True)]
    # records saved before runs were named are told apart by their settings, as they were
    legacy = [replace(r, run="") for r in (short, own, other)]
    assert len(distinct_runs(legacy)) == 3
