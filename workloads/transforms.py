"""Image transforms as operations on whole batches of device tensors: random flips and
crops, torchvision's antialiased resize, RandomResizedCrop and RandomAffine, and the
test-time center and five crops. No PIL and no per-image Python loop, so the same code
runs a (B, C, H, W) batch on the CPU or on a GPU.

    gen = torch.Generator().manual_seed(seed)       # on the CPU, whatever x's device
    x = hflip(random_crop(x, gen), gen)             # (B, C, 32, 32): the usual CIFAR pair
    x = random_resized_crop(x, gen, size=32)        # (B, C, 32, 32)
    x = random_affine(x, gen, degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))
    views = five_crop(x, 28)                        # (5, B, C, 28, 28) for test-time averaging

Randomness comes from a CPU generator, so a seed gives the same batches on any device;
the few drawn numbers go to a GPU from pinned memory with non_blocking=True (no stream
sync: a copy from pageable memory may wait for the stream). Each
function draws a fixed amount for a given batch size, whatever the images or how many
attempts succeed, so restoring a checkpointed generator state resumes the same stream.

Each function equals its torchvision counterpart applied image by image (tests/
test_transforms.py): resizing reproduces aten's antialiased bilinear kernel as two
per-image weight matrices, affine maps reproduce torchvision's inverse matrix and grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ATTEMPTS = 10  # RandomResizedCrop's tries per image before its central-crop fallback


def _pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _to(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`t` (drawn on the CPU) on x's device. pin_memory() takes its block from torch's caching
    host allocator, which keeps it until the copy is done: no allocation, no sync."""
    if x.device.type != "cuda":
        return t.to(x.device)
    return t.pin_memory().to(x.device, non_blocking=True)


def _check_float(x: torch.Tensor):
    if not x.is_floating_point():
        raise TypeError(f"interpolating transforms need float images, got {x.dtype}: convert with x.float()")


# --- flips and padded crops -------------------------------------------------------

def hflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p (the draws of augment.py's flip)."""
    b = x.shape[0]
    flip = _to(torch.rand(b, generator=gen) < p, x)
    return torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)


def vflip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image upside down with probability p."""
    b = x.shape[0]
    flip = _to(torch.rand(b, generator=gen) < p, x)
    return torch.where(flip.view(b, 1, 1, 1), x.flip(2), x)


def random_crop(x: torch.Tensor, gen: torch.Generator, size=32, pad: int = 4) -> torch.Tensor:
    """Zero-pad by `pad` on each side, then a random size x size window of each image.
    Draws rows then columns, as augment.py's crop does (same images for 32 and 4)."""
    b, c, h, w = x.shape
    sh, sw = _pair(size)
    if not (0 < sh <= h + 2 * pad and 0 < sw <= w + 2 * pad):
        raise ValueError(f"crop {sh}x{sw} does not fit a {h}x{w} image padded by {pad}")
    padded = F.pad(x, (pad,) * 4)  # zeros: the normalised data's mean
    oy = _to(torch.randint(0, h + 2 * pad - sh + 1, (b,), generator=gen), x)
    ox = _to(torch.randint(0, w + 2 * pad - sw + 1, (b,), generator=gen), x)
    rows = (oy[:, None] + torch.arange(sh, device=x.device))[:, None, :, None]  # (B, 1, sh, 1)
    cols = (ox[:, None] + torch.arange(sw, device=x.device))[:, None, None, :]  # (B, 1, 1, sw)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]  # (B, C, sh, sw)


# --- antialiased resizing ----------------------------------------------------------

def _resize_weights(start: torch.Tensor, length: torch.Tensor, n_in: int, n_out: int) -> torch.Tensor:
    """(B, n_out, n_in) rows of aten's antialiased bilinear kernel (_upsample_bilinear2d_aa)
    for the span [start, start + length) of each image, zero outside it.

    aten: scale = length / n_out; output i is centred at scale * (i + 0.5); the triangle
    filter is stretched to half-width `support` = max(scale, 1) so that a shrink averages
    every input pixel it covers; taps outside the span are dropped, then the row is
    normalised (which is what makes the edges replicate instead of fading to zero)."""
    start, length = start.double(), length.double()  # float64: weights exact to ~1e-16
    scale = length / n_out  # (B,)
    support = scale.clamp(min=1.0)[:, None, None]  # (B, 1, 1)
    centre = scale[:, None] * (torch.arange(n_out, device=start.device, dtype=torch.float64) + 0.5)  # (B, n_out)
    pixel = torch.arange(n_in, device=start.device, dtype=torch.float64) - start[:, None] + 0.5  # (B, n_in)
    weight = (1 - (pixel[:, None, :] - centre[:, :, None]).abs() / support).clamp(min=0)  # (B, n_out, n_in)
    inside = (pixel > 0) & (pixel < length[:, None])  # (B, n_in)
    weight = weight * inside[:, None, :]
    return weight / weight.sum(2, keepdim=True)


