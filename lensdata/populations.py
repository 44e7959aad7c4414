"""Subhalo populations of warm and self-interacting dark matter, drawn with pyHalo.

The ``wdm`` and ``sidm`` classes take their subhalos from pyHalo (Gilman et al. 2020, MNRAS 491,
6077; github.com/dangilman/pyHalo), the field's library for substructure populations, the one
DeepLenseSim itself draws CDM populations with. Each image draws one realisation of the model,
seeded by the image alone, and the project ray-traces it in batch (:mod:`lensdata.halo_profiles`).

- ``wdm``: pyHalo's ``WDM`` preset. The half-mode mass ``M_hm`` suppresses the subhalo mass
  function below it (pyHalo's LOVELL2020 model, Lovell 2020) and lowers the concentrations of small halos; the
  halos are truncated NFW (lenstronomy ``TNFW``). ``log10(M_hm / Msun)`` is drawn per image,
  uniform in :data:`WDM_LOG_MHM`.
- ``sidm``: pyHalo's ``SIDM_parametric`` (Yang et al. 2023's parametric model of gravothermal
  evolution): for an effective cross-section ``sigma_eff`` every subhalo becomes a cored,
  truncated NFW (lenstronomy ``TNFWC``) whose core first grows, then shrinks as the halo core
  collapses. ``log10(sigma_eff / cm^2 g^-1)`` is drawn per image, uniform in :data:`SIDM_LOG_SIGMA`.

What is fixed, and why (see ``docs/models/``):

- Subhalos only (``LOS_normalization=0``): every halo sits in the lens plane, so one plane is
  ray-traced as for ``cdm`` and ``axion``. Line-of-sight halos would need multi-plane tracing.
- pyHalo's defaults otherwise (host halo 10^13.3 Msun, ``sigma_sub`` 0.025 kpc^-2, slope -1.9, a
  6" rendering cone), the presets' redshifts (0.5, 1.0) and the project's cosmology (H0 70, Om0 0.3).
  The negative convergence sheet pyHalo adds for the mean substructure mass is kept.
- Halos of 10^7-10^10 Msun (:data:`LOG_MLOW`, :data:`LOG_MHIGH`). pyHalo's default lower edge
  10^6 adds ~1,500 halos whose scale radii are a tenth of a model2 pixel and costs five times the
  rendering; ``M_hm`` ranges therefore start at 10^7.

pyHalo is an optional extra (``pip install 'deeplense-tuner[dark-matter]'``): it pulls in
lenstronomy, colossus and mcfit. pyHalo 1.4.6 is the newest release that imports with the newest
lenstronomy on PyPI (1.14.2; pyHalo 1.4.7+ import lenstronomy profiles not released yet), and it
calls ``numpy.trapz``, which numpy 2.4 removed: :func:`_import_pyhalo` restores that name as
``numpy.trapezoid`` (the same function under its new name) before importing it.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from lensdata.errors import DataError

EXTRA = "dark-matter"
"""The optional dependency group that installs pyHalo: ``pip install 'deeplense-tuner[dark-matter]'``."""

LOG_MLOW, LOG_MHIGH = 7.0, 10.0
"""log10 of the rendered subhalo mass range, Msun."""
CONE_ARCSEC = 6.0
"""pyHalo's rendering cone (its default opening angle)."""

WDM_LOG_MHM = (7.0, 9.0)
"""Default per-image range of log10(M_hm / Msun). Gilman et al. (2020) put a uniform prior on
[4.8, 10] and exclude log10 M_hm > 7.8 at 2 sigma; we start at the rendered lower edge 7, and stop
at 9, above which fewer than ~15 subhalos remain in the cone and ``wdm`` looks like ``no_sub``."""
WDM_LOG_MHM_LIMITS = (LOG_MLOW, LOG_MHIGH)
"""Half-mode masses a user may ask for: below 10^7 the suppression acts only on halos that are not
rendered (the set would be CDM), above 10^10 it removes every rendered halo."""

SIDM_LOG_SIGMA = (1.0, 3.0)
"""Default per-image range of log10(sigma_eff / cm^2 g^-1): at 10 cm^2/g a few percent of the
subhalos have formed cores, at 100 all have, and by 1000 they have core-collapsed (measured on
pyHalo's realisations; see docs/models/sidm.md)."""
SIDM_LOG_SIGMA_LIMITS = (-1.0, 3.0)
"""Cross-sections a user may ask for, within the range of pyHalo's parametric model's examples."""

COSMOLOGY = {"H0": 70.0, "Om0": 0.3, "Ob0": 0.05, "sigma8": 0.82, "ns": 0.965}
"""pyHalo's cosmology keys; H0 and Om0 are the project's (``lensdata.lensing``), Ob0, sigma8 and
ns only shape pyHalo's concentrations (Planck-like values)."""

MODELS = ("cdm", "wdm", "sidm")
"""pyHalo models this module draws: ``wdm`` and ``sidm`` are dataset classes; ``cdm`` (pyHalo's CDM
with the same settings, not the ``cdm`` class, which is DeepLenseSim's) is the reference the checks
and benchmarks compare them with."""

TNFW, TNFWC = 0, 1
"""Profile codes of :attr:`Population.profile` (lenstronomy's ``TNFW`` and ``TNFWC``)."""


