"""The paper's training augmentation, applied to a whole batch on the trial's device.

The reference (LRUNET_SPEC.md §3) applies, per image with PIL: RandomCrop(32, padding=4) with zero
fill, RandomRotation(10) (torchvision's default nearest interpolation, zero fill), then
RandomHorizontalFlip. Here the three are one affine map per image, sampled with a seeded
`torch.Generator` and applied with one `affine_grid`/`grid_sample` call in nearest mode: the crop
is an integer shift, so composing it with the rotation samples exactly the pixels the sequential
version would, and flipping the output is a sign change of its x axis.

Fashion-MNIST's 28x28 images become 32x32 crops of the 36x36 padded image, as in the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_affine(
    batch: int,
    in_size: tuple[int, int],
    out_size: int,
    generator: torch.Generator,
    *,
    pad: int = 4,
    degrees: float = 10.0,
    flip: bool = True,
) -> torch.Tensor:
    """(batch, 2, 3) `affine_grid` matrices: random crop, rotation and horizontal flip.

    In pixel units, output pixel p maps to source pixel R^-1 F (p - c) + c + (o - pad), where c is
    the output centre, F the optional flip, R a rotation by U(-degrees, degrees) and o the crop
    offset, uniform over 0..in + 2*pad - out. The matrices are in affine_grid's normalised
    coordinates (align_corners=False), from the output grid to the input image.
    """
    h_in, w_in = in_size
    span_y, span_x = h_in + 2 * pad - out_size, w_in + 2 * pad - out_size
    if span_y < 0 or span_x < 0:
        raise ValueError(f"out_size {out_size} exceeds the padded input {h_in}x{w_in} + 2*{pad}")
    oy = torch.randint(0, span_y + 1, (batch,), generator=generator).double() - pad
    ox = torch.randint(0, span_x + 1, (batch,), generator=generator).double() - pad
    angle = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(
        degrees
    )
    sign = torch.ones(batch, dtype=torch.float64)
    if flip:
        sign = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0).double()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.empty(batch, 2, 3, dtype=torch.float64)
    # M = R^-1 F with F = diag(sign, 1): the flip acts on the output's x axis first.
    theta[:, 0, 0] = cos * sign * out_size / w_in
    theta[:, 0, 1] = sin * out_size / w_in
    theta[:, 0, 2] = (out_size + 2 * ox) / w_in - 1
    theta[:, 1, 0] = -sin * sign * out_size / h_in
    theta[:, 1, 1] = cos * out_size / h_in
    theta[:, 1, 2] = (out_size + 2 * oy) / h_in - 1
    return theta.float()


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    out_size: int,
    pad: int = 4,
    degrees: float = 10.0,
    flip: bool = True,
) -> torch.Tensor:
    """Randomly crop (zero padding `pad`), rotate and flip a float batch (B, C, H, W).

    Parameters are drawn on the CPU from `generator` (so a run is reproducible on any device and
    the generator's state is a small CPU tensor to checkpoint); the sampling runs on x's device.
    """
    b, c, h, w = x.shape
    theta = sample_affine(b, (h, w), out_size, generator, pad=pad, degrees=degrees, flip=flip)
    grid = F.affine_grid(
        theta.to(x.device, x.dtype), [b, c, out_size, out_size], align_corners=False
    )
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
