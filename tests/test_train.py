"""The training loop: determinism, records, checkpoints and exact resume."""
import numpy as np
import pytest
import torch

from conftest import TINY, timeless
from workloads import metrics as M
from workloads.config import TrainConfig, TrialConfig
from workloads.data import prepare
from workloads.train import DeviceData, train

CPU = torch.device("cpu")


def tiny(**extra) -> TrialConfig:
    return TrialConfig().override({**TINY, **extra})


@pytest.mark.parametrize("arch", ["mlp_2", "cnn_4"])
def test_same_seed_same_curves(tiny_data, arch):
    a = train(tiny(arch=arch, metrics="train_acc,val_acc,first_layer"), tiny_data, CPU)
    b = train(tiny(arch=arch, metrics="train_acc,val_acc,first_layer"), tiny_data, CPU)
    assert timeless(a.records) == timeless(b.records) and a.test_acc == b.test_acc
    np.testing.assert_array_equal(a.first_layer, b.first_layer)
    c = train(tiny(arch=arch, seed=1), tiny_data, CPU)
    assert timeless(c.records) != timeless(a.records)


def test_records_and_reports(tiny_data):
    reports = []
    out = train(tiny(arch="cnn_3", metrics="train_acc,val_acc,first_layer"), tiny_data, CPU,
                report=lambda m, s: reports.append((m, s)))
    # 500 images / batch 50 = 10 steps, a record every 5 steps.
    assert [r[M.STEP] for r in out.records] == [5, 10]
    assert [r[M.EPOCH] for r in out.records] == [0.5, 1.0]
    for r in out.records:
        assert 0 <= r[M.TRAIN_ACC] <= 1 and 0 <= r[M.VAL_ACC] <= 1 and r[M.LOSS] > 0
        assert r[M.LR] == 1e-3 and M.GRAD_NORM not in r
    # checkpoint_every=2: a state with the 2nd record, then the final report with test accuracy.
    assert [s is not None for _, s in reports] == [False, True, True]
    final, state = reports[-1]
    assert final[M.TEST_ACC] == out.test_acc and final[M.DONE] == 1
    assert state.records == out.records  # the very dicts: time included
    assert out.first_layer.shape == (16, 1, 3, 3) and state.first_layer is out.first_layer
    assert M.FIRST_LAYER not in out.records[-1]  # kept beside the final record, not in the curves
    assert train(tiny(arch="cnn_3"), tiny_data, CPU).first_layer is None  # only when asked for
    assert set(out.state_dict) == {"0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias",
                                   "8.weight", "8.bias"}


def test_resume_from_a_mid_run_checkpoint_is_exact(tiny_data):
    cfg = tiny(arch="cnn_5", epochs=2, checkpoint_every=1)
    states = []
    full = train(cfg, tiny_data, CPU, report=lambda m, s: states.append(s))
    # Resume from the checkpoint after the 3rd record (mid second epoch).
    resumed = train(cfg, tiny_data, CPU, resume=states[2])
    assert timeless(resumed.records) == timeless(full.records)
    assert resumed.test_acc == full.test_acc
    for key in full.state_dict:
        torch.testing.assert_close(resumed.state_dict[key], full.state_dict[key], rtol=0, atol=0)


def test_lr_schedule_and_grad_norm(tiny_data):
    out = train(tiny(arch="mlp_1", optimizer="sgd", lr=0.1, epochs=3, lr_schedule="1:0.01,2:0.001",
                     metrics="train_acc,val_acc,grad_norm"), tiny_data, CPU)
    assert [r[M.LR] for r in out.records] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert all(r[M.GRAD_NORM] > 0 for r in out.records)


def test_mse_loss_trains(tiny_data):
    out = train(tiny(arch="mlp_1", loss="mse"), tiny_data, CPU)
    assert out.records[-1][M.LOSS] < 0.2  # MSE against one-hot targets, not cross-entropy's ~2.3


def test_cosine_adamw_and_augmentation_resume_exactly(tiny_data):
    cfg = tiny(arch="cnn_3", optimizer="adamw", scheduler="cosine", epochs=2, checkpoint_every=1,
               augment="flip,crop")
    states = []
    full = train(cfg, tiny_data, CPU, report=lambda m, s: states.append(s))
    lrs = [r[M.LR] for r in full.records]  # cosine over 20 steps, set before each step
    expected = [1e-3 * 0.5 * (1 + np.cos(np.pi * (s - 1) / 20)) for s in (5, 10, 15, 20)]
    np.testing.assert_allclose(lrs, expected)
    resumed = train(cfg, tiny_data, CPU, resume=states[1])
    assert timeless(resumed.records) == timeless(full.records) and resumed.test_acc == full.test_acc
    plain = train(tiny(arch="cnn_3", optimizer="adamw", scheduler="cosine", epochs=2), tiny_data, CPU)
    assert timeless(plain.records) != timeless(full.records)  # the augmentation did something


