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
import torch.nn.functional as F

from workloads.registry import Registry

STORED = 32  # CIFAR-10's side, as the arrays are kept

# Training augmentations: fn(x (B, C, H, W), generator, **params) -> (B, C, H, W).
AUGMENTATIONS = Registry("augment")


def flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """RandomHorizontalFlip. The draws go to the device with non_blocking=True: for these
    few bytes of pageable memory a staged copy without PyTorch's stream synchronisation."""
    b = len(x)
    flips = (torch.rand(b, generator=generator) < p).to(x.device, non_blocking=True)
    return torch.where(flips.view(b, 1, 1, 1), x.flip(3), x)


def crop(x: torch.Tensor, generator: torch.Generator, size: int = 32, pad: int = 4) -> torch.Tensor:
    """RandomCrop(size, padding=pad): zero padding (the normalised data's mean), a random window."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4)
    oy = torch.randint(0, h + 2 * pad - size + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    ox = torch.randint(0, w + 2 * pad - size + 1, (b,), generator=generator).to(x.device, non_blocking=True)
    rows = (oy[:, None] + torch.arange(size, device=x.device))[:, None, :, None]  # (B, 1, S, 1)
    cols = (ox[:, None] + torch.arange(size, device=x.device))[:, None, None, :]  # (B, 1, 1, S)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def _p(params: dict) -> str | None:
    return None if 0 <= params["p"] <= 1 else "p must be in [0, 1]"


AUGMENTATIONS.add("flip", flip, {"p": 0.5}, _p)
AUGMENTATIONS.add("crop", crop, {"size": 32, "pad": 4},
                  lambda p: None if 1 <= p["size"] <= STORED + 2 * p["pad"] and p["pad"] >= 0
                  else f"needs 1 <= size <= {STORED} + 2 * pad and pad >= 0")

# Evaluation views: fn(x (B, C, H, W), **params) -> (V, B, C, h, w); meta `views` = V.
VIEWS = Registry("eval_view")


def _centre(x: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    return x[:, :, top:top + size, left:left + size]


VIEWS.add("full", lambda x: x.unsqueeze(0), views=1)
VIEWS.add("center", lambda x, size: _centre(x, size).unsqueeze(0), {"size": 28},
          lambda p: None if 1 <= p["size"] <= STORED else f"size must be in 1..{STORED}", views=1)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's tensor Resize(size, antialias=True), bilinear, for a whole batch."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


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
