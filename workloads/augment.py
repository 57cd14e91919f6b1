"""What happens to a batch on the device between the stored arrays and the model:
training-only augmentations, resizing to the model's input side, and the views
evaluation scores (one table each, workloads.registry).

    augment = train_transform(cfg.data)
    x = augment(x, generator)                 # (B, C, 32, 32) -> (B, C, R, R): augmented, resized
    views = eval_transform(cfg.data)(x)       # (V, B, C, R, R): V = 1, or 5 for five crops

Augmentations run in the order the config lists them, at the stored 32x32
size, then the batch is resized to `resize`. Evaluation never augments: it
takes the config's view (the whole image, a centre crop, or five crops whose
outputs the model averages), resized the same way. Random draws come from a CPU
generator, so a seed gives the same batches on any device, and a run resumed
with the generator's state continues with the same draws.
"""
from __future__ import annotations

import torch

from workloads import transforms as T
from workloads.registry import Registry

STORED = 32  # CIFAR-10's side, as the arrays are kept


def _p(params: dict) -> str | None:
    return None if 0 <= params["p"] <= 1 else "p must be in [0, 1]"


def _range(params: dict, key: str, low: float, high: float) -> str | None:
    pair = params[key]
    return None if len(pair) == 2 and low <= pair[0] <= pair[1] <= high else \
        f"{key} must be two numbers low/high in [{low:g}, {high:g}], e.g. {key}={low:g}/{high:g}"


# Training augmentations: fn(x (B, C, H, W), generator, **params) -> (B, C, H, W), torchvision's
# transform of the same name on each image (workloads.transforms; tests/test_transforms.py).
AUGMENTATIONS = Registry("augment")
AUGMENTATIONS.add("flip", T.hflip, {"p": 0.5}, _p)                     # RandomHorizontalFlip
AUGMENTATIONS.add("vflip", T.vflip, {"p": 0.5}, _p)                    # RandomVerticalFlip
AUGMENTATIONS.add("crop", T.random_crop, {"size": 32, "pad": 4},       # RandomCrop(size, padding=pad)
                  lambda p: None if 1 <= p["size"] <= STORED + 2 * p["pad"] and p["pad"] >= 0
                  else f"needs 1 <= size <= {STORED} + 2 * pad and pad >= 0")
AUGMENTATIONS.add("resized_crop",                                      # RandomResizedCrop(32, scale, ratio)
                  lambda x, gen, scale, ratio: T.random_resized_crop(x, gen, x.shape[-1], scale, ratio),
                  {"scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)},
                  lambda p: _range(p, "scale", 1e-6, 1.0) or _range(p, "ratio", 1e-3, 1e3))
def _affine(params: dict) -> str | None:
    if not (params["degrees"] >= 0 and 0 <= params["translate"] <= 1 and params["shear"] >= 0):
        return "needs degrees >= 0, translate in [0, 1], shear >= 0"
    return _range(params, "scale", 1e-3, 10.0)


AUGMENTATIONS.add("affine",                                            # RandomAffine, bilinear, zero fill
                  lambda x, gen, degrees, translate, scale, shear: T.random_affine(
                      x, gen, degrees, (translate, translate) if translate else None, scale, shear or None),
                  {"degrees": 0.0, "translate": 0.0, "scale": (1.0, 1.0), "shear": 0.0}, _affine)

# Evaluation views: fn(x (B, C, H, W), **params) -> (V, B, C, h, w); meta `views` = V. A model's
# outputs are averaged over the views (FiveCrop at test time).
VIEWS = Registry("eval_view")


def _size(params: dict) -> str | None:
    return None if 1 <= params["size"] <= STORED else f"size must be in 1..{STORED}"


VIEWS.add("full", lambda x: x.unsqueeze(0), views=1)
VIEWS.add("center", lambda x, size: T.center_crop(x, size).unsqueeze(0), {"size": 28}, _size, views=1)
VIEWS.add("five", T.five_crop, {"size": 28}, _size, views=5)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's tensor Resize(size, antialias=True), bilinear, for a whole batch."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return T.resize(x, size)


def train_transform(cfg):
    """fn(x (B, C, 32, 32), generator) -> (B, C, R, R): the batch augmented as `cfg` (a DataConfig)
    lists, then resized. Specs are parsed once here, not at every step."""
    specs = [AUGMENTATIONS.parse(text) for text in cfg.augmentations]

    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for spec in specs:
            x = spec.entry.fn(x, generator, **spec.params)
        return resize(x, cfg.resize)
    return apply


def eval_transform(cfg):
    """fn(x (B, C, 32, 32)) -> (V, B, C, R, R): the views evaluation scores, each resized."""
    spec = VIEWS.parse(cfg.eval_view)

    def apply(x: torch.Tensor) -> torch.Tensor:
        views = spec.entry.fn(x, **spec.params)
        return views if cfg.resize == x.shape[-1] and spec.name == "full" else \
            torch.stack([resize(v, cfg.resize) for v in views])
    return apply