def test_evaluation_batches_are_sized_for_the_device_unless_set():
    from workloads.train import EVAL_BATCH, eval_batch
    auto = TrainConfig()
    assert auto.eval_batch_size == 0
    assert eval_batch(auto, torch.device("cpu")) == EVAL_BATCH["cpu"] == 250
    assert eval_batch(auto, torch.device("cuda")) == EVAL_BATCH["cuda"]
    assert eval_batch(TrainConfig(eval_batch_size=64), torch.device("cpu")) == 64


def test_convolutions_run_channels_last_on_the_cpu_only():
    from workloads.models import build_model
    from workloads.train import memory_format
    cnn, mlp = build_model("cnn_3"), build_model("mlp_1")
    assert memory_format(cnn, torch.device("cpu")) == torch.channels_last
    assert memory_format(mlp, torch.device("cpu")) == torch.contiguous_format
    assert memory_format(cnn, torch.device("cuda")) == torch.contiguous_format


def test_a_diverging_run_stops_and_keeps_its_curves(tiny_data):
    """lr=10 with momentum: the loss leaves the floats within a few steps; the run stops
    there instead of running out its epochs, and says so."""
    reports = []
    out = train(tiny(arch="mlp_1", optimizer="sgd:momentum=0.9", lr=10.0, epochs=3, record_every=2),
                tiny_data, CPU, report=lambda m, s: reports.append((m, s)))
    assert out.status == M.DIVERGED and out.test_acc != out.test_acc  # NaN: not scored
    at = out.final.diverged_at
    assert 1 <= at < 30 and all(r[M.STEP] < at for r in out.records)
    assert all(np.isfinite(r[M.LOSS]) for r in out.records)
    final, state = reports[-1]
    assert final[M.STATUS] == M.DIVERGED and final[M.DONE] == 1 and state.final.to_dict() == final
    assert state.step == at  # it stopped at the step that diverged, not at the end (30)


def test_test_accuracy_at_every_record_and_snapshots(tiny_data):
    every = train(tiny(arch="mlp_1", metrics="val_acc,val_loss,test_acc"), tiny_data, CPU)
    assert [sorted(r) for r in every.records][0] == sorted(
        [M.STEP, M.EPOCH, M.LOSS, M.VAL_ACC, M.VAL_LOSS, M.TEST_ACC, M.LR, M.TRAIN_SECONDS])
    assert every.records[-1][M.TEST_ACC] == every.test_acc  # the last record is the end of the run
    per_epoch = tiny(arch="mlp_1", epochs=3, record_unit="epoch", record_every=1, snapshot_epochs="1,2")
    snapped = train(per_epoch, tiny_data, CPU)
    assert [r[M.STEP] for r in snapped.records] == [10, 20, 30]
    assert [M.TEST_ACC in r for r in snapped.records] == [True, True, False]  # only where asked


def test_a_prefix_scores_what_a_run_of_that_length_scores(tiny_data):
    """One 4-epoch run with snapshots at 1 and 2 gives, for each length, the validation and
    test accuracy that a separate run of that length gives: the same steps in the same order
    (nothing here depends on the run's length), so the same numbers, exactly."""
    import pandas as pd

    from orchestrator.collect import serve
    from results.aggregate import RunRecord
    from search_spaces.plan import plan_runs
    from search_spaces.study import Trial
    per_epoch = {"record_unit": "epoch", "record_every": 1, "metrics": "val_acc", "arch": "cnn_3",
                 "optimizer": "sgd:momentum=0.9", "lr": 0.01, "scheduler": "step:step_size=2:gamma=0.5"}
    trials = [Trial("grid", f"e{e}", 0, tiny(epochs=e, **per_epoch)) for e in (1, 2, 4)]
    (run,) = plan_runs(trials, "epochs")
    assert run.config.train.snapshot_epochs == (1, 2)
    long = train(run.config, tiny_data, CPU)
    record = RunRecord("grid", "e4", 0, run.config.to_flat(), pd.DataFrame(long.records), long.test_acc, 1.0,
                       long.first_layer, long.state_dict, long.status, long.final.parameters,
                       long.final.train_seconds)
    served = {r.group: r for r in serve(record, run)}
    for t in trials:
        alone = train(t.config, tiny_data, CPU)
        got = served[t.group]
        assert got.test_acc == alone.test_acc, t.group
        assert got.final(M.VAL_ACC) == alone.records[-1][M.VAL_ACC], t.group
        assert got.curves[M.STEP].tolist() == [r[M.STEP] for r in alone.records]
        assert got.curves[M.VAL_ACC].tolist() == [r[M.VAL_ACC] for r in alone.records]
        assert got.config["epochs"] == t.config.train.epochs and got.config["snapshot_epochs"] == ()
        assert (got.weights is None) == (t.config.train.epochs < 4)


