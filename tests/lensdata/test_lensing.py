"""Lensing physics against closed forms and reference deflections computed with lenstronomy 1.14 (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from caustics import SIE, ExternalShear, SinglePlane
from caustics.lenses import func as lens_func

from lensdata import lensing

F64 = torch.float64
X = torch.tensor([1.0, 0.3, -0.7, 0.05, 1.5], dtype=F64)
Y = torch.tensor([0.0, 0.4, 0.9, -0.02, -1.1], dtype=F64)


def t(v) -> torch.Tensor:
    return torch.as_tensor(v, dtype=F64)


# ---------------------------------------------------------------- distances and Einstein radii


def test_angular_diameter_distances_match_reference():
    d_l, d_s, d_ls = lensing.distances(0.5, 1.0)
    assert d_l == pytest.approx(1259.08, abs=0.02)
    assert d_s == pytest.approx(1651.91, abs=0.02)
    assert d_ls == pytest.approx(707.60, abs=0.02)


@pytest.mark.parametrize("mass, rein", [(1e8, 0.01665), (1e9, 0.05264), (1e10, 0.16645),
                                        (1e12, 1.6645)])
def test_point_mass_einstein_radius(mass, rein):
    assert lensing.einstein_radius(mass) == pytest.approx(rein, rel=3e-4)


def test_einstein_radius_scales_as_sqrt_mass_on_arrays():
    masses = np.array([1e6, 1e9, 3e10])
    r = lensing.einstein_radius(masses)
    assert r.dtype == np.float64 and r.shape == (3,)
    np.testing.assert_allclose(r, lensing.einstein_radius(1.0) * np.sqrt(masses), rtol=1e-14)


# ---------------------------------------------------------------- caustics lenses vs the table


def test_sis_limit_deflection_equals_einstein_radius_everywhere():
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(1000, generator=gen, dtype=F64) - 0.5) * 8
    y = (torch.rand(1000, generator=gen, dtype=F64) - 0.5) * 8
    ax, ay = lens_func.reduced_deflection_angle_sie(t(0.0), t(0.0), t(1.0), t(0.0), t(1.2), x, y)
    torch.testing.assert_close(torch.hypot(ax, ay), torch.full_like(x, 1.2), atol=2e-6, rtol=0)


def test_sis_reference_table():
    ax, ay = lens_func.reduced_deflection_angle_sie(t(0.0), t(0.0), t(1.0), t(0.0), t(1.2), X, Y)
    np.testing.assert_allclose(ax, [1.2, 0.72, -0.73672874, 1.11417203, 0.967686], atol=1e-6)
    np.testing.assert_allclose(ay, [0.0, 0.96, 0.94722266, -0.44566881, -0.7096364], atol=1e-6)


def test_sie_reference_table():
    ax, ay = lens_func.reduced_deflection_angle_sie(t(0.1), t(-0.05), t(0.7), t(0.3), t(1.2), X, Y)
    np.testing.assert_allclose(ax, [1.12972564, 0.36307002, -0.72659997, -0.95825956, 0.8936953],
                               atol=1e-6)
    np.testing.assert_allclose(ay, [-0.01036915, 1.1536634, 1.0085745, 0.73532221, -0.83140033],
                               atol=1e-6)


def test_external_shear_reference_table():
    ax, ay = lens_func.reduced_deflection_angle_external_shear(t(0.0), t(0.0), t(0.05), t(-0.03),
                                                               X, Y)
    np.testing.assert_allclose(ax, [0.05, 0.003, -0.062, 0.0031, 0.108], atol=1e-9)
    np.testing.assert_allclose(ay, [-0.03, -0.029, -0.024, -0.0005, 0.01], atol=1e-9)


def test_point_mass_reference_table():
    ax, ay = lens_func.reduced_deflection_angle_point(t(0.2), t(0.1), t(0.1), X, Y)
    np.testing.assert_allclose(ax, [0.01230769, 0.01, -0.0062069, -0.04065041, 0.00415335],
                               atol=1e-8)
    np.testing.assert_allclose(ay, [-0.00153846, 0.03, 0.00551724, -0.03252033, -0.00383387],
                               atol=1e-8)


def test_point_masses_on_a_grid_sum_caustics_point_masses():
    """The simulator's subhalo sum equals caustics' point masses added one by one."""
    gen = np.random.default_rng(3)
    xs = torch.linspace(-2.0, 2.0, 24, dtype=F64)
    ys = torch.linspace(-1.5, 1.7, 16, dtype=F64)
    x0 = torch.tensor(gen.uniform(-2, 2, (3, 7)))
    y0 = torch.tensor(gen.uniform(-2, 2, (3, 7)))
    rein = torch.tensor(gen.uniform(0.001, 0.2, (3, 7)))
    ax, ay = lensing.point_masses_deflection(xs, ys, x0, y0, rein)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    for b in range(3):
        rx, ry = _sum_of_points(x0[b], y0[b], rein[b], xx, yy)
        torch.testing.assert_close(ax[b], rx, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ay[b], ry, rtol=1e-12, atol=1e-14)
    # Plummer softening: finite on top of a point mass, negligible a pixel away.
    sx, sy = lensing.point_masses_deflection(xs, ys, x0, y0, rein, s=1e-5)
    torch.testing.assert_close(sx, ax, rtol=1e-4, atol=0)  # s^2/d^2: 1e-4 at d = 0.001"
    on_top = lensing.point_masses_deflection(xs[:1], ys[:1], xs[:1, None], ys[:1, None],
                                             rein[:1, :1], s=1e-5)
    assert torch.isfinite(on_top[0]).all() and float(on_top[0].abs().max()) == 0.0
    # An image's bits do not depend on its batch.
    one = lensing.point_masses_deflection(xs, ys, x0[1:2], y0[1:2], rein[1:2], s=1e-5)
    assert torch.equal(one[0][0], sx[1]) and torch.equal(one[1][0], sy[1])


def test_caustics_objects_compose_like_the_functions():
    """The simulator's macro lens (caustics SIE + ExternalShear in a SinglePlane) adds up."""
    cosmo = lensing.cosmology()
    sie = SIE(cosmo, x0=t(0.1), y0=t(-0.05), q=t(0.7), phi=t(0.3), Rein=t(1.2))
    shear = ExternalShear(cosmo, x0=t(0.0), y0=t(0.0), gamma_1=t(0.05), gamma_2=t(-0.03))
    plane = SinglePlane(cosmo, lenses=(sie, shear), z_l=t(0.5), z_s=t(1.0))
    ax, ay = plane.reduced_deflection_angle(X, Y)
    sx, sy = lens_func.reduced_deflection_angle_sie(t(0.1), t(-0.05), t(0.7), t(0.3), t(1.2), X, Y)
    gx, gy = lens_func.reduced_deflection_angle_external_shear(t(0.0), t(0.0), t(0.05), t(-0.03),
                                                               X, Y)
    torch.testing.assert_close(ax, sx + gx, atol=1e-12, rtol=0)
    torch.testing.assert_close(ay, sy + gy, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- the line of mass


def _points_along(x0, y0, phi, length, rein, n):
    """n equal point masses at the midpoints of n equal pieces of the segment."""
    s = (torch.arange(n, dtype=F64) + 0.5) / n * length - length / 2
    return x0 + s * math.cos(phi), y0 + s * math.sin(phi), rein / math.sqrt(n)


def _sum_of_points(px, py, r, x, y):
    ax = torch.zeros_like(x)
    ay = torch.zeros_like(y)
    for i in range(len(px)):
        ri = r[i] if torch.is_tensor(r) and r.ndim else t(r)
        dx, dy = lens_func.reduced_deflection_angle_point(px[i], py[i], ri, x, y)
        ax, ay = ax + dx, ay + dy
    return ax, ay


def _grid_away_from_segment(x0, y0, phi, length, min_dist, n=41, half=3.0):
    c = torch.linspace(-half, half, n, dtype=F64)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    xr = (xx - x0) * math.cos(phi) + (yy - y0) * math.sin(phi)
    yr = (yy - y0) * math.cos(phi) - (xx - x0) * math.sin(phi)
    dist = torch.hypot(torch.clamp(xr.abs() - length / 2, min=0), yr)
    keep = dist > min_dist
    return xx[keep], yy[keep]


@pytest.mark.parametrize("length", [0.06, 1.5, 6.0])
def test_line_equals_many_point_masses_away_from_the_line(length):
    x0, y0, phi, rein = 0.1, -0.2, 0.7, 0.2883
    x, y = _grid_away_from_segment(x0, y0, phi, length, min_dist=0.2)
    ax, ay = lensing.reduced_deflection_angle_line(t(x0), t(y0), t(phi), t(length), t(rein), x, y)
    px, py, r = _points_along(x0, y0, phi, length, rein, 1000)
    sx, sy = _sum_of_points(px, py, r, x, y)
    assert float((ax - sx).abs().max()) < 1e-6
    assert float((ay - sy).abs().max()) < 1e-6
    # DeepLenseSim's 100 points are already close to the line (median difference 1.6e-7").
    px, py, r = _points_along(x0, y0, phi, length, rein, 100)
    sx, sy = _sum_of_points(px, py, r, x, y)
    assert float(torch.hypot(ax - sx, ay - sy).median()) < 1e-5


def test_line_tends_to_a_point_mass_far_away():
    length, rein = 1.0, 0.3
    ang = torch.linspace(0, 2 * math.pi, 17, dtype=F64)[:-1]
    for dist, tol in [(20.0, 1e-3), (100.0, 4e-5)]:
        x, y = dist * torch.cos(ang), dist * torch.sin(ang)
        ax, ay = lensing.reduced_deflection_angle_line(t(0.0), t(0.0), t(0.4), t(length), t(rein),
                                                       x, y)
        px, py = lens_func.reduced_deflection_angle_point(t(0.0), t(0.0), t(rein), x, y)
        rel = torch.hypot(ax - px, ay - py) / torch.hypot(px, py)
        assert float(rel.max()) < tol  # the quadrupole falls as (L/r)^2


def test_line_matches_the_reference_closed_form_and_is_softened_on_the_segment():
    length, rein = 2.0, 0.3
    x, y = _grid_away_from_segment(0.0, 0.0, 0.0, length, min_dist=0.05)
    ax, ay = lensing.reduced_deflection_angle_line(t(0.0), t(0.0), t(0.0), t(length), t(rein), x, y)
    s = rein**2 / length
    ref_x = s * 0.5 * torch.log(((x + 1) ** 2 + y**2) / ((x - 1) ** 2 + y**2))
    ref_y = s * (torch.atan2(y, x - 1) - torch.atan2(y, x + 1))
    torch.testing.assert_close(ax, ref_x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ay, ref_y, atol=1e-12, rtol=0)
    on = torch.tensor([0.0, 0.5, -0.99, 1.0], dtype=F64)
    sx, sy = lensing.reduced_deflection_angle_line(t(0.0), t(0.0), t(0.0), t(length), t(rein), on,
                                                   torch.zeros_like(on), s=0.01)
    assert torch.isfinite(sx).all() and torch.isfinite(sy).all()


def test_line_potential_gradient_and_convergence_mass():
    x0, y0, phi, length, rein, soft = 0.2, 0.1, 1.1, 1.2, 0.3, 0.05
    args = (t(x0), t(y0), t(phi), t(length), t(rein))
    x = torch.tensor([1.3, -0.8, 0.4, 2.0], dtype=F64)
    y = torch.tensor([0.2, 0.9, -1.1, 1.5], dtype=F64)
    h = 1e-5
    psi = lambda xx, yy: lensing.potential_line(*args, xx, yy, s=soft)  # noqa: E731
    gx = (psi(x + h, y) - psi(x - h, y)) / (2 * h)
    gy = (psi(x, y + h) - psi(x, y - h)) / (2 * h)
    ax, ay = lensing.reduced_deflection_angle_line(*args, x, y, s=soft)
    torch.testing.assert_close(gx, ax, atol=1e-8, rtol=0)
    torch.testing.assert_close(gy, ay, atol=1e-8, rtol=0)
    # The convergence integrates to the total mass: pi * Rein^2 (inside a wide box).
    c = torch.linspace(-6, 6, 1201, dtype=F64)
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    kappa = lensing.convergence_line(*args, xx, yy, s=soft)
    mass = float(kappa.sum()) * float(c[1] - c[0]) ** 2
    assert mass == pytest.approx(math.pi * rein**2, rel=2e-2)


def test_line_mass_is_a_caustics_thin_lens():
    cosmo = lensing.cosmology()
    lens = lensing.LineMass(cosmo, z_l=t(0.5), z_s=t(1.0), x0=t(0.1), y0=t(-0.2), phi=t(0.7),
                            length=t(1.5), Rein=t(0.3))
    ax, ay = lens.reduced_deflection_angle(X, Y)
    fx, fy = lensing.reduced_deflection_angle_line(t(0.1), t(-0.2), t(0.7), t(1.5), t(0.3), X, Y)
    torch.testing.assert_close(ax, fx, atol=0, rtol=0)
    torch.testing.assert_close(ay, fy, atol=0, rtol=0)
    bx, by = lens.raytrace(X, Y)  # the ThinLens machinery (lens equation) works on it
    torch.testing.assert_close(bx, X - fx, atol=1e-15, rtol=0)
    inner = lensing.LineMass(cosmo, x0=t(0.1), y0=t(-0.2), phi=t(0.7), length=t(1.5), Rein=t(0.3))
    plane = SinglePlane(cosmo, lenses=(inner,), z_l=t(0.5), z_s=t(1.0))
    px, _ = plane.reduced_deflection_angle(X, Y)
    torch.testing.assert_close(px, fx, atol=1e-15, rtol=0)


# ---------------------------------------------------------------- PSF


@pytest.mark.parametrize("fwhm, scale", [(0.087, 0.05), (0.16, 0.0505), (0.08, 0.04), (0.08, 0.08)])
def test_gaussian_kernel_is_normalised_symmetric_and_has_the_right_width(fwhm, scale):
    k = lensing.gaussian_kernel_1d(fwhm, scale)
    assert len(k) % 2 == 1
    assert k.sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_array_equal(k, k[::-1])
    r = np.arange(len(k)) - len(k) // 2
    sigma = fwhm / 2.35482 / scale
    # pixel integration adds about 1/12 pixel^2 of variance (less when sigma < 1 pixel)
    assert (k * r**2).sum() == pytest.approx(sigma**2 + 1 / 12, rel=0.1)


@pytest.mark.parametrize("fwhm, scale, ss", [(0.16, 0.0505, 2), (0.087, 0.05, 1)])
def test_psf_bin_matrix_equals_conv2d_then_binning_and_keeps_flux(fwhm, scale, ss):
    gen = torch.Generator().manual_seed(1)
    k = lensing.gaussian_kernel_1d(fwhm, scale)
    r = len(k) // 2
    pixels, pad = 12, r + 3
    side = pixels * ss + 2 * pad
    img = torch.rand(3, side, side, generator=gen, dtype=F64)
    a = torch.as_tensor(lensing.psf_bin_matrix(k, side, pad, pixels, ss))
    out = lensing.blur_and_bin(img, a)
    assert out.shape == (3, pixels, pixels)
    k2 = torch.outer(torch.as_tensor(k), torch.as_tensor(k))
    blurred = torch.nn.functional.conv2d(img[:, None], k2[None, None]).squeeze(1)  # "valid"
    c = pad - r
    cut = blurred[:, c : c + pixels * ss, c : c + pixels * ss]
    ref = cut.reshape(3, pixels, ss, pixels, ss).sum(dim=(2, 4))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    # Light well inside the cut-out keeps its flux (times ss^2 fine pixels per pixel).
    inner = torch.zeros_like(img)
    inner[:, pad + 2 * r : -pad - 2 * r, pad + 2 * r : -pad - 2 * r] = 1.0
    torch.testing.assert_close(lensing.blur_and_bin(inner, a).sum(dim=(1, 2)),
                               inner.sum(dim=(1, 2)), atol=1e-10, rtol=0)


def test_psf_bin_matrix_refuses_too_little_padding():
    k = lensing.gaussian_kernel_1d(0.16, 0.0505)
    r = len(k) // 2
    with pytest.raises(ValueError, match="padding"):
        lensing.psf_bin_matrix(k, 2 * 10 + 2 * r - 1, r - 1, 10, 2)


def test_blur_and_bin_is_bitwise_independent_of_batch_size():
    gen = torch.Generator().manual_seed(2)
    k = lensing.gaussian_kernel_1d(0.087, 0.05)
    side = 48 + 2 * (len(k) // 2)
    img = torch.rand(64, side, side, generator=gen, dtype=F64)
    a = torch.as_tensor(lensing.psf_bin_matrix(k, side, len(k) // 2, 48, 1))
    full = lensing.blur_and_bin(img, a)
    for b in (1, 3, 5, 17):
        parts = torch.cat([lensing.blur_and_bin(img[i : i + b], a) for i in range(0, 64, b)])
        assert torch.equal(parts, full)
