"""Vision Transformer spaces, built so that small single-channel lensing images work.

A ViT on 64x64 images lives or dies by its patch size: 16-pixel patches leave 16 tokens. The
space therefore searches the token grid (tokens per side) and derives the patch size from the
input side, choosing only grids that divide every side the space can produce (full, crop and
resize), so every sampled patch size divides its input exactly. A side that no grid divides
(such as 101) gets power-of-two grids instead, and the model pads its input by less than one
patch (see :func:`~search_spaces.common.token_grids`). Embedding widths are multiples of every
head count offered, so heads always divide the width.
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

# Per size: tokens-per-side range, embed widths, depths, head counts, MLP ratios.
_OPTIONS = {
    # a few thousand images/s on CPU: a forward+backward of 32 images in ~5-15 ms
    "tiny": {"grid": (4, 10), "embed": [16, 32], "depth": [1, 2], "heads": [1, 2], "mlp": [2.0]},
    # embed 32..96 and 2..6 blocks: ~200-1000 images/s on a 2-core CPU at 64x64
    "small": {"grid": (4, 16), "embed": [32, 64, 96], "depth": [2, 4, 6], "heads": [2, 4],
              "mlp": [2.0, 4.0]},
    # ViT-Tiny (192 wide, 3 heads) to ViT-Small (384 wide, 6 heads) widths, 6..12 blocks
    "full": {"grid": (8, 32), "embed": [192, 288, 384], "depth": [6, 8, 12], "heads": [3, 6],
             "mlp": [2.0, 4.0]},
}

VIT_DEFAULTS: dict = {
    **TRANSFORMER_DEFAULTS,
    "vit_grid": {"tiny": 8, "small": 8, "full": 16},  # 8x8 = patch 8 on 64, 16x16 = patch 4
    "vit_embed_dim": {"tiny": 32, "small": 64, "full": 192},
    "vit_depth": {"tiny": 2, "small": 4, "full": 12},
    "vit_heads": {"tiny": 2, "small": 4, "full": 3},
    "vit_mlp_ratio": {"tiny": 2.0, "small": 4.0, "full": 4.0},
    "vit_pool": "avg",
}


def vit_grids(size: str, image_size: int) -> list[int]:
    """Token grids the ViT space offers at this size: exact ones, else padded; a SpaceError where none fits."""
    low, high = _OPTIONS[size]["grid"]
    grids = token_grids(image_size, low, high) or token_grids(image_size, low, high, padded=True)
    if not grids:
        raise SpaceError(f"vit: no token grid in {low}..{high} tiles image side {image_size} "
                         f"and its crop; use a side such as 64 or 150")
    return grids


def suggest_vit(trial: Trial, size: str, image_size: int, input_size: int) -> dict:
    """ViT model keys; ``vit_patch_size`` is derived (input side / tokens per side, rounded up)."""
    opt = _OPTIONS[size]
    # Tokens per side: the knob that decides whether a ViT can see 64x64 lensing arcs.
    grid = trial.suggest_categorical("vit_grid", vit_grids(size, image_size))
    embed = trial.suggest_categorical("vit_embed_dim", opt["embed"])
    depth = trial.suggest_categorical("vit_depth", opt["depth"])
    heads = trial.suggest_categorical("vit_heads", opt["heads"])
    mlp_ratio = trial.suggest_categorical("vit_mlp_ratio", opt["mlp"])
    # Class token (ViT) or mean of all tokens (often better on small datasets).
    pool = trial.suggest_categorical("vit_pool", ["token", "avg"])
    return {"vit_grid": grid, "vit_patch_size": patch_size(input_size, grid), "vit_embed_dim": embed,
            "vit_depth": depth, "vit_heads": heads, "vit_mlp_ratio": mlp_ratio, "vit_pool": pool}


register_family("vit", suggest_vit, VIT_DEFAULTS, check=vit_grids)


@register_space("classification", "ViT classifier; token grid, width, depth, heads, lr and warm-up",
                defaults=VIT_DEFAULTS, handset=TRANSFORMER_HANDSET)
def vit_cls(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """ViT classifier of no_sub / cdm / axion."""
    return backbone_config(trial, "classification", "vit", size, image_size, suggest_vit)


@register_space("regression", "ViT axion-mass regressor (plain ViT: MAE 0.24 dex on Model II)",
                defaults=VIT_DEFAULTS, handset=REGRESSION_HANDSET)
def vit_reg(trial: Trial, size: str = "small", image_size: int = 64) -> dict:
    """ViT regressor of log10 axion mass."""
    return backbone_config(trial, "regression", "vit", size, image_size, suggest_vit)
