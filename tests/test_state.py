"""The loop's typed state (workloads/state.py) and its recorder table (workloads/recorders.py):
checkpoints to and from the dicts they are saved as, older checkpoints still resume, and
every recordable metric measured by one entry."""
import numpy as np
import torch

from conftest import TINY, timeless
from workloads import metrics as M
from workloads.config import TrialConfig
from workloads.recorders import RECORDERS, SPLIT, WEIGHTS
from workloads.state import HEAVY, Checkpoint, FinalRecord
from workloads.train import train

CPU = torch.device("cpu")
# The keys the loop's checkpoint dicts have had since GPU runs (cuda_rng), in meta.pt and state.pt.
KEYS = {"model", "optimizer", "order", "jitter", "torch_rng", "cuda_rng", "step", "epoch", "batch", "seconds",
        "perm", "loss_sum", "correct", "loss_count", "records", "diverged"}


def tiny(**extra) -> TrialConfig:
    return TrialConfig().override({**TINY, **extra})


def test_checkpoints_are_the_dicts_they_always_were(tiny_data):
    states = []
    out = train(tiny(arch="cnn_3", checkpoint_every=1, metrics="val_acc,first_layer"), tiny_data, CPU,
                report=lambda m, s: states.append(s))
    mid, last = states[0], states[-1]
    assert set(mid.to_dict()) == KEYS and set(last.to_dict()) == KEYS | {"final", "first_layer"}
    meta, heavy = last.halves()
    assert set(heavy) == set(HEAVY) and not set(meta) & set(HEAVY)
    back = Checkpoint.from_halves(meta)  # what the driver reads: no weights
    assert back.model is None and back.records == out.records and back.final.to_dict() == out.final.to_dict()
    assert back.final.to_dict()[M.TEST_ACC] == out.test_acc and back.final.finished
    np.testing.assert_array_equal(back.first_layer, out.first_layer)
    again = Checkpoint.from_halves(meta, heavy).to_dict()
    assert set(again) == set(last.to_dict()) and again["final"] == last.to_dict()["final"]


def test_an_older_checkpoint_dict_resumes_exactly(tiny_data):
    """A dict without the GPU's random state (written before GPU runs) is still a checkpoint."""
    cfg = tiny(arch="mlp_2", epochs=2, checkpoint_every=1)
    states = []
    full = train(cfg, tiny_data, CPU, report=lambda m, s: states.append(s))
    old = {k: v for k, v in states[1].to_dict().items() if k != "cuda_rng"}
    resumed = train(cfg, tiny_data, CPU, resume=old)
    assert timeless(resumed.records) == timeless(full.records) and resumed.test_acc == full.test_acc
    assert all(torch.equal(resumed.state_dict[k], full.state_dict[k]) for k in full.state_dict)


def test_the_final_record_is_the_last_record_and_the_runs_totals():
    final = FinalRecord({M.STEP: 10, M.EPOCH: 1.0, M.LOSS: 0.5}, float("nan"), M.DIVERGED, 2.0, 100, 7)
    d = final.to_dict()
    assert d[M.DONE] == 1 and d[M.DIVERGED_AT] == 7 and d[M.LOSS] == 0.5
    back = FinalRecord.from_dict(d)
    assert back.record == final.record and back.diverged_at == 7 and not back.finished


def test_every_recordable_metric_has_one_recorder():
    assert set(RECORDERS) == set(M.RECORDABLE)
    for name, recorder in RECORDERS.items():
        metric = M.RECORDABLE[name]
        assert (recorder.needs == SPLIT) == (metric.split is not None), name
        assert (recorder.needs == WEIGHTS) == metric.final, name
        assert (recorder.measure is None) == (recorder.needs == SPLIT), name
    assert M.FIRST_LAYER not in M.CURVES  # an array kept beside the final record, not a curve
