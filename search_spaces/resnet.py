"""ResNet spaces: the field's from-scratch reference, beside the tuned architectures.

A ResNet18 trained from scratch reaches Model II test accuracy 0.9999 and axion-mass MAE 0.021 dex
with ~71,000 training images and no tuning (repository arnesh2212/Lens-FM-DeepLense,
``configs/downstream/supervised.yaml``: 50 epochs, AdamW lr 3e-4, weight decay 0.05, label smoothing
0.1, batch 128); that recipe is the spaces' hand-set point. The spaces search the depth (10, 18 or
34 layers of basic blocks), the width of the first stage (doubling per stage, as ResNet's 64 to
512), and the stem: ImageNet's 7x7 stride-2 convolution and max-pool, which leaves a 64-pixel image
4x4 before the last stage's 2x2, or a 3x3 stride-1 stem without the pool that keeps small images'
detail (the CIFAR ResNets'). A CNN takes any input side from 16 pixels up, 64 to 150 included.
"""

from __future__ import annotations

from search_spaces.common import (
    AS_PUBLISHED,
    SHARED_DEFAULTS,
    Handset,
    Trial,
    backbone_config,
    register_space,
)
from search_spaces.families import register_family

# Per size: depths (basic-block ResNets), first-stage widths, stems.
_OPTIONS = {
    # a few hundred images/s at 64x64 on 2 CPU cores
    "tiny": {"depth": [10], "width": [8, 16], "stem": ["imagenet"]},
    # 16..32 wide: ResNet18 at a quarter of its width trains at ~100-300 images/s on 2 CPU cores
    "small": {"depth": [10, 18], "width": [16, 32], "stem": ["imagenet", "small"]},
    # ResNet18 and ResNet34 at half and full width (64, the published one)
    "full": {"depth": [18, 34], "width": [32, 64], "stem": ["imagenet", "small"]},
}

RESNET_DEFAULTS: dict = {
    **SHARED_DEFAULTS,
    "resnet_depth": {"tiny": 10, "small": 18, "full": 18},
    "resnet_width": {"tiny": 8, "small": 16, "full": 64},
    # Measured (compare --preset quick, 2 busy CPU cores): with the stride-1 stem the small default point did not
    # finish one epoch inside the preset's 300 s budget; ImageNet's stride-4 stem is 16x fewer pixels per stage.
    "resnet_stem": {"tiny": "imagenet", "small": "imagenet", "full": "small"},
}

# Lens-FM-DeepLense's supervised ResNet18 (configs/downstream/supervised.yaml). Its 50 epochs are the
# comparison's epoch budget here, and its batch 128 is offered from size small up.
_LENS_FM = {**AS_PUBLISHED, "resnet_depth": 18, "resnet_width": 64, "resnet_stem": "imagenet",
            "optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.05, "schedule": "cosine", "warmup_frac": 0.0,
            "batch_size": 128}
_SOURCE = ("ResNet18 from scratch as in arnesh2212/Lens-FM-DeepLense (configs/downstream/supervised.yaml): AdamW "
           "lr 3e-4, weight decay 0.05, batch 128, 50 epochs (here: the run's epoch budget); the whole image")
CLASSIFICATION_HANDSET = Handset({**_LENS_FM, "label_smoothing": 0.1}, _SOURCE + ", label smoothing 0.1")
REGRESSION_HANDSET = Handset(_LENS_FM, _SOURCE + " (its regression head is a point estimate)")


def suggest_resnet(trial: Trial, size: str, image_size: int, input_size: int) -> dict:
    """ResNet model keys: ``resnet_depth``, ``resnet_width`` and ``resnet_stem``."""
    opt = _OPTIONS[size]
    # 10/18/34 layers of basic blocks: 18 is the field's reference, 10 its cheap half.
    depth = trial.suggest_categorical("resnet_depth", opt["depth"])
    # First-stage channels, doubling per stage: 64 is ResNet's own, narrower ones fit a CPU.
    width = trial.suggest_categorical("resnet_width", opt["width"])
    # ImageNet's stride-4 stem, or a stride-1 3x3 one that keeps 64-pixel images' detail.
    stem = trial.suggest_categorical("resnet_stem", opt["stem"])
    return {"resnet_depth": depth, "resnet_width": width, "resnet_stem": stem}


register_family("resnet", suggest_resnet, RESNET_DEFAULTS)


@register_space("classification", "ResNet (10/18/34, basic blocks) classifier, the field's from-scratch reference",
                defaults=RESNET_DEFAULTS, handset=CLASSIFICATION_HANDSET)
def resnet_cls(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """ResNet classifier of the dataset's classes."""
    return backbone_config(trial, "classification", "resnet", size, image_size, suggest_resnet)


@register_space("regression", "ResNet (10/18/34, basic blocks) dark-matter parameter regressor",
                defaults=RESNET_DEFAULTS, handset=REGRESSION_HANDSET)
def resnet_reg(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """ResNet regressor of one class's dark-matter parameter."""
    return backbone_config(trial, "regression", "resnet", size, image_size, suggest_resnet)
