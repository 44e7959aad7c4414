"""Subhalo deflections against lenstronomy 1.14.2, float64, in lenstronomy's own parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LensModel.Profiles.nfw_core_truncated import TNFWC
from lenstronomy.LensModel.Profiles.tnfw import TNFW

from lensdata import halo_profiles
from lensdata.populations import TNFW as TNFW_CODE
from lensdata.populations import TNFWC as TNFWC_CODE
from lensdata.populations import Population

LENSTRONOMY_TNFW_XMIN = 1e-3
"""lenstronomy's TNFW evaluates its projected mass at R/Rs >= 0.001 (``self._s``), so inside that
radius its deflection is its own approximation; the comparison starts there."""


def t64(v) -> torch.Tensor:
    return torch.as_tensor(np.asarray(v, dtype=np.float64))


def points(rs: float, n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions from 1e-3 Rs to 30 Rs (log-uniform radius, uniform angle) about the centre (0.1, -0.2)."""
    g = np.random.default_rng(seed)
    r = rs * 10 ** g.uniform(-3, np.log10(30), n)
    a = g.uniform(0, 2 * np.pi, n)
    return 0.1 + r * np.cos(a), -0.2 + r * np.sin(a)


# (alpha_Rs, Rs, r_core, r_trunc): pyHalo-like cores (b ~ 0.2 t), a core wider than the truncation
# (the arccos branch), a tiny core (core-collapsed), and a small halo of a few 1e7 Msun.
CORED = [(3e-3, 0.05, 0.011, 0.4), (1e-3, 0.1, 0.05, 0.03), (2e-3, 0.05, 1e-4, 0.3),
         (1.2e-4, 0.055, 0.012, 0.009), (0.01, 0.2, 0.19, 2.0)]


@pytest.mark.parametrize("alpha_rs, rs, r_core, r_trunc", CORED)
def test_the_cored_profile_is_lenstronomys_tnfwc_to_float64(alpha_rs, rs, r_core, r_trunc):
    x, y = points(rs)
    ax, ay = halo_profiles.tnfwc_deflection(t64(x - 0.1), t64(y + 0.2), t64(alpha_rs), t64(rs), t64(r_core),
                                            t64(r_trunc))
    lx, ly = TNFWC().derivatives(x, y, Rs=rs, alpha_Rs=alpha_rs, r_core=r_core, r_trunc=r_trunc,
                                 center_x=0.1, center_y=-0.2)
    err = np.hypot(ax.numpy() - lx, ay.numpy() - ly)
    assert np.max(err) < 1e-12 * max(1.0, alpha_rs / 1e-3)  # arcsec
    # Pointwise: 1e-10 beyond 0.01 Rs; within it both codes subtract nearly equal O(1) terms for an
    # O(X^2) mass and keep ~1e-8 of it.
    rel = err / np.hypot(lx, ly)
    inner = np.hypot(x - 0.1, y + 0.2) < 0.01 * rs
    assert np.max(rel[~inner]) < 1e-10
    assert np.max(rel[inner], initial=0.0) < 1e-8


def test_the_cored_profile_tends_to_the_truncated_nfw_without_its_core_and_to_a_point_mass_far_away():
    rs, rt, alpha = 0.05, 0.4, 3e-3
    r = np.array([0.02, 0.05, 0.2, 1.0])
    cored = halo_profiles.tnfwc_deflection(t64(r), t64(0 * r), t64(alpha), t64(rs), t64(1e-7), t64(rt))[0]
    # A core this small leaves lenstronomy's TNFWC pseudo-NFW (1 + x^2, not (1 + x)^2): check it there.
    ref = TNFWC().derivatives(r, 0 * r, Rs=rs, alpha_Rs=alpha, r_core=1e-7, r_trunc=rt)[0]
    np.testing.assert_allclose(cored.numpy(), ref, rtol=1e-8)
    far = halo_profiles.tnfwc_deflection(t64([50.0, 100.0]), t64([0.0, 0.0]), t64(alpha), t64(rs), t64(0.01),
                                         t64(rt))[0].numpy()
    # alpha ~ M / R far away: the projected mass beyond R falls as (r_trunc / R)^2 (rho ~ r^-5 there)
    assert far[0] * 50.0 == pytest.approx(far[1] * 100.0, rel=1e-4)


@pytest.mark.parametrize("alpha_rs, rs, r_trunc", [(3e-6, 0.045, 5e-6), (1e-3, 0.1, 0.5), (0.01, 0.2, 0.05),
                                                    (2e-3, 0.05, 0.3)])
def test_the_truncated_nfw_is_lenstronomys_tnfw(alpha_rs, rs, r_trunc):
    """caustics' projected TNFW mass, scaled by lenstronomy's alpha_Rs convention.

    caustics replaces F(x) by a second-order series within 1% of x = 1 (error up to 1e-6 there), and
    within 0.01 Rs the two codes' closed forms lose digits differently (up to 2e-5 of a deflection
    that is itself ~1e-4 of the halo's largest); elsewhere they agree to 1e-8 or better.
    """
    x, y = points(rs)
    ax, ay = halo_profiles.tnfw_deflection(t64(x - 0.1), t64(y + 0.2), t64(alpha_rs), t64(rs), t64(r_trunc))
    lx, ly = TNFW().derivatives(x, y, Rs=rs, alpha_Rs=alpha_rs, r_trunc=r_trunc, center_x=0.1, center_y=-0.2)
    err = np.hypot(ax.numpy() - lx, ay.numpy() - ly)
    rel = err / np.hypot(lx, ly)
    x_rs = np.hypot(x - 0.1, y + 0.2) / rs
    near_rs, inner = np.abs(x_rs - 1) < 0.0101, x_rs < 0.01
    assert np.max(rel[~near_rs & ~inner]) < 1e-8
    assert np.max(rel[near_rs], initial=0.0) < 1e-6
    assert np.max(err) < 1e-6 * np.max(np.hypot(lx, ly))


def test_a_whole_population_deflects_as_lenstronomys_lens_model_of_it():
    """Both profiles, the convergence sheet, chunked summation: one lenstronomy LensModel of the same list."""
    from lensdata.halo_profiles import halos_deflection

    g = np.random.default_rng(3)
    k = 700  # more than one chunk on this grid
    profile = np.where(g.uniform(size=k) < 0.5, TNFWC_CODE, TNFW_CODE).astype(np.int8)
    rs = 10 ** g.uniform(-2, -0.7, k)
    pop = Population(profile=profile, x=g.uniform(-3, 3, k), y=g.uniform(-3, 3, k),
                     alpha_rs=10 ** g.uniform(-5, -2.5, k), rs=rs, r_trunc=rs * 10 ** g.uniform(-0.5, 1.5, k),
                     r_core=np.where(profile == TNFWC_CODE, rs * g.uniform(0.001, 0.3, k), np.nan),
                     mass=np.ones(k), kappa_sheet=-0.0021)
    coords = torch.linspace(-3.2, 3.2, 48, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    ax, ay = halos_deflection(xx, yy, pop)
    names, kwargs = pop.lenstronomy()
    lx, ly = LensModel(names).alpha(xx.numpy().ravel(), yy.numpy().ravel(), kwargs)
    err = np.hypot(ax.numpy().ravel() - lx, ay.numpy().ravel() - ly)
    assert np.max(err) < 1e-7 * np.max(np.hypot(lx, ly))  # caustics' series near Rs bounds this