@dataclass(frozen=True)
class Population:
    """One realisation's subhalos, in lenstronomy's parameters (arcsec, reduced deflections).

    ``r_core`` is NaN for ``TNFW`` halos; ``kappa_sheet`` is pyHalo's negative convergence sheet
    centred on the lens.
    """

    profile: np.ndarray   # (K,) int8, TNFW or TNFWC
    x: np.ndarray         # (K,) arcsec
    y: np.ndarray
    alpha_rs: np.ndarray  # deflection at Rs (lenstronomy's alpha_Rs)
    rs: np.ndarray
    r_trunc: np.ndarray
    r_core: np.ndarray
    mass: np.ndarray      # (K,) Msun, pyHalo's halo masses
    kappa_sheet: float

    def __len__(self) -> int:
        return int(self.profile.size)

    def lenstronomy(self) -> tuple[list[str], list[dict]]:
        """The same halos as a lenstronomy lens model list and its keyword arguments."""
        names, kwargs = [], []
        for i in range(len(self)):
            kw = {"alpha_Rs": self.alpha_rs[i], "Rs": self.rs[i], "center_x": self.x[i],
                  "center_y": self.y[i], "r_trunc": self.r_trunc[i]}
            if self.profile[i] == TNFWC:
                kw["r_core"] = self.r_core[i]
            names.append("TNFWC" if self.profile[i] == TNFWC else "TNFW")
            kwargs.append(kw)
        names.append("CONVERGENCE")
        kwargs.append({"kappa": self.kappa_sheet, "ra_0": 0.0, "dec_0": 0.0})
        return names, kwargs


def available() -> bool:
    """Whether pyHalo (the ``dark-matter`` extra) imports."""
    try:
        _import_pyhalo()
    except ImportError:
        return False
    return True


def draw(model: str, parameter: float, seed: int, *, z_lens: float = 0.5, z_source: float = 1.0) -> Population:
    """One pyHalo realisation of ``model`` (cdm, wdm, sidm), seeded by ``seed`` alone.

    ``parameter`` is log10(M_hm / Msun) for ``wdm``, log10(sigma_eff / cm^2 g^-1) for ``sidm`` and
    ignored for ``cdm``. pyHalo draws from numpy's global generator: it is seeded here and given
    back its previous state afterwards, so callers' streams are untouched.
    """
    if model not in MODELS:
        raise DataError(f"unknown pyHalo model {model!r}; choose from {', '.join(MODELS)}")
    pyhalo = _import_pyhalo()
    common = {"log_mlow": LOG_MLOW, "log_mhigh": LOG_MHIGH, "LOS_normalization": 0.0,
              "cone_opening_angle_arcsec": CONE_ARCSEC, "kwargs_cosmo": dict(COSMOLOGY)}
    with _numpy_seed(seed):
        if model == "cdm":
            realization = pyhalo.CDM(z_lens, z_source, **common)
        elif model == "wdm":
            realization = pyhalo.WDM(z_lens, z_source, log_mc=float(parameter), **common)
        else:
            bins = [[LOG_MLOW, 8.0], [8.0, 9.0], [9.0, LOG_MHIGH]]
            realization = pyhalo.SIDM_parametric(z_lens, z_source, bins, [float(parameter)] * len(bins),
                                                 **common)
        names, _, kwargs, _ = realization.lensing_quantities()
    return _population(names, kwargs, realization.halos)


def _population(names: list[str], kwargs: list[dict], halos) -> Population:
    """The halos of a pyHalo lens model list as arrays (and its one convergence sheet)."""
    keep = [i for i, n in enumerate(names) if n != "CONVERGENCE"]
    unknown = sorted({names[i] for i in keep} - {"TNFW", "TNFWC"})
    if unknown:
        raise DataError(f"pyHalo returned halo profiles this renderer lacks: {', '.join(unknown)}")
    if len(keep) != len(halos):
        raise DataError(f"pyHalo returned {len(keep)} halo profiles for {len(halos)} halos")
    sheets = [kwargs[i]["kappa"] for i, n in enumerate(names) if n == "CONVERGENCE"]

    def col(key: str, default: float = float("nan")) -> np.ndarray:
        return np.array([float(kwargs[i].get(key, default)) for i in keep], dtype=np.float64)

    return Population(
        profile=np.array([TNFWC if names[i] == "TNFWC" else TNFW for i in keep], dtype=np.int8),
        x=col("center_x"), y=col("center_y"), alpha_rs=col("alpha_Rs"), rs=col("Rs"),
        r_trunc=col("r_trunc"), r_core=col("r_core"),
        mass=np.array([float(h.mass) for h in halos], dtype=np.float64),
        kappa_sheet=float(sum(sheets)))


@functools.cache
def _import_pyhalo() -> SimpleNamespace:
    """The three pyHalo preset models this module uses (ImportError without the extra)."""
    if not hasattr(np, "trapz"):  # numpy >= 2.4 removed the old name pyHalo 1.4.6 calls
        np.trapz = np.trapezoid
    from pyHalo.PresetModels.cdm import CDM
    from pyHalo.PresetModels.sidm import SIDM_parametric
    from pyHalo.PresetModels.wdm import WDM

    return SimpleNamespace(CDM=CDM, WDM=WDM, SIDM_parametric=SIDM_parametric)


@contextlib.contextmanager
def _numpy_seed(seed: int):
    state = np.random.get_state()
    np.random.seed(int(seed) % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


def summary(ranges: dict) -> dict:
    """What a dataset's manifest records of its pyHalo populations."""
    import importlib.metadata

    return {"library": f"pyHalo {importlib.metadata.version('pyHalo')}",
            "models": {"wdm": "pyHalo WDM preset (TNFW subhalos)",
                       "sidm": "pyHalo SIDM_parametric preset (TNFWC subhalos, Yang et al. 2023)"},
            "subhalos_only": True, "log10_mass_range_msun": [LOG_MLOW, LOG_MHIGH],
            "cone_opening_angle_arcsec": CONE_ARCSEC, "cosmology": dict(COSMOLOGY),
            "mass_sheet_correction": True, "parameter_ranges": ranges}
