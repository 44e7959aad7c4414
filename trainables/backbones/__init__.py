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

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from search_spaces.errors import SpaceError

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[[dict, int, int, dict], "nn.Module"]  # (config, side, num_outputs, drops) -> module

BACKBONES: dict[str, Builder] = {}
_BUILTINS_LOADED = False


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator filing a builder under the family ``name``; a taken name is refused in one line."""

    def wrap(builder: Builder) -> Builder:
        if name in BACKBONES:
            raise SpaceError(f"backbone {name!r} is registered already (by {BACKBONES[name].__module__}); "
                             "give the new backbone another name")
        BACKBONES[name] = builder
        return builder

    return wrap


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")


def backbone_names() -> tuple[str, ...]:
    """Every registered backbone family."""
    _load_builtins()
    return tuple(BACKBONES)


def get_backbone(name: str) -> Builder:
    """The builder of family ``name``; plugins announced in the environment are loaded before giving up."""
    _load_builtins()
    if name not in BACKBONES:
        from search_spaces.plugins import load_plugins

        load_plugins()
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone arch {name!r}; registered: {', '.join(BACKBONES)} "
                         "(a plugin's backbone needs its --plugin)")
    return BACKBONES[name]