def crop_resize(x: torch.Tensor, top, left, height, width, size) -> torch.Tensor:
    """Crop box (top, left, height, width) of each image, (B,) integer tensors with each
    box inside its image, resized to `size` like torchvision's resized_crop(..., antialias=True)."""
    _check_float(x)
    b, c, h, w = x.shape
    sh, sw = _pair(size)
    top, left, height, width = (_to(torch.as_tensor(t), x) for t in (top, left, height, width))
    wy = _resize_weights(top, height, h, sh).to(x.dtype)  # (B, sh, H)
    wx = _resize_weights(left, width, w, sw).to(x.dtype)  # (B, sw, W)
    # Separable, as aten: columns first, then rows. Batched matmuls rather than einsum,
    # which permutes and copies these small operands first.
    cols = torch.bmm(x.reshape(b, c * h, w), wx.transpose(1, 2)).view(b, c, h, sw)  # (B, C, H, sw)
    return wy[:, None] @ cols  # (B, C, sh, sw)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """torchvision's Resize(size, antialias=True), bilinear: an int sets the shorter edge
    (the longer one truncated, keeping the aspect), a pair sets (height, width)."""
    _, _, h, w = x.shape
    if isinstance(size, int):
        short, long = sorted((h, w))
        size = (size, int(size * long / short)) if h <= w else (int(size * long / short), size)
    one = torch.ones(1, dtype=torch.long, device=x.device)
    wy = _resize_weights(0 * one, h * one, h, size[0]).to(x.dtype)[0]  # (sh, H): one box for all
    wx = _resize_weights(0 * one, w * one, w, size[1]).to(x.dtype)[0]  # (sw, W)
    return wy @ (x @ wx.T)  # (B, C, sh, sw)


def resized_crop_boxes(gen: torch.Generator, batch: int, height: int, width: int,
                       scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, h, w), each (B,) int64 on the CPU, distributed as torchvision's
    RandomResizedCrop.get_params: up to 10 attempts of area U(scale) * H * W and a
    log-uniform aspect ratio; the first box that fits is placed uniformly; if none
    fits, the central crop with the aspect clamped into `ratio`."""
    # All attempts and both offsets are drawn for every image, used or not: the same
    # draws for a batch size whatever succeeds, so a restored generator resumes exactly.
    u = torch.rand(batch, ATTEMPTS, 2, generator=gen, dtype=torch.float64)  # (B, 10, 2)
    at = torch.rand(batch, 2, generator=gen, dtype=torch.float64)  # (B, 2)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])  # (B, 10)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])  # (B, 10)
    w = torch.round(torch.sqrt(area * aspect)).long()  # torch.round, like Python's, halves to even
    h = torch.round(torch.sqrt(area / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # (B, 10)
    first = fits.int().argmax(1, keepdim=True)  # (B, 1): argmax returns the first maximum
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]  # (B,)
    top = (at[:, 0] * (height - h + 1)).long().clamp(max=height - h)  # uniform in 0..H-h
    left = (at[:, 1] * (width - w + 1)).long().clamp(max=width - w)
    # torchvision's fallback, the same box for every image that used up its attempts.
    if width / height < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif width / height > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    drawn = torch.stack([top, left, h, w])  # (4, B)
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw])
    return tuple(torch.where(fits.any(1), drawn, fallback[:, None]))  # (top, left, h, w), each (B,)


