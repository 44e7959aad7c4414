"""What the pyHalo classes (``wdm``, ``sidm``) share: a draw, a deflection and a manifest entry.

Each image draws its parameter uniformly in its range, then one pyHalo realisation seeded from the
same stream (:func:`lensdata.populations.draw`); the renderer ray-traces it with
:func:`lensdata.halo_profiles.halos_deflection`. A helper module, not a class: the registry skips
modules whose names start with ``_``.
"""

from __future__ import annotations

import numpy as np

from lensdata import populations
from lensdata.substructure import Extra

PYHALO = Extra(name=populations.EXTRA, library="pyHalo", available=populations.available)


def draw_population(model: str, rng: np.random.Generator, bounds: tuple[float, float]) -> dict:
    """One image's parameter (its ``target``) and pyHalo population of ``model``."""
    from lensdata import lensing

    parameter = float(rng.uniform(*bounds))
    pop = populations.draw(model, parameter, int(rng.integers(2**32)), z_lens=lensing.Z_LENS,
                           z_source=lensing.Z_SOURCE)
    return {"target": parameter, "halos": pop, "n_subhalos": len(pop), "subhalo_mass_total": float(pop.mass.sum())}


def populations_deflection(grid, draws: list[dict]):
    """Each draw's population traced on its own (halos in fixed chunks: no image depends on another)."""
    import torch

    from lensdata.halo_profiles import halos_deflection

    pairs = [halos_deflection(grid.x, grid.y, d["halos"]) for d in draws]
    return torch.stack([ax for ax, _ in pairs]), torch.stack([ay for _, ay in pairs])


def ten_to_the_target(draws: list[dict]) -> np.ndarray:
    """10**parameter: the half-mode mass (Msun) or the cross-section (cm^2/g) from its log10."""
    return 10.0 ** np.array([d["target"] for d in draws], dtype=np.float64)


def manifest(ranges: dict) -> dict:
    """The manifest's ``populations`` entry: pyHalo's version and settings, and the parameter ranges."""
    return {"populations": populations.summary(ranges)}
