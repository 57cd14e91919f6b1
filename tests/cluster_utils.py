"""Helpers for the tests that run the real command line in subprocesses and
start Ray nodes with `ray start`. Every Ray started here gets its own temp
folder and free ports, so other Ray instances on the machine are untouched;
cleanup ends only the processes started here, by id.

    cluster = LocalCluster(); cluster.start_head(); cluster.add_worker("a")
    proc = start_sweep(["--address", cluster.address, ...], cluster.env, log)
    trial_states(out / "train")   # Tune's latest snapshot: {trial: {"status", "step", ...}}
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from workloads import metrics as M

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))

# A study small enough for two cores: 2 archs x 2 seeds, 500 images, 20 steps
# each; a record every 5 steps and a checkpoint every 2 records (steps 10, 20).
OVERRIDES = {"archs": "mlp_1,cnn_3", "repeats": "2", "train_subset": "500", "val_subset": "200",
             "test_subset": "200", "train_eval_size": "200", "epochs": "2", "record_every": "5",
             "checkpoint_every": "2"}
SWEEP = ["sweep", "part3", "--quick", "--quiet", *[f"{k}={v}" for k, v in OVERRIDES.items()]]
TRIALS = ("mlp_1_r0", "mlp_1_r1", "cnn_3_r0", "cnn_3_r1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmp(prefix: str) -> Path:
    """Ray's socket paths must stay under ~100 characters: pytest's tmp_path is too deep."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextmanager
def private_ray_tmp(prefix: str):
    """A Ray temp folder of our own; afterwards every process that names it is ended."""
    path = short_tmp(prefix)
    try:
        yield path
    finally:
        kill(processes_mentioning(str(path)))
        shutil.rmtree(path, ignore_errors=True)


def base_env(ray_tmp: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0",
               RAY_DEDUP_LOGS="0", TUNE_GLOBAL_CHECKPOINT_S="1")  # frequent snapshots: kills land soon
    env.pop("RAY_ADDRESS", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_sweep(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT)


def run_sweep(args: list[str], env: dict, log: Path, timeout: float = 240) -> int:
    proc = start_sweep(args, env, log)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{tail(log)}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}:\n{tail(log) if log else ''}")


def trial_states(experiment: Path) -> dict:
    """{trial name: {"status", "failures", **its last result}} from Tune's newest snapshot."""
    files = sorted(experiment.glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except ValueError:  # caught mid-write: the next poll reads it whole
        return {}
    out = {}
    for trial_json, meta_json in state["trial_data"]:
        trial, meta = _json(trial_json), _json(meta_json)
        out[trial["relative_logdir"]] = {"status": trial["status"], "failures": int(meta["num_failures"]),
                                         **(_json(meta.get("last_result")) or {})}
    return out


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def trials_table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "trials.csv", dtype={"gpu_ids": str, "cuda_visible_devices": str}).set_index("trial")


