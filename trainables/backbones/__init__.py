"""Backbone builders, one module per family, each registered under the family's name.

A backbone is one extension point with one file per layer: its define-by-run model keys live in
:mod:`search_spaces` (``search_spaces.families``), its builder here. A builder takes the flat config
a space produced, the side of the (square, single-channel) images the model will see, the width of
the head (0: no head, the pooled features) and the dropout settings, and returns a freshly
initialised module whose ``num_features`` is the width of its pooled features. Nothing is
downloaded (``pretrained=False`` in spirit: every module is built from its class).

The built-in families are the modules of this package, found when a builder is first asked for;
a plugin's family registers when the plugin is imported (:mod:`search_spaces.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from search_spaces.errors import SpaceError
from trainables.registry import import_builtins, lookup

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[dict, int, int, dict], "nn.Module"]  # (config, side, num_outputs, drops) -> module

BACKBONES: dict[str, Builder] = {}


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator filing a builder under the family ``name``; a taken name is refused in one line."""

    def wrap(builder: Builder) -> Builder:
        if name in BACKBONES:
            raise SpaceError(f"backbone {name!r} is registered already (by {BACKBONES[name].__module__}); "
                             "give the new backbone another name")
        BACKBONES[name] = builder
        return builder

    return wrap


def backbone_names() -> tuple[str, ...]:
    """Every registered backbone family."""
    import_builtins(__name__)
    return tuple(BACKBONES)


def get_backbone(name: str) -> Builder:
    """The builder of family ``name``; plugins announced in the environment are loaded before giving up."""
    return lookup(BACKBONES, name, __name__, "backbone arch")


def feature_names(config: dict, side: int) -> set[str]:
    """Names of the tensors of ``config``'s backbone without its head: what its builder makes for 0 outputs.

    ``side``: the side the model sees. Built on the meta device, so it costs neither memory nor an
    initialisation. Used by ``init_from`` (:mod:`trainables.transfer`) to leave heads out.
    """
    import torch

    drops = {"drop_rate": float(config["drop_rate"]), "drop_path_rate": float(config["drop_path_rate"])}
    with torch.device("meta"):
        headless = get_backbone(config["arch"])(config, side, 0, drops)
    return set(headless.state_dict())
