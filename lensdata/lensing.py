"""Lensing building blocks on top of caustics: distances, Einstein radii, the vortex, the PSF.

The simulator (``lensdata.render``) composes caustics' own lenses (SIE, ExternalShear, Point) and its
Sersic light profile. What caustics lacks lives here:

- :class:`LineMass`, a uniform straight segment of mass (the axion "vortex" of DeepLenseSim) as a
  caustics ``ThinLens`` subclass, with the closed-form deflection, potential and convergence of a line
  of Plummer-softened point masses (the point-mass deflection integrated along the segment; see
  ``docs/data.md``). DeepLenseSim summed 100 point masses; the
  closed form costs what one point mass costs and is the limit of that sum.
- Einstein radii from proper angular-diameter distances (caustics' ``FlatLambdaCDM``).
- A pixel-integrated Gaussian PSF, applied with the cut-out and the binning as one matrix per
  image axis, so that every image's bits are independent of the batch it is computed in.
- The summed deflection of many point masses, in preallocated buffers.

Conventions: angles in arcsec, deflections reduced (scaled to the source plane), position angles in
radians counter-clockwise from +x, arrays indexed ``[..., y, x]``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated

import numpy as np
import torch
from caskade import Param, forward
from caustics import FlatLambdaCDM, ThinLens
from caustics.lenses import func as lens_func

Tensor = torch.Tensor
Real = torch.Tensor | float  # a tensor, or a plain number broadcast against one

H0 = 70.0
"""Hubble constant, km/s/Mpc (DeepLenseSim's flat LCDM)."""
OM0 = 0.3
"""Matter density today (flat universe)."""
Z_LENS = 0.5
Z_SOURCE = 1.0

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.35482


# ---------------------------------------------------------------- cosmology


def cosmology() -> FlatLambdaCDM:
    """caustics' flat LCDM with H0=70, Om0=0.3, in float64 (its float32 tables lose ~1e-4)."""
    cosmo = FlatLambdaCDM(h0=H0 / 100.0, Om0=OM0)
    cosmo.to(dtype=torch.float64)
    return cosmo


DISTANCE_CONVENTIONS = ("angular", "luminosity")


@lru_cache(maxsize=16)
def distances(z_l: float = Z_LENS, z_s: float = Z_SOURCE,
              convention: str = "angular") -> tuple[float, float, float]:
    """Lens, source and lens-source distances ``(D_l, D_s, D_ls)`` in Mpc.

    ``angular``: proper angular-diameter distances (1259.08, 1651.91, 707.60 by default), what the
    lens equation needs. ``luminosity``: what DeepLenseSim's ``mass_to_radius`` used,
    ``D_l = d_L(z_l)``, ``D_s = d_L(z_s)`` and ``D_ls = D_s - D_l`` (2832.94, 6607.66, 3774.72): the
    DeepLense sets were made with these.
    """
    if convention not in DISTANCE_CONVENTIONS:
        raise ValueError(f"unknown distance convention {convention!r}; use one of {DISTANCE_CONVENTIONS}")
    cosmo = cosmology()
    zl = torch.tensor(z_l, dtype=torch.float64)
    zs = torch.tensor(z_s, dtype=torch.float64)
    if convention == "luminosity":  # flat universe: d_L = (1 + z) * comoving distance
        d_l = (1.0 + z_l) * float(cosmo.comoving_distance(zl))
        d_s = (1.0 + z_s) * float(cosmo.comoving_distance(zs))
        return d_l, d_s, d_s - d_l
    d_l = cosmo.angular_diameter_distance(zl)
    d_s = cosmo.angular_diameter_distance(zs)
    d_ls = cosmo.angular_diameter_distance_z1z2(zl, zs)
    return float(d_l), float(d_s), float(d_ls)


@lru_cache(maxsize=16)
def _rein_of_one_msun(z_l: float, z_s: float, convention: str) -> float:
    d_l, d_s, d_ls = distances(z_l, z_s, convention)
    one = torch.tensor(1.0, dtype=torch.float64)
    return float(lens_func.mass_to_rein_point(one, d_ls, d_l, d_s))


def einstein_radius(mass_msun: float | np.ndarray, z_l: float = Z_LENS, z_s: float = Z_SOURCE, *,
                    convention: str = "angular") -> float | np.ndarray:
    """Point-mass Einstein radius in arcsec, ``sqrt(4 G M / c^2 * D_ls / (D_l D_s))``.

    With proper angular-diameter distances (``convention="angular"``) 1e9 Msun gives 0.05264" and
    1e12 Msun 1.6645" at z 0.5 -> 1.0; with DeepLenseSim's luminosity distances
    (``convention="luminosity"``) every radius is 1.30x smaller (1.2810" for 1e12 Msun).
    A float gives a float; an array gives a float64 array of the same shape.
    """
    scale = _rein_of_one_msun(float(z_l), float(z_s), convention)
    if np.ndim(mass_msun) == 0:
        return scale * math.sqrt(float(mass_msun))
    return scale * np.sqrt(np.asarray(mass_msun, dtype=np.float64))


# ---------------------------------------------------------------- the line of mass (vortex)


def _line_frame_deflection(x, y, length, rein, s):
    """Deflection of a segment on the x axis from -L/2 to L/2, in its own frame.

    A uniform line of Plummer-softened point masses: with ``a = sqrt(y^2 + s^2)``,
    ``alpha_x = rein^2/L * 0.5 ln[((x+L/2)^2 + a^2) / ((x-L/2)^2 + a^2)]`` and
    ``alpha_y = rein^2/L * (y/a) [atan((x+L/2)/a) - atan((x-L/2)/a)]``. With ``s = 0`` this is the
    unsoftened line of ``docs/data.md``; ``s > 0`` keeps it finite on the segment.
    """
    half = 0.5 * length
    a2 = y * y + s * s
    a = torch.sqrt(a2)
    up = x + half
    um = x - half
    scale = rein * rein / length
    ax = scale * (0.5 * torch.log((up * up + a2) / (um * um + a2)))
    # (y / a) -> sign(y) as s -> 0; at y = a = 0 (only with s = 0) the bracket is 0 anyway.
    ratio = torch.where(a > 0, y / torch.where(a > 0, a, torch.ones_like(a)), torch.zeros_like(a))
    # atan(u/a) written with atan2 so that a = 0 (s = 0, on the axis) stays finite.
    ay = scale * ratio * (torch.atan2(up, a) - torch.atan2(um, a))
    return ax, ay


def line_deflection(x: Tensor, y: Tensor, x0: Real, y0: Real, cos_phi: Real, sin_phi: Real, length: Real,
                    rein: Real, s: float = 0.0) -> tuple[Tensor, Tensor]:
    """Reduced deflection of a uniform line of mass, rotation given as ``cos(phi), sin(phi)``.

    Args:
        x, y: image-plane positions, arcsec (tensors; broadcast against the parameters).
        x0, y0: centre of the segment, arcsec.
        cos_phi, sin_phi: direction of the segment (angle counter-clockwise from +x).
        length: full length of the segment, arcsec (> 0).
        rein: Einstein radius of the segment's total mass as a point mass, arcsec.
        s: Plummer softening, arcsec.

    The simulator passes precomputed cosines (from its per-image draws) so that no
    transcendental function runs on a per-batch parameter vector: that keeps every image's bits
    independent of the batch size.
    """
    xt = x - x0
    yt = y - y0
    xr = xt * cos_phi + yt * sin_phi
    yr = yt * cos_phi - xt * sin_phi
    axr, ayr = _line_frame_deflection(xr, yr, length, rein, s)
    return axr * cos_phi - ayr * sin_phi, axr * sin_phi + ayr * cos_phi


def reduced_deflection_angle_line(x0: Real, y0: Real, phi: Real, length: Real, Rein: Real, x: Tensor, y: Tensor,
                                  s: float = 0.0) -> tuple[Tensor, Tensor]:
    """Reduced deflection of a uniform line of mass (caustics ``func`` argument order)."""
    phi = torch.as_tensor(phi, dtype=torch.as_tensor(x).dtype)
    return line_deflection(x, y, x0, y0, torch.cos(phi), torch.sin(phi), length, Rein, s)


def potential_line(x0: Real, y0: Real, phi: Real, length: Real, Rein: Real, x: Tensor, y: Tensor,
                   s: float = 0.0) -> Tensor:
    """Lensing potential (arcsec^2) of the softened line: ``rein^2/L [F(x+L/2) - F(x-L/2)]``.

    ``F(u) = u/2 ln(u^2 + a^2) - u + a atan(u/a)``, ``a = sqrt(y^2 + s^2)``: the integral of the
    point-mass potential ``0.5 ln(r^2 + s^2)`` along the segment (needs ``s > 0`` or ``y != 0``).
    """
    phi = torch.as_tensor(phi, dtype=torch.as_tensor(x).dtype)
    c, sn = torch.cos(phi), torch.sin(phi)
    xt, yt = x - x0, y - y0
    xr, yr = xt * c + yt * sn, yt * c - xt * sn
    a2 = yr * yr + s * s
    a = torch.sqrt(a2)

    def f(u):
        return 0.5 * u * torch.log(u * u + a2) - u + a * torch.atan2(u, a)

    return Rein * Rein / length * (f(xr + 0.5 * length) - f(xr - 0.5 * length))


def convergence_line(x0: Real, y0: Real, phi: Real, length: Real, Rein: Real, x: Tensor, y: Tensor,
                     s: float = 0.0) -> Tensor:
    """Convergence of the softened line (zero off the segment when ``s = 0``).

    Each Plummer point has ``kappa = rein_i^2 s^2 / (r^2 + s^2)^2``; integrated along the segment
    with ``G(u) = u / (2 a^2 (u^2 + a^2)) + atan(u/a) / (2 a^3)``. Total mass: ``pi Rein^2``.
    """
    phi = torch.as_tensor(phi, dtype=torch.as_tensor(x).dtype)
    c, sn = torch.cos(phi), torch.sin(phi)
    xt, yt = x - x0, y - y0
    xr, yr = xt * c + yt * sn, yt * c - xt * sn
    if s == 0:
        return torch.zeros_like(xr)
    a2 = yr * yr + s * s
    a = torch.sqrt(a2)

    def g(u):
        return u / (2 * a2 * (u * u + a2)) + torch.atan2(u, a) / (2 * a2 * a)

    return Rein * Rein * s * s / length * (g(xr + 0.5 * length) - g(xr - 0.5 * length))


class LineMass(ThinLens):
    """A uniform straight segment of mass: the vortex (line-like) substructure of axion dark matter.

    Parameters are ``x0, y0`` (centre, arcsec), ``phi`` (direction, radians from +x), ``length``
    (full length, arcsec) and ``Rein`` (Einstein radius of the total mass as a point mass, arcsec).
    ``s`` softens the logarithmic divergence on the segment (Plummer softening, arcsec). It plugs
    into caustics like any lens (``SinglePlane``, ``LensSource``); the closed forms are in
    :func:`line_deflection`, :func:`potential_line` and :func:`convergence_line`.
    """

    _null_params = {"x0": 0.0, "y0": 0.0, "phi": 0.0, "length": 1.0, "Rein": 0.1}

    def __init__(
        self,
        cosmology: FlatLambdaCDM,
        z_l: torch.Tensor | float | None = None,
        z_s: torch.Tensor | float | None = None,
        x0: torch.Tensor | float | None = None,
        y0: torch.Tensor | float | None = None,
        phi: torch.Tensor | float | None = None,
        length: torch.Tensor | float | None = None,
        Rein: torch.Tensor | float | None = None,
        s: float = 0.0,
        name: str | None = None,
    ):
        super().__init__(cosmology, z_l, name=name, z_s=z_s)
        self.x0 = Param("x0", x0, shape=(), units="arcsec")
        self.y0 = Param("y0", y0, shape=(), units="arcsec")
        self.phi = Param("phi", phi, shape=(), units="radians")
        self.length = Param("length", length, shape=(), units="arcsec", valid=(0, None))
        self.Rein = Param("Rein", Rein, shape=(), units="arcsec", valid=(0, None))
        self.s = s

    @forward
    def reduced_deflection_angle(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x0: Annotated[torch.Tensor, "Param"],
        y0: Annotated[torch.Tensor, "Param"],
        phi: Annotated[torch.Tensor, "Param"],
        length: Annotated[torch.Tensor, "Param"],
        Rein: Annotated[torch.Tensor, "Param"],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed-form reduced deflection, arcsec."""
        return reduced_deflection_angle_line(x0, y0, phi, length, Rein, x, y, self.s)

    @forward
    def potential(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x0: Annotated[torch.Tensor, "Param"],
        y0: Annotated[torch.Tensor, "Param"],
        phi: Annotated[torch.Tensor, "Param"],
        length: Annotated[torch.Tensor, "Param"],
        Rein: Annotated[torch.Tensor, "Param"],
    ) -> torch.Tensor:
        """Lensing potential, arcsec^2."""
        return potential_line(x0, y0, phi, length, Rein, x, y, self.s)

    @forward
    def convergence(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x0: Annotated[torch.Tensor, "Param"],
        y0: Annotated[torch.Tensor, "Param"],
        phi: Annotated[torch.Tensor, "Param"],
        length: Annotated[torch.Tensor, "Param"],
        Rein: Annotated[torch.Tensor, "Param"],
    ) -> torch.Tensor:
        """Dimensionless convergence."""
        return convergence_line(x0, y0, phi, length, Rein, x, y, self.s)


def point_masses_deflection(xs: Tensor, ys: Tensor, x0: Tensor, y0: Tensor, rein: Tensor,
                            s: float = 0.0) -> tuple[Tensor, Tensor]:
    """Summed reduced deflection of ``K`` point masses per image on a rectangular grid.

    Args:
        xs, ys: ``(W,)`` column and ``(H,)`` row coordinates of the grid, arcsec (the rays sit at
            ``(xs[j], ys[i])``, as ``torch.meshgrid(ys, xs, indexing="ij")`` lays them out).
        x0, y0: ``(B, K)`` positions of each image's point masses, arcsec.
        rein: ``(B, K)`` their Einstein radii, arcsec.
        s: Plummer softening, arcsec: ``alpha = rein^2 d / (|d|^2 + s^2)``, as for each point of
            :class:`LineMass`.

    Returns ``(ax, ay)``, each ``(B, H, W)``, added up in the order of ``K``. caustics'
    ``reduced_deflection_angle_point`` computes the same (softened as ``rein^2 d / (|d| + s)^2``,
    which departs from the unsoftened point mass by ``2 s / |d|`` instead of ``s^2 / |d|^2``) but
    allocates about ten grid-sized tensors per point mass; because the grid is separable, ``|d|^2``
    here is one outer sum of row and column vectors, and each point mass costs four in-place grid
    operations: 6x faster for the 25 subhalos of a ``cdm`` image. Each image's bits do not depend
    on the other images in the batch.
    """
    b, k = x0.shape
    ax = torch.zeros((b, ys.shape[0], xs.shape[0]), dtype=xs.dtype, device=xs.device)
    ay = torch.zeros_like(ax)
    f = torch.empty_like(ax)
    rein2 = (rein * rein)[:, :, None, None]
    for i in range(k):
        dx = (xs - x0[:, i, None])[:, None, :]  # (B, 1, W)
        dy = (ys - y0[:, i, None])[:, :, None]  # (B, H, 1)
        torch.add(dy * dy + s * s, dx * dx, out=f)  # |d|^2 + s^2
        torch.div(rein2[:, i], f, out=f)
        ax.addcmul_(f, dx)
        ay.addcmul_(f, dy)
    return ax, ay


# ---------------------------------------------------------------- PSF


def gaussian_kernel_1d(fwhm: float, pixelscale: float, *, truncate: float = 4.0) -> np.ndarray:
    """Pixel-integrated 1-D Gaussian kernel (odd length, float64, sums to 1).

    ``sigma = fwhm / 2.35482``; each tap is the Gaussian's integral over its pixel (``erf``
    differences), which stays accurate when sigma is below a pixel (the HST-like instrument), and the
    kernel is cut at ``truncate`` sigma. A 2-D Gaussian PSF is the outer product of two of these.
    """
    sigma = fwhm / FWHM_PER_SIGMA / pixelscale  # in pixels
    radius = max(1, math.ceil(truncate * sigma))
    edges = [(k - 0.5) / (math.sqrt(2.0) * sigma) for k in range(-radius, radius + 2)]
    cdf = [0.5 * math.erf(e) for e in edges]
    taps = np.array([cdf[i + 1] - cdf[i] for i in range(2 * radius + 1)], dtype=np.float64)
    return taps / taps.sum()


def gaussian_kernel_sampled(fwhm: float, pixelscale: float, *, truncate: float) -> np.ndarray:
    """1-D Gaussian kernel sampled at pixel centres and cut at ``truncate`` sigma (sums to 1).

    The kernel of ``scipy.ndimage.gaussian_filter(sigma, truncate=truncate)``, which lenstronomy's
    ``GAUSSIAN`` PSF applies (radius ``int(truncate * sigma + 0.5)`` pixels): the DeepLense sets were
    blurred with it. It under-resolves a PSF narrower than a pixel; see :func:`gaussian_kernel_1d`.
    """
    sigma = fwhm / FWHM_PER_SIGMA / pixelscale
    radius = int(truncate * sigma + 0.5)
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (k / sigma) ** 2)
    return taps / taps.sum()


def psf_bin_matrix(kernel: np.ndarray, side: int, offset: int, pixels: int, supersample: int) -> np.ndarray:
    """The blur, cut-out and binning of one image axis as a ``(pixels, side)`` matrix ``A``.

    Row ``p`` sums the PSF taps reaching the ``supersample`` fine pixels of image pixel ``p``;
    the image's fine pixels start ``offset`` fine pixels into the padded ``side``-long grid
    (``offset`` >= the kernel radius, so every tap lands on the grid). The separable PSF makes the
    2-D operation ``A @ image @ A.T`` (see :func:`blur_and_bin`); each row sums to
    ``supersample``, so flux is kept up to the binning factor ``supersample**2``.
    """
    taps = np.asarray(kernel, dtype=np.float64)
    r = (len(taps) - 1) // 2
    if len(taps) != 2 * r + 1:
        raise ValueError("kernel length must be odd")
    if offset < r or offset + pixels * supersample + r > side:
        raise ValueError(f"a {len(taps)}-tap kernel needs {r} fine pixels of padding on each side")
    a = np.zeros((pixels, side))
    for p in range(pixels):
        for i in range(supersample):
            centre = offset + p * supersample + i
            a[p, centre - r : centre + r + 1] += taps
    return a


def blur_and_bin(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``A @ image @ A.T`` for each ``(side, side)`` image of a ``(B, side, side)`` batch.

    One fixed-size matrix product per image (``bmm`` over an expanded ``A``), so an image's bits do
    not depend on the batch it is in. Eight times faster than the same blur written as 26 shifted
    slices followed by a sub-pixel sum (measured at 64x64 pixels, supersampling 2).
    """
    b = images.shape[0]
    rows = matrix.expand(b, -1, -1)
    cols = matrix.t().contiguous().expand(b, -1, -1)
    return torch.bmm(rows, torch.bmm(images, cols))
