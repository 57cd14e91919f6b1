"""What a sweep is asked to do, as one frozen record: built once from the command line
(orchestrator/commands.py) or a call (orchestrator.sweeps.sweep), read by everything after.

    request = Request("part3", ("repeats=2", "archs=mlp_1,cnn_3"), quick=True)
    request.resolve_study()      # the study with the overrides applied and checked
    Request("docs/examples/my_study.yaml", quick=True)   # a study file (search_spaces/files.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from search_spaces import get_study, is_study_file
from search_spaces.study import Study
from workloads.registry import ConfigError


@dataclass(frozen=True)
class Request:
    """What a sweep is asked to do: the study, its overrides as typed (`key=value`), and
    where and how it runs. sweep.json keeps study, quick, overrides and log: --resume runs them."""
    study: str                       # a built-in study's name, or a study file's path
    overrides: tuple = ()            # ("repeats=2", "archs=mlp_1,cnn_3", ...)
    quick: bool = False
    resume: bool = False
    out: str | None = None           # default runs/STUDY/TIMESTAMP[-quick]
    data_dir: str | None = None      # else $ORCHESTRATOR_DATA, else ./data
    storage: str | None = None       # a folder every node mounts, or a URI (clusters)
    address: str | None = None       # None: a local Ray; "auto" or HOST:PORT: a cluster
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    num_cpus: int | None = None
    num_gpus: float | None = None
    max_failures: int = 2
    repeats_per_trial: int = 1
    log: tuple = ()                  # --log: ("mlflow", "wandb:PROJECT", ...), orchestrator/trackers.py
    verbose: int = 1                 # 0 quiet, 1 a progress line per stage, 2 Tune's table
    argv: tuple = field(default=(), compare=False)  # the command line, for provenance
    # A study file's content as a sweep kept it (sweep.json): read instead of the file, so that
    # --resume and `report` run what the sweep started with, wherever the file is now.
    study_text: str | None = None

    def overrides_dict(self) -> dict:
        out = {}
        for item in self.overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"expected key=value, got {item!r}")
            out[key.strip()] = value
        return out

    @property
    def study_name(self) -> str:
        """What names the study's runs (runs/NAME/...): a study file's `name`."""
        return get_study(self.study, self.study_text).name if is_study_file(self.study) else self.study

    def resolve_study(self) -> Study:
        return get_study(self.study, self.study_text).with_overrides(self.overrides_dict(), quick=self.quick)

    def resume_command(self, out: Path) -> str:
        return f"python -m orchestrator sweep {self.study} --resume --out {out}"
