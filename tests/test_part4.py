"""part4: the study's grid, sigmoid substitution, the recorded gradient
magnitude against a hand computation, the report, and a quick sweep through
real Ray Tune."""
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import SIZES, TINY
from orchestrator.cli import main
from results.aggregate import RunRecord
from results.reports import part4_report
from search_spaces import get_study
from workloads.models import ASSIGNMENT_ARCHS as PART4_ARCHS
from workloads import metrics as M
from workloads.config import TrialConfig
from workloads.models import ARCHS, build_model, first_layer, spec_of
from workloads.train import train

CPU = torch.device("cpu")
GRAY = (1, 32, 32)


def test_grid_and_fixed_settings():
    study = get_study("part4").with_overrides({})
    trials = study.stage_trials(study.stages[0], {})
    assert [t.group for t in trials] == [f"{a}_{act}" for a in ("mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5")
                                         for act in ("relu", "sigmoid")]
    for t in trials:
        c = t.config
        assert (c.train.optimizer, c.train.lr, c.train.weight_decay, c.train.batch_size, c.train.epochs,
                c.train.record_every, c.train.record_unit, c.train.metrics, c.train.seed, t.repeat) == (
            "sgd", 0.01, 0.0, 50, 15, 10, "step", "train_loss,train_acc,val_acc,grad_norm", 0, 0)
        assert c.data.grayscale and c.model.activation in ("relu", "sigmoid")
        assert t.group == f"{c.model.arch}_{c.model.activation}"
    three = get_study("part4").with_overrides({"repeats": "3", "archs": "cnn_4"})
    assert [(t.name, t.config.train.seed) for t in three.stage_trials(three.stages[0], {})] == [
        ("cnn_4_relu_r0", 0), ("cnn_4_relu_r1", 1), ("cnn_4_relu_r2", 2),
        ("cnn_4_sigmoid_r0", 0), ("cnn_4_sigmoid_r1", 1), ("cnn_4_sigmoid_r2", 2)]


@pytest.mark.parametrize("arch", [a for a in ARCHS if "ReLU" in ARCHS[a]])
def test_sigmoid_replaces_every_activation_and_nothing_else(arch):
    torch.manual_seed(0)
    relu = build_model(arch, "relu")
    torch.manual_seed(0)
    sigmoid = build_model(arch, "sigmoid")
    a, b = list(relu.named_modules()), list(sigmoid.named_modules())  # nested blocks included
    assert [name for name, _ in a] == [name for name, _ in b]
    assert sum(isinstance(m, nn.ReLU) for _, m in a) >= spec_of(arch).count("ReLU") >= 1
    assert not any(isinstance(m, nn.ReLU) for _, m in b)
    for (_, x), (_, y) in zip(a, b):
        if isinstance(x, nn.ReLU):
            assert type(y) is nn.Sigmoid
        elif not list(x.children()):
            assert type(x) is type(y) and repr(x) == repr(y)
    # Same parameters (and, with the same seed, the same initial values).
    sa, sb = relu.state_dict(), sigmoid.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key])


@pytest.mark.parametrize("arch", PART4_ARCHS)
def test_sigmoid_model_computes_the_relu_layers_with_sigmoid(arch):
    torch.manual_seed(0)
    relu = build_model(arch, "relu", GRAY)
    torch.manual_seed(0)
    sigmoid = build_model(arch, "sigmoid", GRAY)
    layers = list(relu)
    assert sum(isinstance(m, nn.ReLU) for m in layers) == spec_of(arch).count("ReLU")
    x = torch.randn(4, 1, 32, 32)
    h = x
    for m in layers:
        h = torch.sigmoid(h) if isinstance(m, nn.ReLU) else m(h)
    torch.testing.assert_close(sigmoid(x), h, rtol=0, atol=0)
    assert not torch.equal(relu(x), h)


