"""``sidm``: self-interacting dark matter subhalos, pyHalo's ``SIDM_parametric`` (label 4).

For an effective cross-section ``sigma_eff`` every subhalo becomes a cored, truncated NFW whose
core grows, then shrinks as the core collapses (:mod:`lensdata.populations`);
``log10(sigma_eff / cm^2 g^-1)`` is drawn per image (``--sidm-log-sigma``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lensdata import populations
from lensdata.substructure import Column, DarkMatterClass, ParameterRange, register_class
from lensdata.substructure._pyhalo import PYHALO, draw_population, manifest, populations_deflection, ten_to_the_target

if TYPE_CHECKING:
    from lensdata.instruments import Instrument


def _draw(rng: np.random.Generator, spec: Instrument, bounds: tuple[float, float]) -> dict:
    return draw_population("sidm", rng, bounds)


def _cored_fraction(draws: list[dict]) -> np.ndarray:
    """The share of an image's subhalos that are cored (NaN without subhalos)."""
    return np.array([float(np.mean(d["halos"].profile == populations.TNFWC)) if len(d["halos"]) else math.nan
                     for d in draws], dtype=np.float64)


SIDM = register_class(DarkMatterClass(
    name="sidm", label=4, stream=5, draw=_draw, deflect=populations_deflection,
    target="log10(sigma_eff / cm^2 g^-1)",
    parameter=ParameterRange("sidm_log_sigma",
                             "range of log10(cross-section / cm^2 g^-1) of sidm images, drawn uniformly",
                             default=populations.SIDM_LOG_SIGMA, limits=populations.SIDM_LOG_SIGMA_LIMITS),
    columns=(Column("sidm_cross_section", ten_to_the_target),  # cm^2/g
             Column("cored_fraction", _cored_fraction)),
    extra=PYHALO, manifest=manifest,
))