def reference(out: Path, data_dir: Path) -> Path:
    """The same study run uninterrupted, in this process, straight through the
    one training loop (one thread, as each trial has), reported the same way."""
    import torch

    from results.aggregate import RunRecord
    from search_spaces import get_study
    from workloads.data import load_cifar10, prepare
    from workloads.train import train
    if (out / "summary.csv").exists():
        return out
    study = get_study("part3").with_quick().with_overrides(OVERRIDES)
    raw = load_cifar10(data_dir, download=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        records = []
        for t in study.stage_trials(study.stages[0], {}):
            o = train(t.config, prepare(t.config.data, raw), torch.device("cpu"))
            records.append(RunRecord(t.stage, t.group, t.repeat, t.config.to_flat(), pd.DataFrame(o.records),
                                     o.test_acc, 0.0, o.first_layer, o.state_dict, o.status,
                                     o.final.parameters, o.final.train_seconds, t.changes))
    finally:
        torch.set_num_threads(threads)
    study.report.resolve()({"train": records}, out, study, **dict(study.report.args))
    return out


def assert_same_results(got: Path, want: Path) -> None:
    """Curves, test accuracies, kept weights and best models are identical
    (wall times aside)."""
    groups = pd.read_csv(want / "summary.csv")["group"].tolist()
    for g in groups:
        with open(got / f"part3_{g}.pkl", "rb") as f, open(want / f"part3_{g}.pkl", "rb") as h:
            a, b = pickle.load(f), pickle.load(h)
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (g, key)
        import torch
        sa, sb = torch.load(got / "best" / f"{g}.pt"), torch.load(want / "best" / f"{g}.pt")
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), g
    def curves(out):
        table = pd.read_csv(out / "curves.csv")
        return table[table.metric != M.TRAIN_SECONDS].reset_index(drop=True)
    pd.testing.assert_frame_equal(curves(got), curves(want))
    timeless = [c for c in pd.read_csv(want / "summary.csv").columns
                if not c.startswith(("wall_s", "train_s"))]
    pd.testing.assert_frame_equal(pd.read_csv(got / "summary.csv")[timeless],
                                  pd.read_csv(want / "summary.csv")[timeless])


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_mentioning(marker: str) -> list[int]:
    """Processes whose command line or open files name `marker` (a temp folder of
    ours); Ray renames some of its processes, but they keep their logs open."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            files = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone, or not ours to read
            files = []
        if marker in cmdline(int(entry.name)) or any(marker in f for f in files):
            found.append(int(entry.name))
    return found


def kill(pids, sig=signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class LocalCluster:
    """Ray nodes on this machine, each `ray start --block` in its own session so
    that it and its processes can be ended by id; token auth with a token of its
    own (not ~/.ray/auth_token, which other Ray users of this machine share)."""

    def __init__(self):
        self.tmp = short_tmp("rc")
        self.port = free_port()
        self.env = base_env(self.tmp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                            # a lost node is declared dead after ~2 s, not Ray's default ~15 s
                            RAY_health_check_period_ms=500, RAY_health_check_failure_threshold=4)
        self.nodes: dict[str, subprocess.Popen] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], env: dict | None) -> None:
        log = open(self.tmp / f"{name}.log", "ab")
        self.nodes[name] = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", f"--temp-dir={self.tmp / name}",
             f"--dashboard-agent-listen-port={free_port()}", *args],
            env=dict(self.env, **(env or {})), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start_head(self, num_cpus: int = 1, env: dict | None = None) -> None:
        self._start("head", ["--head", f"--port={self.port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
                             "--include-dashboard=false"], env)

    def add_worker(self, name: str, num_cpus: int = 1, env: dict | None = None) -> None:
        self._start(name, [f"--address={self.address}", f"--num-cpus={num_cpus}", "--num-gpus=0"], env)

    def raylet(self, name: str) -> int | None:
        for pid in children(self.nodes[name].pid):
            if "raylet/raylet" in cmdline(pid):
                return pid
        return None

    def wait_started(self, timeout: float = 120) -> None:
        for name in self.nodes:
            wait_until(lambda: self.raylet(name), timeout, f"node {name}'s raylet",
                       self.nodes[name], self.tmp / f"{name}.log")

    def kill_node(self, name: str) -> None:
        """SIGKILL the node's raylet: its workers die with it, as when a machine is lost."""
        kill([self.raylet(name)])
        try:
            self.nodes[name].wait(30)  # --block notices and ends the node's other processes
        except subprocess.TimeoutExpired:
            self._end(name)

    def _end(self, name: str) -> None:
        proc = self.nodes[name]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the session we started it in; nothing to keep
            except ProcessLookupError:
                pass
            proc.wait()

    def stop(self) -> None:
        for name in self.nodes:
            self._end(name)
        time.sleep(1)
        kill(processes_mentioning(str(self.tmp)))  # anything that left the sessions
        shutil.rmtree(self.tmp, ignore_errors=True)
