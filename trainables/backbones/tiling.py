"""Transformer inputs whose token grid does not divide the side: padded, centred, by less than one patch."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class PadInput(nn.Module):
    """Zero-pads (B, C, S, S) inputs, centred, to ``side`` x ``side`` before ``model``.

    After per-image normalisation zero is the background (minmax) or the mean (standardize),
    and the spaces pad by less than one patch, so no token is padding only.
    """

    def __init__(self, model: nn.Module, side: int) -> None:
        super().__init__()
        self.model = model
        self.side = side

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)

    def forward(self, x):
        dh, dw = self.side - x.shape[-2], self.side - x.shape[-1]
        return self.model(F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)))


def tiled_side(config: dict, family: str, side: int) -> tuple[int, int]:
    """(patch, padded side): ``<family>_grid`` tokens of ``<family>_patch_size`` pixels cover ``side``."""
    patch, grid = int(config[f"{family}_patch_size"]), int(config[f"{family}_grid"])
    padded = grid * patch
    if not 0 <= padded - side < patch:
        raise ValueError(f"{family}_patch_size {patch} x {family}_grid {grid} does not tile the input side "
                         f"{side}: the patch must divide it, or pad it by less than one patch")
    return patch, padded


def padded(model: nn.Module, side: int, padded_side: int) -> nn.Module:
    """``model`` as it is when its grid tiles ``side`` exactly, else behind a :class:`PadInput`."""
    return model if padded_side == side else PadInput(model, padded_side)
