"""The Ray Tune trainable: a few lines that turn Tune's config into a typed
TrialConfig and hand reporting and checkpointing callbacks to the one loop.

Data: the driver puts each DataConfig's prepared arrays into Ray's object store
once and passes {DataConfig: ObjectRef}; a trial fetches only its own, already
cut to its subsets. On the CPU the tensors are views of the node's shared
object store (no copy per trial). On a GPU they are copied once per trial
process, as the same float32 arrays the CPU trains on (the full grayscale set,
with validation and test images, is about 270 MB: four trials on one GPU hold
about 1 GB); a reused actor keeps that copy for its next trial of the same data. Keeping uint8 and normalising per
batch would save 3/4 of it but changes the preprocessing's arithmetic, and the
data is already small next to a GPU; `check_fits` refuses a share too small.

A trial given a GPU trains on it, or stops with one line when the node has a GPU that
CUDA cannot use (a driver too old for this torch's CUDA 13, a GPU it has no kernels for);
only a logical GPU with no device behind it (`--num-gpus` on a CPU machine, the tests)
falls back to the CPU.

Checkpoints are read on the CPU (`map_location`): the driver runs on the cluster's
CPU-only head, and a CUDA tensor in a file it reads would fail to load there.

Every report also carries where the trial runs (PLACEMENT): the driver
writes the final one to trials.csv.
"""
from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import time

import ray
import torch
from ray import tune

from workloads import metrics as M
from workloads.config import FIELDS, DataConfig, TrialConfig
from workloads.device import cuda_problem, gpu_devices, set_numerics, unusable_gpu
from workloads.evaluation import DeviceData
from workloads.state import Checkpoint
from workloads.train import train

# A checkpoint is two files (workloads.state.Checkpoint.halves): what the driver reads of a
# finished run (records, final metrics, first-layer weights: kilobytes) apart from the weights
# and optimizer state (ResNet-18: ~90 MB with SGD momentum), which only a resumed trial and the
# report's best-run copy ever load. A pack's files hold a list of each under one key.
META_FILE = "meta.pt"
STATE_FILE = "state.pt"

# Where and how a trial runs: in every report, one trials.csv column each.
NODE_ID = "node_id"
GPU_IDS = "gpu_ids"              # what Ray assigned, e.g. "0"
VISIBLE = "cuda_visible_devices" # what the process sees: only its own GPU(s)
DEVICE = "device"                # what it trained on
STARTED = "started_at"           # wall clock (s) when this attempt started
FINISHED = "finished_at"         # in the final report only
RESUMED_FROM = "resumed_from_step"  # 0 = fresh start, else the checkpoint's step
DATA_MB = "data_mb"              # this trial's data as held on its device
NUMERICS = "numerics"            # float32 and determinism switches as torch reported them in the trial
PLACEMENT = (NODE_ID, GPU_IDS, VISIBLE, DEVICE, STARTED, FINISHED, RESUMED_FROM, DATA_MB, NUMERICS)
# What a CUDA context takes of the GPU in each trial process, outside torch's allocator:
# a few hundred MB (CUDA's lazy module loading); an estimate, not measured here (no GPU).
CUDA_CONTEXT_BYTES = 512 * 2**20

# TEST ONLY fault injection, read in the trial's process, right after it reports STEP:
# "kill[:TRIAL]@STEP" SIGKILLs the process, "stall[:TRIAL]@STEP" sleeps forever,
# "pause[:TRIAL]@STEP:SECONDS" sleeps a while. Fresh attempts only, never after a restore.
FAULT_ENV = "ORCHESTRATOR_TEST_FAULT"
STALLED = "test_stalled"         # in the report before a stall, for tests to wait on

_device_data: dict = {}          # {(DataConfig, device): DeviceData}, one entry per process
_said_no_gpu = False             # this process has said its GPU is a logical one


def trial_name(param: dict) -> str:
    return f"{param['group']}_r{param['repeat']}"


