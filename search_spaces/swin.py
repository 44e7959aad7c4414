"""Swin Transformer spaces that cannot produce an invalid window layout.

The untuned Swin in one DeepLense study stayed at chance (34%) on 64x64 images: ImageNet's
patch 4 / window 7 layout does not fit them. Here the space searches tokens per side at the
first stage (the patch size follows from the input side, padded by less than one patch where
no grid divides it), the number of stages, and the window
size in tokens, and offers only combinations where, at every stage and for every input side the
space can produce, the window divides the feature map or covers it whole (timm then attends
globally), and every map that is merged has an even side. Widths and heads both double per
stage, so heads always divide the width.
"""

from __future__ import annotations

from search_spaces.common import (
    REGRESSION_HANDSET,
    TRANSFORMER_DEFAULTS,
    TRANSFORMER_HANDSET,
    Trial,
    backbone_config,
    patch_size,
    register_space,
    token_grids,
)
from search_spaces.errors import SpaceError
from search_spaces.families import register_family

# Window sizes (tokens) considered; timm's ImageNet Swin uses 7 on a 56-token grid.
_WINDOWS = (4, 5, 7, 8, 10)

_OPTIONS = {
    # a forward+backward of 32 images at 64x64 in ~5-10 ms on CPU
    "tiny": {"grid": (4, 10), "stages": (1, 2), "embed": [16], "depth": [1], "heads": [1, 2],
             "mlp": [2.0]},
    # 32..48 wide, 2..3 stages of 1..2 blocks: ~400-1400 images/s at 64x64 on 2 CPU cores
    "small": {"grid": (8, 16), "stages": (2, 3), "embed": [32, 48], "depth": [1, 2],
              "heads": [1, 2], "mlp": [2.0, 4.0]},
    # Swin-T widths (96, 3 heads) and half of them, 2..4 stages of 2 or 4 blocks
    "full": {"grid": (8, 32), "stages": (2, 3, 4), "embed": [48, 96], "depth": [2, 4],
             "heads": [3, 6], "mlp": [4.0]},
}

SWIN_DEFAULTS: dict = {
    **TRANSFORMER_DEFAULTS,
    "swin_grid": {"tiny": 8, "small": 16, "full": 16},  # 16 tokens/side = patch 4 on 64
    "swin_stages": {"tiny": 2, "small": 3, "full": 3},
    "swin_window": 4,
    "swin_embed_dim": {"tiny": 16, "small": 32, "full": 96},
    "swin_depth": {"tiny": 1, "small": 2, "full": 2},
    "swin_heads": {"tiny": 1, "small": 1, "full": 3},
    "swin_mlp_ratio": {"tiny": 2.0, "small": 2.0, "full": 4.0},
}


def _window_fits(grid: int, stages: int, window: int) -> bool:
    """Whether ``window`` divides, or covers, the feature map at every stage of this grid."""
    side = grid
    for stage in range(stages):
        if stage > 0:
            if side % 2:
                return False  # patch merging of an odd side would pad
            side //= 2
        if side > window and side % window:
            return False
    return True


def swin_layouts(size: str, image_size: int) -> tuple[list[int], list[int], list[int]]:
    """(grids, stage counts, windows) offered at this size; every combination is valid.

    The grid must divide every input side (full/crop/resize) the space can produce, or, where no
    such grid gives a layout, tile them with padding (see :func:`~search_spaces.common.token_grids`);
    stage counts and windows are those that fit every offered grid, so they need no conditioning on it.
    """
    opt = _OPTIONS[size]
    low, high = opt["grid"]
    for padded in (False, True):
        grids = [g for g in token_grids(image_size, low, high, padded=padded) if g % 2 == 0]
        stages = [n for n in opt["stages"] if grids and all(g % 2 ** (n - 1) == 0 for g in grids)]
        windows = [w for w in _WINDOWS if stages and all(
            _window_fits(g, max(stages), w) for g in grids) and w <= max(grids)]
        if grids and stages and windows:
            return grids, stages, windows
    raise SpaceError(f"swin: no valid patch/window layout for image side {image_size} at size "
                     f"{size!r}; use a side such as 64 or 150")


def suggest_swin(trial: Trial, size: str, image_size: int, input_size: int) -> dict:
    """Swin model keys; ``swin_patch_size`` is derived (input side / first-stage tokens per side, rounded up)."""
    opt = _OPTIONS[size]
    grids, stage_counts, windows = swin_layouts(size, image_size)
    # First-stage tokens per side: the patch size that suits small lensing images.
    grid = trial.suggest_categorical("swin_grid", grids)
    # Fewer stages than ImageNet's 4: a 16-token grid is 2x2 after three merges.
    stages = trial.suggest_categorical("swin_stages", stage_counts)
    # Window in tokens; each fits every stage of every grid above (see swin_layouts).
    window = trial.suggest_categorical("swin_window", windows)
    embed = trial.suggest_categorical("swin_embed_dim", opt["embed"])
    depth = trial.suggest_categorical("swin_depth", opt["depth"])
    heads = trial.suggest_categorical("swin_heads", opt["heads"])
    mlp_ratio = trial.suggest_categorical("swin_mlp_ratio", opt["mlp"])
    return {"swin_grid": grid, "swin_patch_size": patch_size(input_size, grid), "swin_stages": stages,
            "swin_window": window, "swin_embed_dim": embed, "swin_depth": depth,
            "swin_heads": heads, "swin_mlp_ratio": mlp_ratio}


register_family("swin", suggest_swin, SWIN_DEFAULTS, check=swin_layouts)


@register_space("classification", "Swin classifier; patch/window layouts valid for small images",
                defaults=SWIN_DEFAULTS, handset=TRANSFORMER_HANDSET)
def swin_cls(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Swin classifier of no_sub / cdm / axion."""
    return backbone_config(trial, "classification", "swin", size, image_size, suggest_swin)


@register_space("regression", "Swin axion-mass regressor", defaults=SWIN_DEFAULTS, handset=REGRESSION_HANDSET)
def swin_reg(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """Swin regressor of log10 axion mass."""
    return backbone_config(trial, "regression", "swin", size, image_size, suggest_swin)
