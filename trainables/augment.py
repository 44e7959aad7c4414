"""Batched tensor augmentations that respect lensing symmetry, and the input crop/resize.

A lens has no preferred orientation, so any rotation or flip of an image is an equally likely
image of the same class and the same axion mass. Everything here works on whole batches of
shape (B, 1, H, W) with one ``torch.Generator`` so that a run is reproducible from its seed.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def input_side(config: dict) -> int:
    """Side of the square image the model sees, after the optional crop or resize (:func:`fit_input`)."""
    return int(config["input_size"]) if config["input_mode"] != "full" else int(config["image_size"])


def fit_input(x: torch.Tensor, mode: str, size: int) -> torch.Tensor:
    """Bring a batch to the model's input: ``full`` (as is), ``crop`` (centre), ``resize`` or ``polar``.

    ``polar`` resamples each image about its centre, where the lens is, onto ``size`` radii (rows,
    from the centre out to the inscribed circle) by ``size`` angles (columns): the ring's radius,
    which carries most of the substructure signal (the subhalos and the vortex add mass inside the
    Einstein ring), becomes a row, and a rotation of the lens becomes a circular shift of the columns.
    """
    if mode == "polar":
        return F.grid_sample(x, _polar_grid(size, x.dtype, x.device).expand(x.shape[0], -1, -1, -1),
                             mode="bilinear", padding_mode="border", align_corners=False)
    if mode == "full" or size == x.shape[-1]:
        return x
    if mode == "crop":
        top = (x.shape[-2] - size) // 2
        left = (x.shape[-1] - size) // 2
        return x[..., top : top + size, left : left + size]
    if mode == "resize":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    raise ValueError(f"unknown input_mode {mode!r}; use full, crop, resize or polar")


@functools.lru_cache(maxsize=8)
def _polar_grid(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, size, size, 2) grid_sample grid: row i at radius (i + 1/2) / size, column j at angle 2 pi j / size."""
    radius = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    angle = torch.arange(size, dtype=torch.float64) * (2 * math.pi / size)
    r, a = torch.meshgrid(radius, angle, indexing="ij")
    return torch.stack([r * torch.cos(a), r * torch.sin(a)], dim=-1)[None].to(dtype=dtype, device=device)


def _rot90_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Apply one of the 8 symmetries of the square to each image (the dihedral group D4)."""
    k = torch.randint(0, 4, (x.shape[0],), generator=g)
    flip = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for turns in (1, 2, 3):
        rows = k == turns
        if rows.any():
            out[rows] = torch.rot90(x[rows], turns, dims=(-2, -1))
    return out


def _small_rotation(x: torch.Tensor, max_deg: float, g: torch.Generator) -> torch.Tensor:
    """Rotate each image by a uniform angle in [-max_deg, max_deg] (bilinear).

    The corners the rotation brings in are filled with the image's own background level (the
    median of its outermost pixels), not with zero: after normalisation zero is not the sky, and a
    zero corner would be a feature of rotated images only.
    """
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    background = border.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    return background + _rotate(x - background, max_deg, g)


def _rotate(x: torch.Tensor, max_deg: float, g: torch.Generator) -> torch.Tensor:
    angle = (torch.rand(x.shape[0], generator=g) * 2 - 1) * math.radians(max_deg)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment(x: torch.Tensor, config: dict, g: torch.Generator) -> torch.Tensor:
    """Random D4 symmetry, small rotation, brightness jitter and added noise, as the config asks.

    Brightness jitter multiplies each image by ``1 + U(-b, b)``; the added noise is Gaussian with
    standard deviation ``aug_noise`` times the image's own standard deviation, so it means the
    same thing whichever normalisation is in use.
    """
    if config["aug_flip_rot90"]:
        x = _rot90_flip(x, g)
    if config["aug_rotate_deg"] > 0:
        x = _small_rotation(x, float(config["aug_rotate_deg"]), g)
    if config["aug_brightness"] > 0:
        scale = 1 + (torch.rand(x.shape[0], 1, 1, 1, generator=g) * 2 - 1) * config["aug_brightness"]
        x = x * scale.to(x.dtype)
    if config["aug_noise"] > 0:
        std = x.flatten(1).std(dim=1).view(-1, 1, 1, 1)
        x = x + torch.randn(x.shape, generator=g).to(x.dtype) * std * config["aug_noise"]
    return x
