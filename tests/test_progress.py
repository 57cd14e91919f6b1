"""The sweep's progress line (orchestrator/progress.py) from fake Tune trials and
a fake clock: counts, the cost-weighted share of work, the ETA, in-place updates
on a terminal and a line every 30 s elsewhere."""
from __future__ import annotations

import fcntl
import io
import os
import pickle
import pty
import re
import struct
import subprocess
import sys
import termios
from types import SimpleNamespace

import pyte

from conftest import ROOT

from orchestrator.progress import Progress, clock_text, progress_line
from workloads import metrics as M

# a_r0 costs three times what b_r0 and c_r0 cost; every trial trains 10 steps
WORK = {"a_r0": (3.0, 10), "b_r0": (1.0, 10), "c_r0": (1.0, 10)}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeTrial(SimpleNamespace):
    """What the callback reads of a Tune trial: a terminated one sent its final report,
    unless a Ctrl-C stopped it (`stopped`)."""
    @property
    def last_result(self) -> dict:
        return {M.DONE: 1} if self.status == "TERMINATED" and not self.stopped else {M.STEP: 1}


def trial(name: str, status: str = "PENDING"):
    group, _, repeat = name.rpartition("_r")
    return FakeTrial(config={"trial": {"group": group, "repeat": int(repeat)}}, status=status, stopped=False)


def watch(interactive: bool):
    clock, stream = Clock(), io.StringIO()
    progress = Progress("[part3] train", WORK, interactive=interactive, clock=clock, stream=stream)
    progress.setup()
    return progress, clock, stream


def test_line_counts_share_and_eta():
    progress, clock, stream = watch(interactive=False)
    trials = [trial("a_r0", "RUNNING"), trial("b_r0", "RUNNING"), trial("c_r0")]
    progress.on_trial_start(0, trials, trials[0])
    assert stream.getvalue() == "[part3] train: 0/3 done, 2 running, 1 waiting | 0% of the work | 0:00 elapsed, ETA --\n"
    clock.now += 40
    trials[1].status = "TERMINATED"                                # b_r0 done: 1 of 5
    progress.on_trial_result(1, trials, trials[0], {M.STEP: 5})   # half of the costly one: 2.5 of 5
    # elapsed 40 s for half the work: 40 s to go
    assert stream.getvalue().splitlines()[-1] == \
        "[part3] train: 1/3 done, 1 running, 1 waiting | 50% of the work | 0:40 elapsed, ETA 0:40"


def test_elsewhere_a_line_every_30_s_and_the_last_one():
    progress, clock, stream = watch(interactive=False)
    trials = [trial("a_r0", "RUNNING"), trial("b_r0"), trial("c_r0")]
    progress.on_step_end(0, trials)
    for _ in range(5):                   # results every 5 s: one line at 30 s
        clock.now += 5
        progress.on_step_end(1, trials)
    clock.now += 5
    progress.on_step_end(1, trials)
    assert len(stream.getvalue().splitlines()) == 2
    for t in trials:
        t.status = "TERMINATED"
    clock.now += 1
    progress.on_experiment_end(trials)
    assert stream.getvalue().splitlines()[-1] == "[part3] train: 3/3 done | 100% of the work | finished in 0:31"


def test_on_a_terminal_one_line_rewritten_in_place():
    progress, clock, stream = watch(interactive=True)
    trials = [trial("a_r0", "RUNNING"), trial("b_r0"), trial("c_r0")]
    for step in (2, 4, 6):
        clock.now += 1
        progress.on_trial_result(step, trials, trials[0], {M.STEP: step})
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count("\x1b[K") == 3 and "\n" not in text
    assert text.rsplit("\r", 1)[1] == "[part3] train: 0/3 done, 1 running, 2 waiting | 36% of the work | " \
                                      "0:03 elapsed, ETA 0:05\x1b[K"
    for t in trials:
        t.status = "TERMINATED"
    progress.on_experiment_end(trials)
    assert stream.getvalue().endswith("finished in 0:03\x1b[K\n")


def test_a_resumed_stage_paces_on_the_work_it_does():
    progress, clock, stream = watch(interactive=False)
    trials = [trial("a_r0", "TERMINATED"), trial("b_r0", "RUNNING"), trial("c_r0")]
    progress.on_trial_start(0, trials, trials[1])          # 60% done before this driver started
    clock.now += 10
    trials[1].status = "TERMINATED"                         # 20% more in 10 s: 20 s for the last 20%
    progress.on_trial_complete(1, trials, trials[1])
    clock.now += 30
    progress.on_step_end(2, trials)
    assert stream.getvalue().splitlines()[-1].endswith("| 80% of the work | 0:40 elapsed, ETA 0:40")


