"""A sweep's records in open formats (results/records.py): written and read back as the same
RunRecords and search decisions (synthetic edge cases, and conftest's quick sweeps as they were
in memory); runs.parquet and curves.parquet read with pandas alone; load_run's tables without
Ray; an earlier sweep's records.pkl converted; another schema version refused in one line."""
from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
from dataclasses import field, fields, make_dataclass, replace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats as st

import results.records as records
from conftest import ROOT, SAVED
from orchestrator.cli import main
from orchestrator.report import DONE_FILE, SWEEP_FILE, load_records
from results.aggregate import RunRecord
from results.records import (CURVES_FILE, INDEX_FILE, OLD_FILE, RECORD_FILES, RUNS_FILE, SCHEMA_VERSION, load_run,
                             read_records, write_records)
from search_spaces.search import SearchRecords
from workloads import metrics as M
from workloads.config import ConfigError, TrialConfig


def assert_same_records(saved: dict, back: dict) -> None:
    """Stage by stage, record by record: every field but the weights, curves as frames."""
    assert list(back) == list(saved)
    for stage in saved:
        assert len(back[stage]) == len(saved[stage]), stage
        for a, b in zip(saved[stage], back[stage]):
            for f in fields(a):
                x, y = getattr(a, f.name), getattr(b, f.name)
                if f.name == "curves":
                    assert list(y.columns) == list(x.columns)
                    pd.testing.assert_frame_equal(y, x, check_dtype=len(x) > 0)  # empty: no dtype to keep
                elif f.name == "first_layer":
                    assert (x is None and y is None) or (np.array_equal(x, y, equal_nan=True) and x.dtype == y.dtype)
                elif f.name == "config":
                    assert y == x and [type(v) for v in y.values()] == [type(v) for v in x.values()], f.name
                elif f.name != "weights":
                    assert repr(y) == repr(x) and type(y) is type(x), (f.name, x, y)  # NaN as NaN


def curves(n: int, **extra) -> pd.DataFrame:
    return pd.DataFrame({M.STEP: np.arange(1, n + 1) * 5, M.EPOCH: np.arange(1, n + 1) / n,
                         M.LOSS: np.linspace(2.3, 1.0, n), M.VAL_ACC: np.linspace(0.1, 0.5, n), **extra})


def edge_cases() -> tuple[dict, list, dict]:
    """Records every oddity the writer must keep: NaN test accuracy, a run that diverged before
    its first record (no curves at all), sparse test snapshots, a config key only some runs have,
    None and tuple config values, no first layer; a search's NaN, -inf and tuples."""
    flat = {**TrialConfig().to_flat(), "lr_schedule": ((0, 0.1), (5, 0.01)), "snapshot_epochs": (1, 2)}
    layer = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    train = [
        RunRecord("grid", "a", 0, flat, curves(4, test_acc=[np.nan, 0.3, np.nan, 0.4]), 0.4, 1.5, layer,
                  weights=lambda: {}, parameters=123, train_seconds=1.25, changes="lr=0.1", run="a_r0"),
        RunRecord("grid", "a", 1, {**flat, "seed": 1, "extra": None}, curves(3), float("nan"), 2.0, None,
                  status=M.DIVERGED, diverged_at=17, run="a_r1"),
        RunRecord("grid", "b", 0, {"arch": "cnn_3", "seed": 0}, pd.DataFrame(), float("nan"), 0.5,
                  np.full((2, 2), np.nan, np.float32), status=M.DIVERGED, diverged_at=3),
    ]
    history = [{"step": "lr", "incumbent": "x1", "chosen": "x2", "gain": 0.02, "noise": float("nan"),
                "best": {**flat, "lr": 0.02}, "rows": [
                    {"candidate": "x1", "changes": {}, "n": 1, "mean": 0.4, "std": float("nan"), "values": [0.4],
                     "failed": [], "reused": True, "chosen": False, "reason": "incumbent, beaten by x2"},
                    {"candidate": "x4", "changes": {"lr_schedule": ((0, 0.04),)}, "n": 1, "mean": -math.inf,
                     "std": float("nan"), "values": [-math.inf], "failed": [{"repeat": 0, "why": "error"}],
                     "reused": False, "chosen": False, "reason": "below"}]}]
    search = {"search": {"history": history, "best": {**flat, "lr": 0.02}, "base": flat}}
    results = {"search": [replace(r, stage="search") for r in train[:2]], "grid": train, "empty": []}
    failed = [{"stage": "grid", "run": "c_r0", "reason": "unfinished",
               "last": {M.STEP: 10, M.EPOCH: None, M.LOSS: float("nan"), M.VAL_ACC: 0.1}}]
    return results, failed, search


