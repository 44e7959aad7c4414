"""lensdata: the data layer of deeplense-tuner.

Strong-lensing datasets as directories of Parquet files that any Arrow tool reads
(:mod:`lensdata.store`), the in-memory :class:`LensingData` (:mod:`lensdata.dataset`), the
``sim:INSTRUMENT[:N]`` sources and their cache (:mod:`lensdata.sources`), the safe importer of the
DeepLense ``.npy`` folders (:mod:`lensdata.importer`), and the batched lensing simulator
(:mod:`lensdata.simulate`, with :mod:`lensdata.render`, :mod:`lensdata.noise`,
:mod:`lensdata.lensing`, :mod:`lensdata.recipe` and :mod:`lensdata.instruments`), whose
dark-matter classes register themselves in :mod:`lensdata.substructure`, one module each. It
imports no other package of the project.

The names below are the public face; code outside the package imports them from here
(``from lensdata import load_dataset``), or from the public module that holds them. They load on
first use, so importing the package (or :mod:`lensdata.errors`) costs nothing: the command
line's ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "CLASSES": "lensdata.names", "SPLITS": "lensdata.names",
    "DataError": "lensdata.errors", "DatasetError": "lensdata.errors",
    "INSTRUMENTS": "lensdata.instruments", "INSTRUMENT_NAMES": "lensdata.instruments",
    "Instrument": "lensdata.instruments", "get_instrument": "lensdata.instruments",
    "LensingData": "lensdata.dataset", "assign_splits": "lensdata.dataset",
    "normalize_images": "lensdata.dataset", "NORMALIZE_MODES": "lensdata.dataset",
    "write_dataset": "lensdata.store", "load_dataset": "lensdata.store",
    "verify_dataset": "lensdata.checks", "read_manifest": "lensdata.checks",
    "arrow_dataset": "lensdata.store", "dataset_info": "lensdata.info",
    "open_data": "lensdata.sources", "resolve_data": "lensdata.sources",
    "import_deeplense": "lensdata.importer",
    "simulate_to_dataset": "lensdata.simulate", "image_seeds": "lensdata.simulate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'lensdata' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
