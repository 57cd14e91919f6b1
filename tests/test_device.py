"""The GPU path of the training loop, checked on a CPU where a stand-in can show it (numerics
switches, random state in checkpoints, divergence at its exact step, compiled models,
CUDA-graph buffers, the training sample made only when scored) and, beside each, the test
that proves it on a GPU (`cuda` marker: skipped without CUDA, run by the first GPU session)."""
import numpy as np
import pytest
import torch

from conftest import TINY, timeless
from workloads import metrics as M
from workloads import device as D
from workloads.augment import eval_transform, train_transform
from workloads.config import ConfigError, DataConfig, TrialConfig
from workloads.train import Accel, DeviceData, evaluate_split, train

CPU = torch.device("cpu")
CUDA_ONLY = pytest.mark.cuda  # skipped without CUDA (conftest.py); `pytest -m cuda` on a GPU
DROPOUT = "Conv-3x3x8-p1,ReLU,MaxPool-2x2,Dropout-0.5,FC-10"


def tiny(**extra) -> TrialConfig:
    return TrialConfig().override({**TINY, **extra})


@pytest.fixture(autouse=True)
def ieee_after():
    """Each test leaves the process's switches as a default run sets them."""
    yield
    D.set_numerics("float32", False)


# ------------------------------------------------------------------ 5: float32 is IEEE

def test_precision_is_a_checked_setting_and_float32_turns_tf32_off(tiny_data):
    assert TrialConfig().train.precision == "float32" and not TrialConfig().train.deterministic
    with pytest.raises(ConfigError, match=r"precision='fp16': choose float32, tf32, bfloat16"):
        TrialConfig().override({"precision": "fp16"})
    cfg = TrialConfig().override({"precision": "tf32", "deterministic": "true"})
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg
    assert D.set_numerics("tf32", True) == {"cuda_matmul_tf32": True, "cudnn_conv_tf32": True,
                                            "cudnn_deterministic": True, "cudnn_benchmark": False,
                                            "deterministic_algorithms": True}
    torch.backends.cudnn.allow_tf32 = True  # torch's own default: GPU convolutions in TF32
    train(tiny(arch="mlp_1"), tiny_data, CPU)
    assert D.numerics() == {"cuda_matmul_tf32": False, "cudnn_conv_tf32": False, "cudnn_deterministic": False,
                            "cudnn_benchmark": False, "deterministic_algorithms": False}


def test_tf32_changes_nothing_on_a_cpu(tiny_data):
    a, b = (train(tiny(arch="cnn_3", precision=p), tiny_data, CPU) for p in ("float32", "tf32"))
    assert timeless(a.records) == timeless(b.records) and a.test_acc == b.test_acc


@CUDA_ONLY
@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0),
                    reason="TF32 needs an Ampere or newer GPU")
def test_float32_convolutions_on_a_gpu_are_ieee_and_tf32_is_not():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 64, 32, 32, generator=g), torch.randn(64, 64, 3, 3, generator=g)
    exact = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
    errors = {}
    for precision in ("float32", "tf32"):
        D.set_numerics(precision, False)
        out = torch.nn.functional.conv2d(x.cuda(), w.cuda(), padding=1).double().cpu()
        errors[precision] = ((out - exact).abs().max() / exact.abs().max()).item()
    # IEEE: ~1e-7 of the largest output here; TF32 (10-bit mantissas): ~1e-4 and more.
    assert errors["float32"] < 2e-5 and errors["tf32"] > 10 * errors["float32"], errors


@CUDA_ONLY
def test_a_gpu_run_in_float32_matches_the_cpu_to_rounding(tiny_data):
    cfg = tiny(arch="cnn_3", deterministic=True)
    cpu, gpu = train(cfg, tiny_data, CPU), train(cfg, tiny_data, torch.device("cuda"))
    np.testing.assert_allclose([r[M.LOSS] for r in gpu.records], [r[M.LOSS] for r in cpu.records], rtol=1e-4)


# ---------------------------------------------------------- 3: the GPU's random state

def test_a_dropout_run_resumes_exactly_on_a_cpu(tiny_data):
    cfg = tiny(arch="drop", spec=DROPOUT, checkpoint_every=1)
    states = []
    full = train(cfg, tiny_data, CPU, report=lambda m, s: states.append(s))
    assert states[0].cuda_rng is None  # a CPU run has no GPU generator to save
    resumed = train(cfg, tiny_data, CPU, resume=states[0])
    assert timeless(resumed.records) == timeless(full.records) and resumed.test_acc == full.test_acc


