"""User-facing errors: one line that says what is wrong and how to fix it.

The CLI prints ``error: <message>`` for these and exits with status 2, never a stack trace.
"""

from __future__ import annotations


class TunerError(Exception):
    """Base class for errors caused by the user's input or environment, not by a bug."""


class DatasetError(TunerError):
    """A dataset directory is missing, damaged, or not a dataset."""


class SpaceError(TunerError):
    """An unknown search space, or parameters that do not fit it."""


class ConfigError(TunerError):
    """A command-line option or experiment setting that cannot work."""
