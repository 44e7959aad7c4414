"""Spaces where the architecture family is itself a hyperparameter.

``arch`` is a categorical; each family brings its own conditional sub-space. Family parameters
carry the family prefix (``vit_grid``, ``swin_window``, ...) exactly as in the single-family
spaces, so a configuration found by ``vit_cls`` is also a point of ``any_cls`` and back. The
autoencoders share ``latent_dim``, ``base_channels`` and ``depth``, which mean the same in all three.
The backbone families come from :mod:`search_spaces.families` when the space runs, so a family
registered anywhere (a new module, a plugin) joins ``any_cls`` and ``any_reg`` without an edit
here. A family with no valid layout at the image side (say full-size Swin grids on 40-pixel
images) is left out of ``arch`` there, instead of failing the whole space.
"""

from __future__ import annotations

from search_spaces.autoencoders import AE_DEFAULTS, ANOMALY_ARCHS, anomaly_config
from search_spaces.common import Trial, backbone_config, register_space
from search_spaces.families import FAMILIES, FamilyDefaults, families

# The default branch is EfficientNet, DeepLense's best published classifier; the other families'
# keys (read from the registry when asked) sit beside its shared keys.
ANY_BACKBONE_DEFAULTS = FamilyDefaults("effnet")
# The VAE is the best published DeepLense anomaly detector (AUROC 0.999).
ANY_ANOMALY_DEFAULTS: dict = {**AE_DEFAULTS, "arch": "vae"}


def _any_backbone(trial: Trial, task: str, size: str, image_size: int) -> dict:
    fitting = [family.name for family in families() if family.fits(size, image_size)]
    # CNN vs transformer is the open question for DeepLense's small single-channel images.
    arch = trial.suggest_categorical("arch", fitting)
    return backbone_config(trial, task, arch, size, image_size, FAMILIES[arch].suggest)


@register_space("classification", "every registered backbone family as a classifier (arch is searched)",
                defaults=ANY_BACKBONE_DEFAULTS, compared=False)
def any_cls(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Classifier whose backbone family (any registered: effnet, resnet, swin, vit...) is part of the search."""
    return _any_backbone(trial, "classification", size, image_size)


@register_space("regression", "every registered backbone family as a regressor (arch is searched)",
                defaults=ANY_BACKBONE_DEFAULTS, compared=False)
def any_reg(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Regressor whose backbone family (any registered) is part of the search."""
    return _any_backbone(trial, "regression", size, image_size)


@register_space("anomaly", "AE, VAE or AAE anomaly detector (arch is searched)",
                defaults=ANY_ANOMALY_DEFAULTS, compared=False)
def any_anom(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Anomaly detector whose family (ae, vae, aae) is part of the search."""
    arch = trial.suggest_categorical("arch", list(ANOMALY_ARCHS))
    return anomaly_config(trial, arch, size, image_size)
