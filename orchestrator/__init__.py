"""The command line and the Ray Tune driver. `python -m orchestrator --help`."""
