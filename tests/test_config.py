import pytest

from workloads.config import ConfigError, TrialConfig


def test_defaults_are_a_general_cifar10_run():
    cfg = TrialConfig()
    assert (cfg.train.optimizer, cfg.train.base_lr, cfg.train.batch_size, cfg.train.epochs) == \
        ("sgd:momentum=0.9", 0.01, 64, 10)
    assert (cfg.train.record_every, cfg.train.record_unit, cfg.train.recorded) == \
        (1, "epoch", ("train_loss", "train_acc", "val_acc"))
    assert (cfg.data.grayscale, cfg.data.normalize, cfg.data.in_shape, cfg.model.arch) == \
        (False, "dataset", (3, 32, 32), "tutorial")
    assert cfg.data.train_eval_size == 5000 and cfg.data.val_per_class == 500


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
    ("activation", "swish", "activation 'swish' is unknown; choose from relu, sigmoid"),
    ("optimizer", "lbfgs", "optimizer 'lbfgs' is unknown; choose from sgd, adam, adamw, rmsprop, adagrad"),
    ("optimizer", "adam:momentum=0.9", "'momentum=0.9' is not a parameter \(known: beta1, beta2, eps\)"),
    ("optimizer", "sgd:nesterov=true", "nesterov needs momentum > 0"),
    ("optimizer", "sgd:momentum=1.5", "momentum must be in"),
    ("optimizer", "sgd:momentum=high", "optimizer sgd:momentum: expected float, got 'high'"),
    ("augment", "flip,mixup", "augment 'mixup' is unknown"),
    ("scheduler", "multistep", "milestones must be whole epochs"),
    ("scheduler", "step:gamma=0", "gamma must be > 0"),
    ("loss", "hinge", "loss 'hinge' is unknown"),
    ("normalize", "imagenet", "normalize 'imagenet' is unknown"),
    ("metrics", "val_acc,f1", "metrics: unknown f1"),
    ("record_unit", "minute", "record_unit='minute'"),
    ("record_loss", "median", "record_loss='median': choose mean or last"),
    ("width", "0", "width must be > 0"),
    ("grayscale", "maybe", "expected true/false"),
    ("lr_schedule", "5:0.1,3:0.01", "strictly increasing"),
    ("snapshot_epochs", "4,20", "snapshot_epochs must lie in 1..epochs-1"),
    ("nonsense", "1", "unknown key 'nonsense'"),
    ("val_per_class", "0", "val_per_class=0 leaves no validation split: leave val_acc and val_loss out"),
    ("val_per_class", "-1", "val_per_class must be in 0..2500"),
])
def test_bad_overrides_fail_with_one_line(key, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrialConfig().override({key: value})
    assert "\n" not in str(err.value)


def test_lr_zero_is_the_optimizers_default():
    assert [TrialConfig().override({"optimizer": o}).train.base_lr for o in ("sgd", "adam", "rmsprop")] == \
        [0.01, 1e-3, 1e-2]
    assert TrialConfig().override({"optimizer": "adam", "lr": "0.1"}).train.base_lr == 0.1


def test_components_are_stored_canonically_so_equal_settings_are_one_config():
    a = TrialConfig().override({"optimizer": "sgd:nesterov=true:momentum=0.9", "scheduler": "step:gamma=0.1",
                                "activation": "leaky_relu:negative_slope=0.01", "metrics": "val_acc,train_acc"})
    b = TrialConfig().override({"optimizer": "sgd:momentum=0.9:nesterov=true", "scheduler": "step",
                                "activation": "leaky_relu", "metrics": "train_loss,val_acc,train_acc"})
    assert a == b and hash(a) == hash(b)
    assert (a.train.optimizer, a.train.scheduler, a.model.activation, a.train.metrics) == (
        "sgd:momentum=0.9:nesterov=true", "step", "leaky_relu", "train_loss,val_acc,train_acc")


def test_record_points_by_steps_or_epochs():
    cfg = TrialConfig().override({"train_subset": "500", "batch_size": "50", "epochs": "5"})
    assert cfg.record_points() == [10, 20, 30, 40, 50]                   # every epoch
    assert cfg.override({"record_every": "2"}).record_points() == [20, 40, 50]  # and always the last
    assert cfg.override({"record_unit": "step", "record_every": "15"}).record_points() == [15, 30, 45]
    steps, records, images = cfg.override({"metrics": "val_acc,test_acc"}).work()
    assert (steps, records, images) == (50, 5, 5 * (5000 + 10000) + 10000)


def test_a_run_without_record_points_is_refused():
    with pytest.raises(ConfigError, match="record_every=20 exceeds the run's 10 steps"):
        TrialConfig().override({"train_subset": "500", "batch_size": "50", "epochs": "1", "record_unit": "step",
                                "record_every": "20"})
