"""--log's trackers through Tune's callbacks (orchestrator/trackers.py): an MLflow run per
trial in a file store, TensorBoard over optimizer steps, a series per repeat of a packed
trial, W&B offline, the same logging after --resume, and bad values refused in one line."""
import importlib.util
import json
import signal
import struct

import pytest

from cluster_utils import OVERRIDES, base_env, private_ray_tmp, run_sweep, start_sweep, trial_states, wait_until
from conftest import SAVED, TINY, finished_sweep
from orchestrator import trackers
from orchestrator.cli import main
from orchestrator.packed import pack_metrics, repeat_key
from orchestrator.trainable import FAULT_ENV, STALLED
from workloads import metrics as M

TB_PREFIX = "ray/tune/"      # Tune's TBXLoggerCallback puts every metric under it
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow not installed: pip install 'cifar-sweeps[mlflow]'")


@pytest.fixture(autouse=True)
def mlflow_file_store(monkeypatch):
    """MLflow 3 opens a file store only when asked (the sweep asks for the --log it was given)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("orchestrator: error:") and needle in err, err


def tb_scalars(folder) -> dict:
    """{tag: [(step, value)]} of the TensorBoard event files in a trial's folder: TFRecords
    (length, its CRC, an Event, its CRC) read with tensorboardX's own protobuf."""
    from tensorboardX.proto.event_pb2 import Event
    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            n = struct.unpack("<Q", data[i:i + 8])[0]
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag.removeprefix(TB_PREFIX), []).append((event.step, v.simple_value))
    return out


