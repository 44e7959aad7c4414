"""Model builders: registered backbones for classification/regression, conv autoencoders for anomalies.

The backbones are a registry (:mod:`trainables.backbones`, one module per family); here they get
their head, with the azimuthal profile beside their features when the config asks for it. Every
builder takes the flat config dict a search space produced (see ``search_spaces``) and returns a
freshly initialised ``torch.nn.Module`` for single-channel images. Nothing is downloaded: DeepLense
images are one-channel physics simulations, not ImageNet photographs.

The model's input side is ``config["input_size"]`` (the side after the space's crop or resize)
when the config has one, otherwise the ``image_size`` argument. A transformer whose token grid
does not divide that side (the spaces choose such grids only for sides no grid divides, such as
101) zero-pads its input, centred, to ``grid * patch`` (:class:`PadInput`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.backbones import get_backbone
from trainables.backbones.tiling import PadInput

if TYPE_CHECKING:
    from lensdata import LensingData


def _input_side(config: dict, image_size: int) -> int:
    """The side of the square images the model will see (after crop/resize)."""
    return int(config["input_size"]) if config["input_mode"] != "full" else image_size


def build_backbone(config: dict, image_size: int, num_outputs: int) -> nn.Module:
    """Build the classifier/regressor of the registered backbone family ``config["arch"]`` (effnet, vit...).

    Args:
        config: A search-space config (``arch`` plus that family's ``<arch>_*`` keys,
            ``drop_rate`` and ``drop_path_rate``).
        image_size: Side of the dataset's images; ``config["input_size"]`` wins unless
            ``input_mode`` is ``full``.
        num_outputs: Width of the head: classes, 1 for a point regressor, 2 for a Gaussian head.

    Returns:
        A module mapping (B, 1, S, S) floats to (B, num_outputs).
    """
    build = get_backbone(config["arch"])  # an unknown family fails here, listing the registered ones
    side = _input_side(config, image_size)
    drops = {"drop_rate": float(config["drop_rate"]), "drop_path_rate": float(config["drop_path_rate"])}
    # Configs saved before the key existed have no profile features.
    with_profile = bool(config.get("profile_features", False))
    width = 0 if with_profile else num_outputs  # timm: 0 outputs = the pooled features
    model = build(config, side, width, drops)
    if not with_profile:
        return model
    return WithProfile(model, _features_of(model), side, config["input_mode"] == "polar", num_outputs)


def _features_of(model: nn.Module) -> int:
    return int(model.num_features)


def backbone_of(model: nn.Module) -> nn.Module:
    """The registered backbone inside what :func:`build_backbone` returned (behind the profile head, if any)."""
    return model.backbone if isinstance(model, WithProfile) else model


def ring_matrix(side: int, polar: bool) -> torch.Tensor:
    """(bins, side*side) rows that average each image's pixels in one ring about its centre.

    ``side // 2`` rings of one pixel out to the inscribed circle (the corners are left out), or for a
    polar input (radius on the rows, see ``trainables.augment.fit_input``) the mean of each row.
    """
    if polar:
        return torch.kron(torch.eye(side), torch.full((1, side), 1.0 / side))
    from trainables.baselines import ring_weights

    return torch.from_numpy(ring_weights(side, side, side // 2).T.copy())


class WithProfile(nn.Module):
    """A backbone's pooled features beside the input's azimuthal profile, into one linear head.

    Most of the class signal in DeepLense images is radial (the substructure adds mass inside the
    Einstein ring, which widens it), and a linear model on the profile alone is a strong baseline;
    with the profile beside it, the backbone only has to learn what the profile misses.
    """

    def __init__(self, backbone: nn.Module, features: int, side: int, polar: bool, num_outputs: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("rings", ring_matrix(side, polar), persistent=False)
        self.norm = nn.BatchNorm1d(self.rings.shape[0])
        self.head = nn.Linear(features + self.rings.shape[0], num_outputs)

    def profile(self, x: torch.Tensor) -> torch.Tensor:
        """The input's azimuthal profile, before its normalisation: (B, bins)."""
        return x.flatten(1) @ self.rings.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        profile = self.norm(self.profile(x))
        return self.head(torch.cat([self.backbone(x), profile], dim=1))

    @torch.no_grad()
    def start_from_linear(self, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor) -> None:
        """Start as a linear model of the standardised profile: ``weight @ (profile - mean) / std + bias``.

        The profile's normalisation takes ``mean`` and ``var`` as its running statistics, the head's
        profile columns take ``weight`` and its bias ``bias``; the backbone's columns start at zero,
        so the untrained model predicts exactly what the linear model does, and the backbone only
        has to learn what the profile misses (its columns get gradients from the first step).
        """
        bins = self.rings.shape[0]
        self.norm.reset_parameters()
        self.norm.running_mean.copy_(mean)
        self.norm.running_var.copy_(var)
        self.head.weight.zero_()
        self.head.weight[:, -bins:] = weight.to(self.head.weight)
        self.head.bias.copy_(bias.to(self.head.bias))


