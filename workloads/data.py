"""CIFAR-10 found (or downloaded) once, decoded once, preprocessed once into
arrays that every trial of a node shares.

    root = resolve_data_dir(None)            # --data-dir, $ORCHESTRATOR_DATA, ./data
    data = prepare(DataConfig(), load_cifar10(root))
    data.train_x.shape                       # (45000, 3, 32, 32) float32

Preprocessing is torchvision's ToTensor, Normalize(mean, std) (NORMALIZATIONS)
and optionally Grayscale, applied to whole arrays rather than per sample.
Everything drawn per batch (augmentations, resizing, test-time views) happens
on the trial's device instead (workloads.augment).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from workloads.registry import DataError, Registry

if TYPE_CHECKING:  # configs are read here, never built: workloads.config imports this module
    from workloads.config import DataConfig

TRAIN_IMAGES, TEST_IMAGES, CLASSES = 50000, 10000, 10  # CIFAR-10

ENV_VAR = "ORCHESTRATOR_DATA"
DEFAULT_DIR = "data"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.247, 0.243, 0.261)

# Normalize(mean, std) per channel: fn(**params) -> (mean, std), or None for no normalisation.
NORMALIZATIONS = Registry("normalize")
NORMALIZATIONS.add("dataset", lambda: (MEAN, STD))         # CIFAR-10's training-set statistics
NORMALIZATIONS.add("half", lambda: ((0.5,) * 3, (0.5,) * 3))  # the PyTorch tutorial's, to [-1, 1]
NORMALIZATIONS.add("const", lambda mean, std: ((mean,) * 3, (std,) * 3), {"mean": 0.5, "std": 0.5},
                   lambda p: None if p["std"] > 0 else "std must be > 0")
NORMALIZATIONS.add("none", lambda: None)                   # ToTensor's [0, 1]
# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma), applied in its order; written
# out here because importing torchvision costs seconds in a process that only preprocesses.
LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class RawCifar:
    train_x: np.ndarray  # (50000, 3, 32, 32) uint8
    train_y: np.ndarray  # (50000,) int64
    test_x: np.ndarray   # (10000, 3, 32, 32) uint8
    test_y: np.ndarray   # (10000,) int64


@dataclass(frozen=True)
class PreparedData:
    """Float32 arrays, ready to become tensors on a trial's device."""
    train_x: np.ndarray       # (N, C, 32, 32)
    train_y: np.ndarray       # (N,)
    train_eval_idx: np.ndarray  # indices into train_x: the fixed scoring sample (all of them: the split)
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def resolve_data_dir(cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def batch_dir(root: Path) -> Path:
    """Accept either the folder that holds cifar-10-batches-py or that folder itself."""
    root = Path(root)
    return root if (root / TRAIN_FILES[0]).exists() else root / BATCH_DIR


def load_cifar10(root: Path, download: bool = True) -> RawCifar:
    folder = batch_dir(root)
    missing = [f for f in TRAIN_FILES + (TEST_FILE,) if not (folder / f).is_file()]
    if missing and download and not folder.exists():
        _download(Path(root))
        folder = Path(root) / BATCH_DIR
        missing = [f for f in TRAIN_FILES + (TEST_FILE,) if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}; pass --data-dir DIR "
            f"(or set {ENV_VAR}) to a folder holding {BATCH_DIR}/, or go online to download it")
    train = [_read_batch(folder / f) for f in TRAIN_FILES]
    test_x, test_y = _read_batch(folder / TEST_FILE)
    raw = RawCifar(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                   test_x, test_y)
    _check_structure(raw, folder)
    return raw


def _download(root: Path) -> None:
    # torchvision checks the official md5s; a staged copy with other md5s never gets here.
    from torchvision.datasets import CIFAR10
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # offline, DNS, HTTP: all one message for the user
        raise DataError(f"CIFAR-10 not found under {root} and download failed ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no detail'}); pass --data-dir DIR "
                        f"(or set {ENV_VAR}) to a folder holding {BATCH_DIR}/") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        x = np.asarray(entry["data"])
        y = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    except Exception as e:
        raise DataError(f"CIFAR-10 batch {path} is unreadable ({type(e).__name__}); "
                        f"replace the folder with a fresh copy") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise DataError(f"CIFAR-10 batch {path} has data {x.dtype}{x.shape}, labels {y.shape}; "
                        f"expected uint8 (N, 3072) and N labels")
    return x.reshape(-1, 3, 32, 32), y


def _check_structure(raw: RawCifar, folder: Path) -> None:
    if len(raw.train_x) != 50000 or len(raw.test_x) != 10000:
        raise DataError(f"CIFAR-10 at {folder} has {len(raw.train_x)} training and "
                        f"{len(raw.test_x)} test images; expected 50000 and 10000")
    for y in (raw.train_y, raw.test_y):
        if y.min() < 0 or y.max() >= CLASSES:
            raise DataError(f"CIFAR-10 at {folder} has labels outside 0-9")


def preprocess(x_uint8: np.ndarray, grayscale: bool, normalize: str = "dataset") -> np.ndarray:
    """ToTensor -> Normalize -> Grayscale on a whole (N, 3, 32, 32) uint8 array."""
    x = torch.from_numpy(x_uint8).float().div_(255.0)
    spec = NORMALIZATIONS.parse(normalize)
    stats = spec.entry.fn(**spec.params)
    if stats is not None:
        mean = torch.tensor(stats[0]).view(1, 3, 1, 1)
        std = torch.tensor(stats[1]).view(1, 3, 1, 1)
        x = (x - mean) / std
    if grayscale:  # torchvision.transforms.functional.rgb_to_grayscale, the same arithmetic
        r, g, b = x.unbind(dim=1)
        x = (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)  # (N, 1, 32, 32)
    return x.contiguous().numpy()


def split_indices(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): `per_class` validation images of each class, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                          for c in range(CLASSES)])
    val.sort()
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def prepare(cfg: DataConfig, raw: RawCifar) -> PreparedData:
    train_idx, val_idx = split_indices(raw.train_y, cfg.val_per_class, cfg.split_seed)
    rng = np.random.default_rng(cfg.split_seed + 1)
    if cfg.train_subset:
        train_idx = np.sort(rng.permutation(train_idx)[:cfg.train_subset])
    if cfg.val_subset:
        val_idx = np.sort(rng.permutation(val_idx)[:cfg.val_subset])
    test_idx = np.arange(len(raw.test_y))
    if cfg.test_subset:
        test_idx = np.sort(rng.permutation(test_idx)[:cfg.test_subset])
    eval_idx = (np.sort(rng.permutation(len(train_idx))[:cfg.train_eval_size]) if cfg.train_eval_size
                else np.arange(len(train_idx)))  # 0: the whole training split
    def pre(x):
        return preprocess(x, cfg.grayscale, cfg.normalize)
    return PreparedData(
        train_x=pre(raw.train_x[train_idx]), train_y=raw.train_y[train_idx], train_eval_idx=eval_idx,
        val_x=pre(raw.train_x[val_idx]), val_y=raw.train_y[val_idx],
        test_x=pre(raw.test_x[test_idx]), test_y=raw.test_y[test_idx])
