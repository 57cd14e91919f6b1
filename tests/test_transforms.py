"""Batched transforms against what they replace: augment.py's flip and crop draw for
draw, torchvision's functional ops image by image, torchvision's parameter sampling in
distribution, and the same stream of draws from a restored generator.

Tolerances follow from the arithmetic, for images in [0, 1) (max|x| <= 1). Antialiased
resizing: each output is a convex combination, taken in two passes, of at most `taps` =
2 * max(in/out, 1) + 1 inputs per pass. aten computes its tap positions in the image dtype,
so each of its weights is off by up to ~4 eps * (input size): in float32 ~1.5e-5 at 32
pixels, so a direct float32 comparison could not promise 1e-5; in float64 it is ~1e-14 and
we compare with torchvision there, within (taps_y + taps_x + 4) * 4 eps * n_in (< 1e-12).
Our float32 path (float64 weights rounded once, then two sums) is checked against that
float64 reference within (taps_y + taps_x + 4) * eps, which is below 1e-5. Affine: sample
positions differ by a few eps * (image size) pixels, and bilinear output moves at most
2 * max|x| per pixel of position, so 16 * eps * size (~1e-13 in float64)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as V1
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from workloads import transforms as T

EPS32, EPS64 = torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a trial runs, and fair to a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def images(b=8, c=3, h=32, w=32, dtype=torch.float32, seed=0):
    # Image-like values in [0, 1), so max|x| <= 1 in the bounds above.
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- flips and crops: augment.py's draws, copied here as the reference -------------

def reference_flip(x, generator):
    b = x.shape[0]
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device, non_blocking=True)
    return torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)


CROP_PAD = 4


def reference_crop(x, generator):
    b, _, h, w = x.shape
    padded = F.pad(x, (CROP_PAD,) * 4)
    oy = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    ox = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def test_hflip_and_random_crop_reproduce_augment_draw_for_draw():
    x = images(64)
    ours, ref = gen(7), gen(7)
    for _ in range(3):  # several batches: the generators must stay in step
        assert torch.equal(T.hflip(x, ours), reference_flip(x, ref))
        assert torch.equal(T.random_crop(x, ours, size=32, pad=4), reference_crop(x, ref))
    assert torch.equal(ours.get_state(), ref.get_state())
    out = T.hflip(x, gen(1))
    flipped = sum(torch.equal(out[i], x[i].flip(2)) for i in range(64))
    assert 10 < flipped < 54
    assert all(torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2)) for i in range(64))


def test_vflip_is_hflip_of_the_transposed_images():
    x = images(32, h=24, w=20)
    out = T.vflip(x, gen(3), p=0.3)
    assert torch.equal(out, T.hflip(x.transpose(2, 3), gen(3), p=0.3).transpose(2, 3))
    assert torch.equal(T.vflip(x, gen(3), p=0.0), x) and torch.equal(T.vflip(x, gen(3), p=1.0), x.flip(2))


def test_random_crop_of_other_sizes_slices_the_padded_image():
    x = images(16, h=28, w=36)
    out = T.random_crop(x, gen(5), size=(24, 30), pad=2)
    g = gen(5)  # rows then columns, over every offset that fits: 0..H+2*pad-size
    oy = torch.randint(0, 28 + 4 - 24 + 1, (16,), generator=g)
    ox = torch.randint(0, 36 + 4 - 30 + 1, (16,), generator=g)
    padded = F.pad(x, (2,) * 4)
    assert out.shape == (16, 3, 24, 30)
    for i in range(16):
        assert torch.equal(out[i], padded[i, :, oy[i]:oy[i] + 24, ox[i]:ox[i] + 30])


# --- antialiased resizing against torchvision ------------------------------------

def taps(n_in, n_out):
    return 2 * max(n_in / n_out, 1.0) + 1


def resize_tolerance(dtype, n_in, size):
    sh, sw = (size, size) if isinstance(size, int) else size
    bound = (taps(n_in, sh) + taps(n_in, sw) + 4) * torch.finfo(dtype).eps
    return bound if dtype == torch.float32 else bound * 4 * n_in  # float64: aten's tap positions too


@pytest.mark.parametrize("shape,size", [((32, 32), 8), ((32, 32), 64), ((32, 32), 31),
                                        ((32, 32), (20, 40)), ((24, 40), 16), ((40, 24), 30)])
def test_resize_matches_torchvision(shape, size):
    x = images(4, h=shape[0], w=shape[1], dtype=torch.float64)
    ref = TF.resize(x, [size] if isinstance(size, int) else list(size), antialias=True)
    out = T.resize(x, size)
    assert out.shape == ref.shape and out.dtype == torch.float64
    assert (out - ref).abs().max() <= resize_tolerance(torch.float64, max(shape), out.shape[-2:])
    out32 = T.resize(x.float(), size)
    tol = resize_tolerance(torch.float32, max(shape), out.shape[-2:])
    assert out32.dtype == torch.float32 and tol <= 1e-5 and (out32.double() - ref).abs().max() <= tol


def boxes(b, h, w, seed):
    """Random boxes inside an h x w image, with the edge cases: 1-pixel-high and 1-pixel-wide
    strips, 1x1, the full image."""
    g = gen(seed)
    bh, bw = torch.randint(1, h + 1, (b,), generator=g), torch.randint(1, w + 1, (b,), generator=g)
    bh[:4], bw[4:8], bh[8], bw[8] = 1, 1, 1, 1
    bh[9:12], bw[9:12] = h, w
    top = (torch.rand(b, generator=g) * (h - bh + 1)).long()
    left = (torch.rand(b, generator=g) * (w - bw + 1)).long()
    return top, left, bh, bw


@pytest.mark.parametrize("size", [8, 32, 48, (20, 40)])  # shrink (antialiased), same, enlarge, non-square
def test_crop_resize_matches_torchvision_box_by_box(size):
    x = images(40, h=32, w=28, dtype=torch.float64, seed=1)
    top, left, bh, bw = boxes(40, 32, 28, seed=2)
    out = T.crop_resize(x, top, left, bh, bw, size)
    out32 = T.crop_resize(x.float(), top, left, bh, bw, size)
    sh, sw = (size, size) if isinstance(size, int) else size
    assert out.shape == out32.shape == (40, 3, sh, sw) and out32.dtype == torch.float32
    for i in range(40):
        box = [int(t[i]) for t in (top, left, bh, bw)]
        ref = TF.resized_crop(x[i], *box, [sh, sw], antialias=True)
        assert (out[i] - ref).abs().max() <= resize_tolerance(torch.float64, 32, (sh, sw)), box
        # taps from this box's own scale: a 1-pixel strip has few, a full image many
        tol = (taps(box[2], sh) + taps(box[3], sw) + 4) * EPS32
        assert (out32[i].double() - ref).abs().max() <= tol, box


# --- RandomResizedCrop's boxes ------------------------------------------------------

def ks_distance(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = torch.sort(a).values, torch.sort(b).values
    at = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, at, right=True) / len(a)
    cdf_b = torch.searchsorted(b, at, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


N_BOXES, STATISTICS, FALSE_FAIL = 20_000, 4, 1e-6
# Why this threshold is safe: Massart's DKW inequality, P(sup|F_n - F| > e) <= 2 exp(-2 n e^2),
# holds for every n and every distribution, discrete ones included (these are integer
# boxes). If both samples come from the same F, D = sup|F_a - F_b| > e needs one of them
# more than e/2 from F: P(D > e) <= 4 exp(-n e^2 / 2). Solving for a per-statistic
# probability FALSE_FAIL / STATISTICS (a union bound over the four) gives e ~ 0.041 for
# n = 20,000, so a correct implementation fails with probability below 1e-6 (for any seed).
# (Our float64 draws against torchvision's float32 ones move F by ~1e-7, far inside e.)
KS_LIMIT = math.sqrt(2 * math.log(4 * STATISTICS / FALSE_FAIL) / N_BOXES)


def box_statistics(top, left, bh, bw, h, w):
    top, left, bh, bw = (t.double() for t in (top, left, bh, bw))
    return {"area": bh * bw / (h * w), "log_aspect": torch.log(bw / bh),
            "centre_y": (top + bh / 2) / h, "centre_x": (left + bw / 2) / w}


def test_resized_crop_boxes_follow_torchvision_distribution():
    h, w, scale, ratio = 32, 32, (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(0)
    theirs = torch.tensor([V1.RandomResizedCrop.get_params(torch.empty(3, h, w), list(scale), list(ratio))
                           for _ in range(N_BOXES)]).T  # (4, N): i, j, h, w
    ours = T.resized_crop_boxes(gen(0), N_BOXES, h, w, scale, ratio)
    top, left, bh, bw = ours
    assert (bh >= 1).all() and (bw >= 1).all() and (top + bh <= h).all() and (left + bw <= w).all()
    expected = box_statistics(*theirs, h, w)
    for name, values in box_statistics(*ours, h, w).items():
        assert ks_distance(values, expected[name]) < KS_LIMIT, name
    # The test has power: a doubled lower scale bound is caught.
    shifted = box_statistics(*T.resized_crop_boxes(gen(0), N_BOXES, h, w, (0.16, 1.0), ratio), h, w)
    assert ks_distance(shifted["area"], expected["area"]) > KS_LIMIT


# Wider than the ratio allows, taller, and within it: the clamped sides round (37.5, 42.9).
@pytest.mark.parametrize("h,w,ratio", [(32, 32, (1.0, 1.0)), (30, 50, (0.5, 1.25)), (50, 30, (0.7, 3.0)),
                                       (30, 40, (1.0, 2.0))])
def test_resized_crop_boxes_fall_back_to_torchvision_central_crop(h, w, ratio):
    scale = (2.0, 3.0)  # every attempt is larger than the image
    expected = V1.RandomResizedCrop.get_params(torch.empty(3, h, w), list(scale), list(ratio))
    ours = torch.stack(T.resized_crop_boxes(gen(0), 50, h, w, scale, ratio), 1)  # (50, 4)
    assert ours.dtype == torch.long and (ours == torch.tensor(expected)).all(), expected


def test_random_resized_crop_is_its_boxes_resized():
    x = images(16)
    out = T.random_resized_crop(x, gen(4), size=24, scale=(0.2, 0.9))
    assert torch.equal(out, T.crop_resize(x, *T.resized_crop_boxes(gen(4), 16, 32, 32, (0.2, 0.9)), 24))


# --- affine --------------------------------------------------------------------------

PARAMS = [(30.0, 3, -2, 1.2, 10.0, 0.0), (-75.0, 0, 5, 0.8, -20.0, 15.0), (90.0, 0, 0, 1.0, 0.0, 0.0),
          (0.0, 0, 0, 1.0, 0.0, 0.0), (12.5, -7, 4, 0.6, 0.0, -30.0), (180.0, 1, 1, 1.5, 45.0, 5.0)]


def reference_affine(img, p):
    return TF.affine(img, angle=p[0], translate=[p[1], p[2]], scale=p[3], shear=[p[4], p[5]],
                     interpolation=InterpolationMode.BILINEAR)


def test_affine_matches_torchvision_image_by_image():
    x = images(len(PARAMS), h=24, w=30, dtype=torch.float64)
    columns = [torch.tensor(c, dtype=torch.float64) for c in zip(*PARAMS)]  # a different map per image
    out, out32 = T.affine(x, *columns), T.affine(x.float(), *columns)
    assert out.shape == x.shape and out32.dtype == torch.float32
    for i, p in enumerate(PARAMS):
        ref = reference_affine(x[i], p)
        assert (out[i] - ref).abs().max() <= 16 * EPS64 * 30, p
        # float32: ours and torchvision's each carry the position rounding of the bound
        assert (out32[i] - reference_affine(x[i].float(), p)).abs().max() <= 2 * 16 * EPS32 * 30, p
    same = T.affine(x, *PARAMS[0])  # plain numbers: one map for the whole batch
    assert torch.equal(same[0], out[0])
    assert (same[1] - reference_affine(x[1], PARAMS[0])).abs().max() <= 16 * EPS64 * 30


def test_random_affine_draws_within_torchvision_ranges():
    b, h, w = 4000, 24, 40
    angle, tx, ty, scale, sx, sy = T.affine_params(gen(2), b, h, w, degrees=20, translate=(0.1, 0.25),
                                                   scale=(0.8, 1.1), shear=(-5, 10, 2, 3))
    ranges = [(angle, -20, 20), (tx, -4, 4), (ty, -6, 6), (scale, 0.8, 1.1), (sx, -5, 10), (sy, 2, 3)]
    for values, lo, hi in ranges:
        # within the range, and reaching across it (4000 draws leave no gap of 1%)
        assert lo <= values.min() < lo + 0.01 * (hi - lo) and hi - 0.01 * (hi - lo) < values.max() <= hi
    assert torch.equal(tx, tx.round()) and torch.equal(ty, ty.round())  # whole pixels, as get_params
    *_, sx, sy = T.affine_params(gen(2), b, h, w, shear=8)  # a number: x shear only, (-8, 8)
    assert sx.abs().max() <= 8 and sx.abs().max() > 7.9 and (sy == 0).all()
    x = images(8)
    drawn = T.affine_params(gen(9), 8, 32, 32, 15, (0.1, 0.1), (0.9, 1.1), 5)
    assert torch.equal(T.random_affine(x, gen(9), 15, (0.1, 0.1), (0.9, 1.1), 5), T.affine(x, *drawn))


# --- test-time views -----------------------------------------------------------------

@pytest.mark.parametrize("size", [28, 27, 25, (20, 30), 32, 1])  # 27 and 25: round() halves to even
def test_center_and_five_crop_equal_torchvision(size):
    x = images(3, h=32, w=36)
    pair = [size, size] if isinstance(size, int) else list(size)
    assert torch.equal(T.center_crop(x, size), TF.center_crop(x, pair))
    views = T.five_crop(x, size)
    assert views.shape == (5, 3, 3, *pair)
    assert all(torch.equal(v, r) for v, r in zip(views, TF.five_crop(x, pair)))


def test_center_crop_larger_than_the_image_pads_as_torchvision():
    x = images(2, h=27, w=30)
    for size in (31, (33, 30), (28, 35)):
        pair = [size, size] if isinstance(size, int) else list(size)
        assert torch.equal(T.center_crop(x, size), TF.center_crop(x, pair))
    with pytest.raises(ValueError):
        T.five_crop(x, 31)


# --- seeds, resumption, dtypes -------------------------------------------------------

RANDOM = {
    "hflip": lambda x, g: T.hflip(x, g),
    "vflip": lambda x, g: T.vflip(x, g),
    "random_crop": lambda x, g: T.random_crop(x, g),
    "random_resized_crop": lambda x, g: T.random_resized_crop(x, g, size=32),
    "random_affine": lambda x, g: T.random_affine(x, g, 10, (0.1, 0.1), (0.9, 1.1), (-5, 5, -5, 5)),
}


@pytest.mark.parametrize("name", RANDOM)
def test_seeded_draws_resume_from_a_restored_generator(name):
    fn, x = RANDOM[name], images(16, dtype=torch.float64)
    g = gen(11)
    first = fn(x, g)
    state = g.get_state()  # as a checkpoint saves it
    second, third = fn(x, g), fn(x, g)
    g = gen(0)
    g.set_state(state)
    assert torch.equal(fn(x, g), second) and torch.equal(fn(x, g), third)
    assert torch.equal(fn(x, gen(11)), first) and not torch.equal(first, second)
    assert first.dtype == torch.float64 and first.shape == x.shape


def test_draws_depend_only_on_the_batch_size():
    # All attempts fail or none do, a translation or none: the same numbers are drawn.
    a, b = gen(1), gen(1)
    T.resized_crop_boxes(a, 64, 32, 32, (2.0, 3.0))
    T.resized_crop_boxes(b, 64, 32, 32, (0.5, 0.6))
    assert torch.equal(a.get_state(), b.get_state())
    T.affine_params(a, 64, 32, 32)
    T.affine_params(b, 64, 32, 32, 30, (0.2, 0.2), (0.5, 2.0), (-5, 5, -5, 5))
    assert torch.equal(a.get_state(), b.get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_batches():
    x = images(32, dtype=torch.float64)
    for name, fn in RANDOM.items():
        on_gpu = fn(x.cuda(), gen(5))
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), fn(x, gen(5)), rtol=0, atol=1e-12, msg=name)
    torch.testing.assert_close(T.resize(x.cuda(), 20).cpu(), T.resize(x, 20), rtol=0, atol=1e-12)
    assert torch.equal(T.five_crop(x.cuda(), 28).cpu(), T.five_crop(x, 28))


def test_channels_last_batches_give_the_same_images():
    # train() may keep the data set in NHWC for its convolutions
    x = images(8, dtype=torch.float64)
    nhwc = x.contiguous(memory_format=torch.channels_last)
    for name, fn in RANDOM.items():
        assert torch.equal(fn(nhwc, gen(2)), fn(x, gen(2))), name
    assert torch.equal(T.resize(nhwc, 20), T.resize(x, 20))
