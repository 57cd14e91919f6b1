"""What a run needs of its device beyond placing tensors there: how float32 is computed
(IEEE or TF32, deterministic kernels or not), random state that includes the GPU's, and
whether a GPU a trial was given can run this torch's kernels at all. Never imports ray.

    set_numerics("float32", deterministic=False)   # IEEE float32 on every device
    numerics()             # {"cuda_matmul_tf32": False, "cudnn_conv_tf32": False, ...}, as torch says now
    cuda_rng_state(device) # the GPU generator's state (None on a CPU), for checkpoints
    cuda_problem()         # None when CUDA can run this torch's kernels on GPU 0, else why not

Precision (TrainConfig.precision): "float32" is IEEE float32 everywhere. torch's own
default is not: cuDNN convolutions run in TF32 on Ampere and newer GPUs while matmuls do
not, so a GPU's numbers would differ from a CPU's by more than rounding (TF32 keeps 10
mantissa bits). "tf32" lets both use TF32 on GPUs that have it (a CPU ignores it);
"bfloat16" autocasts forward passes (workloads.members.Accel).

Flags are set through the legacy `allow_tf32` switches, not torch's newer `fp32_precision`
API: in torch 2.14.1, setting cuDNN's new flag to "ieee" makes `torch.backends.cudnn.allow_tf32`
raise ("mix of the legacy and new APIs"), and inductor (torch.compile) still reads it.

What "resume continues exactly" means per device (workloads/train.py):
  * CPU: bitwise, always.
  * CUDA with deterministic=true: bitwise (same GPU model, driver and torch), as cuDNN
    then picks the same deterministic algorithm each time and the GPU generator is restored.
  * CUDA with deterministic=false (the default): the same data order, augmentation and
    dropout draws, but cuDNN may pick other algorithms or sum in another order after a
    restart, so the numbers agree to float rounding, not bit for bit.
"""
from __future__ import annotations

import glob
import os

import torch

# The oldest GPUs torch 2.14.1's CUDA 13 build has kernels for (its get_arch_list() starts at
# sm_75, Turing), and the oldest NVIDIA driver branch CUDA 13 runs on (R580; CUDA 13.0's
# release notes name 580.65.06 on Linux). docs/cluster.md names the instance types.
MIN_CAPABILITY = (7, 5)
MIN_DRIVER = 580


def set_numerics(precision: str, deterministic: bool) -> dict:
    """Set this process's float32 and determinism switches for one run; what torch then says."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.deterministic = deterministic
    # benchmark mode times algorithms and keeps the fastest, which may differ from run to run.
    torch.backends.cudnn.benchmark = False
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; read when its handle is created,
        # which happens at the first matmul on the GPU, after this.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op with no deterministic CUDA kernel warns in the trial's log instead of
    # killing a sweep hours in; the run is then deterministic except for that op.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return numerics()


def numerics() -> dict:
    """The switches as torch reports them now (provenance, trials.csv)."""
    return {"cuda_matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_conv_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def cuda_rng_state(device: torch.device) -> torch.Tensor | None:
    """The GPU generator's state (a CPU tensor: checkpoints hold no CUDA tensors); None on a CPU.
    Dropout on a GPU draws from it, so a resumed run needs it to draw the same masks."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_cuda_rng_state(state: torch.Tensor | None, device: torch.device) -> None:
    """Restore what cuda_rng_state saved; a CPU, or a checkpoint from a CPU, has nothing to restore."""
    if state is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state, device)


def has_kernels(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a GPU of `capability` runs code built for `arch_list` (torch.cuda.get_arch_list()):
    a cubin sm_XY runs on the same major version at minor >= Y; PTX compute_XY on any newer GPU."""
    major, minor = capability
    for arch in arch_list:
        kind, _, number = arch.partition("_")
        if not number.isdigit():
            continue
        a_major, a_minor = int(number[:-1]), int(number[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def cuda_problem() -> str | None:
    """None when CUDA can run this torch's kernels on GPU 0; else why not, in one line."""
    build = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
    try:
        if not torch.cuda.is_available():
            torch.cuda.init()  # raises with CUDA's own reason: no driver, a driver too old, ...
            return f"{build}: torch.cuda.is_available() is False"
    except Exception as e:  # RuntimeError, AssertionError (a CPU build): the reason is the message
        text = str(e).strip().splitlines()
        return f"{build}: {text[0] if text else type(e).__name__}"
    capability = torch.cuda.get_device_capability(0)
    if not has_kernels(capability, torch.cuda.get_arch_list()):
        return (f"{torch.cuda.get_device_name(0)} has compute capability {capability[0]}.{capability[1]}; "
                f"{build} has kernels for {', '.join(torch.cuda.get_arch_list())} only")
    return None


def gpu_devices(dev: str = "/dev") -> list[str]:
    """The GPU device files of this machine: NVIDIA's (/dev/nvidia0, ...) and AMD's (/dev/kfd).
    A logical GPU (`ray start --num-gpus`, the tests) has none."""
    return sorted(glob.glob(f"{dev}/nvidia[0-9]*") + glob.glob(f"{dev}/kfd"))


def unusable_gpu(ids) -> str:
    """The one-line refusal for a trial given GPUs `ids` on a machine whose GPU CUDA cannot use."""
    return (f"trial was given GPU {ids} and this node has {', '.join(gpu_devices())}, but CUDA cannot "
            f"use it ({cuda_problem()}): this torch needs an NVIDIA GPU of compute capability "
            f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer and driver {MIN_DRIVER} or newer "
            f"(docs/cluster.md)")
