"""Model builders: output shapes, exact reconstruction sizes, VAE statistics, EfficientNet scaling."""

from __future__ import annotations

import pytest
import torch

from search_spaces import default_config
from trainables.models import build_autoencoder, build_backbone, build_discriminator, count_parameters

torch.set_num_threads(2)

BACKBONE_SPACES = {"effnet": "effnet_cls", "vit": "vit_cls", "swin": "swin_cls"}


def tiny_config(arch: str, image_size: int = 64, **changes) -> dict:
    space = BACKBONE_SPACES.get(arch, f"{arch}_anom")
    return {**default_config(space, "tiny", image_size), **changes}


BARE = {"profile_features": False}  # the backbone alone, as timm builds it


@pytest.mark.parametrize("num_outputs", [1, 2, 3])
@pytest.mark.parametrize("arch", ["effnet", "vit", "swin"])
def test_backbone_output_shape(arch, num_outputs):
    model = build_backbone(tiny_config(arch), 64, num_outputs)
    out = model(torch.randn(4, 1, 64, 64))
    assert out.shape == (4, num_outputs)
    out.sum().backward()  # trains: every path has a gradient
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["effnet", "vit", "swin"])
@pytest.mark.parametrize("image_size, mode", [(150, "full"), (150, "crop"), (64, "resize")])
def test_backbone_follows_the_configs_input_size(arch, image_size, mode):
    from search_spaces import config_from_params

    config = config_from_params(BACKBONE_SPACES[arch], {"input_mode": mode}, "tiny", image_size)
    side = config["input_size"]
    model = build_backbone(config, image_size, 3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, side, side)).shape == (2, 3)


def test_backbone_rejects_unknown_arch_and_bad_patch():
    with pytest.raises(ValueError, match="densenet"):
        build_backbone({"arch": "densenet"}, 64, 3)
    config = {**tiny_config("vit"), "vit_patch_size": 7}
    with pytest.raises(ValueError, match="divide"):
        build_backbone(config, 64, 3)


@pytest.mark.parametrize("arch", ["vit", "swin"])
def test_transformer_pads_a_side_no_grid_divides(arch):
    """101 is prime: the space's grid tiles it with padding, and only such a model is wrapped."""
    from trainables.models import PadInput

    config = tiny_config(arch, 101, **BARE)
    model = build_backbone(config, 101, 3)
    assert isinstance(model, PadInput)
    assert model.side == config[f"{arch}_grid"] * config[f"{arch}_patch_size"] > 101
    out = model(torch.randn(2, 1, 101, 101))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert not isinstance(build_backbone(tiny_config(arch, **BARE), 64, 3), PadInput)  # exact grids: as before


@pytest.mark.parametrize("variant, width, depth", [("b0", 1.0, 1.0), ("b1", 1.0, 1.1),
                                                   ("b2", 1.1, 1.2), ("b3", 1.2, 1.4)])
def test_effnet_multipliers_reproduce_timm_b0_to_b3(variant, width, depth):
    """The width/depth pairs the full space offers are exactly timm's EfficientNet-B0..B3."""
    import timm

    ours = build_backbone(tiny_config("effnet", effnet_width=width, effnet_depth=depth, **BARE), 64, 3)
    ref = timm.create_model(f"efficientnet_{variant}", pretrained=False, in_chans=1, num_classes=3)
    assert count_parameters(ours) == count_parameters(ref)


@pytest.mark.parametrize("arch", ["ae", "vae", "aae"])
@pytest.mark.parametrize("side", [64, 150, 50, 100, 75, 33])
def test_autoencoder_reconstructs_exactly_the_input_shape(arch, side):
    config = {**tiny_config(arch), "input_size": side}
    model = build_autoencoder(config, side)
    x = torch.randn(2, 1, side, side)
    out = model(x)
    assert out["recon"].shape == x.shape
    assert out["z"].shape == (2, config["latent_dim"])
    assert ("mu" in out and "logvar" in out) == (arch == "vae")


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_autoencoder_depths_and_other_input_sizes(depth):
    config = {**tiny_config("ae"), "latent_dim": 8, "base_channels": 4, "depth": depth}
    model = build_autoencoder(config, 64)
    for side in (64, 48, 150, 37):  # built for 64, still exact for other sides
        x = torch.randn(1, 1, side, side)
        assert model(x)["recon"].shape == x.shape
    z = model.encode(torch.randn(3, 1, 64, 64))
    assert z.shape == (3, 8)
    assert model.decode(z, 50).shape == (3, 1, 50, 50)
    assert model.decode(z, (40, 30)).shape == (3, 1, 40, 30)


def test_vae_samples_in_training_and_uses_the_mean_in_eval():
    config = tiny_config("vae")
    model = build_autoencoder(config, 64)
    x = torch.randn(4, 1, 64, 64)
    out = model.train()(x)
    assert out["mu"].shape == out["logvar"].shape == (4, config["latent_dim"])
    assert not torch.allclose(out["z"], out["mu"])
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out["z"], out["mu"])
        assert torch.equal(model.encode(x), out["mu"])
    assert torch.isfinite(out["logvar"]).all()


def test_discriminator_maps_latents_to_one_logit():
    config = tiny_config("aae")
    disc = build_discriminator(config)
    assert disc(torch.randn(5, config["latent_dim"])).shape == (5, 1)


def test_autoencoder_rejects_unknown_arch():
    with pytest.raises(ValueError, match="gan"):
        build_autoencoder({"arch": "gan", "latent_dim": 8, "base_channels": 4, "depth": 2}, 64)


def test_count_parameters_counts_trainable_only():
    layer = torch.nn.Linear(3, 2)
    assert count_parameters(layer) == 8
    layer.bias.requires_grad_(False)
    assert count_parameters(layer) == 6


@pytest.mark.parametrize("arch", ["effnet", "vit", "swin"])
@pytest.mark.parametrize("mode", ["full", "polar", "crop"])
def test_profile_features_sit_beside_the_backbone(arch, mode):
    from search_spaces import config_from_params
    from trainables.models import WithProfile

    config = config_from_params(BACKBONE_SPACES[arch], {"input_mode": mode, "profile_features": True}, "tiny", 64)
    side = config["input_size"]
    model = build_backbone(config, 64, 3)
    assert isinstance(model, WithProfile)
    out = model(torch.randn(4, 1, side, side))
    assert out.shape == (4, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_ring_matrix_averages_rings_and_polar_rows():
    from trainables.models import ring_matrix

    side = 16
    centre = (side - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(side) - centre, torch.arange(side) - centre, indexing="ij")
    radius = torch.hypot(xx, yy)
    rings = ring_matrix(side, polar=False)
    assert rings.shape == (side // 2, side * side)
    torch.testing.assert_close(rings.sum(dim=1), torch.ones(side // 2))
    profile = rings @ radius.flatten()
    assert (profile.diff() > 0).all()  # each ring's mean radius grows outwards by about a pixel
    assert ((profile - (torch.arange(side // 2) + 0.5)).abs() < 0.5).all()
    polar = ring_matrix(side, polar=True)
    image = torch.arange(side, dtype=torch.float32)[:, None].expand(side, side)  # row i holds i
    torch.testing.assert_close(polar @ image.flatten(), torch.arange(side, dtype=torch.float32))
