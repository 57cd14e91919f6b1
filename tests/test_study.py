"""Golden tests of sweep expansion: exactly which trials a study produces."""
import pytest

from search_spaces import get_study, studies
from search_spaces.study import Stage, Study
from workloads.config import ConfigError


def test_part3_full_grid():
    study = get_study("part3")
    trials = study.stage_trials(study.stages[0], {})
    assert len(trials) == 50
    assert [t.name for t in trials[:12]] == [
        "mlp_1_r0", "mlp_1_r1", "mlp_1_r2", "mlp_1_r3", "mlp_1_r4", "mlp_1_r5", "mlp_1_r6",
        "mlp_1_r7", "mlp_1_r8", "mlp_1_r9", "mlp_2_r0", "mlp_2_r1"]
    assert [t.config.train.seed for t in trials[:10]] == list(range(10))
    assert {t.config.model.arch for t in trials} == {"mlp_1", "mlp_2", "cnn_3", "cnn_4", "cnn_5"}
    cfg = trials[-1].config
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer, cfg.data.train_subset) == \
        (15, 50, "adam", 0)
    # The assignment's curves: loss.item() at every 10th step, training accuracy on the training split.
    assert (cfg.train.record_every, cfg.train.record_loss, cfg.data.train_eval_size) == (10, "last", 0)
    assert cfg.work()[1:] == (1350, 1350 * (45000 + 5000) + 10000)  # records; images scored


def test_part3_quick_and_overrides():
    study = get_study("part3").with_quick().with_overrides({"archs": "cnn_3,mlp_1", "repeats": "3",
                                                            "epochs": "2"})
    trials = study.stage_trials(study.stages[0], {})
    assert [t.name for t in trials] == ["cnn_3_r0", "cnn_3_r1", "cnn_3_r2", "mlp_1_r0", "mlp_1_r1", "mlp_1_r2"]
    assert {t.config.train.epochs for t in trials} == {2}
    assert {t.config.data.train_subset for t in trials} == {5000}  # from --quick
    assert {t.config.data.train_eval_size for t in trials} == {1000}  # --quick scores a sample
    assert dict(study.user)["repeats"] == "3"


def test_seed_override_shifts_every_repeat():
    study = get_study("part3").with_overrides({"seed": "100", "repeats": "2", "arch": "cnn_5"})
    assert [t.config.train.seed for t in study.stage_trials(study.stages[0], {})] == [100, 101]


@pytest.mark.parametrize("overrides, message", [
    ({"repeats": "0"}, "repeats must be >= 1"),
    ({"arch": "cnn_9"}, "arch='cnn_9'"),
    ({"bogus": "1"}, "unknown key 'bogus' for study part3"),
    ({"batch_size": "0"}, "batch_size must be >= 1"),
])
def test_bad_study_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_study("part3").with_overrides(overrides)


def test_derived_stage_gets_earlier_results():
    seen = {}

    def derive(earlier):
        seen.update(earlier)
        return {"epochs": earlier["first"] + 1, "lr": [0.1, 0.2]}

    study = Study("demo", "", stages=(Stage("first"), Stage("second", fixed=(("optimizer", "sgd"), ("lr", 0.5)),
                                                            derive=derive)), repeats=2)
    trials = study.stage_trials(study.stages[1], {"first": 4})
    assert seen == {"first": 4}
    assert [(t.group, t.repeat, t.config.train.epochs, t.config.train.lr) for t in trials] == [
        ("0.1", 0, 5, 0.1), ("0.1", 1, 5, 0.1), ("0.2", 0, 5, 0.2), ("0.2", 1, 5, 0.2)]


def test_every_registered_study_expands():
    for name, study in studies().items():
        for s in (study, study.with_quick()):
            for stage in s.stages:
                if stage.planned:  # not derived from results, not a search
                    assert s.stage_trials(stage, {}), name


def test_variant_stages_name_groups_by_variant_and_say_what_they_change():
    from search_spaces.study import Variant
    study = Study("demo", "", stages=(Stage("v", variants=(
        Variant("base"), Variant("small", (("batch_size", 16),)), Variant("adam", (("optimizer", "adam"),), "Adam")),),),
        repeats=2)
    trials = study.stage_trials(study.stages[0], {})
    assert [(t.name, t.changes, t.config.train.batch_size, t.config.train.seed) for t in trials] == [
        ("base_r0", "the base", 64, 0), ("base_r1", "the base", 64, 1),
        ("small_r0", "batch_size=16", 16, 0), ("small_r1", "batch_size=16", 16, 1),
        ("adam_r0", "Adam", 64, 0), ("adam_r1", "Adam", 64, 1)]
    # With axes: each variant at every grid point (what `lr=0.1,0.2` on the command line makes of it).
    both = Study("demo", "", stages=(Stage("x", axes=(("lr", (0.1, 0.2)),), variants=(
        Variant("a"), Variant("b", (("batch_size", 16),)))),))
    assert [(t.name, t.changes, t.config.train.lr, t.config.train.batch_size)
            for t in both.stage_trials(both.stages[0], {})] == [
        ("a_0.1_r0", "the base, lr=0.1", 0.1, 64), ("a_0.2_r0", "the base, lr=0.2", 0.2, 64),
        ("b_0.1_r0", "batch_size=16, lr=0.1", 0.1, 16), ("b_0.2_r0", "batch_size=16, lr=0.2", 0.2, 16)]
    with pytest.raises(ConfigError, match="variant a: unknown key 'colour'"):
        Variant("a", (("colour", "red"),))


