import torch

from workloads.augment import AUGMENTATIONS, eval_transform, train_transform
from workloads.transforms import hflip as flip
from workloads.transforms import random_crop as crop
from workloads.config import DataConfig

PAD = AUGMENTATIONS["crop"].params["pad"]


def test_flip_and_crop_are_per_sample_and_seeded():
    x = torch.arange(4 * 2 * 32 * 32, dtype=torch.float32).view(4, 2, 32, 32)
    augment = train_transform(DataConfig(augment="flip,crop"))
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)


def test_crop_equals_slicing_the_padded_image():
    x = torch.randn(6, 3, 32, 32)
    out = crop(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 2 * PAD + 1, (6,), generator=g)
    ox = torch.randint(0, 2 * PAD + 1, (6,), generator=g)
    padded = torch.nn.functional.pad(x, (PAD,) * 4)
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32])


def test_flip_mirrors_exactly_the_chosen_images():
    x = torch.randn(64, 1, 32, 32)
    out = flip(x, torch.Generator().manual_seed(1))
    flipped = [bool(torch.equal(out[i], x[i].flip(2))) for i in range(64)]
    kept = [bool(torch.equal(out[i], x[i])) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48


def test_augmentations_are_canonical_specs_and_evaluation_never_augments():
    cfg = DataConfig(augment="flip:p=0.5, crop:pad=4:size=32")
    assert cfg.augment == "flip,crop"  # the defaults drop out: one config, however it is written
    x = torch.randn(5, 3, 32, 32)
    views = eval_transform(cfg)(x)
    assert views.shape == (1, 5, 3, 32, 32) and torch.equal(views[0], x)
    small = DataConfig(resize=24)
    assert eval_transform(small)(x).shape == (1, 5, 3, 24, 24)
    assert train_transform(small)(x, torch.Generator()).shape == (5, 3, 24, 24)


def test_every_augmentation_keeps_the_batch_shape_and_follows_its_seed():
    x = torch.randn(8, 3, 32, 32)
    for spec in ("flip", "vflip", "crop:size=28:pad=0", "resized_crop:scale=0.5/1", "affine:degrees=15:translate=0.1",
                 "affine:scale=0.9/1.1:shear=5"):
        augment = train_transform(DataConfig(augment=spec))
        a, b = augment(x, torch.Generator().manual_seed(5)), augment(x, torch.Generator().manual_seed(5))
        assert torch.equal(a, b), spec
        assert a.shape == x.shape, spec  # crop:size=28 is resized back to the model's 32
        assert not torch.equal(a, x), spec


def test_five_crop_views_and_bad_specs():
    import pytest

    from workloads.config import ConfigError
    x = torch.randn(3, 3, 32, 32)
    views = eval_transform(DataConfig(eval_view="five:size=24"))(x)
    assert views.shape == (5, 3, 3, 32, 32)  # five 24-pixel crops, each resized to the model's input
    for key, value, message in (("augment", "resized_crop:scale=0.5", "scale must be two numbers"),
                                ("augment", "affine:translate=2", "translate in \\[0, 1\\]"),
                                ("eval_view", "five:size=40", "size must be in 1..32")):
        with pytest.raises(ConfigError, match=message):
            DataConfig(**{key: value})
