"""User-facing errors of the orchestration layer: one line that says what is wrong and how to fix it.

The CLI prints ``error: <message>`` for these, for the data layer's
:class:`lensdata.errors.DataError` and for the spaces' :class:`search_spaces.errors.SpaceError`,
and exits with status 2, never a stack trace.
"""

from __future__ import annotations


class TunerError(Exception):
    """Base class for errors caused by the user's input or environment, not by a bug."""


class ConfigError(TunerError):
    """A command-line option or experiment setting that cannot work."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or a notebook's interrupt stopped a search or comparison gracefully; what finished is kept.

    A ``KeyboardInterrupt``, so that a notebook stops running the cells after it as it does for any
    interrupt. The message says how to resume; it was printed when the run stopped, so the CLI
    exits with status 130 without printing it again.
    """
