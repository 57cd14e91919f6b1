import numpy as np
import pytest
import torch
from torchvision import transforms

from workloads.config import DataConfig
from workloads.data import DataError, load_cifar10, prepare, preprocess, split_indices


def test_raw_structure(raw):
    assert raw.train_x.shape == (50000, 3, 32, 32) and raw.train_x.dtype == np.uint8
    assert raw.test_x.shape == (10000, 3, 32, 32)
    assert np.bincount(raw.train_y).tolist() == [5000] * 10


def test_preprocess_matches_torchvision_pipeline(raw):
    pipeline = transforms.Compose([transforms.ToTensor(),
                                   transforms.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
                                   transforms.Grayscale()])
    ours = preprocess(raw.train_x[:8], grayscale=True)
    for i in range(8):
        image = raw.train_x[i].transpose(1, 2, 0)  # (32, 32, 3) HWC, as PIL/ToTensor expect
        expected = pipeline(image).numpy()
        np.testing.assert_allclose(ours[i], expected, atol=1e-5)


def test_grayscale_is_torchvisions_bit_for_bit(raw):
    # preprocess() writes rgb_to_grayscale out (torchvision costs ~1.6 s to import): same floats.
    from torchvision.transforms.functional import rgb_to_grayscale
    colour = torch.from_numpy(preprocess(raw.train_x[:500], grayscale=False))
    ours = preprocess(raw.train_x[:500], grayscale=True)
    assert ours.shape == (500, 1, 32, 32) and ours.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(ours, rgb_to_grayscale(colour).numpy())


def test_split_sizes_balance_overlap_and_seed(raw):
    train, val = split_indices(raw.train_y, 500, seed=0)
    assert len(train) == 45000 and len(val) == 5000
    assert np.bincount(raw.train_y[val]).tolist() == [500] * 10
    assert not set(train) & set(val)
    again_train, again_val = split_indices(raw.train_y, 500, seed=0)
    np.testing.assert_array_equal(val, again_val)
    _, other = split_indices(raw.train_y, 500, seed=1)
    assert not np.array_equal(val, other)


def test_prepare_does_not_depend_on_the_repeat_seed(raw):
    # The split comes from split_seed only: every repeat sees the same data.
    data = prepare(DataConfig(train_subset=300, val_subset=100, train_eval_size=50), raw)
    assert data.train_x.shape == (300, 3, 32, 32) and data.val_x.shape == (100, 3, 32, 32)  # RGB by default
    assert data.test_x.shape == (10000, 3, 32, 32) and data.train_eval_idx.shape == (50,)
    again = prepare(DataConfig(train_subset=300, val_subset=100, train_eval_size=50), raw)
    np.testing.assert_array_equal(data.train_y, again.train_y)
    np.testing.assert_array_equal(data.val_x, again.val_x)


def test_staged_copy_with_other_md5s_is_accepted(data_dir):
    # ../shared/data's md5s differ from torchvision's list; the structural check accepts it.
    assert load_cifar10(data_dir, download=False).train_x.shape[0] == 50000


def test_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found") as err:
        load_cifar10(tmp_path, download=False)
    assert "\n" not in str(err.value) and "--data-dir" in str(err.value)


def test_truncated_batch_is_one_clear_error(tmp_path, data_dir):
    from workloads.data import batch_dir
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in batch_dir(data_dir).iterdir():
        (folder / f.name).write_bytes(f.read_bytes()[:1000] if f.name == "data_batch_3" else f.read_bytes())
    with pytest.raises(DataError, match="data_batch_3 is unreadable"):
        load_cifar10(tmp_path, download=False)


def test_grayscale_off_keeps_three_channels(raw):
    data = prepare(DataConfig(grayscale=False, train_subset=10, val_subset=10, test_subset=10,
                              train_eval_size=5), raw)
    assert data.in_shape == (3, 32, 32)
    assert torch.from_numpy(data.val_x).mean(dim=(0, 2, 3)).abs().max() < 1.0


@pytest.mark.parametrize("normalize, mean, std", [
    ("dataset", (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    ("half", (0.5,) * 3, (0.5,) * 3),
    ("const:mean=0.45:std=0.25", (0.45,) * 3, (0.25,) * 3),
])
def test_normalizations_are_torchvisions(raw, normalize, mean, std):
    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    ours = preprocess(raw.train_x[:4], grayscale=False, normalize=normalize)
    for i in range(4):
        np.testing.assert_allclose(ours[i], pipeline(raw.train_x[i].transpose(1, 2, 0)).numpy(), atol=1e-5)
    plain = preprocess(raw.train_x[:4], grayscale=False, normalize="none")
    np.testing.assert_array_equal(plain, raw.train_x[:4] / np.float32(255))


def test_no_validation_split_trains_on_all_50000(raw):
    """val_per_class=0 (hw2: the tutorial trains on the whole training set)."""
    data = prepare(DataConfig(val_per_class=0, train_eval_size=100), raw)
    assert data.train_x.shape == (50000, 3, 32, 32) and data.val_x.shape == (0, 3, 32, 32)
    np.testing.assert_array_equal(data.train_y, raw.train_y)  # every image, in the files' order
    assert data.train_eval_idx.shape == (100,)
