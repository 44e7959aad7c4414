"""The simulator's dark-matter classes: one module each, registered where it is defined.

A class is one file in this package that builds a :class:`DarkMatterClass` and hands it to
:func:`register_class`: ``no_sub.py``, ``cdm.py``, ``axion.py``, ``wdm.py`` and ``sidm.py`` are the
built-in ones. The registry finds them itself (every module here whose name does not start with
``_``; those are helpers) the first time it is asked, so adding a class edits no other file. A
class defined elsewhere (a plugin, a test's toy class) registers the same way and is seen from
then on: everything that depends on the classes reads this registry at run time.

- The run cycle (:mod:`lensdata.simulate`): image ``i`` of a run is of the class whose label is
  ``i % len(classes())``, so a label is a place in the cycle and labels run 0, 1, ... without gaps.
- The renderer (:mod:`lensdata.render`) draws every image's source position, exposure and noise
  itself and asks the image's class for the rest: its substructure draw (from the class's own
  Philox stream of the image seed), its deflection (batched) and its per-image columns.
- :data:`lensdata.names.SIM_CLASSES` and ``SUBSTRUCTURE_PARAMETERS``, the parameter ranges of
  :func:`lensdata.simulate.check_ranges`, the manifest's rules and the ``data simulate`` flags.

Import-light: class modules import torch, caustics and pyHalo only inside their functions, so the
command line builds its flags from here without them.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lensdata.errors import DataError

if TYPE_CHECKING:
    from lensdata.instruments import Instrument

SOURCE_STREAM, NOISE_STREAM, EXPOSURE_STREAM = 0, 3, 4
"""Philox streams of an image seed that the renderer draws from for every class (source position,
noise deviates, exposure); a class's own ``stream`` is another (cdm 1, axion 2, wdm and sidm 5)."""


@dataclass(frozen=True)
class ParameterRange:
    """The range a class draws its parameter from, per image, and how a user changes it.

    ``simulate(ranges={key: (low, high)})`` and the ``data simulate`` flag :attr:`flag` set it;
    :meth:`check` keeps it inside ``limits``, the values the class's model is valid for.
    """

    key: str                        # e.g. "wdm_log_mhm"
    help: str                       # one line, the flag's help before its default and limits
    default: tuple[float, float]
    limits: tuple[float, float]

    @property
    def flag(self) -> str:
        """The command-line flag: the key with dashes (``--wdm-log-mhm``)."""
        return "--" + self.key.replace("_", "-")

    def describe(self) -> str:
        """The flag's help: its one line, then its default and limits."""
        (lo, hi), (low, high) = self.default, self.limits
        return f"{self.help} (default {lo:g},{hi:g}; within {low:g},{high:g})"

    def check(self, value) -> tuple[float, float]:
        """A (low, high) pair inside the limits, or a one-line DataError."""
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise DataError(f"{self.flag} must be two numbers LOW,HIGH, got {value!r}") from None
        low, high = self.limits
        if not (np.isfinite(lo) and np.isfinite(hi) and low <= lo <= hi <= high):
            raise DataError(f"{self.flag} {lo:g},{hi:g} is outside the model's range {low:g},{high:g} "
                            f"(LOW <= HIGH); choose a range inside it")
        return lo, hi


@dataclass(frozen=True)
class Column:
    """A per-image column a class adds to every set: ``values`` on its own images, ``fill`` on others.

    ``values(draws)`` gets the draws of the class's images in a batch and returns one value each
    (vectorised: numpy's ``**`` on an array, not Python's on each float, so the bits do not depend
    on the batch). Module-level functions, not lambdas: worker processes receive them by pickling.
    """

    name: str
    values: Callable[[list[dict]], np.ndarray]
    fill: float = math.nan
    dtype: str = "float64"


@dataclass(frozen=True)
class Extra:
    """An optional dependency group a class needs: ``pip install 'deeplense-tuner[name]'``."""

    name: str                         # the pip extra, e.g. "dark-matter"
    library: str                      # what it installs, as the error names it
    available: Callable[[], bool]     # whether it imports


@dataclass(frozen=True)
class DarkMatterClass:
    """One class of the simulator: what its images' substructure is, and how it is drawn and traced.

    ``draw(rng, spec, bounds) -> dict`` draws everything random about one image's substructure from
    ``rng`` (Philox stream ``stream`` of the image seed) for the instrument ``spec``; ``bounds`` is
    the parameter's range (``None`` without one). The dict joins the image's other draws, so its keys
    differ from the renderer's (``label``, ``source_x``, ``source_y``, ``exposure``, ``z_*``); it may
    set ``target`` (the parameter), ``n_subhalos`` and ``subhalo_mass_total``, the columns every
    class shares (NaN, 0 and 0.0 where a class leaves them).

    ``deflect(grid, draws) -> (ax, ay)`` is the substructure's deflection, (B, G, G) float64 tensors
    in arcsec, of the images of these draws on the renderer's fine grid (``grid.x``, ``grid.y``:
    (G, G); ``grid.xs``, ``grid.ys``: (G,), torch float64, arcsec). The renderer calls it once per
    micro-batch with that batch's images of the class; an image's bits must not depend on the others.
    """

    name: str
    label: int                                # its place in the run cycle: 0, 1, ...
    stream: int | None = None                 # the Philox stream its draw reads
    draw: Callable[[np.random.Generator, Instrument, tuple[float, float] | None], dict] | None = None
    deflect: Callable[[Any, list[dict]], tuple[Any, Any]] | None = None
    target: str | None = None                 # what the target column holds, e.g. "log10(m_a / eV)"
    parameter: ParameterRange | None = None   # the per-image range of the target, if a user sets it
    columns: tuple[Column, ...] = ()
    columns_after: str | None = None          # the column its columns follow (None: at the end)
    extra: Extra | None = None
    manifest: Callable[[dict], dict] | None = None
    """Entries for the manifest's ``extra``, given the parameter ranges of the set's classes that
    share this function (called once for them: pyHalo's ``wdm`` and ``sidm`` share one)."""


