"""Vectorized repeats against the plain loop: each repeat of a pack must give what
train() gives that seed alone (curves, test accuracy, weights), resume from its
checkpoints, and unpack into the same RunRecords through Ray Tune.

Both paths run the same loop (workloads.train.run); they differ only in how the K
models compute (vmapped grouped convolutions against one model's), which sums in
another order. The equivalence is checked in float64, where that order changes a
result by ~1e-16 per operation: after these few dozen steps the curves agree to
~1e-12, far inside the 1e-9 asserted, on any CPU. (In float32 the same difference
is ~1e-7 per operation and grows through Adam's division by tiny second moments to
percent-level differences in gradient norms, which vary with the CPU's kernels.)"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from orchestrator.packed import PACK, REPEATS, collect, pack_metrics, pack_params
from search_spaces import get_study
from search_spaces.study import Stage, Study
from tests.conftest import TINY, timeless
from workloads import metrics as M
from workloads import vectorized as V
from workloads.augment import eval_transform
from workloads.config import ConfigError, TrialConfig
from workloads.data import prepare
from workloads.train import DeviceData, Single, evaluate_split, train

CPU = torch.device("cpu")
PART3 = ("mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5")
# 500 images, batches of 50: 10 steps an epoch; 2 epochs so that epoch-wise rates switch.
BASE = {**TINY, "epochs": 2, "record_every": 5}
# float64 convolutions run without oneDNN, ~8x slower: 100 images in batches of 20 (5 steps an
# epoch), which still crosses an epoch boundary and three record points.
SMALL = {"train_subset": 100, "val_subset": 100, "test_subset": 100, "train_eval_size": 100, "batch_size": 20}
GRAD = "train_acc,val_acc,grad_norm,first_layer"
SETTINGS = {
    "adam": {"optimizer": "adam", "metrics": GRAD, "record_loss": "last"},  # part3's, plus part4's metric
    "sgd": {"optimizer": "sgd:momentum=0.9:nesterov=true", "lr": 0.05, "weight_decay": 1e-3,
            "lr_schedule": "1:0.01", "loss": "mse", "metrics": GRAD},
    "adamw": {"optimizer": "adamw", "weight_decay": 0.05, "scheduler": "cosine", "augment": "flip,crop",
              "decay_norm_and_bias": False,
              "metrics": "train_acc_running,train_acc,val_acc,val_loss,test_acc,test_loss,train_acc_end,first_layer"},
}
SEEDS = (0, 3)


@pytest.fixture(scope="module")
def tiny(tiny_data):
    # One thread, as a trial runs: more only competes for a 2-core machine's cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield DeviceData.from_prepared(tiny_data, CPU)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny64(raw):
    """SMALL's data in float64: the whole loop then runs in double precision."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = TrialConfig().override({**BASE, **SMALL})
    yield DeviceData.from_prepared(prepare(cfg.data, raw), CPU, dtype=torch.float64)
    torch.set_num_threads(threads)


def configs(arch: str, settings: dict, seeds=SEEDS, small=False, **extra) -> list[TrialConfig]:
    cfg = TrialConfig().override({**BASE, **(SMALL if small else {}), "arch": arch, **settings, **extra})
    return [cfg.override({"seed": s}) for s in seeds]


