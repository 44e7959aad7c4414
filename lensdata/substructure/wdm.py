"""``wdm``: warm dark matter subhalos, pyHalo's ``WDM`` preset (label 3; :mod:`lensdata.populations`).

The half-mode mass ``M_hm`` suppresses the subhalo mass function below it and lowers the small
halos' concentrations; ``log10(M_hm / Msun)`` is drawn per image (``--wdm-log-mhm``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lensdata import populations
from lensdata.substructure import Column, DarkMatterClass, ParameterRange, register_class
from lensdata.substructure._pyhalo import PYHALO, draw_population, manifest, populations_deflection, ten_to_the_target

if TYPE_CHECKING:
    from lensdata.instruments import Instrument


def _draw(rng: np.random.Generator, spec: Instrument, bounds: tuple[float, float]) -> dict:
    return draw_population("wdm", rng, bounds)


WDM = register_class(DarkMatterClass(
    name="wdm", label=3, stream=5, draw=_draw, deflect=populations_deflection, target="log10(M_hm / Msun)",
    parameter=ParameterRange("wdm_log_mhm", "range of log10(half-mode mass / Msun) of wdm images, drawn uniformly",
                             default=populations.WDM_LOG_MHM, limits=populations.WDM_LOG_MHM_LIMITS),
    columns=(Column("half_mode_mass", ten_to_the_target),),  # Msun
    extra=PYHALO, manifest=manifest,
))
