"""Vision Transformer whose patches tile the input side (exactly, or padded by less than one patch)."""

from __future__ import annotations

from torch import nn

from trainables.backbones import register_backbone
from trainables.backbones.tiling import padded, tiled_side


@register_backbone("vit")
def build_vit(config: dict, side: int, num_outputs: int, drops: dict) -> nn.Module:
    """A timm VisionTransformer of ``vit_grid`` tokens per side, ``vit_depth`` blocks of ``vit_embed_dim``."""
    from timm.models.vision_transformer import VisionTransformer

    patch, padded_side = tiled_side(config, "vit", side)
    return padded(VisionTransformer(
        img_size=padded_side,
        patch_size=patch,
        in_chans=1,
        num_classes=num_outputs,
        embed_dim=int(config["vit_embed_dim"]),
        depth=int(config["vit_depth"]),
        num_heads=int(config["vit_heads"]),
        mlp_ratio=float(config["vit_mlp_ratio"]),
        global_pool=str(config["vit_pool"]),
        **drops,
    ), side, padded_side)