def assert_same_run(alone, packed):
    """Same record points and keys; in float64, values equal to 1e-9 and accuracies exactly."""
    assert [list(r) for r in packed.records] == [list(r) for r in alone.records]
    for a, p in zip(timeless(alone.records), timeless(packed.records)):
        for key, value in a.items():
            if key.endswith("_acc") or key.endswith("acc_running") or key in (M.STEP, M.EPOCH, M.LR):
                assert p[key] == value, key  # counts of images: a near-tie would need a 1e-12 margin
            else:
                assert p[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert packed.test_acc == alone.test_acc and packed.status == alone.status
    assert list(packed.state_dict) == list(alone.state_dict)
    for key, value in alone.state_dict.items():
        assert packed.state_dict[key].shape == value.shape
        assert torch.allclose(packed.state_dict[key], value, rtol=1e-9, atol=1e-12), key
    assert packed.first_layer.shape == alone.first_layer.shape
    assert np.allclose(packed.first_layer, alone.first_layer, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch", PART3)
@pytest.mark.parametrize("setting", ["adam", "sgd"])
def test_each_repeat_matches_training_it_alone(tiny64, arch, setting):
    cfgs = configs(arch, SETTINGS[setting], small=True)
    packed = V.train_repeats(cfgs, tiny64, CPU)
    assert len(packed) == len(cfgs)
    for cfg, p in zip(cfgs, packed):
        assert_same_run(train(cfg, tiny64, CPU), p)
    # Repeats are not copies of one another: their own init and data order.
    assert packed[0].records[0][M.LOSS] != packed[1].records[0][M.LOSS]


@pytest.mark.parametrize("arch", ["mlp_2", "cnn_3"])
def test_augmentation_schedule_and_every_metric_follow_each_seed(tiny64, arch):
    cfgs = configs(arch, SETTINGS["adamw"], small=True)
    for cfg, p in zip(cfgs, V.train_repeats(cfgs, tiny64, CPU)):
        assert_same_run(train(cfg, tiny64, CPU), p)
        assert {M.TRAIN_ACC_RUNNING, M.VAL_LOSS, M.TEST_ACC, M.TEST_LOSS} <= set(p.records[0])


def test_resuming_a_pack_continues_exactly(tiny):
    cfgs = configs("cnn_3", SETTINGS["sgd"], checkpoint_every=2)  # a checkpoint at record 2 of 4
    saved = []
    whole = V.train_repeats(cfgs, tiny, CPU, report=lambda m, s: saved.append(s) if s and not saved else None)
    assert [s.step for s in saved[0]] == [10, 10] and len(saved[0][0].records) == 2
    resumed = V.train_repeats(cfgs, tiny, CPU, resume=saved[0])
    for w, r in zip(whole, resumed):
        assert timeless(r.records) == timeless(w.records) and r.test_acc == w.test_acc
        assert all(torch.equal(r.state_dict[k], w.state_dict[k]) for k in w.state_dict)


def test_a_repeats_checkpoint_resumes_train_alone(tiny64):
    """Checkpoints are in train()'s own format: a packed repeat can finish alone."""
    cfgs = configs("cnn_4", SETTINGS["sgd"], small=True, checkpoint_every=2)
    saved = []
    packed = V.train_repeats(cfgs, tiny64, CPU,
                             report=lambda m, s: saved.append(s) if s and not saved else None)
    alone = train(cfgs[1], tiny64, CPU, resume=saved[0][1])
    assert alone.records[:2] == packed[1].records[:2]  # carried over from the pack's checkpoint
    assert_same_run(alone, packed[1])


def test_a_repeat_that_diverges_stops_alone(tiny64, monkeypatch):
    """Repeat 1's loss turns NaN at step 7: it stops being recorded there and ends diverged,
    while repeat 0 trains on exactly as it would alone."""
    cfgs = configs("mlp_2", SETTINGS["sgd"], small=True)
    calls, losses = [], V.Stacked.losses

    def poisoned(self, x, y, loss_fn):
        out, logits = losses(self, x, y, loss_fn)
        calls.append(1)
        return (torch.where(torch.arange(len(out)) == 1, float("nan"), out) if len(calls) >= 7 else out), logits
    monkeypatch.setattr(V.Stacked, "losses", poisoned)
    packed = V.train_repeats(cfgs, tiny64, CPU)
    assert (packed[1].status, packed[1].final.diverged_at, [r[M.STEP] for r in packed[1].records]) == \
        (M.DIVERGED, 7, [5])
    assert [r[M.STEP] for r in packed[0].records] == [5, 10]
    assert packed[1].test_acc != packed[1].test_acc  # NaN: no test accuracy for a diverged run
    monkeypatch.setattr(V.Stacked, "losses", losses)
    assert_same_run(train(cfgs[0], tiny64, CPU), packed[0])
    assert len(calls) == 10  # the pack ran to its end for repeat 0


def test_optimizer_state_slices_are_each_repeats_own(tiny):
    cfgs = configs("cnn_3", SETTINGS["adam"], epochs=1, record_every=10, checkpoint_every=1)
    states = []
    V.train_repeats(cfgs, tiny, CPU, report=lambda m, s: states.append(s) if s else None)
    opt = states[0][0].optimizer
    assert set(opt["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert opt["state"][0]["exp_avg"].shape == states[0][0].model["0.weight"].shape
    stacked = [torch.stack([s.model[k] for s in states[0]]) for k in states[0][0].model]
    merged = V.stack_optimizer_states([s.optimizer for s in states[0]], stacked)
    for k, state in enumerate(states[0]):
        again = V.slice_optimizer_state(merged, stacked, k)
        for i, entry in state.optimizer["state"].items():
            assert all(torch.equal(again["state"][i][key], v) for key, v in entry.items())


def test_vmapped_evaluation_the_gpu_default_scores_like_the_loop(tiny):
    cfgs = configs("cnn_4", {}, seeds=(0, 1, 2))
    views = eval_transform(cfgs[0].data)

    def scores(models):
        return evaluate_split(models, tiny.val_x, tiny.val_y, views, 64,
                              lambda logits, y, reduction: F.cross_entropy(logits, y, reduction=reduction),
                              {"acc", "loss"})
    looped = scores(V.Stacked(cfgs, (1, 32, 32), CPU, vmap_eval=False))
    vmapped = scores(V.Stacked(cfgs, (1, 32, 32), CPU, vmap_eval=True))
    for k, cfg in enumerate(cfgs):  # the loop is exactly a lone model's evaluation
        alone = scores(Single([cfg], (1, 32, 32), CPU, torch.float32))  # as train() builds and lays it out
        assert looped["acc"][k] == alone["acc"][0] and looped["loss"][k] == alone["loss"][0]
        assert abs(vmapped["acc"][k] - looped["acc"][k]) <= 1 / 200 + 1e-9  # at most one borderline image


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
    # An optimizer whose update mixes entries would couple the stacked repeats.
    from workloads.components import OPTIMIZERS
    from workloads.registry import Entry
    monkeypatch.setitem(OPTIMIZERS.entries, "lbfgs", Entry("lbfgs", torch.optim.LBFGS,
                                                          meta={"default_lr": 1.0, "elementwise": False}))
    assert "not elementwise" in V.why_not_vectorized(TrialConfig().override({"optimizer": "lbfgs"}))
    assert V.can_vectorize(TrialConfig())
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
    params = pack_params([t.to_param() for t in trials], 2)
    assert [(p["group"], p["repeat"], [m["repeat"] for m in p.get(PACK, [p])]) for p in params] == [
        ("mlp_1", 0, [0, 1]), ("mlp_1", 2, [2]), ("cnn_3", 0, [0, 1]), ("cnn_3", 2, [2])]
    assert [m["seed"] for m in params[0][PACK]] == [0, 1] and PACK not in params[1]
    assert pack_params([t.to_param() for t in trials], 1) == [t.to_param() for t in trials]


def test_groups_that_cannot_vectorize_stay_one_per_trial():
    study = Study("bn", "", (Stage("s", axes=(("arch", ("cnn_3", "vgg_a_bn")),),
                                   fixed=(("width", 0.125),)),), repeats=2)
    params = pack_params([t.to_param() for t in study.stage_trials(study.stages[0], {})], 4)
    assert [(p["group"], len(p.get(PACK, [p]))) for p in params] == [("cnn_3", 2), ("vgg_a_bn", 1), ("vgg_a_bn", 1)]


def test_pack_metrics_and_failed_packs():
    m = [{M.STEP: 10, M.VAL_ACC: 0.2, M.TEST_ACC: 0.3, M.DONE: 1}, {M.STEP: 10, M.VAL_ACC: 0.4, M.TEST_ACC: 0.5, M.DONE: 1}]
    out = pack_metrics(m, [4, 5])
    assert out[M.VAL_ACC] == pytest.approx(0.3) and out[M.STEP] == 10 and out[M.DONE] == 1
    assert (out[f"{M.TEST_ACC}_r4"], out[f"{M.TEST_ACC}_r5"]) == (0.3, 0.5)
    param = {"stage": "train", "group": "cnn_3", "repeat": 0,
             PACK: [{"stage": "train", "group": "cnn_3", "repeat": r} for r in (0, 1)]}
    failed = SimpleNamespace(config={"trial": param}, error=RuntimeError("boom\nout of memory"),
                             checkpoint=None, metrics={})
    records, lines = collect([failed])
    assert records == {} and lines == ["cnn_3_r0 (repeats 0, 1): out of memory"]
    assert REPEATS == "repeats"


@pytest.mark.slow
def test_packed_sweep_gives_the_records_of_separate_trials(ray_local, data_dir, tiny, tmp_path):
    from orchestrator.driver import run_study
    from orchestrator.experiment import Options
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
