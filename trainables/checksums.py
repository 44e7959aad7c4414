"""The sha256 a saved model records of each weights file, in its ``config.json`` (key ``sha256``).

safetensors notices a truncated file or a broken header, but not bytes changed inside a tensor:
only a checksum taken when the model was saved does. Models saved before it have none, and are
taken as they are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

KEY = "sha256"  # config.json's key: {weights file name: its sha256}; not part of the model's config


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def intact(path: Path, config: dict) -> bool:
    """Whether ``path`` still has the sha256 ``config`` recorded for it (True when it recorded none)."""
    recorded = (config.get(KEY) or {}).get(path.name)
    return recorded is None or sha256(path) == recorded
