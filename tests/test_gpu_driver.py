"""The driver's side of a GPU sweep, on a CPU-only machine: it collects checkpoints whose
tensors claim a CUDA device (as a GPU trial's would) and writes best/*.pt on the CPU; it
counts fractional GPUs as Ray does; a trial refuses a GPU that CUDA cannot use and falls
back to the CPU only where no GPU device exists."""
import io
import os
import zipfile

import pytest
import torch
from ray import tune

from conftest import TINY
from orchestrator import trainable
from orchestrator.collect import collect
from orchestrator.experiment import fitting
from orchestrator.trainable import META_FILE, STATE_FILE, load_meta, load_state
from results.io import save_weights
from workloads import device as D
from workloads import metrics as M
from workloads.config import TrialConfig
from workloads.train import train

CPU = torch.device("cpu")


def claim_cuda(path) -> None:
    """Rewrite a torch.save file so that every storage says it lives on 'cuda:0': the pickle
    (protocol 2) names each storage's location as the string 'cpu' or 'cuda:0'."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            z.writestr(info, data)


class Result:
    """What collect() reads of a Tune result."""

    def __init__(self, param: dict, folder):
        self.config, self.error = {"trial": param}, None
        self.checkpoint = tune.Checkpoint.from_directory(str(folder))
        self.metrics = {M.DONE: 1, "time_total_s": 2.0}


@pytest.fixture
def gpu_checkpoint(tiny_data, tmp_path):
    """A finished run's last checkpoint, as a GPU trial writes it, and the run."""
    cfg = TrialConfig().override({**TINY, "arch": "cnn_3"})
    states = []
    out = train(cfg, tiny_data, CPU, report=lambda m, s: states.append(s))
    meta, heavy = states[-1].halves()
    torch.save(meta, tmp_path / META_FILE)
    torch.save(heavy, tmp_path / STATE_FILE)
    for name in (META_FILE, STATE_FILE):
        claim_cuda(tmp_path / name)
    param = {"stage": "s", "group": "cnn_3", "repeat": 0, **cfg.to_flat()}
    return param, tmp_path, out


