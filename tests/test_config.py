import pytest

from workloads.config import ConfigError, TrialConfig


def test_defaults_are_the_assignments():
    cfg = TrialConfig()
    assert (cfg.train.optimizer, cfg.train.batch_size, cfg.train.epochs, cfg.train.record_every) == \
        ("adam", 50, 15, 10)
    assert cfg.data.train_eval_size == 5000 and cfg.data.val_per_class == 500 and cfg.data.grayscale


def test_string_overrides_are_typed():
    cfg = TrialConfig().override({"epochs": "3", "lr": "0.1", "grayscale": "false", "arch": "mlp_2",
                                  "lr_schedule": "5:0.01,10:0.001"})
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.1 and cfg.data.grayscale is False
    assert cfg.model.arch == "mlp_2" and cfg.train.lr_schedule == ((5, 0.01), (10, 0.001))


def test_flat_round_trip():
    cfg = TrialConfig().override({"seed": 4, "lr_schedule": ((2, 0.5),)})
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg
    # Tune may hand back lists where we stored tuples.
    flat = {**cfg.to_flat(), "lr_schedule": [[2, 0.5]]}
    assert TrialConfig.from_flat(flat) == cfg


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "0", "epochs must be >= 1"),
    ("epochs", "two", "epochs: expected int"),
    ("batch_size", "-5", "batch_size must be >= 1"),
    ("arch", "resnet_1000", "arch='resnet_1000'"),
    ("activation", "swish", "activation='swish'"),
    ("optimizer", "lbfgs", "choose from adam, sgd, adamw, rmsprop"),
    ("augment", "flip,mixup", "augment: unknown mixup"),
    ("nesterov", "true", "nesterov needs optimizer=sgd"),
    ("width", "0", "width must be > 0"),
    ("grayscale", "maybe", "expected true/false"),
    ("momentum", "1.5", "momentum must be in"),
    ("lr_schedule", "5:0.1,3:0.01", "strictly increasing"),
    ("nonsense", "1", "unknown key 'nonsense'"),
])
def test_bad_overrides_fail_with_one_line(key, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrialConfig().override({key: value})
    assert "\n" not in str(err.value)


def test_sgd_needs_a_learning_rate():
    with pytest.raises(ConfigError, match="sgd needs lr"):
        TrialConfig().override({"optimizer": "sgd"})
    assert TrialConfig().override({"optimizer": "sgd", "lr": "0.01"}).train.lr == 0.01


def test_a_run_without_record_points_is_refused():
    with pytest.raises(ConfigError, match="record_every=20 exceeds the run's 10 steps"):
        TrialConfig().override({"train_subset": "500", "epochs": "1", "record_every": "20"})
