"""Training augmentation of a whole image batch at once, on the batch's device.

torchvision's v2 transforms draw one set of random parameters per call, so on a batched tensor
every image would get the same crop and flip; here each image draws its own (from a seeded
``torch.Generator`` on the CPU: a few integers per image, moved to the batch's device), and the
pixel work is one batched operation per step — torchvision's ``pad`` (reflect), one gather of
all crops, ``horizontal_flip`` under a mask, and ``torchvision.ops.roi_align`` for per-image
resized crops. Modes (the harness key ``augment``):

* ``crop`` (also ``true``): reflect-pad each side by ⌊side/8⌋ (at least 1) at the images' own
  resolution, take a random crop of the original side (offsets uniform in 0..2·pad), flip
  horizontally with probability 1/2. The per-item pipeline pads the *resized* image by 1/8 of
  its side instead: the same proportions, the crop done before rather than after the upsampling.
* ``resized_crop``: torchvision's RandomResizedCrop distribution without its rejection loop —
  area fraction uniform in ``scale`` = (0.08, 1), log aspect ratio uniform in log ``ratio`` =
  (3/4, 4/3), width and height clipped to the image, position uniform — resampled bilinearly to
  the backbone's input side, then the same random flip.
"""
from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF

MODES = ("crop", "resized_crop")


def augment_mode(setting) -> str | None:
    """The mode named by the harness key ``augment`` (false/null → None, true → ``crop``)."""
    if setting in (None, False, "none", "false"):
        return None
    if setting is True or setting == "true":
        return "crop"
    if setting not in MODES:
        raise ValueError(f"unknown augment {setting!r}; valid: false, true, {', '.join(MODES)}")
    return str(setting)


def crop_padding(side: int) -> int:
    """Reflect padding of the ``crop`` mode for an image side: ⌊side/8⌋, at least 1."""
    return max(1, side // 8)


def random_crop_offsets(n: int, pad: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(top, left) offsets (n,) int64, each uniform in 0..2·pad, drawn from ``gen``."""
    tl = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    return tl[0], tl[1]


def pad_crop(x: torch.Tensor, pad: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) reflect-padded by ``pad`` and cropped back to H × W at
    its own (top, left) offset into the padded image; one gather for the whole batch."""
    n, c, h, w = x.shape
    xp = TF.pad(x, [pad, pad, pad, pad], padding_mode="reflect")
    dev = x.device
    rows = (top.to(dev)[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (left.to(dev)[:, None] + torch.arange(w, device=dev))[:, None, None, :]
    return xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
              rows, cols]


def flip_some(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with the images where ``flip`` (N,) is true mirrored left-right."""
    return torch.where(flip.to(x.device)[:, None, None, None], TF.horizontal_flip(x), x)


def random_resized_boxes(n: int, h: int, w: int, gen: torch.Generator, scale=(0.08, 1.0),
                         ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop boxes (n, 4) float ``x1, y1, x2, y2`` in pixel coordinates of an h × w image:
    area fraction uniform in ``scale``, log aspect ratio (w/h) uniform in log ``ratio``,
    sides clipped to the image, position uniform over the valid range."""
    u = torch.rand(4, n, generator=gen, dtype=torch.float64)
    area = h * w * (scale[0] + (scale[1] - scale[0]) * u[0])
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1])
    cw = torch.sqrt(area * aspect).clamp(1.0, w)
    ch = torch.sqrt(area / aspect).clamp(1.0, h)
    x1 = (w - cw) * u[2]
    y1 = (h - ch) * u[3]
    return torch.stack([x1, y1, x1 + cw, y1 + ch], 1).float()


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box resampled (bilinear, pixel-centre aligned) to size × size, batched."""
    idx = torch.arange(len(x), device=x.device, dtype=x.dtype)[:, None]
    rois = torch.cat([idx, boxes.to(x.device, x.dtype)], 1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)


class BatchAugment:
    """Per-image random augmentation of float (N, C, H, W) batches in [0, 1], seeded.

    ``mode``: ``crop`` or ``resized_crop`` (see the module docstring); ``out_size``: the side a
    ``resized_crop`` resamples to (the backbone's input side; None keeps the images' side).
    The random parameters come from a CPU generator seeded with ``seed``, so a run's sequence of
    augmentations depends on the seed alone, on any device.
    """

    def __init__(self, mode: str, seed: int, out_size: int | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown augmentation mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode, self.out_size = mode, out_size
        self.gen = torch.Generator().manual_seed(int(seed))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.mode == "crop":
            pad = crop_padding(min(h, w))
            top, left = random_crop_offsets(n, pad, self.gen)
            x = pad_crop(x, pad, top, left)
        else:
            x = resized_crop(x, random_resized_boxes(n, h, w, self.gen), self.out_size or min(h, w))
        return flip_some(x, torch.rand(n, generator=self.gen) < 0.5)
