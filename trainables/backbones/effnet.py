"""EfficientNet: B0's stage table scaled by width and depth multipliers (B1..B3 are such pairs)."""

from __future__ import annotations

from functools import partial

from torch import nn

from trainables.backbones import register_backbone

# EfficientNet-B0's stage table (Tan & Le 2019, table 1) in timm's block-string notation:
# block type, repeats, kernel, stride, expansion, output channels, squeeze-excite ratio.
# B1..B3 are this table scaled by width and depth multipliers, as in the paper.
_EFFNET_B0_STAGES = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]


@register_backbone("effnet")
def build_effnet(config: dict, side: int, num_outputs: int, drops: dict) -> nn.Module:
    """EfficientNet-B0 stages scaled by ``effnet_width`` x ``effnet_depth``; any input side."""
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.efficientnet import EfficientNet

    width = float(config["effnet_width"])
    depth = float(config["effnet_depth"])
    round_chs = partial(round_channels, multiplier=width, divisor=8)
    return EfficientNet(
        block_args=decode_arch_def(_EFFNET_B0_STAGES, depth),
        num_features=round_chs(1280),
        stem_size=32,
        round_chs_fn=round_chs,
        act_layer=nn.SiLU,
        in_chans=1,
        num_classes=num_outputs,
        **drops,
    )
