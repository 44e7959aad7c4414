"""Augmentations: lensing symmetries, reproducibility, input crop/resize."""

from __future__ import annotations

import pytest
import torch

from trainables.augment import augment, fit_input

OFF = {"aug_flip_rot90": False, "aug_rotate_deg": 0.0, "aug_brightness": 0.0, "aug_noise": 0.0}


def aug(**on) -> dict:
    """An augmentation config with every key (as a space gives it) and only ``on`` switched on."""
    return {**OFF, **on}


def test_d4_symmetry_only_permutes_pixels_and_is_seeded():
    x = torch.rand(16, 1, 8, 8)
    config = aug(aug_flip_rot90=True)
    a = augment(x, config, torch.Generator().manual_seed(3))
    b = augment(x, config, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    for before, after in zip(x, a):  # a rotation or flip moves pixels, never changes them
        assert torch.equal(before.flatten().sort().values, after.flatten().sort().values)


def test_brightness_noise_and_rotation_change_images_as_asked():
    x = torch.rand(8, 1, 16, 16) + 1
    g = torch.Generator().manual_seed(0)
    bright = augment(x, aug(aug_brightness=0.2), g)
    ratio = bright.flatten(1) / x.flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)  # one factor per image
    assert ((ratio[:, 0] >= 0.8) & (ratio[:, 0] <= 1.2)).all()
    noisy = augment(x, aug(aug_noise=0.1), g)
    assert 0.02 < (noisy - x).std() / x.flatten(1).std(1).mean() < 0.3
    rotated = augment(x, aug(aug_rotate_deg=10.0), g)
    assert rotated.shape == x.shape and not torch.equal(rotated, x)
    assert augment(x, aug(), g) is x


@pytest.mark.parametrize("mode,size", [("full", 64), ("crop", 50), ("resize", 48)])
def test_fit_input(mode, size):
    x = torch.arange(64 * 64, dtype=torch.float32).view(1, 1, 64, 64)
    out = fit_input(x, mode, size)
    assert out.shape == (1, 1, size, size)
    if mode == "crop":
        assert torch.equal(out, x[..., 7:57, 7:57])


def test_rotation_fills_corners_with_the_background_not_zero():
    """A standardised image's sky is not zero: the corners a rotation brings in take its level."""
    x = torch.full((3, 1, 32, 32), -0.7)
    x[:, :, 12:20, 12:20] = 3.0  # a bright centre on a sky of -0.7
    rotated = augment(x, aug(aug_rotate_deg=180.0), torch.Generator().manual_seed(1))
    corners = rotated[..., [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, torch.tensor(-0.7), atol=1e-5)


def test_polar_input_puts_radius_on_the_rows_and_rotation_on_the_columns():
    side = 32
    yy, xx = torch.meshgrid(torch.arange(side) - (side - 1) / 2, torch.arange(side) - (side - 1) / 2,
                            indexing="ij")
    ring = torch.exp(-((torch.hypot(xx, yy) - 8.0) ** 2) / 4.0)[None, None]
    polar = fit_input(ring, "polar", side)[0, 0]
    assert polar.shape == (side, side)
    assert (polar.std(dim=1) < 0.03).all()  # a ring is the same at every angle
    assert 14 <= int(polar.mean(dim=1).argmax()) <= 17  # radius 8 of 16: the middle row
    blob = torch.zeros(1, 1, side, side)
    blob[..., 8:12, 20:24] = 1.0
    turned = torch.rot90(blob, 1, dims=(-2, -1))  # a quarter turn is a shift of a quarter of the columns
    a, b = fit_input(blob, "polar", side)[0, 0], fit_input(turned, "polar", side)[0, 0]
    shifts = [float((torch.roll(a, k, dims=1) - b).abs().sum()) for k in range(side)]
    assert int(torch.tensor(shifts).argmin()) in (side // 4, 3 * side // 4) and min(shifts) < 0.05 * float(b.sum())


def _batch(data, config: dict, rows, generator=None):
    from trainables.loop import batches

    return next(batches(data, config, [rows], torch.device("cpu"), generator=generator))["x"]


@pytest.mark.parametrize("normalize", ["standardize", "minmax"])
def test_training_batches_look_like_validation_batches_after_intensity_augmentation(sim_model2_tiny, normalize):
    """Intensity augmentation comes before the per-image normalisation, never after it.

    After it, a brightness jitter of a standardised image gave training images a spread of 0.7-1.3
    that no validation image has, and the profile head, started at the logistic fit of clean
    profiles, read that as signal (first-epoch training loss 1.1-4.8 against 0.31 without it).
    """
    import numpy as np

    from lensdata.store import load_dataset

    data = load_dataset(sim_model2_tiny)
    rows = np.arange(32)
    config = {**aug(aug_brightness=0.3), "normalize": normalize, "input_mode": "full", "image_size": 64}
    clean = _batch(data, config, rows)
    bright = _batch(data, config, rows, torch.Generator().manual_seed(0))
    assert torch.allclose(bright, clean, atol=1e-4)  # the normalisation undoes a brightness jitter
    noisy = _batch(data, {**config, "aug_brightness": 0.0, "aug_noise": 0.1}, rows, torch.Generator().manual_seed(0))
    assert not torch.allclose(noisy, clean, atol=1e-3)
    per_image = noisy.flatten(1)
    if normalize == "standardize":  # unit variance, as every validation image has
        assert torch.allclose(per_image.std(1, unbiased=False), torch.ones(32), atol=1e-3)
    else:
        assert torch.allclose(per_image.min(1).values, torch.zeros(32)) and torch.allclose(
            per_image.max(1).values, torch.ones(32))