_REGISTRY: dict[str, DarkMatterClass] = {}
_FOUND = False


def register_class(cls: DarkMatterClass) -> DarkMatterClass:
    """Add a class to the registry and return it; a taken name or label is a one-line ValueError."""
    _find_builtin_classes()
    problem = _conflict(cls)
    if problem:
        raise ValueError(f"cannot register dark-matter class {cls.name!r}: {problem}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_class(name: str) -> DarkMatterClass:
    """Remove a class (a test's toy class) and return it."""
    _find_builtin_classes()
    if name not in _REGISTRY:
        raise ValueError(f"no dark-matter class {name!r} is registered; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY.pop(name)


def classes() -> tuple[DarkMatterClass, ...]:
    """Every registered class in label order: the run cycle."""
    _find_builtin_classes()
    cycle = tuple(sorted(_REGISTRY.values(), key=lambda c: c.label))
    missing = next((i for i, c in enumerate(cycle) if c.label != i), None)
    if missing is not None:
        raise ValueError(f"dark-matter class labels must run 0..{len(cycle) - 1} (places in the run cycle); "
                         f"no class has label {missing}")
    return cycle


def names() -> tuple[str, ...]:
    """The class names in label order (:data:`lensdata.names.SIM_CLASSES`)."""
    return tuple(c.name for c in classes())


def get_class(name: str) -> DarkMatterClass:
    """The class of this name (a ValueError listing the names if there is none)."""
    for cls in classes():
        if cls.name == name:
            return cls
    raise ValueError(f"unknown dark-matter class {name!r}; choose from {', '.join(names())}")


def targets() -> dict[str, str]:
    """What the ``target`` column of each class's images holds, for classes with a parameter."""
    return {c.name: c.target for c in classes() if c.target}


def parameter_ranges() -> tuple[ParameterRange, ...]:
    """The ranges a user may set, in label order."""
    return tuple(c.parameter for c in classes() if c.parameter)


def require_extras(chosen: Iterable[str]) -> None:
    """A one-line DataError naming the extra when one of these classes needs a library that is missing."""
    by_name = {c.name: c for c in classes()}
    for name in chosen:
        extra = by_name[name].extra
        if extra is not None and not extra.available():
            raise DataError(f"class {name} needs {extra.library}, which is not installed; install the extra: "
                            f"pip install 'deeplense-tuner[{extra.name}]'")


def _conflict(cls: DarkMatterClass) -> str | None:
    """Why this class cannot join the registry, or None."""
    if isinstance(cls.label, bool) or not isinstance(cls.label, int) or cls.label < 0:
        return f"its label must be a non-negative integer (its place in the run cycle), got {cls.label!r}"
    if (cls.draw is None) != (cls.stream is None):
        return "a class that draws needs its own Philox stream, and only such a class has one"
    if cls.stream in (SOURCE_STREAM, NOISE_STREAM, EXPOSURE_STREAM):
        return (f"stream {cls.stream} is the renderer's (source {SOURCE_STREAM}, noise {NOISE_STREAM}, "
                f"exposure {EXPOSURE_STREAM}); choose another")
    for other in _REGISTRY.values():
        if other.name == cls.name:
            return "the name is taken; choose another name"
        if other.label == cls.label:
            free = max(c.label for c in _REGISTRY.values()) + 1
            return f"label {cls.label} is taken by {other.name!r}; the next free label is {free}"
        if cls.parameter and other.parameter and cls.parameter.key == other.parameter.key:
            return f"parameter range {cls.parameter.key!r} belongs to {other.name!r}; choose another key"
        taken = {c.name for c in other.columns} & {c.name for c in cls.columns}
        if taken:
            return f"column {sorted(taken)[0]!r} belongs to {other.name!r}; choose another name"
    return None


def _find_builtin_classes() -> None:
    """Import this package's class modules once; each registers its class as it is imported."""
    global _FOUND
    if _FOUND:
        return
    _FOUND = True  # first: the modules call register_class while they are imported
    try:
        for module in pkgutil.iter_modules(__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
    except BaseException:
        _FOUND = False  # the next query tries again rather than serve a partial registry
        raise