def test_the_gpu_generator_is_saved_and_restored_through_its_own_calls(monkeypatch):
    """Stand-in: torch.cuda's generator calls, recorded; on a CPU none is made."""
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.tensor([7], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((state.tolist(), device)))
    gpu = torch.device("cuda", 0)
    assert D.cuda_rng_state(gpu).tolist() == [7] and D.cuda_rng_state(CPU) is None
    D.set_cuda_rng_state(torch.tensor([7], dtype=torch.uint8), gpu)
    D.set_cuda_rng_state(None, gpu)                                   # a checkpoint from a CPU
    D.set_cuda_rng_state(torch.tensor([7], dtype=torch.uint8), CPU)   # a GPU's checkpoint on a CPU
    assert calls == [([7], gpu)]


@CUDA_ONLY
def test_a_dropout_run_resumes_exactly_on_a_gpu(tiny_data):
    cfg = tiny(arch="drop", spec=DROPOUT, checkpoint_every=1, deterministic=True)
    gpu, states = torch.device("cuda"), []
    full = train(cfg, tiny_data, gpu, report=lambda m, s: states.append(s))
    assert states[0].cuda_rng.device.type == "cpu" and states[0].perm.device.type == "cpu"
    resumed = train(cfg, tiny_data, gpu, resume=states[0])
    assert timeless(resumed.records) == timeless(full.records) and resumed.test_acc == full.test_acc


# ------------------------------------------------------------ 6: divergence, exactly

@pytest.mark.parametrize("check_every", [0, 7, 50])
def test_divergence_is_reported_at_its_first_step_however_seldom_it_is_read(tiny_data, check_every):
    """check_every=50 is the GPU's interval; forced here on the CPU, with one record at the
    end (a record point reads the flag too), it reports the step a run recording every step
    shows: its last record is the step before."""
    lr10 = {"arch": "mlp_1", "optimizer": "sgd:momentum=0.9", "lr": 10.0, "epochs": 3}
    exact = train(tiny(**lr10, record_every=1), tiny_data, CPU)
    at = exact.final.diverged_at
    assert exact.status == M.DIVERGED and 2 <= at < 30
    assert [r[M.STEP] for r in exact.records] == list(range(1, at))
    assert all(np.isfinite(r[M.LOSS]) for r in exact.records)
    seldom = train(tiny(**lr10, record_every=30), tiny_data, CPU, accel=Accel(check_every=check_every))
    assert seldom.status == M.DIVERGED and seldom.final.diverged_at == at and seldom.records == []
    with pytest.raises(ConfigError, match="check_every must be >= 0"):
        Accel(check_every=-1)


@CUDA_ONLY
def test_a_gpu_reports_the_step_it_diverged_at_without_syncing_every_step(tiny_data):
    cfg = tiny(arch="mlp_1", optimizer="sgd:momentum=0.9", lr=10.0, epochs=3, record_every=30,
               deterministic=True)
    gpu = torch.device("cuda")
    every, seldom = (train(cfg, tiny_data, gpu, accel=Accel(check_every=c)) for c in (1, 0))
    assert seldom.final.diverged_at == every.final.diverged_at < 30


# ----------------------------------------------- 7: compile, CUDA graphs, the sample

def test_train_compiles_its_model_when_asked(tiny_data, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kw: seen.append(mode) or fn)
    eager = train(tiny(arch="mlp_1"), tiny_data, CPU)
    compiled = train(tiny(arch="mlp_1"), tiny_data, CPU, accel=Accel(compile="reduce-overhead"))
    assert seen == ["reduce-overhead"] and timeless(compiled.records) == timeless(eager.records)


