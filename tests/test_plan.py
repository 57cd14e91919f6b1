"""search_spaces/plan.py: a resolved study planned once (stage kinds, trials, runs), and a
`key=value` parsed once, where the overrides are read."""
import pytest

import search_spaces.study as study_module
import workloads.config as config_module
from orchestrator.request import Request
from search_spaces import get_study
from search_spaces.plan import KINDS


@pytest.mark.parametrize("name, kinds, count", [
    ("part3", ["grid"], "50"),
    ("hw2", ["variants"], "11"),
    ("part5", ["grid", "grid", "derived", "derived"], "3+10+?+?"),
    ("elec5307", ["grid", "grid", "variants"], "1+18+43"),
    ("coordinate", ["search", "derived"], "<=255+?"),
])
def test_every_stage_is_one_of_the_kinds(name, kinds, count):
    plan = get_study(name).plan
    assert [p.kind for p in plan.stages] == kinds and set(kinds) <= set(KINDS)
    assert plan.count() == count
    for p in plan.stages:  # trials and runs where they are known before anything runs
        assert bool(p.runs) == p.known and len(p.trials) >= len(p.runs)


def test_a_study_is_planned_once_however_often_it_is_read(monkeypatch):
    calls = []
    original = study_module.Study.stage_trials
    monkeypatch.setattr(study_module.Study, "stage_trials",
                        lambda self, stage, earlier: calls.append(stage.name) or original(self, stage, earlier))
    study = Request("elec5307", ("repeats=2",), quick=True).resolve_study()
    resolved = list(calls)
    plan = study.plan
    plan.lines(), plan.count(), plan.data_configs(), study.plan["part2"].runs
    assert study.plan is plan and calls == resolved
    # Resolving (--quick's overrides and the user's together) planned each stage once, and
    # elec5307's own check read that plan: no grid is expanded again to be read.
    assert resolved == ["part1", "part2", "part3"]
    assert [t.name for t in plan["part2"].trials][:2] == ["batch2_lr0.005_1ep_r0", "batch2_lr0.005_1ep_r1"]


def test_a_value_is_parsed_once_where_the_overrides_are_read(monkeypatch):
    parsed = []
    original = config_module.coerce

    def counting(key, raw, typ):
        if isinstance(raw, str) and key == "lr":
            parsed.append(raw)
        return original(key, raw, typ)
    monkeypatch.setattr(config_module, "coerce", counting)
    monkeypatch.setattr(study_module, "coerce", counting)
    study = Request("part3", ("lr=0.05", "train.epochs=2"), quick=True).resolve_study()
    study.plan.lines(), study.plan.data_configs(), study.base_config()
    assert parsed == ["0.05"]
    assert dict(study.base)["lr"] == 0.05 and {r.config.train.lr for r in study.plan["train"].runs} == {0.05}


def test_the_data_a_plan_needs_is_listed_in_the_order_stages_need_it():
    study = get_study("elec5307").with_quick()
    configs = study.plan.data_configs()
    assert len(configs) == len(set(configs))
    first = study.plan.stages[0].runs[0].config.data
    assert configs[0] == first
    assert {r.config.data for p in study.plan.stages for r in p.runs} == set(configs)