def random_resized_crop(x: torch.Tensor, gen: torch.Generator, size=32,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """torchvision's RandomResizedCrop(size, scale, ratio, antialias=True) on each image."""
    b, _, h, w = x.shape
    return crop_resize(x, *resized_crop_boxes(gen, b, h, w, scale, ratio), size)  # (B, C, sh, sw)


# --- affine maps -------------------------------------------------------------------

def _inverse_matrix(angle, tx, ty, scale, shear_x, shear_y) -> torch.Tensor:
    """(B, 2, 3) output-to-input maps in pixels about the image centre: torchvision's
    _get_inverse_affine_matrix with centre (0, 0), angles in degrees, clockwise."""
    rot, sx, sy = (torch.deg2rad(torch.as_tensor(t, dtype=torch.float64)) for t in (angle, shear_x, shear_y))
    tx, ty, scale = (torch.as_tensor(t, dtype=torch.float64) for t in (tx, ty, scale))
    # Rotation * shear_y * shear_x, without the scale; determinant 1.
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -(a * torch.tan(sx) + torch.sin(rot))
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = torch.cos(rot) - c * torch.tan(sx)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    row0 = torch.stack([m0, m1, -m0 * tx - m1 * ty], -1)  # undo the translation, then the rest
    row1 = torch.stack([m3, m4, -m3 * tx - m4 * ty], -1)
    return torch.stack([row0, row1], -2)  # (B, 2, 3)


def affine(x: torch.Tensor, angle, tx, ty, scale, shear_x, shear_y) -> torch.Tensor:
    """Each image through its own affine map about the image centre, as torchvision's
    v2.functional.affine(img, angle, [tx, ty], scale, [shear_x, shear_y], BILINEAR):
    (B,) tensors (or numbers) of degrees, pixels, factors; zeros outside the image.

    That function's default fill=None is what this follows. torchvision's RandomAffine
    passes fill=0, which multiplies the already zero-blended border pixels by the
    sampled coverage a second time: its border pixels come out darker."""
    _check_float(x)
    b, _, h, w = x.shape
    theta = _to(_inverse_matrix(angle, tx, ty, scale, shear_x, shear_y).to(x.dtype).expand(b, 2, 3), x)
    # torchvision's _affine_grid: pixel centres relative to the image centre, through
    # theta, then divided by the half-size into grid_sample's align_corners=False units.
    base = torch.ones(h, w, 3, dtype=x.dtype, device=x.device)  # (H, W, 3): x, y, 1
    base[..., 0] = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w, device=x.device)
    base[..., 1] = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h, device=x.device)[:, None]
    half = torch.tensor([0.5 * w, 0.5 * h], dtype=x.dtype, device=x.device)
    grid = base.view(1, h * w, 3) @ (theta.transpose(1, 2) / half)  # (B, H*W, 2)
    return F.grid_sample(x, grid.view(b, h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=False)


def _range(value):
    """torchvision's convention: a number v means the range (-v, v); a sequence is the range(s)."""
    if value is None:
        return None
    return (-float(value), float(value)) if isinstance(value, (int, float)) else tuple(map(float, value))


def affine_params(gen: torch.Generator, batch: int, height: int, width: int,
                  degrees=0, translate=None, scale=None, shear=None):
    """(angle, tx, ty, scale, shear_x, shear_y), each (B,) float64 on the CPU, distributed
    as torchvision's RandomAffine.get_params: angle U(degrees); translations rounded
    U(-t * W, t * W) and U(-t * H, t * H) pixels; scale U(scale); shear_x U(shear[:2])
    and shear_y U(shear[2:]) (a number s means (-s, s) for x alone)."""
    u = torch.rand(batch, 6, generator=gen, dtype=torch.float64)  # always all six: a fixed stream
    span = lambda lo_hi, col: lo_hi[0] + (lo_hi[1] - lo_hi[0]) * u[:, col]  # noqa: E731
    zero = torch.zeros(batch, dtype=torch.float64)
    angle = span(_range(degrees), 0)
    tx, ty = zero, zero
    if translate is not None:  # torch.round, like Python's round, halves to even
        tx = torch.round(span((-translate[0] * width, translate[0] * width), 1))
        ty = torch.round(span((-translate[1] * height, translate[1] * height), 2))
    factor = zero + 1 if scale is None else span(scale, 3)
    shears = _range(shear) or (0.0, 0.0)
    shear_x = span(shears[:2], 4)
    shear_y = span(shears[2:], 5) if len(shears) == 4 else zero
    return angle, tx, ty, factor, shear_x, shear_y


def random_affine(x: torch.Tensor, gen: torch.Generator, degrees=0, translate=None,
                  scale=None, shear=None) -> torch.Tensor:
    """torchvision's RandomAffine on each image, bilinear, zeros outside (see affine)."""
    b, _, h, w = x.shape
    return affine(x, *affine_params(gen, b, h, w, degrees, translate, scale, shear))


# --- test-time views ---------------------------------------------------------------

def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """torchvision's center_crop: zero-padded first where the crop is larger than the image."""
    _, _, h, w = x.shape
    sh, sw = _pair(size)
    if sh > h or sw > w:  # torchvision pads the odd pixel on the bottom/right
        py, px = max(sh - h, 0), max(sw - w, 0)
        x = F.pad(x, (px // 2, (px + 1) // 2, py // 2, (py + 1) // 2))
        h, w = x.shape[-2:]
    # Python's round halves to even: a 32 image's 27 crop starts at 2, its 25 crop at 4.
    top, left = int(round((h - sh) / 2.0)), int(round((w - sw) / 2.0))
    return x[..., top:top + sh, left:left + sw]  # (B, C, sh, sw)


def five_crop(x: torch.Tensor, size) -> torch.Tensor:
    """(5, B, C, sh, sw): top-left, top-right, bottom-left, bottom-right and center crops,
    in torchvision's FiveCrop order."""
    h, w = x.shape[-2:]
    sh, sw = _pair(size)
    if sh > h or sw > w:
        raise ValueError(f"five_crop {sh}x{sw} is larger than the {h}x{w} images")
    return torch.stack([x[..., :sh, :sw], x[..., :sh, w - sw:], x[..., h - sh:, :sw],
                        x[..., h - sh:, w - sw:], center_crop(x, (sh, sw))])
