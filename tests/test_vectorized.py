"""Vectorized repeats against the plain loop: each repeat of a pack must give what
train() gives that seed alone (curves, test accuracy, weights), resume from its
checkpoints, and unpack into the same RunRecords through Ray Tune.

Tolerances: the vmapped convolutions sum in another order than a lone model's, and
Adam/RMSprop divide by sqrt of tiny second moments, so float noise grows over the
steps. The plain loop itself differs as much between 1 and 2 torch threads. The
first record must agree tightly; later records within a few images."""
from types import SimpleNamespace

import pytest
import torch

from orchestrator.packed import PACK, REPEATS, collect, pack_metrics, pack_params
from search_spaces import get_study
from search_spaces.study import Stage, Study
from tests.conftest import TINY
from workloads import metrics as M
from workloads import vectorized as V
from workloads.config import ConfigError, TrialConfig
from workloads.train import DeviceData, accuracy, memory_format, train

CPU = torch.device("cpu")
PART3 = ("mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5")
# 500 images, batches of 50: 10 steps an epoch; 2 epochs so that epoch-wise rates switch.
BASE = {**TINY, "epochs": 2, "record_every": 5}
SETTINGS = {
    "adam": {"optimizer": "adam", "record_grad_norm": True},  # part3's, plus part4's metric
    "sgd": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3,
            "lr_schedule": "1:0.01", "loss": "mse", "record_grad_norm": True},
    "adamw": {"optimizer": "adamw", "weight_decay": 0.05, "scheduler": "cosine", "augment": "flip,crop"},
}
SEEDS = (0, 3)


@pytest.fixture(scope="module")
def tiny(tiny_data):
    # One thread, as a trial runs: more only competes for a 2-core machine's cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield DeviceData.from_prepared(tiny_data, CPU)
    torch.set_num_threads(threads)


def configs(arch: str, settings: dict, seeds=SEEDS, **extra) -> list[TrialConfig]:
    cfg = TrialConfig().override({**BASE, "arch": arch, **settings, **extra})
    return [cfg.override({"seed": s}) for s in seeds]


def assert_same_run(alone, packed, arch: str):
    """Same record points and keys; values equal within float tolerance."""
    assert [list(r) for r in packed.records] == [list(r) for r in alone.records]
    assert [(r[M.STEP], r[M.EPOCH], r[M.LR]) for r in packed.records] == \
           [(r[M.STEP], r[M.EPOCH], r[M.LR]) for r in alone.records]
    exact = arch.startswith("mlp")  # dense layers: the same sums in the same order
    for i, (a, p) in enumerate(zip(alone.records, packed.records)):
        early = i == 0  # before float noise has had steps to grow
        assert p[M.LOSS] == pytest.approx(a[M.LOSS], abs=1e-5 if exact or early else 3e-3)
        for key in (M.TRAIN_ACC, M.VAL_ACC):  # of 200 images: 0.01 is 2, 0.03 is 6
            assert p[key] == pytest.approx(a[key], abs=1e-9 if exact else 0.01 if early else 0.03)
        if M.GRAD_NORM in a:
            assert p[M.GRAD_NORM] == pytest.approx(a[M.GRAD_NORM], rel=1e-3 if exact else 0.02 if early else 0.25)
    assert packed.test_acc == pytest.approx(alone.test_acc, abs=1e-9 if exact else 0.03)
    assert list(packed.state_dict) == list(alone.state_dict)
    for key, value in alone.state_dict.items():
        assert packed.state_dict[key].shape == value.shape
        assert torch.allclose(packed.state_dict[key], value, atol=1e-4 if exact else 3e-2), key
    assert packed.first_layer.shape == alone.first_layer.shape


@pytest.mark.parametrize("arch", PART3)
@pytest.mark.parametrize("setting", ["adam", "sgd"])
def test_each_repeat_matches_training_it_alone(tiny, arch, setting):
    cfgs = configs(arch, SETTINGS[setting])
    packed = V.train_repeats(cfgs, tiny, CPU)
    assert len(packed) == len(cfgs)
    for cfg, p in zip(cfgs, packed):
        assert_same_run(train(cfg, tiny, CPU), p, arch)
    # Repeats are not copies of one another: their own init and data order.
    assert packed[0].records[0][M.LOSS] != packed[1].records[0][M.LOSS]


@pytest.mark.parametrize("arch", ["mlp_2", "cnn_3"])
def test_augmentation_and_per_step_schedule_follow_each_seed(tiny, arch):
    cfgs = configs(arch, SETTINGS["adamw"])
    for cfg, p in zip(cfgs, V.train_repeats(cfgs, tiny, CPU)):
        assert_same_run(train(cfg, tiny, CPU), p, arch)


