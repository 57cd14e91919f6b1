"""What a benchmark run prints: its rows (Row), the table, the ratios between rows, the
machine and the settings line (benchmarks/run.py measures them).
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workloads.config import TrialConfig


@dataclass
class Row:
    name: str
    label: str
    wall_s: float = 0.0
    steps: int = 0
    images: int = 0            # evaluated images
    runs: int = 0
    busy: float = float("nan")
    load: float = float("nan")
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s if self.wall_s else float("nan")

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s else float("nan")


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def table(rows: list[Row]) -> str:
    base = next((r for r in rows if r.name == "baseline"), None)
    lines = [f"{'row':<44} {'runs':>4} {'wall s':>8} {'steps/s':>8} {'images/s':>9} "
             f"{'vs row 1':>8} {'busy':>5} {'load':>5}  note"]
    for r in rows:
        ratio = base.wall_s / r.wall_s if base and r.wall_s else float("nan")
        lines.append(f"{r.label:<44} {r.runs:>4} {r.wall_s:>8.1f} {r.steps_per_s:>8.1f} {r.images_per_s:>9.0f} "
                     f"{ratio:>7.2f}x {r.busy:>5.2f} {r.load:>5.2f}  {r.note}")
    return "\n".join(lines)


def comparisons(rows: list[Row]) -> list[str]:
    by = {r.name: r for r in rows}
    out = []
    for r in rows:
        if "trial_phase_s" in r.extra:
            out.append(f"{r.label}: utilisation {r.busy:.2f} of its wall, {r.extra['trial_phase_busy']:.2f} "
                       f"from its first trial's start to its last trial's end ({r.extra['trial_phase_s']:.1f} s; "
                       f"{r.wall_s - r.extra['trial_phase_s']:.1f} s outside it)")
    pairs = (("train", "vectorized", "vectorized vs separate runs, one process (row 2 / row 3)"),
             ("sweep", "sweep_packed", "vectorized vs separate trials, Ray Tune (row 4 / row 5)"),
             ("baseline", "sweep", "sweep vs hand-written loop (row 1 / row 4)"))
    for a, b, text in pairs:
        if a in by and b in by:
            out.append(f"{text}: {by[a].wall_s / by[b].wall_s:.2f}x")
    return out


def settings_line(cfg: TrialConfig) -> str:
    d, t = cfg.data, cfg.train
    return (f"arch={cfg.model.arch} optimizer={t.optimizer} lr={t.base_lr} "
            f"train_subset={d.train_subset or 'all'} val_subset={d.val_subset or 'all'} "
            f"test_subset={d.test_subset or 'all'} train_eval_size={d.train_eval_size} "
            f"epochs={t.epochs} batch={t.batch_size} record_every={t.record_every} "
            f"eval_batch_size={t.eval_batch_size or 'by device'}")
