"""The benchmark's table on tiny settings: every row does the planned work (runs,
steps, evaluated images), and the printed table has one line per row with the
speed-up against row 1. Figures themselves are measured, never asserted."""
import math

import pytest
import torch

from benchmarks import run as B
from tests.conftest import TINY

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def study():
    return B.bench_study("quick", 0, 2, "mlp_1", {k: str(v) for k, v in TINY.items()})


def test_planned_work_counts_what_a_run_does(study):
    cfg = B.study_trials(study)[0].config
    # 500 images in batches of 50, one epoch; a record every 5 steps scores 200 + 200 images
    assert cfg.work() == (10, 2, 2 * (200 + 200) + 200)
    full = B.bench_study("full", 300, 1, "cnn_3").stage_trials(B.bench_study("full", 300, 1, "cnn_3").stages[0], {})
    # the assignment's per-step work: 5,000 + 5,000 images every 10 steps, all 10,000 test images
    assert full[0].config.work() == (300, 30, 30 * 10000 + 10000)


def test_rows_do_the_same_work_and_the_table_shows_them(study, data_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [B.row_baseline(study, data_dir, None, CPU), B.row_train(study, data_dir, CPU),
                B.row_vectorized(study, data_dir, CPU)]
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        assert (row.runs, row.steps, row.images) == (2, 20, 2 * 1000), row.name
        assert row.wall_s > 0 and row.note == "" and 0 < row.busy <= 1.5
        assert set(row.extra["test_acc"]) == {"mlp_1_r0", "mlp_1_r1"}
    # The project's loop and its vectorized repeats train the same models.
    assert rows[2].extra["test_acc"] == pytest.approx(rows[1].extra["test_acc"], abs=1e-9)
    lines = B.table(rows).splitlines()
    assert len(lines) == 4 and lines[0].split()[:4] == ["row", "runs", "wall", "s"]
    assert lines[1].split()[-3] == "1.00x"
    ratio = float(lines[2].split()[-3].rstrip("x"))
    assert math.isclose(ratio, rows[0].wall_s / rows[1].wall_s, rel_tol=0.01)
    assert B.comparisons(rows)[0].startswith("vectorized vs separate runs, one process (row 2 / row 3)")


def test_a_timed_subset_of_baseline_runs_is_scaled(study, data_dir, monkeypatch):
    calls = []

    def fake(data_root, cfg, **kw):
        calls.append(cfg.train.seed)
        return {"steps": 10, "records": [{}, {}], "evaluated_images": 1000, "test_acc": 0.5}
    import benchmarks.baseline
    monkeypatch.setattr(benchmarks.baseline, "run_baseline", fake)
    row = B.row_baseline(study, data_dir, 1, CPU)
    assert calls == [0] and row.runs == 2 and row.steps == 20 and row.images == 2000
    assert row.note.startswith("timed 1 of 2 runs per arch, scaled")


def test_trial_phase_is_first_start_to_last_end(tmp_path):
    import pandas as pd

    from orchestrator.trainable import FINISHED, STARTED
    path = tmp_path / "trials.csv"
    pd.DataFrame({STARTED: [100.0, 101.0, 104.0], FINISHED: [104.0, 106.0, 110.0]}).to_csv(path)
    phase = B.trial_phase(path, trial_seconds=15.0, cores=2)
    assert phase == {"trial_phase_s": 10.0, "trial_phase_busy": 0.75}
    row = B.Row("sweep", "4 Ray Tune sweep", wall_s=16.0, busy=15.0 / 32, extra=phase)
    assert B.comparisons([row]) == ["4 Ray Tune sweep: utilisation 0.47 of its wall, 0.75 from its first "
                                    "trial's start to its last trial's end (10.0 s; 6.0 s outside it)"]


def test_the_hw2_rows_run_the_tutorials_recipe(data_dir):
    study = B.bench_study("quick", 150, 2, None, name="hw2")
    cfgs = [t.config for t in B.study_trials(study)]
    assert [(c.model.arch, c.train.batch_size, c.train.optimizer, c.train.base_lr, c.data.normalize, c.train.seed)
            for c in cfgs] == [("tutorial", 4, "sgd:momentum=0.9", 0.001, "half", s) for s in (0, 1)]
    assert cfgs[0].work() == (150, 1, 500 + 1000 + 1000)  # one record: sample, test (no val split); then test
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [B.row_baseline(study, data_dir, None, CPU), B.row_train(study, data_dir, CPU)]
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        assert (row.runs, row.steps, row.images) == (2, 300, 2 * 2500) and row.note == "", row.name
