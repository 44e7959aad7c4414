"""Where data comes from: a dataset directory, or ``sim:PRESET[:N][:CLASSES]`` for a standard simulated set.

``sim:model2`` means "the standard simulated Model II set": :data:`DEFAULT_SIM_SIZE` images
(balanced over the classes) from seed :data:`SIM_SEED`, simulated once into :func:`cache_dir` and
reused afterwards. ``sim:model2:90000`` is the same at DeepLense scale, and ``sim:model2:4000:axion``
4,000 images of the axion class alone (the same images, with the same splits, as the axion images of
any other ``sim:model2`` set: see :mod:`lensdata.simulate`). The cache entry is written atomically by
the store; a cache directory that does not verify (interrupted, damaged, or made for other settings)
is deleted and simulated again. A lock file keeps two processes from simulating the same entry at once.
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

from lensdata.checks import MANIFEST, SCHEMA_VERSION, dataset_around, read_manifest, verify_dataset
from lensdata.dataset import LensingData
from lensdata.errors import DataError, DatasetError
from lensdata.instruments import INSTRUMENT_NAMES
from lensdata.names import CLASSES
from lensdata.simulate import MIN_SIM_VERSION, SIM_VERSION, check_classes
from lensdata.store import load_dataset

DEFAULT_SIM_SIZE = 3000  # 1000 per class: minutes on a laptop CPU, enough to rank configurations
SIM_SEED = 0  # the standard sets are the same everywhere
CACHE_ENV = "DEEPLENSE_TUNER_CACHE"

_FORMS = ("a dataset directory (made by `python -m tuner data simulate|import`), or "
          f"{', '.join(f'sim:{name}' for name in INSTRUMENT_NAMES)} with an optional size and "
          "classes, e.g. sim:model2:90000 or sim:model2:4000:axion")


def cache_dir() -> Path:
    """Cache of standard simulated sets: ``$DEEPLENSE_TUNER_CACHE`` or ``~/.cache/deeplense-tuner``.

    Refused in one line when it is a dataset or lies inside one: the sets written into it would make
    that dataset read as damaged (:func:`lensdata.checks.dataset_around`).
    """
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "deeplense-tuner"
    around = dataset_around(root)
    if around is not None:
        raise DatasetError(f"the simulated-set cache {root} ({CACHE_ENV if env else 'the default'}) is the dataset "
                           f"{around} or lies inside it, whose check would read the cached sets as damage; set "
                           f"{CACHE_ENV} to a folder of its own")
    return root


def parse_sim_spec(spec: str) -> tuple[str, int, tuple[str, ...]] | None:
    """(preset, n, classes) for a ``sim:`` spec, None for anything else; DatasetError for a bad ``sim:``."""
    if not spec.startswith("sim:"):
        return None
    preset, *rest = spec[4:].split(":")
    if preset not in INSTRUMENT_NAMES or len(rest) > 2:
        raise DatasetError(f"unknown simulated set {spec!r}; use {_FORMS}")
    n = DEFAULT_SIM_SIZE
    if rest and (rest[0][:1].isdigit() or len(rest) == 2 or not rest[0]):
        size = rest.pop(0)
        if not re.fullmatch(r"[0-9]+", size) or int(size) < 3:
            raise DatasetError(f"bad size in {spec!r}: give a whole number of images >= 3; use {_FORMS}")
        n = int(size)
    try:
        classes = check_classes(rest[0]) if rest else CLASSES
    except DataError as err:
        raise DatasetError(f"bad classes in {spec!r}: {err}") from None
    return preset, n, classes


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
        check_simulator_version(read_manifest(path), path)  # no manifest: fails with its own hint
        return path
    return _cached_sim(*sim, progress=progress)


def check_simulator_version(manifest: dict, path: Path) -> None:
    """Refuse, in one line, a simulated set made before :data:`MIN_SIM_VERSION` (its splits leak)."""
    if manifest.get("source") != "simulate":
        return
    extra = manifest.get("extra") if isinstance(manifest.get("extra"), dict) else {}
    version = extra.get("simulator_version")
    if isinstance(version, int) and version < MIN_SIM_VERSION:
        raise DatasetError(
            f"{path} was simulated by simulator version {version}, whose train/val/test splits depend on "
            f"the set size (sets of other sizes test on its training images) and whose presets are not "
            f"DeepLenseSim's; simulate it again (version {SIM_VERSION}): python -m tuner data simulate "
            f"--instrument {manifest.get('instrument')} --n {manifest.get('n')} --out {path} --overwrite")


def open_data(spec: str | os.PathLike, *, splits: Sequence[str] | None = None,
              progress: bool = True) -> LensingData:
    """Resolve a data spec and load it (fast verification)."""
    return load_dataset(resolve_data(spec, progress=progress), splits=splits)


def _cached_sim(instrument: str, n: int, classes: tuple[str, ...] = CLASSES, *, progress: bool) -> Path:
    root = cache_dir()
    subset = "" if classes == CLASSES else "-" + "+".join(classes)
    path = root / f"sim-{instrument}-n{n}{subset}-seed{SIM_SEED}-v{SCHEMA_VERSION}-sim{SIM_VERSION}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_file = open(root / f".{path.name}.lock", "w")  # closed by the with below
    except OSError as err:
        raise DatasetError(f"cannot write the simulated-set cache {root} ({err.strerror or err}); set "
                           f"{CACHE_ENV} to a writable folder, or give a dataset directory instead") from None
    with lock_file, _lock(lock_file):
        if _usable(path, instrument, n, classes):
            return path
        if path.exists() or path.is_symlink():
            if progress:
                print(f"{path} is incomplete or damaged; simulating it again", file=sys.stderr)
            _remove(path)
        if progress:
            kinds = "" if classes == CLASSES else f" of {', '.join(classes)}"
            print(f"simulating the standard {instrument} set ({n} images{kinds}, seed {SIM_SEED}) into {path}",
                  file=sys.stderr)
        from lensdata.simulate import simulate_to_dataset

        simulate_to_dataset(instrument, n, SIM_SEED, path, progress=progress, classes=classes,
                            workers=sim_workers(n))
        verify_dataset(path)
    return path


SIM_BATCH = 256  # images per worker chunk below which a second process costs more than it saves


def sim_workers(n: int) -> int:
    """Processes for a cached set: every core for a large set (the images do not depend on it), one for a
    small one. WDM and SIDM images take seconds each (pyHalo), so a five-class set is worth the cores."""
    return max(1, min(os.cpu_count() or 1, n // SIM_BATCH))


def _usable(path: Path, instrument: str, n: int, classes: tuple[str, ...]) -> bool:
    """A cache entry is reused only if it verifies and was made for these settings."""
    if not (path / MANIFEST).is_file():
        return False
    try:
        manifest = verify_dataset(path)
    except DatasetError:
        return False
    return (manifest.get("instrument") == instrument and manifest.get("n") == n
            and manifest.get("seed") == SIM_SEED and tuple(manifest.get("classes") or ()) == classes)


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