def mlflow_runs(uri: str, experiment: str) -> dict:
    """{run name: (params, {metric: [(step, value)]}, status)} of one MLflow experiment."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = {}
    for run in client.search_runs([exp.experiment_id]):
        history = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
                   for key in run.data.metrics}
        assert run.info.run_name not in runs, f"two MLflow runs for {run.info.run_name}"
        runs[run.info.run_name] = (run.data.params, history, run.info.status)
    return runs


def same_series(got: list, steps, values) -> None:
    """(step, value) pairs against a curve; TensorBoard keeps float32."""
    assert [s for s, _ in got] == [int(s) for s in steps]
    assert [v for _, v in got] == pytest.approx([float(v) for v in values], rel=1e-6)


def tiny_sweep(data_dir, out, *args):
    argv = ["sweep", "part3", "--quick", "--data-dir", str(data_dir), "archs=mlp_1", "repeats=2",
            *[f"{k}={v}" for k, v in TINY.items()], *args]
    finished_sweep(argv, out)
    return {(r.group, r.repeat): r for r in SAVED[out][0]["train"]}


def test_bad_log_values_are_one_line_errors_before_anything_runs(capsys, tmp_path, data_dir, monkeypatch):
    out = tmp_path / "never"
    base = ["sweep", "part3", "--quick", "--data-dir", str(data_dir), "--out", str(out)]
    one_line_error(capsys, base + ["--log", "tensorboard"], "unknown tracker 'tensorboard'; choose mlflow[:URI]")
    one_line_error(capsys, base + ["--log", "mlflow", "--log", "mlflow:file:///x"], "mlflow given twice")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(trackers, "wandb_key", lambda: None)
    if importlib.util.find_spec("wandb"):
        one_line_error(capsys, base + ["--log", "wandb:p"], "no W&B API key")
    real = importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    one_line_error(capsys, base + ["--log", "mlflow:file:///tmp/m"],
                   "mlflow is not installed; pip install 'cifar-sweeps[mlflow]'")
    assert not out.exists()
    # --resume logs as the sweep was started: another --log is refused
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"study": "part3", "quick": True, "overrides": [], "storage": None}))
    monkeypatch.setattr(trackers.importlib.util, "find_spec", real)
    one_line_error(capsys, base + ["--resume", "--log", "mlflow"], "this sweep was started with log [], not ['mlflow']")


def test_wandb_key_from_the_environment_or_netrc(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert trackers.wandb_key() is None  # no file
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password k1\n")
    assert trackers.wandb_key() == "k1"
    monkeypatch.setenv("WANDB_API_KEY", "k2")
    assert trackers.wandb_key() == "k2"


def test_reports_are_logged_at_their_optimizer_step_once():
    record = {M.STEP: 20, M.EPOCH: 2.0, M.VAL_ACC: 0.5, M.TRAIN_SECONDS: 3.0}
    final = {**record, M.TEST_ACC: 0.4, M.DONE: 1, M.TRAIN_SECONDS: 3.5}
    assert trackers.at_optimizer_step(record, None) == {**record, "timesteps_total": 20}
    # the final report repeats the last record: only what is new or changed, at that step
    assert trackers.at_optimizer_step(final, record) == {M.TEST_ACC: 0.4, M.DONE: 1, M.TRAIN_SECONDS: 3.5,
                                                         "timesteps_total": 20}
    assert trackers.at_optimizer_step({"x": 1}, None) == {"x": 1}  # no step: Tune's own count
    # a trial resumed from its checkpoint at step 10 reports step 10 and 20 again: logged once
    earlier = {M.STEP: 10, M.EPOCH: 1.0, M.VAL_ACC: 0.3, M.TRAIN_SECONDS: 1.0}
    assert trackers.at_optimizer_step(earlier, record) is None
    assert trackers.at_optimizer_step(record, record) == {"timesteps_total": 20}


def test_a_pack_reports_each_repeats_recorded_metrics():
    metrics = [{M.STEP: 10, M.EPOCH: 1.0, M.VAL_ACC: 0.2, M.LOSS: 2.0, M.LR: 0.01},
               {M.STEP: 10, M.EPOCH: 1.0, M.VAL_ACC: 0.4, M.LOSS: 1.0, M.LR: 0.01}]
    out = pack_metrics(metrics, [4, 5])
    assert out[M.VAL_ACC] == pytest.approx(0.3) and out[M.STEP] == 10  # the mean, as before
    assert {k: v for k, v in out.items() if k.startswith("repeat_")} == {
        "repeat_4/val_acc": 0.2, "repeat_4/train_loss": 2.0, "repeat_5/val_acc": 0.4, "repeat_5/train_loss": 1.0}


@needs_mlflow
@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_trackers_at_every_verbosity_and_progress_at_1_only(ray_local, tmp_path, verbose):
    from orchestrator.experiment import Options, stage_tuner
    from orchestrator.progress import Progress
    from orchestrator.trainable import run_trial
    opts = Options(out=tmp_path, data_dir=tmp_path, verbose=verbose,
                   log=trackers.parse([f"mlflow:{(tmp_path / 'm').as_uri()}"]))
    progress = Progress("[part3] train", {})
    tuner = stage_tuner(run_trial, {}, opts, "train", columns={}, callbacks=[progress], resume_errored=False,
                        param_space={"trial": {}})
    made = tuner._local_tuner.get_run_config().callbacks
    assert [type(c).__name__ for c in made] == (["Progress"] if verbose == 1 else []) + ["StepTBXLogger",
                                                                                         "MLflowLogger"]


@needs_mlflow
def test_mlflow_run_per_trial_and_tensorboard_over_optimizer_steps(ray_local, data_dir, tmp_path):
    out, uri = tmp_path / "sweep", (tmp_path / "mlruns").as_uri()
    records = tiny_sweep(data_dir, out, "--log", f"mlflow:{uri}")
    assert json.loads((out / "sweep.json").read_text())["log"] == [f"mlflow:{uri}"]
    runs = mlflow_runs(uri, out.name)
    assert sorted(runs) == ["mlp_1_r0", "mlp_1_r1"]
    for (group, repeat), record in records.items():
        name = f"{group}_r{repeat}"
        params, history, status = runs[name]
        assert status == "FINISHED"
        assert params["trial/group"] == group and params["trial/repeat"] == str(repeat)
        assert params["trial/optimizer"] == "adam" and params["trial/batch_size"] == "50"
        steps = list(record.curves[M.STEP])
        assert len(steps) > 1 and steps != list(range(1, len(steps) + 1))  # steps, not report counts
        # every record, at its optimizer step, with the value the RunRecord keeps
        assert not [k for k in history if k.startswith("config")]  # params, not metrics
        same_series(history[M.VAL_ACC], steps, record.curves[M.VAL_ACC])
        same_series(history[M.LOSS], steps, record.curves[M.LOSS])
        tb = tb_scalars(out / "train" / name)
        assert len(list((out / "train" / name).glob("events.out.tfevents.*"))) == 1  # Tune's own not added
        same_series(tb[M.VAL_ACC], steps, record.curves[M.VAL_ACC])
        same_series(tb[M.STEP], steps, steps)  # x axis: the optimizer step


@needs_mlflow
def test_packed_trial_logs_one_series_per_repeat(ray_local, data_dir, tmp_path):
    out, uri = tmp_path / "packed", (tmp_path / "mlruns").as_uri()
    records = tiny_sweep(data_dir, out, "--repeats-per-trial", "2", "--log", f"mlflow:{uri}")
    runs = mlflow_runs(uri, out.name)
    assert sorted(runs) == ["mlp_1_r0"]  # one trial: both repeats
    params, history, _ = runs["mlp_1_r0"]
    assert params["trial/repeat"] == "0,1"
    tb = tb_scalars(out / "train" / "mlp_1_r0")
    for repeat in (0, 1):
        record = records[("mlp_1", repeat)]
        # the series is the repeat's own curve, as its RunRecord (from the checkpoint) has it
        same_series(tb[repeat_key(repeat, M.VAL_ACC)], record.curves[M.STEP], record.curves[M.VAL_ACC])
        same_series(history[repeat_key(repeat, M.VAL_ACC)], record.curves[M.STEP], record.curves[M.VAL_ACC])
    assert list(records[("mlp_1", 0)].curves[M.VAL_ACC]) != list(records[("mlp_1", 1)].curves[M.VAL_ACC])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                    reason="wandb not installed: pip install 'cifar-sweeps[wandb]'")
def test_wandb_offline_writes_a_run_per_trial(ray_local, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "sweep"
    tiny_sweep(data_dir, out, "--log", "wandb:cifar-test")
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, list((out / "wandb").iterdir())
    assert all(list(r.glob("*.wandb")) for r in runs)


@needs_mlflow
@pytest.mark.slow
def test_resumed_sweep_logs_into_the_same_runs(data_dir, tmp_path):
    """Ctrl-C while a trial is stalled at step 15 (its checkpoint: step 10), then --resume:
    the trial continues in its MLflow run, and every record is in it at its step."""
    out, uri = tmp_path / "sweep", (tmp_path / "mlruns").as_uri()
    overrides = [f"{k}={v}" for k, v in {**OVERRIDES, "archs": "mlp_1"}.items()]
    args = ["sweep", "part3", "--quick", "--quiet", *overrides, "--out", str(out), "--data-dir", str(data_dir),
            "--log", f"mlflow:{uri}"]
    def env(ray_tmp, **extra):  # the sweep itself lets MLflow open its file store, resumed or not
        return {k: v for k, v in base_env(ray_tmp, **extra).items() if k != "MLFLOW_ALLOW_FILE_STORE"}

    with private_ray_tmp("tk") as ray_tmp:
        log = tmp_path / "sweep.log"
        proc = start_sweep(args, env(ray_tmp, **{FAULT_ENV: "stall:mlp_1_r1@15"}), log)
        try:
            wait_until(lambda: trial_states(out / "train").get("mlp_1_r1", {}).get(STALLED), 240,
                       "mlp_1_r1 stalled", proc, log)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(120) == 130, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert mlflow_runs(uri, out.name)["mlp_1_r1"][2] != "FINISHED"
        resume = ["sweep", "part3", "--resume", "--out", str(out), "--data-dir", str(data_dir), "--quiet"]
        assert run_sweep(resume, env(ray_tmp), tmp_path / "resume.log") == 0, \
            (tmp_path / "resume.log").read_text()[-3000:]
    runs = mlflow_runs(uri, out.name)
    assert sorted(runs) == ["mlp_1_r0", "mlp_1_r1"] and {r[2] for r in runs.values()} == {"FINISHED"}
    from results.records import load_run
    curves = load_run(out).curves.query(f"metric == '{M.VAL_ACC}' and run == 'mlp_1_r1'")
    # steps 15 was logged before Ctrl-C and again after the resume from step 10
    assert sorted({s for s, _ in runs["mlp_1_r1"][1][M.VAL_ACC]}) == sorted(curves["step"]) == [5, 10, 15, 20]
    assert sorted({s for s, _ in tb_scalars(out / "train" / "mlp_1_r1")[M.VAL_ACC]}) == [5, 10, 15, 20]
