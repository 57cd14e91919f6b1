"""A sweep through the Python API alone (orchestrator.sweeps), and a sweep that Ctrl-C
stops: one line naming the command that finishes it, exit 130, and that command
finishing it with the numbers of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import HW2_SIZES, ROOT, TINY
from orchestrator.report import DONE_FILE, SWEEP_FILE
from workloads.config import ConfigError

pytestmark = pytest.mark.slow


def test_a_quick_sweep_through_the_python_api(ray_local, data_dir, tmp_path):
    from orchestrator import FinishedSweep, sweep
    out = tmp_path / "api"
    run = sweep("part3", {**TINY, "archs": ["mlp_1", "cnn_3"], "repeats": 2}, quick=True,
                data_dir=str(data_dir), out=str(out), verbose=0)
    assert isinstance(run, FinishedSweep) and run.folder == out
    records = run.results["train"]
    assert sorted(f"{r.group}_r{r.repeat}" for r in records) == ["cnn_3_r0", "cnn_3_r1", "mlp_1_r0", "mlp_1_r1"]
    assert all(r.finished and 0.0 <= r.test_acc <= 1.0 for r in records)
    summary = pd.read_csv(out / "summary.csv").set_index("group")
    for group in ("mlp_1", "cnn_3"):
        accs = [r.test_acc for r in records if r.group == group]
        assert summary.loc[group, "test_acc_mean"] == pytest.approx(sum(accs) / 2, abs=1e-12)
    assert (out / DONE_FILE).exists() and (out / "report.html").exists()
    assert run.closing_lines()[-1] == f"results in {out}"
    from orchestrator import load_run  # the records as a notebook reads them, without Ray
    loaded = load_run(out)
    assert sorted(loaded.runs["run"]) == ["cnn_3_r0", "cnn_3_r1", "mlp_1_r0", "mlp_1_r1"]
    by_name = {f"{r.group}_r{r.repeat}": r for r in records}
    assert loaded.runs.set_index("run").loc["cnn_3_r1", "test_acc"] == by_name["cnn_3_r1"].test_acc
    groups = loaded.groups.set_index("group")
    assert groups.loc["mlp_1", "test_acc_mean"] == pytest.approx(summary.loc["mlp_1", "test_acc_mean"], abs=1e-12)
    with pytest.raises(ConfigError, match="already holds a finished sweep"):
        sweep("part3", quick=True, data_dir=str(data_dir), out=str(out), verbose=0)


def test_bad_requests_are_refused_before_anything_is_written(data_dir, tmp_path):
    from orchestrator import sweep
    with pytest.raises(ConfigError, match="Conv-99x99x8 leaves an empty feature map"):
        sweep("part3", {"spec": "Conv-99x99x8"}, quick=True, data_dir=str(data_dir), out=str(tmp_path / "a"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="a file, not a folder"):
        sweep("part3", quick=True, data_dir=str(data_dir), out=str(tmp_path / "file"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_ctrl_c_names_the_command_that_finishes_it(data_dir, tmp_path, hw2_sweep):
    """hw2 --quick at the hw2_sweep fixture's sizes, SIGINT once its trials are running."""
    out, data_dir = tmp_path / "hw2", Path(data_dir).resolve()
    argv = [sys.executable, "-m", "orchestrator", "sweep", "hw2", "--quick", "--data-dir", str(data_dir),
            "--out", str(out), *HW2_SIZES]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    # Its own process group, which gets the SIGINT as a terminal's Ctrl-C sends it: Ray's and
    # Tune's processes too.
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while not any(line.startswith("[hw2] questions:") for line in list(lines)):  # trials starting
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
        time.sleep(0.2)
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"orchestrator: interrupted; finish it with: python -m orchestrator sweep hw2 --resume --out {out}"
    assert "Tuner.restore" not in err and "Traceback" not in err
    assert (out / SWEEP_FILE).exists() and not (out / DONE_FILE).exists()

    finished = subprocess.run([sys.executable, "-m", "orchestrator", "sweep", "hw2", "--resume", "--out", str(out),
                               "--data-dir", str(data_dir), "--quiet"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    resumed = pd.read_csv(out / "summary.csv").set_index("group")
    whole = pd.read_csv(Path(hw2_sweep[0]) / "summary.csv").set_index("group")
    pd.testing.assert_series_equal(resumed["test_acc_mean"], whole["test_acc_mean"])
