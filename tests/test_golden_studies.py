"""Golden lists of what the built-in studies expand to: every trial's stage, group,
repeat, what it changes and its flat config (as the difference from the study's base),
for the defaults, --quick and a few overrides, plus what each study says of itself
(description, base, quick, report, reference, figures, selection). Written from the
Python modules before part3, part4 and hw2 became study files (search_spaces/studies/)
and before the tutorial's recipe was stated once (search_spaces/recipes.py): the files
and the shared recipe must expand to exactly these trials.

    PYTHONPATH=. python tests/test_golden_studies.py    # rewrites tests/golden/studies.json (on purpose only)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_spaces import get_study  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden" / "studies.json"

CASES = {
    "part3": [{}, {"archs": "cnn_3,mlp_1", "repeats": "3", "epochs": "2"}, {"train_eval_size": "5000"}],
    "part4": [{}, {"arch": "cnn_4"}, {"repeats": "3"}],
    "hw2": [{}, {"epochs": "10", "repeats": "3"}, {"val_per_class": "500",
                                                    "metrics": "train_loss,train_acc,val_acc,test_acc"}],
    "elec5307": [{}, {"sid": "470123364"}, {"parts": "2", "lr": "0.001,0.0001"}],
    "coordinate": [{}],
}


def _plain(value):
    """JSON's view of a value: tuples as lists, Figures and Reports as dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def describe(study) -> dict:
    base = study.base_config().to_flat()
    stages = []
    for stage in study.stages:
        entry = {"name": stage.name, "prefix": stage.prefix, "planned": stage.planned,
                 "fixed": _plain(sorted(stage.fixed)), "repeats": stage.repeats}
        if stage.search is not None:
            entry["search"] = stage.search.plan_lines(stage.name, study.repeats)
            entry["config"] = _plain(study.stage_config(stage).to_flat())
        elif stage.planned:
            entry["trials"] = [[t.group, t.repeat, t.changes,
                                {k: _plain(v) for k, v in t.config.to_flat().items() if v != base[k]}]
                               for t in study.stage_trials(stage, {})]
        stages.append(entry)
    return {"name": study.name, "description": study.description, "repeats": study.repeats,
            "base": _plain(sorted(dict(study.base).items())), "flat_base": _plain(base),
            "quick": _plain(list(study.quick)), "report": _plain(study.report), "select": study.select,
            "select_why": study.select_why, "reference": study.reference, "figures": _plain(study.figures),
            "stages": stages}


def expand(name: str, overrides: dict, quick: bool) -> dict:
    study = get_study(name)
    if quick:
        study = study.with_quick()
    return describe(study.with_overrides(overrides))


def case_id(name: str, overrides: dict, quick: bool) -> str:
    return " ".join([name] + (["--quick"] if quick else []) + [f"{k}={v}" for k, v in overrides.items()])


def every_case():
    return [(name, o, q) for name, cases in CASES.items() for o in cases for q in (False, True)]


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name, overrides, quick", every_case(), ids=[case_id(*c) for c in every_case()])
def test_study_expands_to_its_golden_trials(golden, name, overrides, quick):
    want = golden[case_id(name, overrides, quick)]
    got = json.loads(json.dumps(expand(name, overrides, quick)))
    for stage_got, stage_want in zip(got["stages"], want["stages"]):
        assert [t[:2] for t in stage_got.get("trials", [])] == [t[:2] for t in stage_want.get("trials", [])]
        assert stage_got == stage_want, stage_got["name"]
    assert got == want


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({case_id(*c): expand(*c) for c in every_case()}, indent=None, sort_keys=True)
                      .replace('], ["', '],\n ["') + "\n")
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
