"""The data layer's user errors: one line that says what is wrong and how to fix it.

The command line prints ``error: <message>`` for any :class:`DataError` and exits with status 2.
"""

from __future__ import annotations


class DataError(Exception):
    """An option or input of the data layer that cannot work (unknown instrument, bad size...)."""


class DatasetError(DataError):
    """A dataset directory is missing, damaged, or not a dataset."""
