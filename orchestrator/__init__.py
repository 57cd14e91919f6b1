"""The command line and the Ray Tune driver: `python -m orchestrator --help`.

    from orchestrator import sweep, load_run
    run = sweep("part3", {"repeats": 2}, quick=True, data_dir="../shared/data")
    records = load_run(run.folder)   # .runs, .curves, .groups as pandas tables (results/records.py)

Names are loaded when first used (PEP 562), so that importing the package (as
`python -m orchestrator` does) costs nothing of Ray's, torch's or the driver's.
"""
from importlib import import_module

_EXPORTS = {"sweep": "orchestrator.sweeps", "Request": "orchestrator.request",
            "FinishedSweep": "orchestrator.sweeps", "Interrupted": "orchestrator.experiment",
            "load_run": "results.records"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
