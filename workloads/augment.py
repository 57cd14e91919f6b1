"""Random augmentations on whole batches, as tensor operations on the batch's
device (no PIL, no per-sample loop).

    x = augment_batch(x, ("flip", "crop"), generator)   # (B, C, H, W) -> (B, C, H, W)

Random draws come from a CPU generator, so a seed gives the same batches on any device;
they go to the device with non_blocking=True, which for these few bytes of pageable
memory means a staged copy without PyTorch's stream synchronisation, so a GPU step
does not wait for the host.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("flip", "crop")
CROP_PAD = 4  # the usual CIFAR random crop: pad 4, crop back to 32


def augment_batch(x: torch.Tensor, ops, generator: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    if "flip" in ops:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device, non_blocking=True)
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    if "crop" in ops:
        padded = F.pad(x, (CROP_PAD,) * 4)  # zeros: the normalised data's mean
        oy = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator).to(x.device, non_blocking=True)
        ox = torch.randint(0, 2 * CROP_PAD + 1, (b,), generator=generator).to(x.device, non_blocking=True)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    return x
