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