def test_group_names_must_be_unique_across_stages():
    from search_spaces.study import Variant
    study = Study("demo", "", stages=(Stage("one", variants=(Variant("a"),)), Stage("two", variants=(Variant("a"),))))
    with pytest.raises(ConfigError, match="group 'a' is in stages one and two"):
        study.with_overrides({})


def test_prefix_sharing_plans_one_run_per_length_family():
    from search_spaces.plan import plan_runs
    study = Study("demo", "", stages=(Stage("grid", axes=(("lr", (0.1, 0.01)), ("epochs", (1, 2, 4))),
                                            prefix="epochs"),), repeats=2)
    trials = study.stage_trials(study.stages[0], {})
    runs = plan_runs(trials, "epochs")
    assert len(trials) == 12 and len(runs) == 4
    assert [(r.name, r.config.train.epochs, r.config.train.snapshot_epochs, [t.name for t in r.trials]) for r in runs] == [
        ("0.1_4_r0", 4, (1, 2), ["0.1_4_r0", "0.1_2_r0", "0.1_1_r0"]),
        ("0.1_4_r1", 4, (1, 2), ["0.1_4_r1", "0.1_2_r1", "0.1_1_r1"]),
        ("0.01_4_r0", 4, (1, 2), ["0.01_4_r0", "0.01_2_r0", "0.01_1_r0"]),
        ("0.01_4_r1", 4, (1, 2), ["0.01_4_r1", "0.01_2_r1", "0.01_1_r1"])]
    assert len(plan_runs(trials)) == 12  # without prefix sharing every length trains
    cosine = Study("demo", "", stages=(Stage("grid", axes=(("epochs", (1, 2)),), fixed=(("scheduler", "cosine"),),
                                             prefix="epochs"),))
    with pytest.raises(ConfigError, match="cannot share prefixes.*scheduler=cosine depends on the run's length"):
        cosine.with_overrides({})


def test_stage_scoped_overrides_set_or_restrict_one_stage():
    study = Study("demo", "", stages=(Stage("grid", axes=(("lr", (0.1, 0.01)),)),
                                      Stage("long", fixed=(("epochs", 20),))))
    changed = study.with_overrides({"long.epochs": "3", "grid.lr": "0.01", "long.batch_size": "8"})
    grid, long = changed.stages
    assert grid.axes == (("lr", (0.01,)),) and grid.fixed == ()
    assert [(t.config.train.epochs, t.config.train.batch_size) for t in changed.stage_trials(long, {})] == [(3, 8)]
    with pytest.raises(ConfigError, match="unknown key 'colour' in long.colour"):
        study.with_overrides({"long.colour": "red"})
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        study.with_overrides({"long.epochs": "0"})
    with pytest.raises(ConfigError, match="unknown key 'short.epochs' for study demo"):
        study.with_overrides({"short.epochs": "3"})


def test_study_options_are_applied_after_the_config_overrides():
    from dataclasses import replace
    seen = []

    def only(study, raw):
        seen.append(dict(study.base))
        return replace(study, stages=tuple(s for s in study.stages if s.name == raw))

    study = Study("demo", "", stages=(Stage("a"), Stage("b")), options=(("only", only),))
    picked = study.with_overrides({"only": "b", "epochs": "2"})
    # The option sees the config override already parsed (once, where the overrides are read);
    # the user's words are kept as typed.
    assert [s.name for s in picked.stages] == ["b"] and seen == [{"epochs": 2}]
    assert dict(picked.user) == {"only": "b", "epochs": "2"}


def test_a_variant_may_compute_its_changes_from_the_stages_config():
    from search_spaces.study import Variant
    twice = Variant("wide", lambda cfg: {"width": 2 * cfg["width"]}, "twice the base width")
    study = Study("demo", "", stages=(Stage("v", variants=(Variant("base"), twice)),), base=(("width", 0.25),))
    trials = study.stage_trials(study.stages[0], {})
    assert [(t.group, t.changes, t.config.model.width) for t in trials] == [
        ("base", "the base", 0.25), ("wide", "twice the base width", 0.5)]
    narrow = study.with_overrides({"width": "0.125"})  # --quick's narrower base keeps the ratio
    assert [t.config.model.width for t in narrow.stage_trials(narrow.stages[0], {})] == [0.125, 0.25]
    with pytest.raises(ConfigError, match="need a note"):
        Variant("wide", lambda cfg: {})
