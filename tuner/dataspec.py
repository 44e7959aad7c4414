"""Data specs (``sim:model2:300`` or a dataset directory) as the commands compare them and name files after them."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path


def same_data(spec: str, other: str) -> bool:
    """Whether two data specs name the same dataset (the same ``sim:`` set, or the same directory)."""
    if spec == other or spec.startswith("sim:") or other.startswith("sim:"):
        return spec == other
    return Path(spec).expanduser().resolve() == Path(other).expanduser().resolve()


def data_slug(spec: str) -> str:
    """A file-name form of a data spec: ``sim:model2:300`` -> ``sim_model2_300``; a directory ->
    its name and a short hash of its full path (two ``data`` folders stay apart)."""
    if spec.startswith("sim:"):
        return re.sub(r"[^A-Za-z0-9.-]+", "_", spec)
    path = Path(spec).expanduser().resolve()
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", path.name).strip("._") or "data"
    return f"{name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