def hand_grad_norms(data, activation: str, steps: int, lr: float, seed: int = 0) -> list[float]:
    """mlp_1 (Flatten, Linear 1024->32, act, Linear 32->10) with SGD, in float64
    numpy: the norm of d(mean cross-entropy)/d(W1) at each of the first steps."""
    torch.manual_seed(seed)
    model = build_model("mlp_1", activation, GRAY)
    w1, b1, w2, b2 = (p.detach().double().numpy().copy() for p in model.parameters())
    order = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data.train_x), generator=order).numpy()
    norms = []
    for k in range(steps):
        idx = perm[k * 50:(k + 1) * 50]
        x = data.train_x[idx].reshape(len(idx), -1).astype(np.float64)   # (B, 1024)
        onehot = np.eye(10)[data.train_y[idx]]                             # (B, 10)
        z1 = x @ w1.T + b1                                                 # (B, 32)
        if activation == "relu":
            h, dh_dz = np.maximum(z1, 0), (z1 > 0).astype(float)
        else:
            h = 1 / (1 + np.exp(-z1))
            dh_dz = h * (1 - h)
        z2 = h @ w2.T + b2                                                 # (B, 10)
        p = np.exp(z2 - z2.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d2 = (p - onehot) / len(idx)                                       # d loss / d z2
        d1 = (d2 @ w2) * dh_dz                                             # d loss / d z1
        g_w1, g_b1, g_w2, g_b2 = d1.T @ x, d1.sum(0), d2.T @ h, d2.sum(0)
        norms.append(float(np.sqrt((g_w1 ** 2).sum())))
        w1, b1, w2, b2 = w1 - lr * g_w1, b1 - lr * g_b1, w2 - lr * g_w2, b2 - lr * g_b2
    return norms


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_grad_norm_equals_a_hand_computation(tiny_data, activation):
    cfg = TrialConfig().override({**TINY, "arch": "mlp_1", "activation": activation, "optimizer": "sgd",
                                  "lr": 0.1, "record_every": 1, "metrics": "train_acc,val_acc,grad_norm"})
    out = train(cfg, tiny_data, CPU)
    recorded = [r[M.GRAD_NORM] for r in out.records[:4]]
    np.testing.assert_allclose(recorded, hand_grad_norms(tiny_data, activation, 4, 0.1), rtol=1e-4)
    # ...and that is the first layer's weight the report calls "first layer".
    assert first_layer(build_model("mlp_1", in_shape=GRAY)).weight.shape == (32, 1024)


def run(group_cfg: dict, repeat: int, loss: list, grad: list) -> RunRecord:
    flat = TrialConfig().override({"optimizer": "sgd", "lr": 0.01, **group_cfg}).to_flat()
    curves = pd.DataFrame({M.STEP: [10, 20, 30], M.LOSS: loss, M.TRAIN_ACC: [0.1] * 3,
                           M.VAL_ACC: [0.2] * 3, M.GRAD_NORM: grad})
    group = f"{group_cfg['arch']}_{group_cfg['activation']}"
    return RunRecord("train", group, repeat, flat, curves, 0.3 + 0.1 * repeat, 2.0)


def test_report_pairs_groups_by_arch_and_averages_repeats(tmp_path):
    records = [
        run({"arch": "cnn_3", "activation": "relu"}, 0, [2.0, 1.5, 1.0], [1.0, 2.0, 3.0]),
        run({"arch": "cnn_3", "activation": "relu"}, 1, [2.2, 1.7, 1.2], [3.0, 4.0, 5.0]),
        run({"arch": "cnn_3", "activation": "sigmoid"}, 0, [2.3, 2.3, 2.2], [1e-3, 1e-3, 2e-3]),
        run({"arch": "cnn_3", "activation": "sigmoid"}, 1, [2.3, 2.1, 2.0], [3e-3, 1e-3, 2e-3]),
        run({"arch": "mlp_2", "activation": "relu"}, 0, [1.0, 0.5, 0.25], [0.5, 0.5, 0.5]),
    ]
    part4_report({"train": records}, tmp_path, get_study("part4"))
    with open(tmp_path / "part4_cnn_3.pkl", "rb") as f:
        saved = pickle.load(f)
    assert list(saved) == ["name", "relu_loss_curve", "sigmoid_loss_curve", "relu_grad_curve",
                           "sigmoid_grad_curve"]
    assert saved["name"] == "cnn_3"
    np.testing.assert_allclose(saved["relu_loss_curve"], [2.1, 1.6, 1.1])
    np.testing.assert_allclose(saved["sigmoid_loss_curve"], [2.3, 2.2, 2.1])
    np.testing.assert_allclose(saved["relu_grad_curve"], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(saved["sigmoid_grad_curve"], [2e-3, 1e-3, 2e-3])
    with open(tmp_path / "part4_mlp_2.pkl", "rb") as f:
        lone = pickle.load(f)
    assert lone["sigmoid_loss_curve"] is None and lone["relu_grad_curve"] == [0.5, 0.5, 0.5]
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["group"].tolist() == ["cnn_3_relu", "cnn_3_sigmoid", "mlp_2_relu"]
    assert summary["n"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(summary["grad_norm_first"], [2.0, 2e-3, 0.5])
    curves = pd.read_csv(tmp_path / "curves.csv")
    spread = curves[(curves.group == "cnn_3_relu") & (curves.metric == M.GRAD_NORM)]["std"]
    np.testing.assert_allclose(spread, [np.sqrt(2)] * 3)   # sample std of (1, 3), (2, 4), (3, 5)
    for arch in ("cnn_3", "mlp_2"):
        assert (tmp_path / f"part4_{arch}.png").stat().st_size > 10000


@pytest.mark.slow
def test_quick_sweep_end_to_end(ray_local, data_dir, tmp_path):
    out = tmp_path / "part4"
    assert main(["sweep", "part4", "--quick", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
                 "archs=mlp_2,cnn_3", *[f"{k}={v}" for k, v in SIZES.items()]]) == 0
    curves = pd.read_csv(out / "curves.csv")
    for arch in ("mlp_2", "cnn_3"):
        with open(out / f"part4_{arch}.pkl", "rb") as f:
            saved = pickle.load(f)
        assert saved["name"] == arch
        for act in ("relu", "sigmoid"):
            for key, metric in (("loss", M.LOSS), ("grad", M.GRAD_NORM)):
                mean = curves[(curves.group == f"{arch}_{act}") & (curves.metric == metric)]["mean"]
                assert len(saved[f"{act}_{key}_curve"]) == 2   # 10 steps, a record every 5
                np.testing.assert_allclose(saved[f"{act}_{key}_curve"], mean)
        assert (out / f"part4_{arch}.png").stat().st_size > 10000
    # Same seed and layout, so the pair starts from the same weights; the sigmoid's
    # derivative (<= 1/4) shrinks what reaches cnn_3's first layer.
    with open(out / "part4_cnn_3.pkl", "rb") as f:
        cnn = pickle.load(f)
    assert cnn["sigmoid_grad_curve"][0] < cnn["relu_grad_curve"][0] / 2
    trials = json.loads((out / "provenance.json").read_text())["trials"]["train"]
    assert [(t["arch"], t["activation"]) for t in trials] == [
        ("mlp_2", "relu"), ("mlp_2", "sigmoid"), ("cnn_3", "relu"), ("cnn_3", "sigmoid")]
    assert {(t["optimizer"], t["lr"], t["metrics"]) for t in trials} == {
        ("sgd", 0.01, "train_loss,train_acc,val_acc,grad_norm")}
