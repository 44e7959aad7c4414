"""Names the whole project shares, defined once: the classes and the splits of a dataset.

``SIM_CLASSES`` and ``SUBSTRUCTURE_PARAMETERS`` come from the registry of dark-matter classes
(:mod:`lensdata.substructure`), read each time they are asked for (PEP 562), so a class registered
later is in them.
"""

from __future__ import annotations

from typing import Any

CLASSES = ("no_sub", "cdm", "axion")
"""The DeepLense sets' classes in label order (0 ``no_sub``, 1 ``cdm``, 2 ``axion``): the importer's
classes and the simulator's default."""

SPLITS = ("train", "val", "test")
"""The splits of every dataset, in stored order."""


def __getattr__(name: str) -> Any:
    """``SIM_CLASSES``: every class the simulator makes, in run order (image ``i`` of a run is of class
    ``SIM_CLASSES[i % len(SIM_CLASSES)]``). ``SUBSTRUCTURE_PARAMETERS``: what the ``target`` column of
    each class's images holds, for the classes that have one (NaN for ``no_sub`` and ``cdm``).
    """
    from lensdata import substructure

    if name == "SIM_CLASSES":
        return substructure.names()
    if name == "SUBSTRUCTURE_PARAMETERS":
        return substructure.targets()
    raise AttributeError(f"module 'lensdata.names' has no attribute {name!r}")
