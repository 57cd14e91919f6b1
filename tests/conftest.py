"""Shared fixtures: the real CIFAR-10 copy (../shared/data in CI), small
prepared subsets, one local Ray for the tests that need it, and one finished
quick sweep of part3 and of hw2 that several test modules read."""
from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from workloads.config import DataConfig
from workloads.data import ENV_VAR, batch_dir, load_cifar10, prepare

ROOT = Path(__file__).resolve().parent.parent

# In-process training in tests: one thread is ~10x faster than two fighting on a 2-core machine.
torch.set_num_threads(1)

# Sizes small enough for a 2-core CI machine, same code path as a full run: 500 training
# images, a record every 5 steps. Overrides for part3-5's sweeps (their own settings stay).
SIZES = {"train_subset": 500, "val_subset": 200, "test_subset": 200, "train_eval_size": 200,
         "epochs": 1, "record_every": 5, "checkpoint_every": 2}
# ...and part3's settings (grayscale, Adam, batch 50, records by steps), for runs outside a study.
TINY = {**SIZES, "record_unit": "step", "grayscale": True, "optimizer": "adam", "batch_size": 50}


def timeless(records: list) -> list:
    """Records without their training time, the one value two identical runs do not share."""
    from workloads import metrics as M
    return [{k: v for k, v in r.items() if k != M.TRAIN_SECONDS} for r in records]


def data_root() -> Path | None:
    for candidate in (os.environ.get(ENV_VAR), ROOT.parent / "shared" / "data", ROOT / "data"):
        if candidate and (batch_dir(Path(candidate)) / "data_batch_1").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail(f"CIFAR-10 not found: set {ENV_VAR} (CI expects ../shared/data)")
        pytest.skip(f"CIFAR-10 not found: set {ENV_VAR}")
    return root


@pytest.fixture(scope="session")
def raw(data_dir):
    return load_cifar10(data_dir, download=False)


@pytest.fixture(scope="session")
def tiny_data(raw):
    return prepare(DataConfig(**{k: v for k, v in TINY.items() if k in DataConfig.__dataclass_fields__}), raw)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) for every test that runs trials through Tune."""
    import ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# out folder -> (results, failed, search) as the sweep last handed them to records.write_records:
# the RunRecords as they were in memory, for tests of what the saved records keep (test_records.py).
SAVED: dict = {}


def finished_sweep(argv: list[str], out: Path) -> tuple[Path, str]:
    """(out, what the sweep printed) of a sweep run in-process through the command line."""
    import orchestrator.report
    from orchestrator.cli import main
    write = orchestrator.report.write_records

    def keep(folder, results, failed=(), search=None):
        SAVED[Path(folder)] = (results, list(failed), search)
        write(folder, results, failed, search)

    printed = io.StringIO()
    with redirect_stdout(printed), pytest.MonkeyPatch.context() as patch:
        patch.setattr(orchestrator.report, "write_records", keep)
        code = main(argv + ["--out", str(out), "--quiet"])
    assert code == 0, printed.getvalue()
    return out, printed.getvalue()


@pytest.fixture(scope="session")
def part3_sweep(ray_local, data_dir, tmp_path_factory):
    """part3 --quick at TINY sizes, two architectures x two seeds."""
    overrides = [f"{k}={v}" for k, v in TINY.items()] + ["archs=mlp_1,cnn_5", "repeats=2"]
    return finished_sweep(["sweep", "part3", "--quick", "--data-dir", str(data_dir), *overrides],
                          tmp_path_factory.mktemp("sweeps") / "part3")


@pytest.fixture(scope="session")
def hw2_sweep(ray_local, data_dir, tmp_path_factory):
    """hw2 --quick on 500 training images for 2 epochs (batch 1000: one step an epoch); lr=10 diverges
    (at step 5 of this subset of the 50,000; on 400 of them it happened not to within 2 epochs)."""
    return finished_sweep(["sweep", "hw2", "--quick", "--data-dir", str(data_dir), *HW2_SIZES],
                          tmp_path_factory.mktemp("sweeps") / "hw2")


HW2_SIZES = [f"{k}={v}" for k, v in {**{k: SIZES[k] for k in ("test_subset", "train_eval_size")},
                                     "epochs": 2, "train_subset": 500}.items()]


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` prove the GPU path where no CPU stand-in can: skipped without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m cuda` where there is one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
