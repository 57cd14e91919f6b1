"""The command line and the Ray Tune driver. `python -m orchestrator --help`.

    from orchestrator import load_run    # a run folder's records as pandas tables (results/records.py)
"""


def __getattr__(name: str):
    # Lazily, so that `import orchestrator` (every `python -m orchestrator`) stays light.
    if name == "load_run":
        from results.records import load_run
        return load_run
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
