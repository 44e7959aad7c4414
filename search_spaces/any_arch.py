"""Spaces where the architecture family is itself a hyperparameter.

``arch`` is a categorical; each family brings its own conditional sub-space. Family parameters
carry the family prefix (``vit_grid``, ``swin_window``, ...) exactly as in the single-family
spaces, so a configuration found by ``vit_cls`` is also a point of ``any_cls`` and back. The
autoencoders share ``latent_dim``, ``base_channels`` and ``depth``, which mean the same in all three.
A family with no valid layout at the image side (say full-size Swin grids on 40-pixel images) is
left out of ``arch`` there, instead of failing the whole space.
"""

from __future__ import annotations

from search_spaces.autoencoders import AE_DEFAULTS, ANOMALY_ARCHS, anomaly_config
from search_spaces.common import Trial, backbone_config, register_space
from search_spaces.effnet import EFFNET_DEFAULTS, suggest_effnet
from search_spaces.errors import SpaceError
from search_spaces.swin import SWIN_DEFAULTS, suggest_swin, swin_layouts
from search_spaces.vit import VIT_DEFAULTS, suggest_vit, vit_grids

_BACKBONES = {"effnet": suggest_effnet, "vit": suggest_vit, "swin": suggest_swin}
_LAYOUTS = {"vit": vit_grids, "swin": swin_layouts}  # a CNN takes any side: no layout to check

# The family parameters of every branch, with the shared keys of the default branch (EfficientNet,
# DeepLense's best published classifier) on top.
ANY_BACKBONE_DEFAULTS: dict = {**SWIN_DEFAULTS, **VIT_DEFAULTS, **EFFNET_DEFAULTS, "arch": "effnet"}
# The VAE is the best published DeepLense anomaly detector (AUROC 0.999).
ANY_ANOMALY_DEFAULTS: dict = {**AE_DEFAULTS, "arch": "vae"}


def _fits(arch: str, size: str, image_size: int) -> bool:
    """Whether ``arch`` has a valid layout at this size and image side."""
    try:
        _LAYOUTS[arch](size, image_size)
    except SpaceError:
        return False
    return True


def _any_backbone(trial: Trial, task: str, size: str, image_size: int) -> dict:
    families = [arch for arch in _BACKBONES if arch not in _LAYOUTS or _fits(arch, size, image_size)]
    # CNN vs transformer is the open question for DeepLense's small single-channel images.
    arch = trial.suggest_categorical("arch", families)
    return backbone_config(trial, task, arch, size, image_size, _BACKBONES[arch])


@register_space("classification", "EfficientNet, ViT or Swin classifier (arch is searched)",
                defaults=ANY_BACKBONE_DEFAULTS)
def any_cls(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Classifier whose family (effnet, vit, swin) is part of the search."""
    return _any_backbone(trial, "classification", size, image_size)


@register_space("regression", "EfficientNet, ViT or Swin axion-mass regressor (arch is searched)",
                defaults=ANY_BACKBONE_DEFAULTS)
def any_reg(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Regressor whose family (effnet, vit, swin) is part of the search."""
    return _any_backbone(trial, "regression", size, image_size)


@register_space("anomaly", "AE, VAE or AAE anomaly detector (arch is searched)",
                defaults=ANY_ANOMALY_DEFAULTS)
def any_anom(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Anomaly detector whose family (ae, vae, aae) is part of the search."""
    arch = trial.suggest_categorical("arch", list(ANOMALY_ARCHS))
    return anomaly_config(trial, arch, size, image_size)