def test_failed_trials_are_counted_and_the_callback_pickles():
    progress, clock, stream = watch(interactive=False)
    trials = [trial("a_r0", "ERROR"), trial("b_r0", "TERMINATED"), trial("c_r0", "TERMINATED")]
    progress.on_experiment_end(trials)
    assert stream.getvalue() == "[part3] train: 2/3 done, 1 failed | 100% of the work | finished in 0:00\n"
    # Tune pickles callbacks with the experiment's state: no stream or clock object may stop it
    assert pickle.loads(pickle.dumps(Progress("[x] y", WORK))).work == WORK
    assert [clock_text(s) for s in (7, 754, 3723)] == ["0:07", "12:34", "1:02:03"]
    assert progress_line("[x] y", 4, 1, 1, 0, 0.25, 10, None).endswith("ETA --")


def test_an_interrupted_stage_says_so_and_counts_stopped_trials_as_unfinished():
    """Ctrl-C: Tune stops the running trials and marks them terminated; the line's last
    update counts them as still running, and their work as not done."""
    progress, clock, stream = watch(interactive=False)
    trials = [trial("a_r0", "TERMINATED"), trial("b_r0", "TERMINATED"), trial("c_r0")]
    trials[1].stopped = True
    clock.now += 12
    progress.on_experiment_end(trials)
    assert stream.getvalue() == ("[part3] train: 1/3 done, 1 running, 1 waiting | 60% of the work | "
                                 "interrupted after 0:12\n")


def test_the_line_fits_the_terminal():
    """Shorter words first, then the label's start: never as wide as the terminal."""
    args = ("[elec5307] part2_batch_grid", 90, 12, 2, 0, 0.137, 754, 1234)
    full = progress_line(*args)
    assert full == ("[elec5307] part2_batch_grid: 12/90 done, 2 running, 76 waiting | 14% of the work | "
                    "12:34 elapsed, ETA 20:34")
    assert progress_line(*args, width=200) == full
    assert progress_line(*args, width=100) == ("[elec5307] part2_batch_grid: 12/90 done, 2 running, 76 waiting | "
                                               "14% | 12:34 elapsed, ETA 20:34")
    assert progress_line(*args, width=80) == "...c5307] part2_batch_grid: 12/90 done, 2 run, 76 wait | 14% | 12:34, ETA 20:34"
    narrow = progress_line(*args, width=40)
    assert len(narrow) == 39 and narrow.startswith("...") and narrow.endswith("| 14% | 12:34, ETA 20:34")


# Writes the progress line of a long stage name to its terminal (stderr), as a sweep does.
UPDATES = """
import sys
from types import SimpleNamespace
from orchestrator.progress import Progress
work = {f"g{i}_r0": (1.0, 10) for i in range(60)}
trials = [SimpleNamespace(config={"trial": {"group": f"g{i}", "repeat": 0}}, status="RUNNING",
                          last_result={}) for i in range(60)]
p = Progress("[elec5307] part2_batch_grid_with_a_long_name", work)
for i, t in enumerate(trials):
    t.status, t.last_result = "TERMINATED", {"done_training": 1}
    p.on_trial_complete(i, trials, t)
    p.shown = None   # every update written, not one every 0.5 s
p.on_experiment_end(trials)
"""


def test_on_an_80_column_terminal_no_wrapped_rows_are_left_behind():
    """The updates in a pseudo-terminal of 80 x 24, read back through a terminal
    emulator: one line on the screen, the last one, and nothing above it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", UPDATES], stderr=slave, stdout=slave, stdin=slave,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=60) == 0, output.decode(errors="replace")
    os.close(master)
    screen = pyte.Screen(80, 24)
    pyte.ByteStream(screen).feed(output)
    rows = [row.rstrip() for row in screen.display if row.strip()]
    assert output.count(b"\r") >= 60
    assert len(rows) == 1 and len(rows[0]) < 80, rows
    assert re.fullmatch(r"\.\.\.307\] part2_batch_grid_with_a_long_name: 60/60 done \| 100% \| finished in 0:\d\d",
                        rows[0]), rows
