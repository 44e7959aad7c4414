"""Names the whole project shares, defined once: the classes and the splits of a dataset."""

from __future__ import annotations

CLASSES = ("no_sub", "cdm", "axion")
"""The DeepLense sets' classes in label order (0 ``no_sub``, 1 ``cdm``, 2 ``axion``): the importer's
classes and the simulator's default."""

SIM_CLASSES = CLASSES + ("wdm", "sidm")
"""Every class the simulator makes, in run order: image ``i`` of a run is of class
``SIM_CLASSES[i % 5]``. ``wdm`` and ``sidm`` are pyHalo populations (:mod:`lensdata.populations`)."""

SUBSTRUCTURE_PARAMETERS = {
    "axion": "log10(m_a / eV)",
    "wdm": "log10(M_hm / Msun)",
    "sidm": "log10(sigma_eff / cm^2 g^-1)",
}
"""What the ``target`` column of each class's images holds (NaN for ``no_sub`` and ``cdm``)."""

SPLITS = ("train", "val", "test")
"""The splits of every dataset, in stored order."""
