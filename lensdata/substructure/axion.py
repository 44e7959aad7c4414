"""``axion``: a vortex of ultralight dark matter, a line of 3e10 Msun through the centre (label 2).

``log10(m_a / eV)`` is uniform in [-24, -22] (:mod:`lensdata.recipe`), the line's half-length
``0.03" * 1e-22 eV / m_a`` and its angle uniform. The ``model1``-``model3`` presets draw it as
DeepLenseSim did, ``vortex_points`` equal point masses with the ends included; the ``*-physical``
presets ray-trace the uniform line they approximate in closed form (:func:`lensdata.lensing.line_deflection`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lensdata.recipe import LOG10_AXION_MASS, VORTEX_HALF_LENGTH_1E22, VORTEX_MASS, VORTEX_SOFTENING
from lensdata.substructure import Column, DarkMatterClass, register_class
from lensdata.substructure.cdm import point_masses_deflection

if TYPE_CHECKING:
    from lensdata.instruments import Instrument


def _draw(rng: np.random.Generator, spec: Instrument, bounds: None) -> dict:
    from lensdata import lensing

    log_m = float(rng.uniform(*LOG10_AXION_MASS))
    angle = float(rng.uniform(0.0, math.pi))  # a segment through the centre: pi covers all
    length = 2.0 * VORTEX_HALF_LENGTH_1E22 * 1e-22 / 10.0**log_m
    d = {"target": log_m, "length": length, "cos": math.cos(angle), "sin": math.sin(angle),
         "vortex_rein": lensing.einstein_radius(VORTEX_MASS, convention=spec.distances)}
    if spec.vortex_points:  # DeepLenseSim's make_vortex: equal point masses, ends included
        along = np.linspace(-0.5 * length, 0.5 * length, spec.vortex_points)
        d["sub_x"], d["sub_y"] = along * d["cos"], along * d["sin"]
        d["sub_rein"] = np.full(spec.vortex_points,
                                lensing.einstein_radius(VORTEX_MASS / spec.vortex_points, convention=spec.distances))
    return d


def _deflect(grid, draws: list[dict]):
    if "sub_x" in draws[0]:  # one instrument per render: every draw has the points, or none has
        return point_masses_deflection(grid, draws)
    import torch

    from lensdata import lensing

    def col(key: str) -> torch.Tensor:
        return torch.tensor([d[key] for d in draws], dtype=torch.float64, device=grid.x.device)[:, None, None]

    return lensing.line_deflection(grid.x, grid.y, 0.0, 0.0, col("cos"), col("sin"), col("length"),
                                   col("vortex_rein"), VORTEX_SOFTENING)


def _axion_mass(draws: list[dict]) -> np.ndarray:
    """m_a, eV."""
    return 10.0 ** np.array([d["target"] for d in draws], dtype=np.float64)


def _vortex_length(draws: list[dict]) -> np.ndarray:
    """The line's full length, arcsec."""
    return np.array([d["length"] for d in draws], dtype=np.float64)


AXION = register_class(DarkMatterClass(
    name="axion", label=2, stream=2, draw=_draw, deflect=_deflect, target="log10(m_a / eV)",
    columns=(Column("axion_mass", _axion_mass), Column("vortex_length", _vortex_length)),
    columns_after="subhalo_mass_total",  # where the first simulator wrote them, before the source's
))
