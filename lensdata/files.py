"""The project's one writer of JSON and text files: atomic and durable, so a reader never sees half a file.

Every JSON file the project writes (dataset manifests, experiment settings, ``best.json``, model
configs, checkpoint progress, metrics) goes through :func:`write_json`. It lives in the lowest
layer so that every package above can use it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically and durably (:func:`write_text`); returns the path.

    Floats that JSON does not know (numpy scalars) are written as floats.
    """
    return write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys, default=float) + "\n")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and durably; returns the path.

    The text goes to a temporary sibling first, is flushed to disk (``fsync``), and is then renamed
    over ``path`` (atomic on POSIX file systems): after a crash the file is either the old one or
    the new one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