def test_records_round_trip_exactly(tmp_path):
    results, failed, search = edge_cases()
    write_records(tmp_path, results, failed, search)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RECORD_FILES)
    back, failed_back, search_back = read_records(tmp_path)
    assert_same_records(results, back)
    assert repr(failed_back) == repr(failed) and repr(search_back) == repr(search)
    assert back["search"][0].config["lr_schedule"] == ((0, 0.1), (5, 0.01))
    assert "extra" not in back["grid"][0].config and back["grid"][1].config["extra"] is None
    assert back["grid"][0].weights is None  # never saved


def test_a_new_scalar_field_of_RunRecord_round_trips_without_edits(tmp_path, monkeypatch):
    Record = make_dataclass("RunRecord", [("device", str, field(default="cpu"))], bases=(RunRecord,), frozen=True)
    monkeypatch.setattr(records, "RunRecord", Record)
    saved = {"grid": [Record("grid", "a", r, {"seed": r}, curves(2), 0.5, 1.0, device=f"cuda:{r}") for r in (0, 1)]}
    write_records(tmp_path, saved)
    assert pd.read_parquet(tmp_path / RUNS_FILE)["device"].tolist() == ["cuda:0", "cuda:1"]
    back, _, _ = read_records(tmp_path)
    assert_same_records(saved, back)


