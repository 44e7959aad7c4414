"""Deflections of truncated and cored subhalos, batched in torch, in lenstronomy's parameters.

- ``TNFW``: the truncated NFW of Baltz, Marshall & Oguri (2009), ``rho_NFW(r) t^2 / (t^2 + x^2)``,
  ``x = r / Rs``, ``t = r_trunc / Rs``. Its projected mass is caustics' own
  (``caustics.lenses.func.mass_enclosed_2d_tnfw``); lenstronomy's ``alpha_Rs`` is the deflection the
  untruncated NFW would have at ``Rs``, so ``|alpha|(R) = alpha_Rs m(x) / ((1 + ln 1/2) x)`` with
  ``m`` the projected mass in units of ``4 pi rho_s Rs^3``.
- ``TNFWC``: the cored, truncated pseudo-NFW pyHalo gives SIDM halos (lenstronomy's ``TNFWC``),
  ``rho(r) = rho_0 / [sqrt(b^2 + x^2) (1 + x^2) (x^2 + t^2) / t^2]``, ``b = r_core / Rs``. No
  library of the field offers its deflection in torch; it is derived here. Partial fractions split
  ``1 / ((1 + x^2)(t^2 + x^2))`` into ``[1/(1 + x^2) - 1/(t^2 + x^2)] / (t^2 - 1)``, and each term
  projects in closed form: with ``A^2 = a^2 + X^2``, ``B^2 = b^2 + X^2``,

      int_0^inf dz / ((A^2 + z^2) sqrt(B^2 + z^2)) = u(X; a) = arccosh(A/B) / (A sqrt(a^2 - b^2))

  (``arccos(A/B) / (A sqrt(b^2 - a^2))`` when ``a < b``, ``1 / B^2`` when ``a = b``). Since
  ``d/dX [A^2 u] = X u - X / B^2``, the enclosed mass is
  ``g(X) = t^2/(t^2 - 1) [(1 + X^2) u(X; 1) - u(0; 1) - (t^2 + X^2) u(X; t) + t^2 u(0; t)]`` (the
  logarithms of the two terms cancel), and ``|alpha|(R) = alpha_Rs g(X) / (g(1) X)``.
- The convergence sheet: ``alpha = kappa (x, y)``.

:func:`halos_deflection` sums a whole pyHalo population (:class:`lensdata.populations.Population`).

``tests/lensdata/test_halo_profiles.py`` checks both against lenstronomy 1.14.2 in float64.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from lensdata.populations import TNFWC

if TYPE_CHECKING:
    from torch import Tensor

    from lensdata.populations import Population

_R_MIN = 1e-8
"""arcsec: the radius below which a deflection is taken at this radius (lenstronomy's guard)."""
_NFW_AT_RS = 1.0 + math.log(0.5)
"""Projected NFW mass inside Rs in units of 4 pi rho_s Rs^3."""
_SAME = 1e-6
"""|a^2 - b^2| below which u(X; a) takes its a = b limit (relative error ~1e-7 of a term that
cancels to a part in 1e6 at worst; never met by pyHalo's cores, whose b is at most 0.99 t)."""


def tnfw_deflection(dx: Tensor, dy: Tensor, alpha_rs: Tensor, rs: Tensor, r_trunc: Tensor):
    """Deflection (arcsec) at offsets ``dx, dy`` from the halo centres; parameters broadcast."""
    import torch
    from caustics.lenses.func import mass_enclosed_2d_tnfw

    r = torch.sqrt(dx * dx + dy * dy).clamp_min(_R_MIN)
    mass = mass_enclosed_2d_tnfw(r, rs, r_trunc / rs, 1.0)
    scale = alpha_rs * rs * mass / (_NFW_AT_RS * r * r)
    return scale * dx, scale * dy


def _u(x2: Tensor, a2: Tensor, b2: Tensor) -> Tensor:
    """The projection integral u(X; a) of squared arguments ``X^2``, ``a^2``, ``b^2``."""
    import torch

    big = x2 + a2
    small = x2 + b2
    d = a2 - b2
    if bool((d > _SAME * b2).all()):  # a > b for every halo here (pyHalo's cores are inside Rs): one branch
        return torch.arccosh(torch.sqrt(big / small)) / torch.sqrt(big * d)
    ratio = torch.sqrt(big / small)
    above = d > _SAME * b2
    below = d < -_SAME * b2
    safe = torch.where(above | below, d.abs(), torch.ones_like(d))
    cosh = torch.arccosh(torch.where(above, ratio, torch.ones_like(ratio)))
    cos = torch.arccos(torch.where(below, ratio, torch.ones_like(ratio)).clamp(max=1.0))
    value = torch.where(above, cosh, cos) / (torch.sqrt(big) * torch.sqrt(safe))
    return torch.where(above | below, value, 1.0 / small)


def _g_tnfwc(x2: Tensor, b2: Tensor, t2: Tensor) -> Tensor:
    """Projected mass inside ``X`` (up to the constant 4 pi rho_0 Rs^3) of the cored, truncated profile."""
    import torch

    one = torch.ones_like(t2)
    zero = torch.zeros_like(t2)  # the X = 0 terms are one number per halo
    return t2 / (t2 - 1.0) * ((1.0 + x2) * _u(x2, one, b2) - (t2 + x2) * _u(x2, t2, b2)
                              + (t2 * _u(zero, t2, b2) - _u(zero, one, b2)))


def tnfwc_deflection(dx: Tensor, dy: Tensor, alpha_rs: Tensor, rs: Tensor, r_core: Tensor, r_trunc: Tensor):
    """Deflection (arcsec) of lenstronomy's ``TNFWC`` at offsets ``dx, dy``; parameters broadcast."""
    import torch

    r2 = (dx * dx + dy * dy).clamp_min(_R_MIN**2)
    x2 = r2 / (rs * rs)
    b2 = (r_core / rs) ** 2
    t2 = (r_trunc / rs) ** 2
    g = _g_tnfwc(x2, b2, t2)
    g1 = _g_tnfwc(torch.ones_like(t2), b2, t2)
    scale = alpha_rs * rs * g / (g1 * r2)  # |alpha| = alpha_Rs g(X) / (g(1) X), along (dx, dy) / R
    return scale * dx, scale * dy


def sheet_deflection(x: Tensor, y: Tensor, kappa: Tensor):
    """Deflection of a uniform convergence sheet centred on the origin."""
    return kappa * x, kappa * y


_HALO_ELEMENTS = 1 << 15
"""Halo-pixel pairs per step of :func:`halos_deflection` (256 kB per float64 tensor: in cache)."""


def halos_deflection(x: Tensor, y: Tensor, pop: Population):
    """Deflection of one pyHalo population on a pixel grid ``x, y`` (arcsec), summed in a fixed order.

    Halos go in chunks of a fixed size whatever the batch, so an image's deflection (and its bits)
    does not depend on what it is rendered with.
    """
    import torch

    f64 = {"dtype": torch.float64, "device": x.device}
    flat_x, flat_y = x.reshape(1, -1), y.reshape(1, -1)
    kappa = torch.tensor(pop.kappa_sheet, **f64)
    ax, ay = sheet_deflection(flat_x[0], flat_y[0], kappa)
    step = max(1, _HALO_ELEMENTS // flat_x.shape[1])
    for cored in (False, True):
        rows = np.flatnonzero((pop.profile == TNFWC) == cored)
        for s in range(0, rows.size, step):
            part = rows[s : s + step]

            def col(values: np.ndarray, part: np.ndarray = part) -> torch.Tensor:
                return torch.tensor(values[part], **f64)[:, None]

            dx, dy = flat_x - col(pop.x), flat_y - col(pop.y)
            if cored:
                px, py = tnfwc_deflection(dx, dy, col(pop.alpha_rs), col(pop.rs), col(pop.r_core), col(pop.r_trunc))
            else:
                px, py = tnfw_deflection(dx, dy, col(pop.alpha_rs), col(pop.rs), col(pop.r_trunc))
            ax = ax + px.sum(0)
            ay = ay + py.sum(0)
    return ax.reshape(x.shape), ay.reshape(x.shape)