def test_resuming_a_pack_continues_exactly(tiny):
    cfgs = configs("cnn_3", SETTINGS["sgd"], checkpoint_every=2)  # a checkpoint at record 2 of 4
    saved = []
    whole = V.train_repeats(cfgs, tiny, CPU, report=lambda m, s: saved.append(s) if s and not saved else None)
    assert [s[M.STEP] for s in saved[0]] == [10, 10] and len(saved[0][0]["records"]) == 2
    resumed = V.train_repeats(cfgs, tiny, CPU, resume=saved[0])
    for w, r in zip(whole, resumed):
        assert r.records == w.records and r.test_acc == w.test_acc
        assert all(torch.equal(r.state_dict[k], w.state_dict[k]) for k in w.state_dict)


def test_a_repeats_checkpoint_resumes_train_alone(tiny):
    """Checkpoints are in train()'s own format: a packed repeat can finish alone."""
    cfgs = configs("cnn_4", SETTINGS["sgd"], checkpoint_every=2)
    saved = []
    packed = V.train_repeats(cfgs, tiny, CPU, report=lambda m, s: saved.append(s) if s and not saved else None)
    alone = train(cfgs[1], tiny, CPU, resume=saved[0][1])
    assert alone.records[:2] == packed[1].records[:2]  # carried over from the pack's checkpoint
    assert_same_run(alone, packed[1], "cnn_4")


