"""Resuming: the training loop from the trainable's checkpoint files, a sweep
whose driver was killed, and the guards around output folders (refusals,
atomic writes, Tune state cut short by a crash)."""
import ast
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from cluster_utils import (OVERRIDES, ROOT, SWEEP, TRIALS, assert_same_results, base_env, cmdline,
                           free_port, kill, private_ray_tmp, processes_mentioning, reference, run_sweep,
                           start_sweep, trial_states, trials_table, wait_until)
from conftest import TINY, timeless
from orchestrator.cli import main
from orchestrator.experiment import Options, experiment_path, restorable
from orchestrator.trainable import FAULT_ENV, META_FILE, STALLED, STATE_FILE, load_state
from results.io import write_pickle
from workloads.config import ConfigError, TrialConfig
from workloads.train import train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reference_out(tmp_path_factory, data_dir):
    return reference(tmp_path_factory.getbasetemp() / "reference", data_dir)


@pytest.fixture
def ray_tmp():
    with private_ray_tmp("rk") as path:
        yield path


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("orchestrator: error:") and needle in err, err


@pytest.fixture
def one_thread():
    """As each trial runs (one CPU each); on a busy 2-core machine also 10x faster than 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_resumes_exactly_from_every_checkpoint_file(tiny_data, tmp_path, one_thread):
    """Each checkpoint goes through the trainable's own file format, as Tune
    stores it; resuming from any of them (mid-epoch, at the epoch boundary,
    across a learning-rate switch) finishes exactly as the uninterrupted run."""
    from ray import tune
    cfg = TrialConfig().override({**TINY, "arch": "cnn_3", "epochs": 2, "checkpoint_every": 1,
                                  "lr_schedule": "1:0.0005", "metrics": "train_acc,val_acc,grad_norm"})
    folders = []

    def save(metrics, state):
        if state is not None:
            folders.append(tmp_path / f"ckpt{len(folders)}")
            folders[-1].mkdir()
            meta, heavy = state.halves()  # the trainable's own two files
            torch.save(meta, folders[-1] / META_FILE)
            torch.save(heavy, folders[-1] / STATE_FILE)

    full = train(cfg, tiny_data, CPU, report=save)
    assert [r["step"] for r in full.records] == [5, 10, 15, 20] and len(folders) == 5
    for folder in folders[:-1]:
        state = load_state(tune.Checkpoint.from_directory(str(folder)))
        resumed = train(cfg, tiny_data, CPU, resume=state)
        assert timeless(resumed.records) == timeless(full.records), folder.name
        assert resumed.test_acc == full.test_acc
        assert all(torch.equal(resumed.state_dict[k], full.state_dict[k]) for k in full.state_dict)


def test_experiment_path_is_the_out_folder_or_shared_storage(tmp_path):
    out = tmp_path / "runs" / "part3" / "20261123-141500"
    opts = Options(out=out, data_dir=tmp_path)
    assert experiment_path(opts, "train") == f"{out}/train"
    shared = Options(out=out, data_dir=tmp_path, storage="/mnt/shared/runs/", address="auto")
    assert experiment_path(shared, "train") == "/mnt/shared/runs/20261123-141500/train"
    s3 = Options(out=out, data_dir=tmp_path, storage="s3://bucket/runs")
    assert experiment_path(s3, "lr") == "s3://bucket/runs/20261123-141500/lr"
    with pytest.raises(ConfigError, match="--address needs --storage"):
        Options(out=out, data_dir=tmp_path, address="auto")
    with pytest.raises(ConfigError, match="size a local Ray"):
        Options(out=out, data_dir=tmp_path, address="auto", storage="/x", num_gpus=1)


def test_tune_state_cut_short_by_a_crash_is_set_aside(tmp_path):
    stage = tmp_path / "train"
    stage.mkdir()
    assert not restorable(str(stage))
    (stage / "tuner.pkl").write_bytes(b"x")
    assert not restorable(str(stage))  # killed before Tune's first snapshot: start over
    (stage / "experiment_state-2026-11-23_10-00-00.json").write_text('{"trial_data": []}')
    (stage / "experiment_state-2026-11-23_11-00-00.json").write_text('{"trial_data": [[')
    assert restorable(str(stage))
    assert sorted(p.name for p in stage.iterdir()) == [
        "experiment_state-2026-11-23_10-00-00.json", "experiment_state-2026-11-23_11-00-00.json.corrupt",
        "tuner.pkl"]


def test_resume_and_cluster_options_are_checked(capsys, tmp_path, data_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "sweep.json").write_text('{"study": "part3", "quick": true, "overrides": ["repeats=2"], '
                                    '"storage": null}')
    before = {p: p.read_bytes() for p in out.rglob("*")}
    data = ["--data-dir", str(data_dir)]
    one_line_error(capsys, ["sweep", "part3", "--quick", "--out", str(out), *data],
                   "holds an unfinished sweep; add --resume")
    one_line_error(capsys, ["sweep", "part3", "--resume", "--out", str(out), "repeats=3", *data],
                   "started with overrides {'repeats': '2'}")
    one_line_error(capsys, ["sweep", "part3", "--resume", "--out", str(out), "--storage", str(tmp_path), *data],
                   "started with storage None")
    assert before == {p: p.read_bytes() for p in out.rglob("*")}
    fresh = ["sweep", "part3", "--quick", "--out", str(tmp_path / "new"), *data]
    one_line_error(capsys, fresh + ["--address", "auto"], "--address needs --storage")
    one_line_error(capsys, fresh + ["--address", "auto", "--storage", str(tmp_path), "--num-cpus", "2"],
                   "size a local Ray")
    one_line_error(capsys, fresh + ["--address", f"127.0.0.1:{free_port()}", "--storage", str(tmp_path)],
                   "no Ray cluster answers there")
    one_line_error(capsys, fresh + ["--address", "head", "--storage", str(tmp_path)], "expected auto or HOST:PORT")
    one_line_error(capsys, fresh + ["--storage", str(tmp_path / "nowhere")], "no such folder")
    one_line_error(capsys, fresh + ["--storage", "nope://bucket/runs"], "--storage nope://bucket/runs")
    assert not (tmp_path / "new").exists()


def test_a_folder_in_use_by_a_driver_is_refused(capsys, tmp_path, data_dir):
    import fcntl
    out = tmp_path / "run"
    out.mkdir()
    (out / "sweep.json").write_text('{"study": "part3", "quick": true, "overrides": [], "storage": null}')
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running driver holds it
        one_line_error(capsys, ["sweep", "part3", "--resume", "--out", str(out), "--data-dir", str(data_dir)],
                       "in use by another sweep driver")
    finally:
        os.close(fd)


SLOW_WRITER = """
import sys, time
from results.io import write_pickle
class Slow:
    def __reduce__(self):
        sys.stdout.write("writing\\n"); sys.stdout.flush(); time.sleep(60)
        return (int, (1,))