def test_each_run_compiles_with_caches_of_its_own(tiny_data, monkeypatch):
    """Three architectures in one process, traced by dynamo (the eager backend: no C++
    compiler needed) through the one nn.Module forward they share: past the recompile limit
    the last would run eager unnoticed; each run empties the caches, and a run that still
    hits the limit fails (fail_on_recompile_limit_hit)."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **kw: real(fn, backend="eager", **kw))
    with torch._dynamo.config.patch(recompile_limit=4):
        for width in (0.5, 1.0, 2.0):
            cfg = tiny(arch="mlp_1", width=width)
            compiled = train(cfg, tiny_data, CPU, accel=Accel(compile="default"))
            eager = train(cfg, tiny_data, CPU)
            np.testing.assert_allclose([r[M.LOSS] for r in compiled.records], [r[M.LOSS] for r in eager.records],
                                       rtol=1e-5)
        assert torch._dynamo.config.fail_on_recompile_limit_hit


class Overwriting:
    """A model compiled with CUDA graphs, as the loop sees it (reuse=True): every call returns
    the same output buffer, overwritten by the next call."""
    k = 1

    def __init__(self, model, reuse: bool):
        self.model, self.reuse, self.out = model, reuse, None

    def logits(self, x):
        y = self.model(x).unsqueeze(0)
        if not self.reuse:
            return y
        self.out = torch.empty_like(y) if self.out is None else self.out
        return self.out.copy_(y)

    def train(self, mode):
        self.model.train(mode)


def test_views_are_averaged_from_copies_not_from_a_reused_buffer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 10))
    x, y = torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))
    views = eval_transform(DataConfig(eval_view="five:size=28"))

    def loss(logits, target, reduction):
        return torch.nn.functional.cross_entropy(logits, target, reduction=reduction)
    want, got = (evaluate_split(Overwriting(model, reuse), x, y, views, 20, loss, {"loss"})["loss"]
                 for reuse in (False, True))
    assert got == want


def test_stacked_repeats_are_copied_before_the_next_repeat_overwrites_them(tiny_data):
    from workloads.vectorized import Stacked
    cfgs = [tiny(arch="mlp_1", seed=s) for s in (0, 1, 2)]
    stacked = Stacked(cfgs, (1, 32, 32), CPU, vmap_eval=False)
    x = torch.from_numpy(tiny_data.val_x[:8])
    want = stacked.logits(x)
    buffer = torch.empty(8, 10)
    one = stacked.one
    stacked._eval_one = lambda params, buffers, images: buffer.copy_(one(params, buffers, images))
    assert torch.equal(stacked.logits(x), want) and not torch.equal(want[0], want[1])


@CUDA_ONLY
@pytest.mark.parametrize("repeats", [1, 3])
def test_cuda_graphs_give_the_eager_numbers(tiny_data, repeats):
    """compile="reduce-overhead" (CUDA graphs) with five test-time views and the loop over
    repeats: every output is read before the next call overwrites it."""
    from workloads.vectorized import train_repeats
    cfgs = [tiny(arch="mlp_1", eval_view="five:size=28", resize=28, seed=s) for s in range(repeats)]
    gpu = torch.device("cuda")

    def run(accel):
        return train_repeats(cfgs, tiny_data, gpu, accel=accel) if repeats > 1 else \
            [train(cfgs[0], tiny_data, gpu, accel=accel)]
    eager = run(Accel(vmap_eval=False))
    graphs = run(Accel(compile="reduce-overhead", vmap_eval=False))
    for e, g in zip(eager, graphs):
        np.testing.assert_allclose([r[M.VAL_ACC] for r in g.records], [r[M.VAL_ACC] for r in e.records], atol=0.02)
        np.testing.assert_allclose([r[M.LOSS] for r in g.records], [r[M.LOSS] for r in e.records], rtol=1e-3)


def test_the_training_sample_is_copied_only_when_a_record_scores_it(tiny_data):
    d = DeviceData.from_prepared(tiny_data, CPU)
    train(tiny(arch="mlp_1", metrics="val_acc"), d, CPU)
    assert d.sample is None
    train(tiny(arch="mlp_1", metrics="train_acc"), d, CPU)
    np.testing.assert_array_equal(d.sample[0].numpy(), tiny_data.train_x[tiny_data.train_eval_idx])
    np.testing.assert_array_equal(d.sample[1].numpy(), tiny_data.train_y[tiny_data.train_eval_idx])


@CUDA_ONLY
def test_augmentation_never_syncs_a_gpu(tiny_data):
    x = torch.from_numpy(tiny_data.train_x[:64]).cuda()
    augment = train_transform(DataConfig(grayscale=True, augment="flip,vflip,crop,resized_crop"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = augment(x, torch.Generator().manual_seed(0))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    want = augment(x.cpu(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.cpu(), want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------- 4: which GPUs this torch can run on

def test_kernels_exist_for_turing_and_newer_only():
    arch = torch.cuda.get_arch_list()
    assert torch.version.cuda.startswith("13.") and min(int(a.split("_")[1]) for a in arch) == 75
    for capability, ok in (((7, 5), True), ((8, 0), True), ((8, 6), True), ((8, 9), True), ((9, 0), True),
                           ((10, 0), True), ((12, 0), True), ((7, 0), False), ((6, 1), False), ((3, 7), False)):
        assert D.has_kernels(capability, arch) == ok, capability
    assert D.has_kernels((10, 0), ["compute_90"]) and not D.has_kernels((8, 9), ["compute_90"])
    assert D.MIN_CAPABILITY == (7, 5)


def test_gpu_devices_are_device_files(tmp_path):
    assert D.gpu_devices(str(tmp_path)) == []
    for name in ("nvidia0", "nvidiactl", "kfd"):
        (tmp_path / name).touch()
    assert D.gpu_devices(str(tmp_path)) == [str(tmp_path / "kfd"), str(tmp_path / "nvidia0")]


@CUDA_ONLY
def test_this_gpu_is_usable_and_its_context_fits_the_estimate():
    from orchestrator.trainable import CUDA_CONTEXT_BYTES
    assert D.cuda_problem() is None
    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info()
    assert total - free - torch.cuda.memory_reserved() < CUDA_CONTEXT_BYTES
