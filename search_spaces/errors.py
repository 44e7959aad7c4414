"""The search spaces' user error; the command line prints it as one ``error: ...`` line."""

from __future__ import annotations


class SpaceError(Exception):
    """An unknown search space, or parameters that do not fit it."""