def trial_config(param: dict) -> TrialConfig:
    return TrialConfig.from_flat({k: v for k, v in param.items() if k in FIELDS})


def pick_device() -> torch.device:
    """The GPU Ray gave this trial (Ray sets CUDA_VISIBLE_DEVICES to it), else the CPU.
    A GPU that exists but that CUDA cannot use stops the trial: training on the CPU
    instead would take days and look like a slow GPU."""
    global _said_no_gpu
    ids = ray.get_gpu_ids()
    if not ids:
        return torch.device("cpu")
    if cuda_problem() is None:
        return torch.device("cuda", 0)
    if gpu_devices():
        raise RuntimeError(unusable_gpu(ids))
    if not _said_no_gpu:  # once per process, not for every trial a reused actor runs
        _said_no_gpu = True
        print(f"trial was given GPU {ids} but this node has no GPU device (a logical GPU): "
              f"training on the CPU", file=sys.stderr, flush=True)
    return torch.device("cpu")


def check_fits(nbytes: int, share_bytes: float) -> None:
    """Data and CUDA context (`nbytes`, gpu_bytes()) plus model and activations must fit in
    the trial's share of its GPU."""
    if nbytes > share_bytes / 2:
        raise RuntimeError(f"this trial's data and CUDA context need {nbytes / 2**20:.0f} MB on the GPU but "
                           f"its share (--gpus-per-trial) is {share_bytes / 2**20:.0f} MB: give trials a larger "
                           f"fraction or use smaller subsets")


def device_data(data: dict, cfg: DataConfig, device: torch.device) -> DeviceData:
    """This trial's arrays on its device, fetched and moved once per process."""
    key = (cfg.arrays, str(device))  # augmentation variants share the arrays
    if key not in _device_data:
        _device_data.clear()  # a reused actor that switches data sets drops the old one
        prepared = ray.get(data[cfg])
        if device.type == "cuda":
            share = ray.get_runtime_context().get_assigned_resources().get("GPU", 1.0)
            check_fits(gpu_bytes(prepared), share * torch.cuda.get_device_properties(device).total_memory)
        _device_data[key] = DeviceData.from_prepared(prepared, device)
    return _device_data[key]


def nbytes(data) -> int:
    return sum(getattr(getattr(data, f), "nbytes", 0) for f in data.__dataclass_fields__)


def held_bytes(data) -> int:
    """What a trial's data takes on its device at most: the arrays, and the training sample's
    copy (train_acc's images), made when a record first scores it (workloads.evaluation.DeviceData)."""
    n = len(data.train_eval_idx)
    return nbytes(data) + n * (data.train_x[0].nbytes + data.train_y[0].nbytes)


def gpu_bytes(data) -> int:
    """What a trial takes of its GPU besides its model and activations: its data at most, and
    the process's CUDA context."""
    return held_bytes(data) + CUDA_CONTEXT_BYTES


def load_file(checkpoint: tune.Checkpoint, name: str):
    """One file of a checkpoint, its tensors on the CPU. Read through the checkpoint's file
    system: as_directory() would download the whole checkpoint from S3 to read the metadata."""
    with checkpoint.filesystem.open_input_file(f"{checkpoint.path}/{name}") as f:
        return torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)


def load_meta(checkpoint: tune.Checkpoint, key: str | None = None) -> Checkpoint | list[Checkpoint]:
    """What the driver needs of a run (a pack's runs under `key`): records, final record,
    first layer; no weights."""
    meta = load_file(checkpoint, META_FILE)
    return [Checkpoint.from_halves(m) for m in meta[key]] if key else Checkpoint.from_halves(meta)


def load_state(checkpoint: tune.Checkpoint, key: str | None = None) -> Checkpoint | list[Checkpoint]:
    """The whole state (a pack's under `key`), to resume from (train() moves it to its device)."""
    meta, heavy = load_file(checkpoint, META_FILE), load_file(checkpoint, STATE_FILE)
    if key:
        return [Checkpoint.from_halves(m, h) for m, h in zip(meta[key], heavy[key])]
    return Checkpoint.from_halves(meta, heavy)


