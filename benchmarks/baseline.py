"""The baseline: the training script a student writes by hand from the
assignment text. Every speed ratio the project reports is measured against it.

It is deliberately plain PyTorch, the way the assignments read (part3's, or the
PyTorch CIFAR-10 tutorial's for hw2), following one run's TrialConfig:

  * torchvision's CIFAR10 with a per-sample transform pipeline
    Compose([ToTensor(), Normalize(mean, std)] + [Grayscale()] for part3), so
    every image is converted again each time it is drawn (training and evaluation);
  * a validation split of 500 images per class (the project's own
    `workloads.data.split_indices`, split seed 0, so the split is identical),
    taken with torch.utils.data.Subset;
  * DataLoader(batch_size=the config's, shuffle=True) for training, with
    num_workers=0 (the laptop default; part3) or 2 (what the PyTorch tutorial's code
    sets, and so what hw2's students run), the config's optimizer built as torch.optim's class
    (Adam for part3, SGD momentum 0.9 at 0.001 for the tutorial), cross-entropy,
    the same architecture (`workloads.models.build_model`);
  * at the config's record points (every N steps, or every epoch): the mean training
    loss since the last record, and the accuracy of every split the config records
    (a fixed sample of training images, the validation split, the test set), each
    through a DataLoader with batch size 1000 (a round number a student picks), under
    model.eval()/torch.no_grad();
  * after training, test accuracy on the test images, same way;
  * several seeds run one after another, nothing shared between runs (each run
    builds its datasets again, as re-running the script would).

Quick sizes: the config's `train_subset` / `val_subset` / `test_subset` (0 = all)
keep a fixed random subset, and the training-accuracy sample is drawn from what
is kept, all from numpy.random.default_rng(1) in the same order as
`workloads.data.prepare` (split seed 0 + 1), so a config selects exactly the
images the project's own data preparation selects. `max_steps` stops training
early (the test pass still runs) so a GPU user can time a few hundred steps and scale.

Run it (from the project root):

    PYTHONPATH=. python -m benchmarks.baseline --data-dir ../shared/data part3 \
        train_subset=5000 val_subset=1000 train_eval_size=1000 record_every=20 epochs=1
    PYTHONPATH=. python -m benchmarks.baseline --data-dir ../shared/data hw2 epochs=2   # the tutorial's way

or from Python:

    from benchmarks.baseline import run_baseline
    r = run_baseline("../shared/data", get_study("part3").base_config().override({"arch": "cnn_4"}))
    r["wall_s"], r["steps"], r["test_acc"]

`--data-dir` is the folder holding cifar-10-batches-py/ (or that folder).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from workloads import metrics as M
from workloads.components import OPTIMIZERS, build_optimizer
from workloads.config import TrialConfig
from workloads.data import NORMALIZATIONS, split_indices

SUBSET_SEED = 1              # split seed 0 + 1: the same draw order as workloads.data.prepare
EVAL_BATCH_SIZE = 1000       # what a student picks for evaluation loaders
WORKERS = {"part3": 0, "hw2": 2}  # the training loader's processes: the laptop default; the tutorial's


class LocalCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10, reading the local copy as is.

    The shared copy's pixels and labels are exact, but its batch files were
    rebuilt (the `filenames` entries differ), so their md5 sums are not the ones
    torchvision lists and the stock class refuses to load them. Only the file
    checksum test is skipped; loading, transforms and indexing are torchvision's.
    (batches.meta is byte-identical, so its own md5 check in _load_meta passes.)
    """

    def _check_integrity(self) -> bool:
        return True


def _dataset_root(data_root) -> str:
    """torchvision wants the folder that holds cifar-10-batches-py; accept that folder too."""
    root = Path(data_root)
    return str(root.parent if root.name == LocalCIFAR10.base_folder else root)


def evaluate(model: nn.Module, loader: DataLoader, device) -> tuple[float, int]:
    """(accuracy, images seen) of `model` over `loader`, in eval mode."""
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(dim=1) == labels).sum().item()
            total += labels.size(0)
    model.train()
    return correct / total, total