write_pickle(sys.argv[1], {"big": b"x" * 10_000_000, "slow": Slow()})
"""


def test_a_write_killed_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "part3_cnn_3.pkl"
    write_pickle(target, {"test_acc": 0.5})
    old = target.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # readable like any other file
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n"  # 10 MB already written to the temporary file
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == old
    with open(target, "rb") as f:
        assert pickle.load(f) == {"test_acc": 0.5}
    # What the killed writer left is a hidden temporary file that nothing reads.
    left = [p for p in tmp_path.iterdir() if p != target]
    assert len(left) == 1 and left[0].name.startswith(".part3_cnn_3.pkl.") and left[0].stat().st_size > 10**6
    # An error midway, in-process: the old file stays and the temporary file goes.
    with pytest.raises((pickle.PicklingError, AttributeError)):
        write_pickle(target, {"test_acc": 0.9, "bad": lambda: 0})
    assert target.read_bytes() == old and [p for p in tmp_path.iterdir() if p != target] == left


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


PACKAGES = ("orchestrator", "workloads", "search_spaces", "results")
WRITERS = {"to_csv", "savefig", "write_text", "write_bytes", "dump", "save", "imsave"}
ALLOWED = {"results/io.py",             # the atomic writers themselves
           "orchestrator/trainable.py",  # a checkpoint staged in a temp folder; Tune copies it
           "orchestrator/coordinate.py"}  # the searcher's state, into the file Tune names and stages


def test_every_output_goes_through_results_io():
    """No module writes a results file except through results/io.py's atomic writers."""
    offenders = []
    for path in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            mode = (node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                    else next((k.value.value for k in node.keywords if k.arg == "mode"
                               and isinstance(k.value, ast.Constant)), "r"))
            if name in WRITERS or (name == "open" and any(c in str(mode) for c in "wax")):
                offenders.append(f"{rel}:{node.lineno} {name}")
    assert not offenders, offenders


