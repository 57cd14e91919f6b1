"""One module per study; this table names them.

    from search_spaces import get_study
    get_study("part3").with_quick()

A study's module is imported when the study is asked for, so that naming the
studies (the command line's help) imports nothing of torch's.
"""
from importlib import import_module

from workloads.registry import ConfigError

# name -> the module whose STUDY it is, in the order `list` shows them
BUILT_IN = {"part3": "part3", "part4": "part4", "part5": "part5", "hw2": "hw2", "elec5307": "elec5307",
            "resnet": "resnet", "coordinate": "coordinate",
            "tune": "tune"}


def get_study(name: str):
    if name not in BUILT_IN:
        raise ConfigError(f"unknown study {name!r}; choose from {', '.join(BUILT_IN)}")
    return import_module(f"search_spaces.{BUILT_IN[name]}").STUDY


def studies() -> dict:
    return {name: get_study(name) for name in BUILT_IN}


def __getattr__(name: str):  # Stage, Study, Trial: search_spaces.study's, loaded when used
    if name in ("Stage", "Study", "Trial"):
        return getattr(import_module("search_spaces.study"), name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")


__all__ = ["BUILT_IN", "Stage", "Study", "Trial", "get_study", "studies"]