def run_baseline(data_root, cfg: TrialConfig, max_steps: int | None = None, threads: int = 1,
                 device: str | None = None, verbose: bool = False, workers: int = 0) -> dict:
    """One training run of `cfg`, start to finish, timed as a whole (dataset loading included).

    Returns {"wall_s", "steps", "records", "evaluated_images", "test_acc", "val_acc_curve",
    "load_s", "device"}: `records` is one dict per record point; `evaluated_images` counts
    every image passed through the model in eval mode (what the records score, plus the
    test set at the end); `load_s` is the part of `wall_s` spent building the datasets.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(data_root, cfg, max_steps, device, verbose, workers)
    finally:
        torch.set_num_threads(previous_threads)


def _run(data_root, cfg: TrialConfig, max_steps, device, verbose, workers) -> dict:
    d, t = cfg.data, cfg.train
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    spec = NORMALIZATIONS.parse(d.normalize)
    stats = spec.entry.fn(**spec.params)
    transform = transforms.Compose([transforms.ToTensor()]
                                   + ([transforms.Normalize(*stats)] if stats else [])
                                   + ([transforms.Grayscale()] if d.grayscale else []))
    root = _dataset_root(data_root)
    full_train = LocalCIFAR10(root, train=True, download=False, transform=transform)
    test_set = LocalCIFAR10(root, train=False, download=False, transform=transform)

    train_idx, val_idx = split_indices(np.array(full_train.targets), d.val_per_class, d.split_seed)
    rng = np.random.default_rng(d.split_seed + SUBSET_SEED)
    if d.train_subset:
        train_idx = np.sort(rng.permutation(train_idx)[:d.train_subset])
    if d.val_subset:
        val_idx = np.sort(rng.permutation(val_idx)[:d.val_subset])
    if d.test_subset:
        test_set = Subset(test_set, np.sort(rng.permutation(len(test_set))[:d.test_subset]).tolist())
    train_set = Subset(full_train, train_idx.tolist())
    val_set = Subset(full_train, val_idx.tolist())
    # fixed sample of the training images, scored at every record
    train_sample = Subset(train_set, np.sort(rng.permutation(len(train_set))[:d.train_eval_size]).tolist()
                          if d.train_eval_size else list(range(len(train_set))))  # 0: the whole split
    load_s = time.perf_counter() - start

    torch.manual_seed(t.seed)  # model init and the training loader's shuffling
    train_loader = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, num_workers=workers)
    loaders = {split: DataLoader(ds, batch_size=EVAL_BATCH_SIZE, shuffle=False, num_workers=0)
               for split, ds in (("train_sample", train_sample), ("val", val_set), ("test", test_set))}
    model = cfg.model.build(d.in_shape).to(device)
    optimizer = build_optimizer(OPTIMIZERS.parse(t.optimizer), model.parameters(), t.base_lr, t.weight_decay)
    criterion = nn.CrossEntropyLoss()
    scored = [split for split in M.splits_needed(t.recorded)]
    record_at = set(cfg.record_points())

    records, evaluated = [], 0
    step, running_loss, running_count = 0, 0.0, 0
    model.train()
    for epoch in range(t.epochs):
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            step += 1
            running_loss += loss.item()
            running_count += 1
            if step in record_at:
                record = {"step": step, "epoch": step / len(train_loader), "train_loss": running_loss / running_count}
                for split in scored:
                    acc, n = evaluate(model, loaders[split], device)
                    record[M.NAMES[split, "acc"]] = acc
                    evaluated += n
                records.append(record)
                running_loss, running_count = 0.0, 0
                if verbose:
                    print(f"  {record}", flush=True)
            if max_steps is not None and step >= max_steps:
                break
        if max_steps is not None and step >= max_steps:
            break

    test_acc, n_test = evaluate(model, loaders["test"], device)
    evaluated += n_test
    wall_s = time.perf_counter() - start
    return {"wall_s": wall_s, "steps": step, "records": records, "evaluated_images": evaluated,
            "test_acc": test_acc, "val_acc_curve": [r.get(M.VAL_ACC) for r in records],
            "load_s": load_s, "device": str(device)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="The hand-written baseline: plain torchvision + "
                                "DataLoader training, one run after another.")
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    p.add_argument("study", choices=("part3", "hw2"), help="whose settings: part3's, or the tutorial's")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (arch, epochs, sizes...)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seeds", type=int, default=1, help="runs with seeds 0..N-1, one after another")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--workers", type=int, help="training DataLoader's num_workers (default: 0 for part3, "
                                               "2 for hw2, as the tutorial's code)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--verbose", action="store_true", help="print every record")
    p.add_argument("--json", default=None, help="also write all results to this file")
    a = p.parse_args(argv)
    from search_spaces import get_study
    cfg = get_study(a.study).base_config().override(dict(o.split("=", 1) for o in a.overrides))

    results, total_start = [], time.perf_counter()
    for seed in range(a.seeds):
        r = run_baseline(a.data_dir, cfg.override({"seed": seed}), max_steps=a.max_steps, threads=a.threads,
                         device=a.device, verbose=a.verbose,
                         workers=a.workers if a.workers is not None else WORKERS[a.study])
        results.append(r)
        print(f"seed {seed}: {r['wall_s']:.2f}s ({r['load_s']:.2f}s loading) on {r['device']}, "
              f"{r['steps']} steps, {len(r['records'])} records, {r['evaluated_images']} images evaluated, "
              f"test_acc {r['test_acc']:.4f}", flush=True)
    total = time.perf_counter() - total_start
    steps = sum(r["steps"] for r in results)
    wall = sum(r["wall_s"] for r in results)
    print(f"total: {len(results)} run(s) of {cfg.model.arch}, {wall:.2f}s in runs ({total:.2f}s overall), "
          f"{steps} steps ({steps / wall:.1f} steps/s), "
          f"{sum(r['evaluated_images'] for r in results)} images evaluated, mean test_acc "
          f"{np.mean([r['test_acc'] for r in results]):.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
