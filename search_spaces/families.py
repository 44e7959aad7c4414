"""Backbone families as the spaces know them: a name, the model keys it suggests and their defaults.

A backbone is one extension point with one file per layer: here its define-by-run model keys
(``<family>_*``), its preferred values and, where some image sides admit no valid layout, a check
that says so; its builder registers under the same name in :mod:`trainables.backbones`. A family
module registers the family and its spaces (``<family>_cls``, ``<family>_reg``); the spaces that
search across architectures (``any_cls``, ``any_reg``) read this registry when they run, so a new
family joins them without any edit there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from search_spaces.errors import SpaceError

SuggestFn = Callable[[Any, str, int, int], dict]  # (trial, size, image_size, input_size) -> model keys
CheckFn = Callable[[str, int], Any]  # (size, image_size) -> anything; raises SpaceError where no layout fits


@dataclass(frozen=True)
class Family:
    """One backbone family: its name (the config's ``arch``), suggestions, defaults and layout check."""

    name: str
    suggest: SuggestFn = field(repr=False)
    defaults: dict = field(repr=False)
    check: CheckFn | None = field(default=None, repr=False)  # None: any image side works (a CNN)

    def fits(self, size: str, image_size: int) -> bool:
        """Whether the family has a valid layout at this size and image side."""
        if self.check is None:
            return True
        try:
            self.check(size, image_size)
        except SpaceError:
            return False
        return True


FAMILIES: dict[str, Family] = {}


def register_family(name: str, suggest: SuggestFn, defaults: dict, *, check: CheckFn | None = None) -> Family:
    """File a backbone family; a taken name is refused in one line."""
    if name in FAMILIES:
        raise SpaceError(f"backbone family {name!r} is registered already (by {FAMILIES[name].suggest.__module__}); "
                         "give the new family another name")
    FAMILIES[name] = Family(name, suggest, dict(defaults), check)
    return FAMILIES[name]


def families() -> tuple[Family, ...]:
    """Registered families, in registration order."""
    return tuple(FAMILIES.values())


class FamilyDefaults(Mapping):
    """The defaults of a space that searches across every registered family, read when asked.

    Each family's own keys, with the shared keys of ``first`` (the default branch) on top, and
    ``arch`` = ``first``. Read at lookup time, so families registered after the space (a plugin's)
    are included.
    """

    def __init__(self, first: str) -> None:
        self.first = first

    def __getitem__(self, key: str) -> Any:
        if key == "arch":
            return self.first
        first = FAMILIES.get(self.first)
        if first is not None and key in first.defaults:  # the shared keys, and the default branch's own
            return first.defaults[key]
        for family in families():  # another family's own keys
            if key in family.defaults:
                return family.defaults[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(["arch", *(key for family in families() for key in family.defaults)]))

    def __len__(self) -> int:
        return sum(1 for _ in self)