def test_another_schema_version_or_a_torn_save_is_refused_in_one_line(tmp_path, capsys):
    write_records(tmp_path, edge_cases()[0])
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    (tmp_path / INDEX_FILE).write_text(json.dumps({**index, "schema_version": SCHEMA_VERSION + 1}))
    for read in (read_records, load_run):
        with pytest.raises(ConfigError, match=rf"{INDEX_FILE}: records schema version {SCHEMA_VERSION + 1}, "
                                              rf"this code reads version {SCHEMA_VERSION}") as e:
            read(tmp_path)
        assert "\n" not in str(e.value)
    # through the command line: one line, exit 2
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"study": "part3", "quick": True, "overrides": []}))
    (tmp_path / DONE_FILE).write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{INDEX_FILE}: records schema version" in err, err
    # a Parquet file of another version, and one of another save than records.json
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))
    table = pq.read_table(tmp_path / RUNS_FILE)
    meta = json.loads(table.schema.metadata[records.META_KEY])
    pq.write_table(table.replace_schema_metadata({records.META_KEY: json.dumps({**meta, "schema_version": 0})}),
                   tmp_path / RUNS_FILE)
    with pytest.raises(ConfigError, match=rf"{RUNS_FILE}: records schema version 0, this code reads"):
        load_run(tmp_path)
    pq.write_table(table, tmp_path / RUNS_FILE)
    write_records(tmp_path / "other", edge_cases()[0])
    shutil.copy(tmp_path / "other" / CURVES_FILE, tmp_path / CURVES_FILE)
    with pytest.raises(ConfigError, match=rf"{CURVES_FILE}: from another save than {INDEX_FILE}"):
        read_records(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("sweep", ["part3_sweep", "hw2_sweep"])
def test_a_quick_sweeps_records_read_back_as_they_were_in_memory(sweep, request):
    out, _ = request.getfixturevalue(sweep)
    assert not (out / OLD_FILE).exists() and all((out / name).is_file() for name in RECORD_FILES)
    saved, failed, search = SAVED[out]
    back, failed_back, search_back = read_records(out)
    assert_same_records(saved, back)
    assert failed_back == failed and search_back == search == {}
    for r in (r for recs in back.values() for r in recs):  # configs keep their types: tuples stay tuples
        assert TrialConfig.from_flat(r.config).to_flat() == r.config and isinstance(r.config["lr_schedule"], tuple)
    results, _ = load_records(out)  # what `report` and `compare` read
    assert_same_records(saved, results)


@pytest.mark.slow
def test_the_parquet_files_read_with_pandas_alone(part3_sweep):
    out, _ = part3_sweep
    code = f"""import sys, pandas as pd
runs = pd.read_parquet({str(out / RUNS_FILE)!r}); curves = pd.read_parquet({str(out / CURVES_FILE)!r})
runs.to_pickle(sys.argv[1]); curves.to_pickle(sys.argv[2])
assert not any(m.split('.')[0] in ('results', 'orchestrator', 'workloads', 'ray', 'torch') for m in sys.modules)"""
    tables = [out.parent / "runs_alone.pkl", out.parent / "curves_alone.pkl"]
    done = subprocess.run([sys.executable, "-c", code, *map(str, tables)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs, long = (pd.read_pickle(t) for t in tables)
    trials = pd.read_csv(out / "trials.csv").set_index("trial").loc[runs["run"]]
    assert len(runs) == len(trials) == 4 and runs["run"].tolist() == ["mlp_1_r0", "mlp_1_r1", "cnn_5_r0", "cnn_5_r1"]
    assert runs[["stage", "group", "repeat", "run", "status", "test_acc", "seed", "final.val_acc", "config.arch",
                 "config.lr", "config.grayscale"]].notna().all().all()
    assert runs["test_acc"].tolist() == trials["test_acc"].tolist()
    assert runs["config.arch"].tolist() == runs["group"].tolist() == ["mlp_1", "mlp_1", "cnn_5", "cnn_5"]
    assert runs["seed"].tolist() == runs["config.seed"].tolist() == [0, 1, 0, 1]
    assert runs["config.grayscale"].dtype == bool and runs["parameters"].dtype == "int64"
    assert list(long.columns) == ["record", "stage", "group", "repeat", "run", "metric", "step", "epoch", "value"]
    saved, _, _ = SAVED[out]
    for i, r in enumerate(saved["train"]):
        mine = long[long["run"] == r.run]
        assert (mine["record"] == i).all() and (runs.loc[i, "run"] == r.run)
        wide = mine.pivot(index="step", columns="metric", values="value")
        for metric in (M.LOSS, M.TRAIN_ACC, M.VAL_ACC):
            assert wide[metric].tolist() == r.curves[metric].tolist()
            assert runs.loc[i, f"final.{metric}"] == r.final(metric)
        assert mine.drop_duplicates("step")["epoch"].tolist() == r.curves[M.EPOCH].tolist()


@pytest.mark.slow
def test_load_run_gives_runs_curves_and_groups_without_ray(part3_sweep):
    out, _ = part3_sweep
    code = ("import sys, pickle; from results.records import load_run; run = load_run(sys.argv[1]); "
            "groups = run.groups; assert 'ray' not in sys.modules and 'torch' not in sys.modules, 'imported'; "
            "pickle.dump((run.runs, run.curves, groups, run.sweep, run.provenance), sys.stdout.buffer)")
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    runs, long, groups, sweep, prov = pickle.loads(done.stdout)
    assert sweep["study"] == "part3" and prov["wall_s"] > 0 and len(long) == len(pd.read_parquet(out / CURVES_FILE))
    assert groups[["stage", "group", "runs", "n"]].values.tolist() == [["train", "mlp_1", 2, 2], ["train", "cnn_5", 2, 2]]
    for row in groups.itertuples():  # by hand from runs.parquet
        mine = runs[runs["group"] == row.group]
        for name, column in (("test_acc", "test_acc"), ("val_acc", "final.val_acc")):
            x = mine[column].to_numpy()
            mean, sd = x.sum() / 2, math.sqrt(((x - x.sum() / 2) ** 2).sum())  # n - 1 = 1
            half = st.t.ppf(0.975, 1) * sd / math.sqrt(2)
            assert getattr(row, f"{name}_n") == 2
            assert getattr(row, f"{name}_mean") == pytest.approx(mean, abs=1e-12)
            assert getattr(row, f"{name}_sd") == pytest.approx(sd, abs=1e-12)
            assert getattr(row, f"{name}_ci_low") == pytest.approx(mean - half, abs=1e-12)
            assert getattr(row, f"{name}_ci_high") == pytest.approx(mean + half, abs=1e-12)


@pytest.mark.slow
def test_an_earlier_sweeps_records_pkl_is_converted(part3_sweep, tmp_path, capsys):
    out, _ = part3_sweep
    saved, failed, _ = SAVED[out]
    old = tmp_path / "old"
    old.mkdir()
    for name in (SWEEP_FILE, DONE_FILE):
        shutil.copy(out / name, old / name)
    with open(old / OLD_FILE, "wb") as f:  # what save_records wrote before: weights stripped
        pickle.dump({"results": {s: [replace(r, weights=None) for r in recs] for s, recs in saved.items()},
                     "failed": failed}, f)
    assert main(["report", str(old)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"orchestrator: converted {old / OLD_FILE} (earlier code) to {', '.join(RECORD_FILES)}; "
                   f"the pickle is no longer read"], err
    assert_same_records(saved, read_records(old)[0])
    rebuilt = [line for line in (old / "report.md").read_text().splitlines() if not line.startswith("| report written")]
    assert rebuilt == (out / "report.md").read_text().splitlines()
    assert main(["compare", str(old), str(out)]) == 0 and capsys.readouterr().err == ""  # converted once
    # a pickle this code cannot load: one line, exit 2, nothing written
    broken = tmp_path / "broken"
    shutil.copytree(old, broken)
    for name in RECORD_FILES:
        (broken / name).unlink()
    (broken / OLD_FILE).write_bytes(b"not a pickle")
    assert main(["report", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{OLD_FILE}: cannot be read by this code (UnpicklingError" in err, err
    assert not (broken / INDEX_FILE).exists()


def test_search_records_keep_their_decisions(tmp_path):
    from orchestrator.report import save_records
    results, failed, search = edge_cases()
    results["search"] = SearchRecords(results["search"], **search["search"])
    save_records(tmp_path, results, failed)
    back, failed_back = load_records(tmp_path)
    assert isinstance(back["search"], SearchRecords) and not isinstance(back["grid"], SearchRecords)
    assert repr((back["search"].history, back["search"].best, back["search"].base)) == \
        repr((results["search"].history, results["search"].best, results["search"].base))
    assert back["search"].best_changes() == {"lr": 0.02}
