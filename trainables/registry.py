"""What the trainers' registries share: their built-in modules found once, a miss looked up among the plugins.

The backbones (:mod:`trainables.backbones`) and the tasks (:mod:`trainables.tasks`) are each a dict
filled by their own modules as they are imported; this finds those modules and answers a lookup.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TypeVar

T = TypeVar("T")


@cache
def import_builtins(package: str) -> None:
    """Import every module of ``package`` once: each registers what it defines."""
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{info.name}")


def lookup(registry: dict[str, T], name: str, package: str, what: str) -> T:
    """``registry[name]`` once the built-ins of ``package`` and the announced plugins are loaded.

    Raises:
        ValueError: one line naming the registered entries (a plugin's needs its ``--plugin``).
    """
    import_builtins(package)
    if name not in registry:
        from search_spaces.plugins import load_plugins

        load_plugins()  # $DEEPLENSE_TUNER_PLUGINS and the installed entry points
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; registered: {', '.join(registry)} "
                         "(a plugin's needs its --plugin)")
    return registry[name]
