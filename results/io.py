"""Atomic writes: a crash leaves the old file or the new one, never half of one.
Every file the orchestrator and the reports write goes through here (Tune's
own trial folders are Tune's).

    write_csv(out / "summary.csv", table)
    with atomic_path(out / "x.bin") as tmp:   # anything that writes to a path
        write_something(tmp)
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def atomic_path(path: Path):
    """Yields a temporary path in the same folder; on success it is flushed to
    disk and renamed onto `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from other users
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync folders
        pass
    finally:
        os.close(fd)


def write_pickle(path: Path, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f)


def write_npz(path: Path, arrays: dict) -> None:
    """numpy arrays by name, compressed: np.load(path) reads them without pickle."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def save_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_csv(path: Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(path: Path, fig) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")


def save_torch(path: Path, obj) -> None:
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_weights(path: Path, state_dict, config: dict) -> None:
    """A run's weights as NAME.pt and the flat config that rebuilds their model as NAME.json
    beside them: what `python -m orchestrator evaluate NAME.pt` reads (workloads/saved.py)."""
    save_torch(path, state_dict)
    write_json(Path(path).with_suffix(".json"), dict(config))