def load_weights(checkpoint: tune.Checkpoint, index: int | None = None, key: str = "") -> dict:
    """A run's final model weights (a pack's member `index` under `key`), read only when asked."""
    heavy = load_file(checkpoint, STATE_FILE)
    return (heavy[key][index] if index is not None else heavy)["model"]


def send(metrics: dict, state: Checkpoint | list[Checkpoint] | None, key: str | None = None) -> None:
    """Report to Tune, with a checkpoint if there is one (a pack's list of them under `key`)."""
    if state is None:
        tune.report(metrics)
        return
    if key:
        halves = [s.halves() for s in state]
        meta, heavy = {key: [m for m, _ in halves]}, {key: [h for _, h in halves]}
    else:
        meta, heavy = state.halves()
    with tempfile.TemporaryDirectory() as folder:  # Tune copies it to storage before returning
        torch.save(meta, os.path.join(folder, META_FILE))
        torch.save(heavy, os.path.join(folder, STATE_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def placement(device: torch.device, data: DeviceData, resume: Checkpoint | None, cfg: TrialConfig) -> dict:
    switches = set_numerics(cfg.train.precision, cfg.train.deterministic)  # as train() sets them
    return {NODE_ID: ray.get_runtime_context().get_node_id(),
            GPU_IDS: ",".join(str(i) for i in ray.get_gpu_ids()),
            VISIBLE: os.environ.get("CUDA_VISIBLE_DEVICES", ""), DEVICE: str(device),
            STARTED: time.time(), RESUMED_FROM: resume.step if resume else 0,
            DATA_MB: held_bytes(data) / 2**20, NUMERICS: numerics_text(switches)}


def numerics_text(switches: dict) -> str:
    """'cuda_matmul_tf32=False,...': one trials.csv cell."""
    return ",".join(f"{k}={v}" for k, v in switches.items())


def planned_fault(name: str, spec: str | None) -> tuple[str, int, float] | None:
    """(action, step, seconds) when FAULT_ENV's spec targets this trial."""
    if not spec:
        return None
    head, _, at = spec.partition("@")
    action, _, target = head.partition(":")
    step, _, seconds = at.partition(":")
    if action not in ("kill", "stall", "pause") or (action == "pause") != bool(seconds):
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected kill[:TRIAL]@STEP, stall[:TRIAL]@STEP "
                         f"or pause[:TRIAL]@STEP:SECONDS")
    if target and target != name:
        return None
    return action, int(step), float(seconds or "inf")


def run_trial(config: dict, data: dict) -> None:
    """`data` maps each DataConfig of the stage to an ObjectRef of its PreparedData."""
    param = config["trial"]
    cfg = trial_config(param)
    # Ray sets OMP_NUM_THREADS from the trial's CPUs; torch's own pool must match.
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    checkpoint = tune.get_checkpoint()
    resume = load_state(checkpoint) if checkpoint else None
    device = pick_device()
    d = device_data(data, cfg.data, device)
    fault = planned_fault(trial_name(param), os.environ.get(FAULT_ENV)) if resume is None else None
    train(cfg, d, device, report=reporter(placement(device, d, resume, cfg), fault), resume=resume)


def reporter(where: dict, fault: tuple | None):
    """train()'s report callback: placement added to every report, then Tune;
    a test fault fires once, right after the report of its step."""
    pending = [fault]

    def report(metrics: dict, state: Checkpoint | None) -> None:
        metrics.update(where)
        if M.DONE in metrics:
            metrics[FINISHED] = time.time()
        due = pending[0] is not None and metrics[M.STEP] >= pending[0][1]
        if due and pending[0][0] == "stall":
            metrics[STALLED] = 1
        send(metrics, state)
        if due:
            action, _, seconds = pending.pop()
            pending.append(None)
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(min(seconds, 10**9))
    return report
