"""Where results go: ``--storage``, else ``$DEEPLENSE_TUNER_RUNS``, else ``./runs``, resolved once, here.

A local root becomes an absolute path (Ray wants one, and a resume from another directory must find
the run); object storage (``s3://``, ``gs://``, any ``scheme://``) is kept as written, for Ray to
reach with its own credentials. A command that writes a local directory itself (``train``,
``baseline``, ``compare``) refuses object storage in one line instead of writing a folder named
``s3:`` into the working directory. A run's name is one folder inside the root (:func:`check_name`).
"""

from __future__ import annotations

import os
from pathlib import Path

from tuner.errors import ConfigError

RUNS_ENV = "DEEPLENSE_TUNER_RUNS"


def is_uri(storage: str) -> bool:
    """Whether ``storage`` names object storage (``s3://bucket/runs``) rather than a local path."""
    return "://" in storage


def resolve_storage(flag: str | None = None) -> str:
    """The results root: ``flag`` (``--storage``), else ``$DEEPLENSE_TUNER_RUNS``, else ``./runs``.

    A local root comes back absolute, a URI as it is. A local root that is a dataset, or lies inside
    one, is refused in one line: the runs written there would make the dataset read as damaged.
    """
    from lensdata.checks import check_not_a_dataset

    storage = flag or os.environ.get(RUNS_ENV) or "runs"
    if is_uri(storage):
        return storage
    root = Path(storage).expanduser().resolve()
    check_not_a_dataset(root, "a run", "--storage" if flag else RUNS_ENV)
    return str(root)


def local_storage(flag: str | None, what: str, instead: str) -> Path:
    """:func:`resolve_storage` for a command that writes a local directory; object storage is refused.

    ``what`` says what the command writes (``train writes a local directory``) and ``instead`` what
    to give (``--out DIR``), for the one line of the refusal.
    """
    storage = resolve_storage(flag)
    if is_uri(storage):
        said = f"--storage {storage} is" if flag else f"{RUNS_ENV} is {storage},"
        raise ConfigError(f"{said} object storage, but {what}; give {instead}")
    return Path(storage)


def check_name(name: str, what: str = "--name") -> str:
    """``name`` if it is one plain folder name, else refused in one line.

    A run lives at ``STORAGE/NAME``: a name holding a ``/`` (``../x``, an absolute path) would put
    it outside the storage root, and ``.`` would make it the root itself. ``what`` says where the
    name came from, for the message.
    """
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"{what} {name!r} is not a plain folder name: the run is made at STORAGE/NAME, and a "
                          "name with '/' (or '.', '..') would put it outside the storage root or make it the root; "
                          "give one name such as run1, and --storage for where it goes")
    return name