def test_optimizer_state_slices_are_each_repeats_own(tiny):
    cfgs = configs("cnn_3", SETTINGS["adam"], epochs=1, record_every=10, checkpoint_every=1)
    states = []
    V.train_repeats(cfgs, tiny, CPU, report=lambda m, s: states.append(s) if s else None)
    opt = states[0][0]["optimizer"]
    assert set(opt["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert opt["state"][0]["exp_avg"].shape == states[0][0]["model"]["0.weight"].shape
    stacked = [torch.stack([s["model"][k] for s in states[0]]) for k in states[0][0]["model"]]
    merged = V.stack_optimizer_states([s["optimizer"] for s in states[0]], stacked)
    for k, state in enumerate(states[0]):
        again = V.slice_optimizer_state(merged, stacked, k)
        for i, entry in state["optimizer"]["state"].items():
            assert all(torch.equal(again["state"][i][key], v) for key, v in entry.items())


def test_vmapped_evaluation_the_gpu_default_scores_like_the_loop(tiny):
    cfgs = configs("cnn_4", {}, seeds=(0, 1, 2))
    model = V.StackedModel(cfgs, (1, 32, 32), CPU)
    looped = V.accuracies(model, tiny.val_x, tiny.val_y, 64, V.Accel(vmap_eval=False))
    vmapped = V.accuracies(model, tiny.val_x, tiny.val_y, 64, V.Accel(vmap_eval=True))
    for k, cfg in enumerate(cfgs):  # the loop is exactly a lone model's evaluation
        torch.manual_seed(cfg.train.seed)
        alone = cfg.model.build((1, 32, 32))
        alone = alone.to(memory_format=memory_format(alone, CPU))  # as train() lays it out
        assert looped[k].item() == accuracy(alone, tiny.val_x, tiny.val_y, 64)
    assert torch.allclose(vmapped, looped, atol=1 / 200 + 1e-9)  # at most one borderline image


def test_speed_options_are_checked_and_bfloat16_trains(tiny):
    with pytest.raises(ConfigError, match="precision"):
        V.Accel(precision="float16")
    with pytest.raises(ConfigError, match="compile"):
        V.Accel(compile="fast")
    cfgs = configs("mlp_1", {}, epochs=1)
    full, half = (V.train_repeats(cfgs, tiny, CPU, accel=V.Accel(precision=p)) for p in ("float32", "bfloat16"))
    for f, h in zip(full, half):
        assert [r[M.STEP] for r in h.records] == [5, 10]
        assert h.records[0][M.LOSS] == pytest.approx(f.records[0][M.LOSS], abs=0.05)
        assert h.records[0][M.LOSS] != f.records[0][M.LOSS]  # it did run in bfloat16


def test_what_cannot_be_vectorized_says_why(monkeypatch, tiny):
    assert all(V.can_vectorize(c) for arch in PART3 for c in configs(arch, {}, seeds=(0,)))
    bn = TrialConfig().override({"arch": "vgg_a_bn", "width": 0.125})
    assert "BatchNorm" in V.why_not_vectorized(bn)
    dropout = TrialConfig().override({"arch": "cnn_3", "spec": "Conv-3x3x4,ReLU,Dropout-0.5"})
    assert "Dropout" in V.why_not_vectorized(dropout)
    # A setting this module does not implement falls back instead of training wrongly.
    monkeypatch.setitem(V.IMPLEMENTED, "train", tuple(k for k in V.IMPLEMENTED["train"] if k != "nesterov"))
    nesterov = TrialConfig().override({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True})
    assert "nesterov" in V.why_not_vectorized(nesterov)
    assert V.can_vectorize(TrialConfig())  # at its default the field changes nothing
    with pytest.raises(ConfigError, match="BatchNorm"):
        V.check_pack([bn, bn.override({"seed": 1})])


def test_a_pack_differs_only_in_seed(tiny):
    a, b = configs("cnn_3", {}, seeds=(0, 1))
    with pytest.raises(ConfigError, match="lr"):
        V.check_pack([a, b.override({"lr": 0.01})])


def test_packs_are_consecutive_repeats_of_a_group():
    study = get_study("part3").with_overrides({**{k: str(v) for k, v in TINY.items()}, "repeats": "3",
                                               "arch": "mlp_1,cnn_3"})
    trials = study.stage_trials(study.stages[0], {})
    params = pack_params(trials, 2)
    assert [(p["group"], p["repeat"], [m["repeat"] for m in p.get(PACK, [p])]) for p in params] == [
        ("mlp_1", 0, [0, 1]), ("mlp_1", 2, [2]), ("cnn_3", 0, [0, 1]), ("cnn_3", 2, [2])]
    assert [m["seed"] for m in params[0][PACK]] == [0, 1] and PACK not in params[1]
    assert pack_params(trials, 1) == [t.to_param() for t in trials]


def test_groups_that_cannot_vectorize_stay_one_per_trial():
    study = Study("bn", "", (Stage("s", axes=(("arch", ("cnn_3", "vgg_a_bn")),),
                                   fixed=(("width", 0.125),)),), repeats=2)
    params = pack_params(study.stage_trials(study.stages[0], {}), 4)
    assert [(p["group"], len(p.get(PACK, [p]))) for p in params] == [("cnn_3", 2), ("vgg_a_bn", 1), ("vgg_a_bn", 1)]


def test_pack_metrics_and_failed_packs():
    m = [{M.STEP: 10, M.VAL_ACC: 0.2, M.TEST_ACC: 0.3}, {M.STEP: 10, M.VAL_ACC: 0.4, M.TEST_ACC: 0.5}]
    out = pack_metrics(m, [4, 5])
    assert out[M.VAL_ACC] == pytest.approx(0.3) and out[M.STEP] == 10 and out[M.DONE] == 1
    assert (out[f"{M.TEST_ACC}_r4"], out[f"{M.TEST_ACC}_r5"]) == (0.3, 0.5)
    param = {"stage": "train", "group": "cnn_3", "repeat": 0,
             PACK: [{"stage": "train", "group": "cnn_3", "repeat": r} for r in (0, 1)]}
    failed = SimpleNamespace(config={"trial": param}, error=RuntimeError("boom\nout of memory"),
                             checkpoint=None, metrics={})
    records, lines = collect([failed])
    assert records == [] and lines == ["cnn_3_r0 (repeats 0, 1): out of memory"]
    assert REPEATS == "repeats"


@pytest.mark.slow
def test_packed_sweep_gives_the_records_of_separate_trials(ray_local, data_dir, tiny, tmp_path):
    from orchestrator.driver import Options, run_study
    overrides = {**{k: str(v) for k, v in TINY.items()}, "arch": "mlp_1,cnn_3", "repeats": "2"}
    study = get_study("part3").with_overrides(overrides)
    packed = run_study(study, Options(out=tmp_path / "packed", data_dir=data_dir, repeats_per_trial=2,
                                      verbose=0))["results"]["train"]
    assert [(r.group, r.repeat) for r in packed] == [("mlp_1", 0), ("mlp_1", 1), ("cnn_3", 0), ("cnn_3", 1)]
    assert (tmp_path / "packed" / "summary.csv").exists()
    trials = study.stage_trials(study.stages[0], {})
    for t, r in zip(trials, packed):
        alone = train(t.config, tiny, CPU)  # the same TINY data the sweep prepares
        assert r.config == t.config.to_flat() and r.wall_s > 0
        assert list(r.curves[M.STEP]) == [x[M.STEP] for x in alone.records]
        assert list(r.curves[M.VAL_ACC]) == pytest.approx([x[M.VAL_ACC] for x in alone.records], abs=0.03)
        assert r.test_acc == pytest.approx(alone.test_acc, abs=0.03)
        assert r.first_layer.shape == alone.first_layer.shape