def test_the_driver_collects_cuda_checkpoints_without_a_gpu(gpu_checkpoint, tmp_path_factory):
    param, folder, out = gpu_checkpoint
    assert not torch.cuda.is_available()
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA device"):
        torch.load(folder / STATE_FILE, weights_only=False)  # the stand-in is what the head would see
    records, failed = collect([Result(param, folder)])
    record = records["cnn_3_r0"]
    assert failed == [] and record.test_acc == out.test_acc and record.status == M.FINISHED
    assert list(record.curves[M.STEP]) == [r[M.STEP] for r in out.records]
    weights = record.state_dict()
    assert all(v.device == CPU for v in weights.values())
    assert all(torch.equal(weights[k], out.state_dict[k]) for k in out.state_dict)
    best = tmp_path_factory.mktemp("best") / "cnn_3.pt"
    save_weights(best, weights, record.config)
    with zipfile.ZipFile(best) as z:  # what the driver writes names no CUDA device
        assert not any(b"cuda" in z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
    assert torch.load(best, weights_only=True).keys() == out.state_dict.keys()


def test_a_cuda_checkpoint_resumes_on_the_device_it_is_given(gpu_checkpoint, tiny_data):
    param, folder, out = gpu_checkpoint
    state = load_state(tune.Checkpoint.from_directory(str(folder)))
    assert state.perm is None or state.perm.device == CPU
    assert all(v.device == CPU for v in state.model.values())


def test_metadata_is_read_without_downloading_the_checkpoint(gpu_checkpoint, monkeypatch):
    """On S3, as_directory() downloads every file of the checkpoint (the weights too)."""
    param, folder, out = gpu_checkpoint

    def download(self):
        raise AssertionError("as_directory() downloads the whole checkpoint")
    monkeypatch.setattr(tune.Checkpoint, "as_directory", download)
    meta = load_meta(tune.Checkpoint.from_directory(str(folder)))
    assert meta.records == out.records and meta.model is None


@pytest.mark.parametrize("share, trials", [(0.1, 10), (0.2, 5), (0.25, 4), (1 / 3, 3), (0.5, 2), (1.0, 1)])
def test_fractional_gpus_fit_as_ray_counts_them(share, trials):
    assert 1.0 // 0.2 == 4.0 and 1.0 // 0.1 == 9.0  # what float floor division said
    assert fitting({"CPU": 16.0, "GPU": 1.0}, 1.0, share) == trials
    assert fitting({"CPU": 64.0, "GPU": 4.0}, 1.0, share) == 4 * trials


def test_the_scarcer_resource_sets_how_many_run_at_once():
    assert fitting({"CPU": 4.0, "GPU": 1.0}, 1.0, 0.2) == 4      # a g5.xlarge: 4 vCPUs for 5 shares
    assert fitting({"CPU": 2.0}, 0.25, 0.0) == 8
    assert fitting({"CPU": 2.0}, 0.3, 0.0) == 6
    assert fitting({"CPU": 1.0, "GPU": 0.0}, 2.0, 0.0) == 1      # never 0: Tune then waits for an autoscaler


def test_the_memory_check_counts_the_sample_and_the_cuda_context(tiny_data):
    from orchestrator.trainable import CUDA_CONTEXT_BYTES, check_fits, gpu_bytes, nbytes
    idx = tiny_data.train_eval_idx
    need = nbytes(tiny_data) + tiny_data.train_x[idx].nbytes + tiny_data.train_y[idx].nbytes + CUDA_CONTEXT_BYTES
    assert gpu_bytes(tiny_data) == need
    check_fits(gpu_bytes(tiny_data), 2 * need)
    with pytest.raises(RuntimeError, match="give trials a larger fraction"):
        check_fits(gpu_bytes(tiny_data), 2 * need - 2)


def test_provenance_counts_the_switches_trials_reported():
    from orchestrator.provenance import numerics
    rows = [{"numerics": "cudnn_conv_tf32=False"}, {"numerics": "cudnn_conv_tf32=False"},
            {"numerics": "cudnn_conv_tf32=True"}, {"numerics": float("nan")}, {}]  # NaN: a row read from CSV
    assert numerics(rows) == {"cudnn_conv_tf32=False": 2, "cudnn_conv_tf32=True": 1}


@pytest.fixture
def given_gpu(monkeypatch):
    """A trial Ray gave GPU 0; `devices` says which GPU device files its node has."""
    monkeypatch.setattr(trainable.ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(trainable, "_said_no_gpu", False)

    def devices(found: list[str]):
        monkeypatch.setattr(trainable, "gpu_devices", lambda: found)
        monkeypatch.setattr(D, "gpu_devices", lambda: found)
    return devices


def test_a_gpu_cuda_cannot_use_stops_the_trial_in_one_line(given_gpu):
    given_gpu(["/dev/nvidia0"])  # a device, and a torch whose CUDA cannot start here
    with pytest.raises(RuntimeError) as e:
        trainable.pick_device()
    text = str(e.value)
    assert "\n" not in text and text.startswith("trial was given GPU [0] and this node has /dev/nvidia0, "
                                                "but CUDA cannot use it (torch 2.14.1")
    assert "compute capability 7.5 or newer and driver 580 or newer" in text


def test_a_gpu_too_old_for_this_build_stops_the_trial(given_gpu, monkeypatch):
    given_gpu(["/dev/nvidia0"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    with pytest.raises(RuntimeError, match=r"Tesla V100-SXM2-16GB has compute capability 7.0; torch 2.14.1\S* "
                                           r"\(CUDA 13.0\) has kernels for sm_75, "):
        trainable.pick_device()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))  # an A10G
    assert trainable.pick_device() == torch.device("cuda", 0)


def test_a_logical_gpu_without_a_device_trains_on_the_cpu_and_says_so_once(given_gpu, capsys):
    given_gpu([])
    assert trainable.pick_device() == CPU and trainable.pick_device() == CPU
    err = capsys.readouterr().err
    assert err == "trial was given GPU [0] but this node has no GPU device (a logical GPU): training on the CPU\n"


@pytest.mark.cuda
def test_a_gpu_trial_saves_what_the_driver_reads_on_the_cpu(tiny_data, tmp_path):
    cfg = TrialConfig().override({**TINY, "arch": "cnn_3"})
    states = []
    train(cfg, tiny_data, torch.device("cuda"), report=lambda m, s: states.append(s))
    meta, heavy = states[-1].halves()
    buffer = io.BytesIO()
    torch.save(meta, buffer)
    assert b"cuda" not in buffer.getvalue()  # records, perm, random states: all on the CPU
    torch.save(heavy, tmp_path / STATE_FILE)
    torch.save(meta, tmp_path / META_FILE)
    weights = trainable.load_weights(tune.Checkpoint.from_directory(str(tmp_path)))
    assert all(v.device == CPU for v in weights.values())


def test_provenance_names_the_gpus_without_a_cuda_context_in_the_driver(tmp_path, monkeypatch):
    """The driver asks nvidia-smi, not torch.cuda (which would hold GPU memory the trials share)."""
    import subprocess
    import sys

    from orchestrator import provenance
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\necho 'NVIDIA H100 80GB HBM3'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert provenance.gpu_names() == ["NVIDIA H100 80GB HBM3"] * 2
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert provenance.gpu_names() == []
    code = ("import sys, torch; from orchestrator.provenance import hardware; hardware(); "
            "sys.exit(torch.cuda.is_initialized())")
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 0
