"""The DeepLenseSim recipe: what every simulated image is made of (lens, source, substructure).

The values follow the public DeepLenseSim code (github.com/mwt5345/DeepLenseSim, ``deeplense/lens.py``)
and its papers (Alexander et al. 2020, ApJ 893, 15; 2023, MNRAS 524, 3):

- Lens (the same in every image): an SIE of a 1e12 Msun halo, e1=0.1, e2=0, plus external shear
  gamma1=0.05, z_l=0.5, z_s=1.0. Its Einstein radius is the point-mass radius of 1e12 Msun: 1.2815"
  from the luminosity distances DeepLenseSim used (the ``model1``-``model3`` presets), 1.6645" from
  proper angular-diameter distances (H0=70, Om0=0.3; the ``*-physical`` presets). See ``docs/data.md``.
- Source: elliptical Sersic, n=1, R_sersic=0.25" and e1=-0.1, e2=0.1 in lenstronomy's convention,
  centre uniform in +-0.35" per axis.
- ``cdm``: 25 point-mass subhalos, masses from a power law on [1e6, 1e10] Msun, radius uniform in
  [0.25, 2.0]", angle uniform.
- ``axion``: 3e10 Msun on a line through the centre at a uniform random angle, half-length
  ``0.03" * 1e-22 eV / m_a``, ``log10(m_a / eV)`` uniform in [-24, -22]: 100 equal point masses, ends
  included, as DeepLenseSim drew it, or the uniform line they approximate (``*-physical``).

Import-light: constants and one function that only reads them.
"""

from __future__ import annotations

HALO_MASS = 1e12            # Msun; SIE Einstein radius = point-mass radius of this mass
SIE_E1, SIE_E2 = 0.1, 0.0   # lenstronomy ellipticity of the SIE
SHEAR_G1, SHEAR_G2 = 0.05, 0.0
SOURCE_N = 1.0
SOURCE_R_SERSIC = 0.25      # arcsec, lenstronomy convention (caustics Re = R_sersic / sqrt(q))
SOURCE_E1, SOURCE_E2 = -0.1, 0.1
SOURCE_OFFSET = 0.35        # arcsec: centre uniform in +-0.35" per axis
N_SUBHALOS = 25
SUBHALO_MASS_RANGE = (1e6, 1e10)  # Msun
SUBHALO_SLOPE = -0.9
"""dN/dm ~ m^SUBHALO_SLOPE. DeepLenseSim's docstring says the CDM slope -1.9 (N-body subhalo mass
functions), but its sampler draws ``(lo^(b+1) + u (hi^(b+1) - lo^(b+1)))^(1/(b+1))`` with b=-0.9,
i.e. dN/dm ~ m^-0.9: that is what made the published Model I-III sets. With -1.9 the 25 subhalos
weigh ~3e8 Msun in all (Einstein radii ~0.005", a twentieth of a pixel) and ``cdm`` is almost
invisible next to ``no_sub`` (model2: median noiseless chi^2 of cdm - no_sub ~0.1, against ~5000
with -0.9, where the subhalos weigh ~4e10 Msun and reach 0.17"); -0.9 keeps the published sets'
difficulty: learnable, not trivial."""
SUBHALO_RADIUS = (0.25, 2.0)  # arcsec
SUBHALO_SOFTENING = 1e-5      # arcsec, Plummer; only keeps r=0 finite (4e-8 of the deflection at 0.05")
VORTEX_MASS = 3e10            # Msun
LOG10_AXION_MASS = (-24.0, -22.0)
VORTEX_HALF_LENGTH_1E22 = 0.03  # arcsec at m_a = 1e-22 eV, inversely proportional to m_a
VORTEX_SOFTENING = 0.01         # arcsec: the line's log divergence, well below a pixel



def physics_summary(distances: str = "angular") -> dict:
    """The fixed physics constants under a distance convention, for the dataset manifest."""
    from lensdata import lensing  # torch: only when a manifest is written

    return {
        "cosmology": {"H0": lensing.H0, "Om0": lensing.OM0,
                      "distances": {"angular": "angular diameter",
                                    "luminosity": "luminosity (DeepLenseSim's mass_to_radius)"}[distances]},
        "z_lens": lensing.Z_LENS, "z_source": lensing.Z_SOURCE,
        "halo": {"profile": "SIE", "mass_msun": HALO_MASS, "e1": SIE_E1, "e2": SIE_E2,
                 "einstein_radius_arcsec": lensing.einstein_radius(HALO_MASS, convention=distances)},
        "shear": {"gamma1": SHEAR_G1, "gamma2": SHEAR_G2},
        "source": {"profile": "Sersic", "n": SOURCE_N, "R_sersic_lenstronomy": SOURCE_R_SERSIC,
                   "e1": SOURCE_E1, "e2": SOURCE_E2, "offset_arcsec": SOURCE_OFFSET},
        "cdm": {"n_subhalos": N_SUBHALOS, "mass_range_msun": list(SUBHALO_MASS_RANGE),
                "dn_dm_slope": SUBHALO_SLOPE, "radius_arcsec": list(SUBHALO_RADIUS)},
        "axion": {"vortex_mass_msun": VORTEX_MASS, "log10_m_a_range": list(LOG10_AXION_MASS),
                  "half_length_arcsec": f"{VORTEX_HALF_LENGTH_1E22} * 1e-22 eV / m_a"},
    }
