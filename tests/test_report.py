"""The report a sweep ends with, as a person meets it: report.html in headless
Chromium (every figure loads, no sideways scrolling at 1280 px) and report.md's
tables and links, for a quick part3 and a quick hw2 (conftest's finished
sweeps); `report RUN` writing them again from the saved records without Ray;
`compare RUN_A RUN_B`; bad inputs as one line and exit 2."""
from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys

import pytest

from browser import check_page, chromium_or_skip
from conftest import ROOT
from orchestrator.cli import main
from orchestrator.report import DONE_FILE, RECORDS_FILE, SWEEP_FILE, load_records, save_records
from results.records import RECORD_FILES
from test_html import Page

WIDTH = 1280


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("orchestrator: error:") and needle in err, err


def seen_in_chromium(out, shot):
    seen = check_page(out / "report.html", width=WIDTH, screenshot=shot, chromium=chromium_or_skip())
    assert seen["images_failed"] == 0 and not seen["overflow"], seen
    assert seen["scrolled_tables"] == [], seen   # every table fits the page: nothing to scroll sideways
    assert seen["screenshot_size"][0] == WIDTH
    return seen


def md_links(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


@pytest.mark.slow
def test_quick_part3_report(part3_sweep, tmp_path):
    out, _ = part3_sweep
    seen = seen_in_chromium(out, tmp_path / "part3.png")
    # the curves, and each architecture's first-layer weights (folded away, still loaded)
    assert seen["images"] == 3 and seen["title"] == "part3 (--quick): study report"
    page = Page()
    page.feed((out / "report.html").read_text())
    assert page.captions[:5] == [
        "Table 1. Settings that differ from the components' defaults (every group's base; repeat k trains "
        "with seed + k)", "Table 2. Stages, in the order they ran",
        "Table 3. Test accuracy over repeats: mean, sample standard deviation and 95% t interval of the mean",
        "Table 4. Test accuracy: each group minus its reference", "What produced this report"]
    md = (out / "report.md").read_text()
    assert md_links(md) == ["compare.png", "weights_mlp_1.png", "weights_cnn_5.png"]
    assert all((out / link).is_file() for link in md_links(md))
    groups = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| mlp_1 | arch=")
              or line.startswith("| cnn_5 | arch=")]
    assert groups == ["mlp_1", "cnn_5"]
    assert re.search(r"\| cnn_5 \| mlp_1 \| 2 vs 2 \| [+-]0\.\d{3} \| (\[-?0\.\d{3}, -?0\.\d{3}\]|\*[^|]*\*) \|", md), md
    assert "every group against mlp_1, the study's reference" in md
    prov = json.loads((out / DONE_FILE).read_text())
    assert prov["code"]["commit"] and prov["hardware"]["cpu_model"] and prov["wall_s"] > 0
    assert prov["placement"][0]["trials"] == 4 and prov["report_s"] > 0
    for row in ("command", "code version", "hardware", "libraries", "started, finished", "wall time",
                "where trials ran"):
        assert f"| {row} | " in md, row


@pytest.mark.slow
def test_quick_hw2_report(hw2_sweep, tmp_path):
    out, _ = hw2_sweep
    seen = seen_in_chromium(out, tmp_path / "hw2.png")
    assert seen["images"] == 7
    md = (out / "report.md").read_text()
    assert md_links(md) == [f"{name}.png" for name in ("q2_fc", "q3_mlp", "q4_cnn", "q5_batch", "q6_lr",
                                                       "q7_augment", "q8_loss")]
    assert "| lr_10 | lr=10.0 | 0 | 1 of 1 | *no finished run* |" in md
    assert re.search(r"\| lr_10_r0 \| questions \| diverged \| training loss not finite at step \d+, before its "
                     r"first record \| — \| — \| — \|\n", md)  # no validation column: hw2 has none
    assert "| batch_4 | cnn | — | — | *the same runs as cnn: nothing to test* |" in md
    assert "| fc | cnn | 1 vs 1 |" in md and "*n = 1 on both sides: no interval or test*" in md


@pytest.mark.slow
def test_report_command_rebuilds_the_report_from_the_saved_records_without_ray(part3_sweep, tmp_path):
    out, _ = part3_sweep
    run = tmp_path / "run"
    run.mkdir()
    for name in (SWEEP_FILE, DONE_FILE, *RECORD_FILES):   # nothing else: no Tune folders, no figures
        shutil.copy(out / name, run / name)
    code = ("import sys; from orchestrator.cli import main; code = main(['report', sys.argv[1]]); "
            "assert 'ray' not in sys.modules, 'report imported ray'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(run)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"report: {run / 'report.html'} and report.md (written in ")
    rebuilt, original = ((folder / "report.md").read_text() for folder in (run, out))
    # the same page but for the line that says when and by what it was written again
    assert [line for line in rebuilt.splitlines() if not line.startswith("| report written |")] == \
        original.splitlines()
    assert "| report written | " in rebuilt and "by python -m orchestrator report " in rebuilt
    assert all((run / link).is_file() for link in md_links(rebuilt))
    with open(run / "part3_cnn_5.pkl", "rb") as f, open(out / "part3_cnn_5.pkl", "rb") as g:
        a, b = pickle.load(f), pickle.load(g)
    assert a["test_acc"] == b["test_acc"] and (a["weights"] == b["weights"]).all()


@pytest.mark.slow
def test_compare_two_runs(part3_sweep, hw2_sweep, tmp_path, capsys):
    (out, _), (hw2, _) = part3_sweep, hw2_sweep
    assert main(["compare", str(out), str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.startswith(("mlp_1 ", "cnn_5 "))}
    assert set(rows) == {"mlp_1", "cnn_5"} and all(r[4] == "+0.000" for r in rows.values()), printed
    assert "only in A: none" in printed and "only in B: none" in printed
    # a run without cnn_5
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    for name in (SWEEP_FILE, DONE_FILE):
        shutil.copy(out / name, fewer / name)
    results, failed = load_records(out)
    save_records(fewer, {"train": [r for r in results["train"] if r.group != "cnn_5"]}, failed)
    assert main(["compare", str(out), str(fewer)]) == 0
    assert "only in A: cnn_5" in capsys.readouterr().out
    one_line_error(capsys, ["compare", str(out), str(hw2)], "compare two runs of the same study")


def test_bad_run_folders_are_one_line_and_exit_2(tmp_path, capsys):
    one_line_error(capsys, ["report", str(tmp_path / "none")], "no such run folder")
    one_line_error(capsys, ["report", str(tmp_path)], "not a sweep's folder")
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"study": "part3", "quick": True, "overrides": []}))
    one_line_error(capsys, ["report", str(tmp_path)], "the sweep has not finished")
    one_line_error(capsys, ["compare", str(tmp_path), str(tmp_path / "none")], "has not finished")
    (tmp_path / DONE_FILE).write_text("{}")
    one_line_error(capsys, ["report", str(tmp_path)], f"no {RECORDS_FILE}")
    (tmp_path / RECORDS_FILE).write_text("{not json")
    one_line_error(capsys, ["report", str(tmp_path)], f"{RECORDS_FILE}: cannot be read (JSONDecodeError")
    one_line_error(capsys, ["report"], "the following arguments are required: run")
    one_line_error(capsys, ["report", str(tmp_path), "epochs=2"], "takes no key=value")
