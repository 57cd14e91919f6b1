"""Interrupting a sweep in this process as Ctrl-C would, once enough of it has run: the
resume tests of the search stages (tests/test_tune_search.py, tests/test_coordinate_study.py).

    code = interrupted(lambda: sweep(out, data_dir), lambda: len(finished_trials(out / "search")) >= 2)
    assert code == 130     # then `sweep --resume` finishes it
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable


def finished_trials(folder: Path) -> list[Path]:
    """The result.json of every trial under `folder` that trained to its end."""
    return [p for p in folder.glob("*/result.json") if '"done_training": 1' in p.read_text()]


def interrupted(run: Callable[[], int], ready: Callable[[], bool], timeout: float = 120.0,
                settle: float = 0.0) -> int:
    """run()'s exit code, with SIGUSR1 (which the sweep handles as Ctrl-C) sent to this process
    `settle` seconds after ready() holds, or after `timeout` seconds. The wait: Tune writes a
    trial's result.json when it processes the final result, but marks the trial TERMINATED only
    when its function has returned; a Ctrl-C between the two (rightly) resumes that trial from its
    checkpoint, where these tests check that a finished trial is not run again."""
    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline and not ready():
            time.sleep(0.1)
        time.sleep(settle)
        os.kill(os.getpid(), signal.SIGUSR1)

    before = signal.signal(signal.SIGUSR1, lambda *a: None)  # a late signal, after Tune's run, is harmless
    try:
        threading.Thread(target=watch, daemon=True).start()
        return run()
    finally:
        signal.signal(signal.SIGUSR1, before)
