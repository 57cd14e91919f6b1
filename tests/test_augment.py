import torch

from workloads.augment import CROP_PAD, augment_batch


def test_flip_and_crop_are_per_sample_and_seeded():
    x = torch.arange(4 * 2 * 32 * 32, dtype=torch.float32).view(4, 2, 32, 32)
    a = augment_batch(x, ("flip", "crop"), torch.Generator().manual_seed(0))
    b = augment_batch(x, ("flip", "crop"), torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)


def test_crop_equals_slicing_the_padded_image():
    x = torch.randn(6, 3, 32, 32)
    g = torch.Generator().manual_seed(3)
    out = augment_batch(x, ("crop",), g)
    g = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 2 * CROP_PAD + 1, (6,), generator=g)
    ox = torch.randint(0, 2 * CROP_PAD + 1, (6,), generator=g)
    padded = torch.nn.functional.pad(x, (CROP_PAD,) * 4)
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32])


def test_flip_mirrors_exactly_the_chosen_images():
    x = torch.randn(64, 1, 32, 32)
    out = augment_batch(x, ("flip",), torch.Generator().manual_seed(1))
    flipped = [bool(torch.equal(out[i], x[i].flip(2))) for i in range(64)]
    kept = [bool(torch.equal(out[i], x[i])) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept)) and 16 < sum(flipped) < 48
