"""The built-in studies by name, and study files by path.

    from search_spaces import get_study
    get_study("part3").with_quick()                 # search_spaces/studies/part3.yaml
    get_study("resnet")                             # search_spaces/resnet.py's STUDY: it needs code
    get_study("docs/examples/my_study.yaml")        # a study file (search_spaces/files.py)

A study is read when it is asked for, so that naming the studies (the command line's
help) imports nothing of torch's. Studies that are data are YAML files in
search_spaces/studies/; those that need code (a derived stage, a search, options of
their own) are modules here.
"""
from importlib import import_module
from pathlib import Path

from workloads.registry import ConfigError

STUDY_FILES = Path(__file__).resolve().parent / "studies"
SUFFIXES = (".yaml", ".yml", ".py")

# name -> its file in studies/ or the module whose STUDY it is, in the order `list` shows them
BUILT_IN = {"part3": "part3.yaml", "part4": "part4.yaml", "part5": "part5", "hw2": "hw2.yaml",
            "elec5307": "elec5307", "resnet": "resnet", "coordinate": "coordinate", "tune": "tune"}


def get_study(name: str, text: str | None = None):
    """A built-in study by name, or a study file by path (`text`: that file's content as a
    sweep kept it, read instead of the file)."""
    files = import_module("search_spaces.files")
    if text is not None:
        return files.load_study(name, text)
    if str(name).endswith(SUFFIXES):
        return files.read_study(name)
    if name not in BUILT_IN:
        raise ConfigError(f"unknown study {name!r}; choose from {', '.join(BUILT_IN)}, "
                          f"or give a study file (PATH.yaml or PATH.py)")
    target = BUILT_IN[name]
    if target.endswith(SUFFIXES):
        return files.load_study(target, (STUDY_FILES / target).read_text(), built_in=True).with_source("", "")
    return import_module(f"search_spaces.{target}").STUDY


def is_study_file(name: str) -> bool:
    return str(name).endswith(SUFFIXES)


def studies() -> dict:
    return {name: get_study(name) for name in BUILT_IN}


def __getattr__(name: str):  # Stage, Study, Trial: search_spaces.study's, loaded when used
    if name in ("Stage", "Study", "Trial"):
        return getattr(import_module("search_spaces.study"), name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")


__all__ = ["BUILT_IN", "Stage", "Study", "Trial", "get_study", "is_study_file", "studies"]