def logistic_head(profiles: np.ndarray, rows: LensingData, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The (weight, bias) of a classifier head equal to a logistic regression of the labels on ``profiles``.

    scikit-learn's multinomial fit (the ``logistic`` baseline's model, on the model's own profile); a
    class the rows never show gets zero weight and a bias far below the others.
    """
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(max_iter=2000).fit(profiles, rows.labels)
    coef, intercept = fit.coef_, fit.intercept_
    if len(fit.classes_) == 2:  # scikit-learn keeps one row for two classes: the log-odds of the second
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((width, profiles.shape[1]))
    bias = np.full(width, intercept.min() - 10.0)
    weight[fit.classes_], bias[fit.classes_] = coef, intercept
    return weight, bias


# ------------------------------------------------------------------------------ autoencoders


def _halvings(side: int, depth: int) -> list[int]:
    """Spatial sides after each stride-2 conv (kernel 3, padding 1): ``[side, ceil(side/2), ...]``."""
    sides = [side]
    for _ in range(depth):
        sides.append((sides[-1] + 1) // 2)
    return sides


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True))


class ConvAutoencoder(nn.Module):
    """Convolutional AE / VAE for any input side.

    The encoder halves the side ``depth`` times (doubling channels, capped at 8x ``base_channels``)
    and pools to the bottleneck grid of the size it was built for, so an input of another size is
    still accepted. The decoder upsamples to exactly the encoder's side at each stage (computed
    from the requested output size), so reconstructions match odd sizes such as 50 or 75 without
    cropping.

    ``forward`` returns ``{"recon", "z"}``, plus ``"mu"`` and ``"logvar"`` for the VAE, whose ``z`` is
    a reparameterised sample in training mode and the mean in eval mode.
    """

    def __init__(self, side: int, latent_dim: int, base_channels: int, depth: int,
                 variational: bool = False) -> None:
        super().__init__()
        self.variational = variational
        self.latent_dim = latent_dim
        self.depth = depth
        chans = [min(base_channels * 2**i, base_channels * 8) for i in range(depth)]
        self.grid = _halvings(side, depth)[-1]
        self.chans = chans

        blocks, c_in = [], 1
        for c in chans:
            blocks.append(_conv_block(c_in, c, stride=2))
            c_in = c
        self.encoder = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        flat = chans[-1] * self.grid * self.grid
        self.to_latent = nn.Linear(flat, latent_dim * (2 if variational else 1))
        self.from_latent = nn.Linear(latent_dim, flat)

        up = []
        for i in range(depth - 1, 0, -1):
            up.append(_conv_block(chans[i], chans[i - 1], stride=1))
        self.up_blocks = nn.ModuleList(up)
        self.out_conv = nn.Conv2d(chans[0], 1, 3, padding=1)

    def _encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.pool(self.encoder(x)).flatten(1)
        out = self.to_latent(h)
        if self.variational:
            mu, logvar = out.chunk(2, dim=1)
            return mu, logvar.clamp(-20.0, 20.0)
        return out, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent code of a batch: the AE/AAE code, or the VAE's mean."""
        return self._encode_stats(x)[0]

    def decode(self, z: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
        """Decode latents to images of side ``size`` (an int or an (H, W) pair)."""
        h_side, w_side = (size, size) if isinstance(size, int) else size
        hs, ws = _halvings(h_side, self.depth), _halvings(w_side, self.depth)
        h = self.from_latent(z).view(-1, self.chans[-1], self.grid, self.grid)
        for i, block in enumerate(self.up_blocks):
            stage = self.depth - 1 - i
            h = block(F.interpolate(h, size=(hs[stage], ws[stage]), mode="nearest"))
        h = F.interpolate(h, size=(hs[0], ws[0]), mode="nearest")
        return self.out_conv(h)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self._encode_stats(x)
        out: dict[str, torch.Tensor] = {}
        if self.variational:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
            out["mu"], out["logvar"] = mu, logvar
        else:
            z = mu
        out["z"] = z
        out["recon"] = self.decode(z, (x.shape[-2], x.shape[-1]))
        return out


def build_autoencoder(config: dict, image_size: int) -> nn.Module:
    """Build the AE, VAE or AAE (``config["arch"]``) sized by ``latent_dim``, ``base_channels``, ``depth``.

    The AAE's generator is a plain AE; its adversarial prior lives in :func:`build_discriminator`.
    """
    arch = config["arch"]
    if arch not in ("ae", "vae", "aae"):
        raise ValueError(f"unknown autoencoder arch {arch!r}; expected ae, vae or aae")
    return ConvAutoencoder(
        side=_input_side(config, image_size),
        latent_dim=int(config["latent_dim"]),
        base_channels=int(config["base_channels"]),
        depth=int(config["depth"]),
        variational=arch == "vae",
    )


def build_discriminator(config: dict) -> nn.Module:
    """AAE latent discriminator: (B, latent_dim) codes to (B, 1) logits of 'drawn from the prior'."""
    latent = int(config["latent_dim"])
    hidden = max(64, 2 * latent)
    return nn.Sequential(
        nn.Linear(latent, hidden), nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(hidden, hidden), nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(hidden, 1),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["build_backbone", "build_autoencoder", "build_discriminator", "count_parameters", "backbone_of",
           "ConvAutoencoder", "PadInput", "logistic_head"]
