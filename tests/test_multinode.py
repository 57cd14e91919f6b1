"""A Ray cluster of several nodes on this machine (`ray start --head`, then
`ray start --address=...`, token authentication on), a sweep submitted to it
with --address and a shared --storage folder, and a worker node lost mid-sweep.

The driver runs in a subprocess: this pytest process may hold its own local
Ray (the ray_local fixture). Sweeps reuse trial processes (reuse_actors), so
with trials this short the first process up would take every trial; the nodes
therefore pause each trial 8 s at step 5 (test-only ORCHESTRATOR_TEST_FAULT),
long enough for every node's process to start and take one.
"""
import pytest

from cluster_utils import (SWEEP, TRIALS, LocalCluster, assert_same_results, reference, run_sweep,
                           short_tmp, start_sweep, tail, trial_states, trials_table, wait_until)
from orchestrator.trainable import FAULT_ENV, STALLED

pytestmark = pytest.mark.slow
PAUSE = {FAULT_ENV: "pause@5:8"}


@pytest.fixture(scope="module")
def reference_out(tmp_path_factory, data_dir):
    return reference(tmp_path_factory.getbasetemp() / "reference", data_dir)


@pytest.fixture(scope="module")
def cluster(data_dir):
    c = LocalCluster()
    c.env["ORCHESTRATOR_DATA"] = str(data_dir)
    try:
        c.start_head(num_cpus=1, env=PAUSE)
        c.add_worker("a", num_cpus=1, env=PAUSE)
        c.wait_started()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def storage():
    """The folder every node mounts (on one machine: any folder)."""
    import shutil
    path = short_tmp("st")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def sweep_args(cluster, storage, out, data_dir):
    return SWEEP + ["--address", cluster.address, "--storage", str(storage), "--out", str(out),
                    "--data-dir", str(data_dir)]


def test_sweep_runs_on_several_nodes(cluster, storage, data_dir, tmp_path, reference_out):
    out, log = tmp_path / "run1", tmp_path / "run1.log"
    assert run_sweep(sweep_args(cluster, storage, out, data_dir), cluster.env, log) == 0, tail(log, 60)
    t = trials_table(out)
    assert list(t.index) == list(TRIALS) and (t["status"] == "done").all()
    assert t["node_id"].nunique() == 2  # head and worker a, one CPU each
    # Trials wrote to the shared storage; the out folder holds the aggregated reports.
    experiment = storage / out.name / "train"
    assert sorted(p.name for p in experiment.glob("*_r*")) == sorted(TRIALS)
    assert all(any((experiment / name).glob("checkpoint_*")) for name in TRIALS)
    assert not (out / "train").exists()
    assert_same_results(out, reference_out)


def test_lost_worker_node_trials_move_to_other_nodes(cluster, storage, data_dir, tmp_path, reference_out):
    """Node b stalls its trial after the step-10 checkpoint; its raylet is then
    SIGKILLed (the node's processes die with it). The trial is retried on the
    remaining nodes from that checkpoint and the sweep completes."""
    cluster.add_worker("b", num_cpus=1, env={FAULT_ENV: "stall@15"})
    cluster.wait_started()
    out, log = tmp_path / "run2", tmp_path / "run2.log"
    experiment = storage / out.name / "train"
    proc = start_sweep(sweep_args(cluster, storage, out, data_dir), cluster.env, log)
    try:
        def stalled():
            return {t: s for t, s in trial_states(experiment).items() if s.get(STALLED)}
        held = wait_until(stalled, 240, "a trial stalled on node b", proc, log)
        (name, state), = held.items()
        cluster.kill_node("b")
        assert proc.wait(240) == 0, tail(log, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    node_b = state["node_id"]
    t = trials_table(out)
    assert (t["status"] == "done").all() and list(t.index) == list(TRIALS)
    assert t.loc[name, "resumed_from_step"] == 10 and t.loc[name, "node_id"] != node_b
    assert node_b not in set(t["node_id"])  # every trial finished on a node still alive
    assert trial_states(experiment)[name]["failures"] == 1
    assert_same_results(out, reference_out)
