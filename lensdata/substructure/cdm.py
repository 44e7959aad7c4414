"""``cdm``: DeepLenseSim's 25 point-mass subhalos (label 1; the recipe is :mod:`lensdata.recipe`).

Masses follow the recipe's power law on [1e6, 1e10] Msun (inverse CDF), radii are uniform in
[0.25, 2.0]" and angles uniform, all from the class's own stream of the image seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lensdata.recipe import N_SUBHALOS, SUBHALO_MASS_RANGE, SUBHALO_RADIUS, SUBHALO_SLOPE, SUBHALO_SOFTENING
from lensdata.substructure import DarkMatterClass, register_class

if TYPE_CHECKING:
    from lensdata.instruments import Instrument


def _draw(rng: np.random.Generator, spec: Instrument, bounds: None) -> dict:
    from lensdata import lensing

    lo, hi = SUBHALO_MASS_RANGE
    a = SUBHALO_SLOPE + 1.0  # inverse CDF of dN/dm ~ m^SLOPE on [lo, hi]
    mass = (lo**a + rng.uniform(0.0, 1.0, N_SUBHALOS) * (hi**a - lo**a)) ** (1.0 / a)
    radius = rng.uniform(*SUBHALO_RADIUS, size=N_SUBHALOS)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=N_SUBHALOS)
    return {"sub_x": radius * np.cos(angle), "sub_y": radius * np.sin(angle),
            "sub_rein": lensing.einstein_radius(mass, convention=spec.distances),
            "n_subhalos": N_SUBHALOS, "subhalo_mass_total": float(mass.sum())}


def point_masses_deflection(grid, draws: list[dict]):
    """Deflection of each draw's point masses ``sub_x, sub_y, sub_rein``, summed on the separable grid.

    cdm's subhalos, and the axion vortex as DeepLenseSim made it (a line of equal point masses).
    """
    import torch

    from lensdata import lensing

    f64 = {"dtype": torch.float64, "device": grid.x.device}

    def stack(key: str) -> torch.Tensor:
        return torch.tensor(np.stack([d[key] for d in draws]), **f64)

    return lensing.point_masses_deflection(grid.xs, grid.ys, stack("sub_x"), stack("sub_y"), stack("sub_rein"),
                                           SUBHALO_SOFTENING)


CDM = register_class(DarkMatterClass(name="cdm", label=1, stream=1, draw=_draw, deflect=point_masses_deflection))