@pytest.mark.slow
def test_driver_killed_mid_sweep_resumes_only_what_was_unfinished(data_dir, tmp_path, reference_out, ray_tmp,
                                                                   capsys):
    """SIGKILL the driver once three trials are done and the fourth is stalled
    after its step-10 checkpoint; `sweep --resume` must leave the three alone,
    continue the fourth from step 10, and end with the uninterrupted results."""
    out = tmp_path / "sweep"
    log = tmp_path / "sweep.log"
    args = SWEEP + ["--out", str(out), "--data-dir", str(data_dir)]
    stalled = "cnn_3_r1"
    proc = start_sweep(args, base_env(ray_tmp, **{FAULT_ENV: f"stall:{stalled}@15"}), log)
    try:
        def three_done_one_stalled():
            states = trial_states(out / "train")
            done = [t for t, s in states.items() if s["status"] == "TERMINATED"]
            return states if len(done) == 3 and states.get(stalled, {}).get(STALLED) else None
        states = wait_until(three_done_one_stalled, 240, "3 trials done, 1 stalled", proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.time()
        # Its local Ray dies with it (Ray's agents linger a while: end them now).
        wait_until(lambda: not [p for p in processes_mentioning(str(ray_tmp)) if "Agent" not in cmdline(p)],
                   60, "the killed driver's Ray to exit")
        kill(processes_mentioning(str(ray_tmp)))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert states[stalled]["status"] == "RUNNING" and states[stalled]["step"] == 15
    assert not (out / "provenance.json").exists() and not (out / "summary.csv").exists()
    finished = [t for t in TRIALS if t != stalled]
    results_before = {t: (out / "train" / t / "result.json").read_bytes() for t in finished}
    # A crash that cut Tune's newest snapshot short must not stop the resume.
    newest = sorted((out / "train").glob("experiment_state-*.json"))[-1]
    cut = out / "train" / "experiment_state-2099-01-01_00-00-00.json"
    cut.write_bytes(newest.read_bytes()[:100])

    resume = ["sweep", "part3", "--resume", "--out", str(out), "--data-dir", str(data_dir), "--quiet"]
    assert run_sweep(resume, base_env(ray_tmp), tmp_path / "resume.log") == 0, \
        (tmp_path / "resume.log").read_text()[-3000:]
    assert cut.with_name(cut.name + ".corrupt").exists()
    for t in finished:  # not rerun: Tune's per-trial results are byte for byte as before the kill
        assert (out / "train" / t / "result.json").read_bytes() == results_before[t], t
    table = trials_table(out)
    assert (table["status"] == "done").all() and list(table.index) == list(TRIALS)
    assert table.loc[stalled, "resumed_from_step"] == 10 and table.loc[stalled, "started_at"] > killed_at
    assert (table.loc[finished, "resumed_from_step"] == 0).all()
    assert (table.loc[finished, "finished_at"] < killed_at).all()
    assert_same_results(out, reference_out)
    # Now finished: a second sweep into it is refused (one line, exit 2, nothing touched).
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    overrides = [f"{k}={v}" for k, v in OVERRIDES.items()]
    capsys.readouterr()
    one_line_error(capsys, ["sweep", "part3", "--quick", "--out", str(out), "--data-dir", str(data_dir),
                            *overrides], "already holds a finished sweep")
    assert files == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
