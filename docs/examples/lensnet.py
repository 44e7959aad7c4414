"""A researcher's own model as a deeplense-tuner plugin: a backbone, its define-by-run space, a hand-set point.

Use it with every command by naming the file (docs/plugins.md walks through it):

    python -m tuner search  --plugin docs/examples/lensnet.py --space lensnet_cls --smoke-test
    python -m tuner compare --plugin docs/examples/lensnet.py --task classification --spaces effnet_cls,lensnet_cls
    python -m tuner spaces  --plugin docs/examples/lensnet.py

LensNet is a plain stack of 3x3 convolution blocks, each halving the image, then a global average:
the kind of small CNN many DeepLense projects start from. What makes it a plugin is three
registrations, each where its part is defined: the builder (trainables' backbone registry), the
family's suggestions (the spaces' family registry, so ``any_cls`` and ``any_reg`` try it too), and
its spaces (with the configuration its author would set by hand).
"""

from __future__ import annotations

from search_spaces import Handset, register_space
from search_spaces.common import SHARED_DEFAULTS, backbone_config
from search_spaces.families import register_family
from trainables.backbones import register_backbone

# ---------------------------------------------------------------- the model (imports torch when built)


@register_backbone("lensnet")
def build_lensnet(config: dict, side: int, num_outputs: int, drops: dict):
    """``lensnet_blocks`` conv blocks of ``lensnet_channels`` (doubling), pooled; a linear head unless 0 outputs."""
    from torch import nn

    layers, channels = [], 1
    for block in range(int(config["lensnet_blocks"])):
        width = int(config["lensnet_channels"]) * 2**block
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.GELU(),
                   nn.MaxPool2d(2)]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drops["drop_rate"])]
    model = nn.Sequential(*layers, nn.Linear(channels, num_outputs) if num_outputs else nn.Identity())
    model.num_features = channels  # the width of the pooled features, which every backbone states
    return model


# ---------------------------------------------------------------- its search space


def suggest_lensnet(trial, size: str, image_size: int, input_size: int) -> dict:
    """LensNet's own keys, prefixed with the family name as the built-in families' are."""
    # 16 channels train at ~1000 images/s on 2 CPU cores; 64 is a GPU's width.
    channels = {"tiny": [8], "small": [16, 32], "full": [32, 64]}[size]
    return {"lensnet_channels": trial.suggest_categorical("lensnet_channels", channels),
            # each block halves the side: 4 blocks leave a 64-pixel image 4x4
            "lensnet_blocks": trial.suggest_int("lensnet_blocks", 2, 4)}


LENSNET_DEFAULTS = {**SHARED_DEFAULTS, "lensnet_channels": {"tiny": 8, "small": 16, "full": 32},
                    "lensnet_blocks": 3}
register_family("lensnet", suggest_lensnet, LENSNET_DEFAULTS)


@register_space("classification", "LensNet, a plain CNN (plugin example)", defaults=LENSNET_DEFAULTS,
                handset=Handset({"optimizer": "adam", "lr": 1e-3, "input_mode": "full", "profile_features": False},
                                "the author's hand-set point: Adam lr 1e-3 on the whole image"))
def lensnet_cls(trial, size: str = "small", image_size: int = 64) -> dict:
    """LensNet classifier of the dataset's classes."""
    return backbone_config(trial, "classification", "lensnet", size, image_size, suggest_lensnet)
