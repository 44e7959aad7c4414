"""Swin Transformer on small images: stages of windows that fit the feature maps, dims and heads doubling."""

from __future__ import annotations

from torch import nn

from trainables.backbones import register_backbone
from trainables.backbones.tiling import padded, tiled_side


@register_backbone("swin")
def build_swin(config: dict, side: int, num_outputs: int, drops: dict) -> nn.Module:
    """A timm SwinTransformer: ``swin_stages`` stages of ``swin_depth`` blocks, dims and heads doubling."""
    from timm.models.swin_transformer import SwinTransformer

    patch, padded_side = tiled_side(config, "swin", side)
    stages = int(config["swin_stages"])
    heads = int(config["swin_heads"])
    return padded(SwinTransformer(
        img_size=padded_side,
        patch_size=patch,
        in_chans=1,
        num_classes=num_outputs,
        embed_dim=int(config["swin_embed_dim"]),
        depths=(int(config["swin_depth"]),) * stages,
        num_heads=tuple(heads * 2**i for i in range(stages)),
        window_size=int(config["swin_window"]),
        mlp_ratio=float(config["swin_mlp_ratio"]),
        **drops,
    ), side, padded_side)
