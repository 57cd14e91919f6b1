"""A trial's process killed mid-training: Tune retries it (FailureConfig), it
continues from its last checkpoint, and the study ends exactly as an
uninterrupted run with the same seeds. (The driver killed mid-sweep is in
test_resume.py, a lost node in test_multinode.py.)"""
import pandas as pd
import pytest

from cluster_utils import (SWEEP, TRIALS, assert_same_results, base_env, private_ray_tmp, reference,
                           run_sweep, trial_states, trials_table)
from orchestrator.trainable import FAULT_ENV, planned_fault


@pytest.fixture(scope="module")
def reference_out(tmp_path_factory, data_dir):
    return reference(tmp_path_factory.getbasetemp() / "reference", data_dir)


def test_fault_spec():
    assert planned_fault("cnn_3_r0", None) is None
    assert planned_fault("cnn_3_r0", "kill:cnn_3_r0@15") == ("kill", 15, float("inf"))
    assert planned_fault("cnn_3_r1", "kill:cnn_3_r0@15") is None
    assert planned_fault("mlp_1_r0", "stall@15") == ("stall", 15, float("inf"))
    assert planned_fault("mlp_1_r0", "pause@5:2.5") == ("pause", 5, 2.5)
    with pytest.raises(ValueError, match="pause.*SECONDS"):
        planned_fault("mlp_1_r0", "pause@5")


@pytest.mark.slow
def test_killed_trial_resumes_from_its_checkpoint(data_dir, tmp_path, reference_out):
    """cnn_3_r0 SIGKILLs its own process right after reporting step 15 (its
    checkpoint is from step 10); the other trials run undisturbed."""
    out, log = tmp_path / "sweep", tmp_path / "sweep.log"
    with private_ray_tmp("rf") as ray_tmp:
        env = base_env(ray_tmp, **{FAULT_ENV: "kill:cnn_3_r0@15"})
        assert run_sweep(SWEEP + ["--out", str(out), "--data-dir", str(data_dir)], env, log) == 0, \
            log.read_text()[-3000:]
    assert "ActorDiedError" in log.read_text()  # the kill happened and Tune saw it
    states = trial_states(out / "train")
    assert {t: s["failures"] for t, s in states.items()} == {"mlp_1_r0": 0, "mlp_1_r1": 0, "cnn_3_r0": 1,
                                                              "cnn_3_r1": 0}
    assert {t: s["status"] for t, s in states.items()} == dict.fromkeys(TRIALS, "TERMINATED")
    table = trials_table(out)
    assert table["resumed_from_step"].to_dict() == {"mlp_1_r0": 0, "mlp_1_r1": 0, "cnn_3_r0": 10, "cnn_3_r1": 0}
    # Tune's own log of cnn_3_r0: steps 5, 10, 15, then the retry from the step-10 checkpoint.
    progress = pd.read_csv(out / "train" / "cnn_3_r0" / "progress.csv")
    steps = progress["step"].tolist()
    assert steps == [5, 10, 15, 15, 20, 20], steps  # the last twice: record point, then final report
    # Curves, test accuracies, kept weights and best models equal the uninterrupted run.
    assert_same_results(out, reference_out)
