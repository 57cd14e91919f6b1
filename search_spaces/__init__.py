"""One module per study; this registry names them.

    from search_spaces import get_study
    get_study("part3").with_quick()
"""
from search_spaces.study import Stage, Study, Trial
from workloads.config import ConfigError


def _registry() -> dict:
    # Imported here so that each study module is read only when studies are listed or run.
    from search_spaces import coordinate, elec5307, hw2, part3, part4, part5, resnet
    return {s.name: s for s in (part3.STUDY, part4.STUDY, part5.STUDY, hw2.STUDY, elec5307.STUDY, resnet.STUDY,
                                coordinate.STUDY)}


def studies() -> dict:
    return _registry()


def get_study(name: str) -> Study:
    known = _registry()
    if name not in known:
        raise ConfigError(f"unknown study {name!r}; choose from {', '.join(known)}")
    return known[name]


__all__ = ["Stage", "Study", "Trial", "get_study", "studies"]
