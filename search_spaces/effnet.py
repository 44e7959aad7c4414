"""EfficientNet spaces: the family behind DeepLense's best published classifier (B1/B2, AUC 0.994+).

Width and depth multipliers scale EfficientNet-B0's stage table as the paper does:
B0 = (1.0, 1.0), B1 = (1.0, 1.1), B2 = (1.1, 1.2), B3 = (1.2, 1.4). The ``full`` size spans
B0..B3 and the pairs between them; ``tiny`` and ``small`` are narrower and shallower versions
that train on a CPU. A CNN takes any input side, so every crop/resize is valid.
"""

from __future__ import annotations

from search_spaces.common import (
    AS_PUBLISHED,
    REGRESSION_HANDSET,
    SHARED_DEFAULTS,
    Handset,
    Trial,
    backbone_config,
    register_space,
)
from search_spaces.families import register_family

# Per size: (width multipliers, depth multipliers).
_MULTIPLIERS = {
    # forward+backward of 32 images at 64x64 in ~40 ms (width 0.125) on 2 CPU cores
    "tiny": ([0.125, 0.25], [0.25]),
    # ~300-600 images/s on a 2-core CPU; still every stage of B0, just thinner and shallower
    "small": ([0.25, 0.35, 0.5], [0.25, 0.5, 0.75]),
    # the published B0..B3 range (DeepLense's best: B1/B2)
    "full": ([1.0, 1.1, 1.2], [1.0, 1.1, 1.2, 1.4]),
}

EFFNET_DEFAULTS: dict = {
    **SHARED_DEFAULTS,
    "effnet_width": {"tiny": 0.125, "small": 0.25, "full": 1.0},
    "effnet_depth": {"tiny": 0.25, "small": 0.5, "full": 1.1},  # full default = B1
}


def suggest_effnet(trial: Trial, size: str, image_size: int, input_size: int) -> dict:
    """EfficientNet model keys: ``effnet_width`` and ``effnet_depth`` multipliers."""
    widths, depths = _MULTIPLIERS[size]
    return {"effnet_width": trial.suggest_categorical("effnet_width", widths),
            "effnet_depth": trial.suggest_categorical("effnet_depth", depths)}


register_family("effnet", suggest_effnet, EFFNET_DEFAULTS)


@register_space("classification", "EfficientNet (B0..B3 widths/depths) substructure classifier",
                defaults=EFFNET_DEFAULTS,
                handset=Handset({**AS_PUBLISHED, "optimizer": "adam", "lr": 3e-4, "schedule": "cosine",
                                 "warmup_frac": 0.0},
                                "Mahanta (ML4SCI DeepLense, GSoC 2022/23): timm efficientnet_b1/b2, Adam lr 3e-4, "
                                "CosineAnnealingWarmRestarts (here cosine without warm-up, the space's nearest)"))
def effnet_cls(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """EfficientNet classifier of no_sub / cdm / axion."""
    return backbone_config(trial, "classification", "effnet", size, image_size, suggest_effnet)


@register_space("regression", "EfficientNet (B0..B3 widths/depths) axion-mass regressor",
                defaults=EFFNET_DEFAULTS,
                handset=REGRESSION_HANDSET)
def effnet_reg(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """EfficientNet regressor of log10 axion mass."""
    return backbone_config(trial, "regression", "effnet", size, image_size, suggest_effnet)
