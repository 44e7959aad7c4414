"""Where data comes from: a dataset directory, or ``sim:INSTRUMENT[:N]`` for the standard simulated set.

``sim:model2`` means "the standard simulated Model II set": :data:`DEFAULT_SIM_SIZE` images
(balanced over the classes) from seed :data:`SIM_SEED`, simulated once into :func:`cache_dir` and
reused afterwards. ``sim:model2:90000`` is the same at DeepLense scale. The cache entry is written
atomically by the store; a cache directory that does not verify (interrupted, damaged, or made for
other settings) is deleted and simulated again. A lock file keeps two processes from simulating the
same entry at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from lensdata.checks import MANIFEST, SCHEMA_VERSION, read_manifest, verify_dataset
from lensdata.dataset import LensingData
from lensdata.errors import DatasetError
from lensdata.instruments import INSTRUMENT_NAMES
from lensdata.simulate import SIM_VERSION
from lensdata.store import load_dataset

DEFAULT_SIM_SIZE = 3000  # 1000 per class: minutes on a laptop CPU, enough to rank configurations
SIM_SEED = 0  # the standard sets are the same everywhere
CACHE_ENV = "DEEPLENSE_TUNER_CACHE"

_FORMS = ("a dataset directory (made by `python -m tuner data simulate|import`), or "
          f"{', '.join(f'sim:{name}' for name in INSTRUMENT_NAMES)} with an optional size, "
          "e.g. sim:model2:90000")
_SIM_SPEC = re.compile(r"sim:(?P<instrument>[^:]*)(?::(?P<n>.*))?")


def cache_dir() -> Path:
    """Cache of standard simulated sets: ``$DEEPLENSE_TUNER_CACHE`` or ``~/.cache/deeplense-tuner``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deeplense-tuner"


def parse_sim_spec(spec: str) -> tuple[str, int] | None:
    """(instrument, n) for a ``sim:`` spec, None for anything else; DatasetError for a bad ``sim:``."""
    if not spec.startswith("sim:"):
        return None
    match = _SIM_SPEC.fullmatch(spec)
    if not match or match["instrument"] not in INSTRUMENT_NAMES:
        raise DatasetError(f"unknown simulated set {spec!r}; use {_FORMS}")
    if match["n"] is None:
        return match["instrument"], DEFAULT_SIM_SIZE
    if not re.fullmatch(r"[0-9]+", match["n"]) or int(match["n"]) < 3:
        raise DatasetError(f"bad size in {spec!r}: give a whole number of images >= 3; use {_FORMS}")
    return match["instrument"], int(match["n"])


def resolve_data(spec: str | os.PathLike, *, progress: bool = True) -> Path:
    """The dataset directory for a data spec, simulating the standard set on first use.

    Args:
        spec: a dataset directory, or ``sim:INSTRUMENT[:N]``.
        progress: show the simulator's progress bar when a set has to be made.
    """
    text = os.fspath(spec)
    sim = parse_sim_spec(text)
    if sim is None:
        path = Path(text).expanduser()
        if not path.exists():
            raise DatasetError(f"no dataset at {path}; give {_FORMS}")
        read_manifest(path)  # a folder without a manifest fails here with its own hint
        return path
    return _cached_sim(*sim, progress=progress)


def open_data(spec: str | os.PathLike, *, splits: Sequence[str] | None = None,
              progress: bool = True) -> LensingData:
    """Resolve a data spec and load it (fast verification)."""
    return load_dataset(resolve_data(spec, progress=progress), splits=splits)


def _cached_sim(instrument: str, n: int, *, progress: bool) -> Path:
    root = cache_dir()
    path = root / f"sim-{instrument}-n{n}-seed{SIM_SEED}-v{SCHEMA_VERSION}-sim{SIM_VERSION}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_file = open(root / f".{path.name}.lock", "w")  # closed by the with below
    except OSError as err:
        raise DatasetError(f"cannot write the simulated-set cache {root} ({err.strerror or err}); set "
                           f"{CACHE_ENV} to a writable folder, or give a dataset directory instead") from None
    with lock_file, _lock(lock_file):
        if _usable(path, instrument, n):
            return path
        if path.exists() or path.is_symlink():
            if progress:
                print(f"{path} is incomplete or damaged; simulating it again", file=sys.stderr)
            _remove(path)
        for stale in root.glob(f".{path.name}.tmp-*"):  # left by an interrupted write
            shutil.rmtree(stale, ignore_errors=True)
        if progress:
            print(f"simulating the standard {instrument} set ({n} images, seed {SIM_SEED}) into {path}",
                  file=sys.stderr)
        from lensdata.simulate import simulate_to_dataset

        simulate_to_dataset(instrument, n, SIM_SEED, path, progress=progress)
        verify_dataset(path)
    return path


def _usable(path: Path, instrument: str, n: int) -> bool:
    """A cache entry is reused only if it verifies and was made for these settings."""
    if not (path / MANIFEST).is_file():
        return False
    try:
        manifest = verify_dataset(path)
    except DatasetError:
        return False
    return manifest.get("instrument") == instrument and manifest.get("n") == n and manifest.get("seed") == SIM_SEED


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextlib.contextmanager
def _lock(fh: IO) -> Iterator[None]:
    """An exclusive advisory lock on an open file (POSIX); a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent-simulation guard
        yield
        return
    fcntl.flock(fh, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
