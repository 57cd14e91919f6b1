"""Placement: fractional GPUs (logical ones, on this CPU machine), each trial
seeing only its own device, the no-CUDA fallback, and each trial holding only
its own data."""
import numpy as np
import pytest

from cluster_utils import base_env, private_ray_tmp, run_sweep, trials_table
from conftest import TINY
from orchestrator.driver import DataSets
from orchestrator.trainable import FAULT_ENV, check_fits, device_data, nbytes
from search_spaces.study import Trial
from workloads.config import DataConfig, TrialConfig
from workloads.data import prepare

NO_CUDA = "but this node has no GPU device (a logical GPU): training on the CPU"


def max_overlap(starts, ends) -> int:
    events = sorted([(s, 1) for s in starts] + [(e, -1) for e in ends])  # an end before a start at a tie
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_check_fits():
    check_fits(100 * 2**20, 4 * 2**30)  # 100 MB in a quarter of a 16 GB GPU
    with pytest.raises(RuntimeError, match="data and CUDA context need 300 MB on the GPU but its share .* is 400 MB"):
        check_fits(300 * 2**20, 400 * 2**20)


def test_a_trial_fetches_only_its_own_data(ray_local, raw):
    """The driver stores each data set once; a trial gets its own (already cut
    to its subsets) as views of the object store, not copies, once per process."""
    import ray
    import torch

    from orchestrator import trainable
    small = TrialConfig().override(TINY)
    large = small.override({"train_subset": 1000})
    trials = [Trial("s", "a", 0, small), Trial("s", "b", 0, large),
              Trial("s", "b", 1, large.override({"seed": 1}))]
    datasets = DataSets(raw)
    refs = datasets.stage_data([t.config for t in trials])
    assert set(refs) == {small.data, large.data}
    try:
        d = device_data(refs, large.data, torch.device("cpu"))
        stored = ray.get(refs[large.data])
        assert d.train_x.shape == (1000, 1, 32, 32) and len(d.test_x) == TINY["test_subset"]
        assert d.train_x.data_ptr() == stored.train_x.ctypes.data  # the object store's memory itself
        assert device_data(refs, large.data, torch.device("cpu")) is d  # the next trial reuses it
        assert nbytes(stored) == nbytes(prepare(large.data, raw))
        assert list(trainable._device_data) == [(large.data, "cpu")]
        # Later stages and augmentation variants get the same stored copy.
        flipped = large.override({"augment": "flip"})
        again = datasets.stage_data([large, flipped])
        assert again == {large.data: refs[large.data], flipped.data: refs[large.data]}
        assert device_data(again, flipped.data, torch.device("cpu")) is d
        assert len(datasets.refs) == 2 and not datasets.futures
    finally:
        trainable._device_data.clear()


def test_data_sets_are_prepared_ahead_only_for_stages_known_in_advance(raw):
    """The driver prepares, while Ray starts, the data of every stage that needs no
    earlier result; a derived stage's data is prepared when the stage comes."""
    from search_spaces.study import Stage, Study
    study = Study("demo", "", base=tuple(TINY.items()), stages=(
        Stage("a", axes=(("train_subset", (300, 400)),)), Stage("b", fixed=(("train_subset", 400),)),
        Stage("c", derive=lambda earlier: {"train_subset": 500})))
    datasets = DataSets(raw, study)
    try:
        assert [cfg.train_subset for cfg in datasets.futures] == [300, 400]  # b shares a's 400
        assert all(f.result().train_x.shape == (cfg.train_subset, 1, 32, 32)
                   for cfg, f in datasets.futures.items())
        c = study.stage_trials(study.stages[2], {"a": [], "b": []})
        assert datasets.prepared(c[0].config.data).result().train_x.shape == (500, 1, 32, 32)
        assert len(datasets.futures) == 3
    finally:
        datasets.close()


def test_stages_start_their_longest_trials_first():
    from orchestrator.cost import estimated_cost, longest_first
    from orchestrator.packed import PACK
    base = TrialConfig().override(TINY)
    params = [Trial("s", arch, r, base.override({"arch": arch, "seed": r})).to_param()
              for arch in ("mlp_1", "cnn_3", "mlp_2", "cnn_4") for r in (0, 1)]
    order = [(p["group"], p["repeat"]) for p in longest_first(params)]
    assert order == [("cnn_4", 0), ("cnn_4", 1), ("cnn_3", 0), ("cnn_3", 1),
                     ("mlp_2", 0), ("mlp_2", 1), ("mlp_1", 0), ("mlp_1", 1)]  # ties keep their order
    longer = base.override({"arch": "mlp_1", "epochs": 3})
    assert estimated_cost(longer) > 2.5 * estimated_cost(base.override({"arch": "mlp_1"}))
    pack = {**params[0], PACK: params[:2]}  # two mlp_1 repeats in one trial cost both
    assert longest_first([params[1], pack])[0] is pack


@pytest.mark.slow
def test_quarter_gpus_run_four_trials_per_gpu(data_dir, raw, tmp_path):
    """--gpus-per-trial 0.25 on one logical GPU: never more than four trials at
    once, and four do run together (each pauses 6 s at step 5 so that the four
    processes, which start a second or two apart, overlap). CPUs are not the limit."""
    out, log = tmp_path / "sweep", tmp_path / "sweep.log"
    overrides = {**TINY, "archs": "mlp_1", "repeats": 5}
    # -v: the trials' own log lines reach the driver's output only then
    args = ["sweep", "part3", "--quick", "-v", "--out", str(out), "--data-dir", str(data_dir),
            "--num-cpus", "2", "--num-gpus", "1", "--gpus-per-trial", "0.25", "--cpus-per-trial", "0.25",
            *[f"{k}={v}" for k, v in overrides.items()]]
    with private_ray_tmp("rp") as ray_tmp:
        assert run_sweep(args, base_env(ray_tmp, **{FAULT_ENV: "pause@5:6"}), log) == 0, log.read_text()[-3000:]
    t = trials_table(out)
    assert len(t) == 5 and (t["status"] == "done").all()
    # Each trial was given GPU 0 and its process sees only that device.
    assert (t["gpu_ids"] == "0").all() and (t["cuda_visible_devices"] == "0").all()
    assert max_overlap(t["started_at"], t["finished_at"]) == 4
    # A logical GPU, no device: each trial process says so once, then trains on the CPU.
    assert (t["device"] == "cpu").all()
    assert log.read_text().count(NO_CUDA) == t["pid"].nunique() >= 4
    assert log.read_text().count("5 trials were given a GPU but their node has no GPU device") == 1
    # What each holds: its own data set, at its subset sizes.
    data = prepare(DataConfig(**{k: v for k, v in TINY.items() if k in DataConfig.__dataclass_fields__}),
                   raw)
    # The arrays, and at most the training sample's copy (made when train_acc is first scored).
    held = nbytes(data) + data.train_x[data.train_eval_idx].nbytes + data.train_y[data.train_eval_idx].nbytes
    np.testing.assert_allclose(t["data_mb"], held / 2**20)
    # IEEE float32 (TF32 off), as each trial's torch reported it.
    assert (t["numerics"] == "cuda_matmul_tf32=False,cudnn_conv_tf32=False,cudnn_deterministic=False,"
                             "cudnn_benchmark=False,deterministic_algorithms=False").all()