def test_a_run_that_does_not_score_the_test_set_never_evaluates_it(tiny_data, monkeypatch):
    """score_test=False (a search's trials): the final test pass is skipped and the test
    accuracy is absent (NaN), the rest of the run is the same; test metrics are refused."""
    import workloads.train as T
    passes = []  # one entry per evaluation pass: (images, kinds)
    evaluate = T.evaluate_split
    monkeypatch.setattr(T, "evaluate_split", lambda models, x, y, views, size, loss, kinds, *a: (
        passes.append(kinds), evaluate(models, x, y, views, size, loss, kinds, *a))[1])
    blind = train(tiny(arch="mlp_1", score_test=False), tiny_data, CPU)
    blind_passes, passes[:] = list(passes), []
    full = train(tiny(arch="mlp_1"), tiny_data, CPU)
    assert blind.test_acc != blind.test_acc and blind.final.test_acc != blind.final.test_acc
    assert blind.status == M.FINISHED and 0 <= full.test_acc <= 1
    assert passes == blind_passes + [{"acc"}]  # the same record passes, then the final test pass
    assert timeless(blind.records) == timeless(full.records)
    assert tiny(score_test=False).work()[2] == tiny().work()[2] - TINY["test_subset"]
    from workloads.config import ConfigError
    for bad in ({"metrics": "val_acc,test_loss"}, {"record_unit": "epoch", "epochs": 2, "snapshot_epochs": "1"}):
        with pytest.raises(ConfigError, match="score_test"):
            tiny(score_test=False, **bad)


def test_recorded_loss_is_the_record_steps_own_or_the_mean_since_the_last(tiny_data):
    """part3-5's assignment records loss.item() at every 10th step (record_loss=last); the
    tutorial's running mean since the last record is record_loss=mean."""
    every = [r[M.LOSS] for r in train(tiny(arch="mlp_1", record_every=1), tiny_data, CPU).records]
    assert len(every) == 10  # a record (of that step's loss, either way) after each of the 10 steps
    last = train(tiny(arch="mlp_1", record_loss="last"), tiny_data, CPU).records
    mean = train(tiny(arch="mlp_1", record_loss="mean"), tiny_data, CPU).records
    assert [r[M.LOSS] for r in last] == pytest.approx([every[4], every[9]], rel=1e-6)
    assert [r[M.LOSS] for r in mean] == pytest.approx([np.mean(every[:5]), np.mean(every[5:])], rel=1e-6)
    assert last[0][M.LOSS] != pytest.approx(mean[0][M.LOSS], rel=1e-3)


def test_train_acc_on_the_whole_training_split(raw):
    """train_eval_size=0 (part3's full mode) scores every training image, eval mode, from the
    training arrays themselves (no copy)."""
    cfg = tiny(arch="mlp_1", train_eval_size=0)
    data = prepare(cfg.data, raw)
    assert data.train_eval_idx.tolist() == list(range(500))
    assert cfg.work()[1:] == (2, 2 * (500 + 200) + 200)
    d = DeviceData.from_prepared(data, CPU)
    sample_x, _ = d.split("train_sample")
    assert sample_x.data_ptr() == d.train_x.data_ptr() and len(sample_x) == 500
    out = train(cfg, d, CPU)
    model = cfg.model.build(cfg.data.in_shape)
    model.load_state_dict(out.state_dict)
    with torch.no_grad():
        acc = (model.eval()(d.train_x).argmax(1) == d.train_y).double().mean().item()
    assert out.records[-1][M.TRAIN_ACC] == pytest.approx(acc, abs=1e-9)


def test_train_acc_end_scores_the_training_split_at_the_last_record_only(raw):
    """resnet's final recipe: eval-mode accuracy on the whole training split once, at the end."""
    cfg = tiny(arch="mlp_1", train_eval_size=0, metrics="train_loss,val_acc,train_acc_end")
    assert cfg.work()[1:] == (2, 2 * 200 + 500 + 200)
    d = DeviceData.from_prepared(prepare(cfg.data, raw), CPU)
    out = train(cfg, d, CPU)
    assert [M.TRAIN_ACC_END in r for r in out.records] == [False, True] and M.TRAIN_ACC not in out.records[-1]
    model = cfg.model.build(cfg.data.in_shape)
    model.load_state_dict(out.state_dict)
    with torch.no_grad():
        acc = (model.eval()(d.train_x).argmax(1) == d.train_y).double().mean().item()
    assert out.records[-1][M.TRAIN_ACC_END] == pytest.approx(acc, abs=1e-9)
