"""The command line: in-process for errors and plans, end to end through real
Ray Tune in quick form."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from orchestrator.cli import main
from workloads import metrics as M


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("orchestrator: error:") and needle in err, err


def test_list_and_plan(capsys):
    assert main(["list"]) == 0
    assert "part3" in capsys.readouterr().out
    assert main(["plan", "part3", "--quick", "archs=cnn_4", "repeats=3"]) == 0
    out = capsys.readouterr().out
    assert "stage train: 3 trials" in out and "cnn_4_r2" in out and "seed=2" in out


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "part9"], "unknown study 'part9'"),
    (["sweep", "part3", "epochs=0", "--dry-run"], "epochs must be >= 1"),
    (["sweep", "part3", "epochs"], "expected key=value"),
    (["sweep", "part3", "--cpus-per-trial", "x"], "invalid float value"),
    (["sweep", "part3", "--bogus"], "unrecognized arguments: --bogus"),
    (["list", "epochs=3"], "takes no key=value"),
    (["sweep", "part3", "--cpus-per-trial", "0"], "needs --cpus-per-trial > 0"),
    (["sweep", "part3", "--repeats-per-trial", "0"], "--repeats-per-trial must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, needle):
    one_line_error(capsys, argv + ["--data-dir", str(tmp_path)] if argv[0] == "sweep" and "--dry-run" not in argv
                   else argv, needle)


def test_missing_data_writes_nothing(capsys, tmp_path):
    out = tmp_path / "run"
    one_line_error(capsys, ["sweep", "part3", "--quick", "--data-dir", str(tmp_path / "none"),
                            "--out", str(out)], "CIFAR-10 not found")
    assert not out.exists()


def test_entry_point_dry_run():
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "sweep", "part3", "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stage train: 50 trials" in proc.stdout and "cnn_5_r9" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "orchestrator", "sweep", "part3", "lr=-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_quick_sweep_end_to_end(part3_sweep, data_dir, capsys):
    out, printed = part3_sweep  # conftest: TINY sizes, archs=mlp_1,cnn_5, repeats=2
    # The last lines are the project's: test accuracy per group, what finished, where the report is.
    lines = printed.splitlines()
    assert lines[-3] == "finished: 4 of 4 runs" and lines[-1] == f"results in {out}"
    assert lines[-2].startswith(f"report: {out / 'report.html'} and report.md (written in ")
    assert lines[0].split() == ["group", "n", "test", "acc", "its", "95%", "CI", "best"], lines
    shapes = {"mlp_1": (32, 1024), "cnn_5": (8, 1, 3, 3)}
    for name, shape in shapes.items():
        with open(out / f"part3_{name}.pkl", "rb") as f:
            saved = pickle.load(f)
        assert set(saved) == {"name", "loss_curve", "train_acc_curve", "val_acc_curve", "test_acc", "weights"}
        assert saved["name"] == name and saved["weights"].shape == shape
        assert len(saved["loss_curve"]) == len(saved["val_acc_curve"]) == 2  # 10 steps, a record every 5
        assert 0 < saved["test_acc"] <= 1
        assert (out / f"weights_{name}.png").stat().st_size > 1000
        assert (out / "best" / f"{name}.pt").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["group"].tolist() == ["mlp_1", "cnn_5"]
    assert summary["n"].tolist() == [2, 2] and summary["parameters"].tolist() == [33130, 8346]
    assert (summary["test_acc_best"] >= summary["test_acc_mean"]).all()
    curves = pd.read_csv(out / "curves.csv")
    mlp_loss = curves[(curves.group == "mlp_1") & (curves.metric == M.LOSS)]["mean"].to_numpy()
    with open(out / "part3_mlp_1.pkl", "rb") as f:
        np.testing.assert_allclose(pickle.load(f)["loss_curve"], mlp_loss)
    assert (out / "compare.png").stat().st_size > 1000
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["libraries"]["ray"] and len(prov["trials"]["train"]) == 4
    # TensorBoard event files per trial, through Tune's TBX logger.
    assert len(list((out / "train").glob("*/events.out.tfevents.*"))) == 4

    # A second sweep into the finished folder is refused, and nothing is touched.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    one_line_error(capsys, ["sweep", "part3", "--quick", "--data-dir", str(data_dir), "--out", str(out)],
                   "already holds a finished sweep")
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
