"""Batched rendering: per-image draws in numpy, pixel-grid ray tracing, PSF and noise in torch.

Everything about an image is a function of ``(instrument, image_seed, label)`` alone: independent
numpy Philox streams, keyed by the image seed, give the source position (stream 0), the noise (3)
and the exposure (4), drawn here for every image, and the substructure, drawn by the image's
dark-matter class from its own stream (:mod:`lensdata.substructure`: cdm 1, axion 2, the pyHalo
classes 5). The renderer batches whatever classes the registry holds and branches on none: each
class's rows of a micro-batch get its deflection, and its columns. :func:`render` of one image seed
under every label gives images that share the lens, the source and the noise and differ only by the
substructure.

Bit-identical batching on CPU: per-image parameters (angles, Einstein radii) are computed per image
in numpy; torch only runs pixel-grid maths whose per-image block is a multiple of 64 elements (so no
image falls in a SIMD loop's scalar tail, where torch's ``atan2``/``atanh``/``pow`` round
differently), with the PSF as one fixed-size matrix product per image instead of a convolution
(whose algorithm may change with the batch), on one intra-op thread (thread splits depend on tensor
size). ``--workers`` gives the parallelism instead.

Speed (one core, model2, ``python bench/simulate.py``): micro-batches of about six images that
stay in the CPU cache, the 25 subhalos summed in place on the separable grid, the PSF as a matrix
product, and Poisson quantiles settled by their Cornish-Fisher expansion wherever that is provably
exact: about 4x the images per second of version 1.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lensdata import substructure
from lensdata.instruments import MODEL1_EXPOSURE_LOG10, Instrument, get_instrument
from lensdata.noise import peak_snr, poisson_quantile
from lensdata.recipe import (
    HALO_MASS,
    SHEAR_G1,
    SHEAR_G2,
    SIE_E1,
    SIE_E2,
    SOURCE_E1,
    SOURCE_E2,
    SOURCE_N,
    SOURCE_OFFSET,
    SOURCE_R_SERSIC,
)
from lensdata.substructure import EXPOSURE_STREAM, NOISE_STREAM, SOURCE_STREAM, DarkMatterClass

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch

_Z_CLIP = 7.0  # noise normal deviates are clipped at 7 sigma (probability 3e-12 per pixel)
_MAX_ELEMENTS = 1 << 17
"""Fine-grid pixels per torch micro-batch (about 6 model2 images; results do not depend on it).
Small enough that the grid-sized float64 tensors stay in the CPU cache: 1.3x faster than 4M
pixels per micro-batch for ``simulate()``, 2x for ``cdm`` (measured, one thread)."""


def render(instrument: str | Instrument, seeds: np.ndarray, labels: np.ndarray, *, device: str = "cpu",
           batch_size: int = 256, return_model: bool = False, ranges: dict | None = None,
           cycle: Sequence[DarkMatterClass] | None = None) -> dict[str, np.ndarray]:
    """Render the images of given image seeds and labels (the core of :func:`lensdata.simulate.simulate`).

    Labels index ``cycle``, the dark-matter classes in label order (default: the registry's,
    :func:`lensdata.substructure.classes`; the simulator passes its own to worker processes).
    Rendering one seed under each label gives the same lens, source and noise with each class's
    substructure: the counterfactuals the tests compare. ``ranges`` overrides the classes' default
    parameter ranges (checked by :func:`lensdata.simulate.check_ranges`). ``return_model`` adds
    ``model``: the noiseless image (e-/s per pixel, float64).
    """
    spec = get_instrument(instrument)
    cycle = tuple(substructure.classes() if cycle is None else cycle)
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if seeds.shape != labels.shape:
        raise ValueError("seeds and labels must have the same length")
    if labels.size and (labels.min() < 0 or labels.max() >= len(cycle)):
        each = [f"{c.label} ({c.name})" for c in cycle]
        raise ValueError(f"labels must be {', '.join(each[:-1])} or {each[-1]}")
    draws = [_draw(spec, int(s), int(c), ranges, cycle) for s, c in zip(seeds, labels)]
    cols = _columns(draws, seeds, labels, cycle)
    geo = _geometry(spec, device)
    step = max(1, min(batch_size, _MAX_ELEMENTS // geo.elements))
    images, snrs, models = [], [], []
    with _one_thread(device):
        for b in range(0, len(draws), step):
            img, snr, model = _render_batch(spec, geo, draws[b : b + step], cycle, return_model)
            images.append(img)
            snrs.append(snr)
            models.append(model)
    h = spec.pixels
    cols["image"] = np.concatenate(images) if images else np.zeros((0, h, h), np.float32)
    cols["snr"] = np.concatenate(snrs) if snrs else np.zeros(0)
    if return_model:
        cols["model"] = np.concatenate(models) if models else np.zeros((0, h, h))
    return cols


@contextlib.contextmanager
def _one_thread(device: str):
    """One intra-op thread on CPU: torch splits work across threads at size-dependent offsets."""
    import torch

    if not str(device).startswith("cpu"):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- per-image draws (numpy)


def _stream(image_seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(image_seed,
                                                                       spawn_key=(stream,))))


def _draw(spec: Instrument, image_seed: int, label: int, ranges: dict | None = None,
          cycle: Sequence[DarkMatterClass] | None = None) -> dict:
    """All random quantities of one image; its class draws the substructure, from the class's own stream."""
    cls = (substructure.classes() if cycle is None else cycle)[label]
    d: dict = {"label": label}
    g = _stream(image_seed, SOURCE_STREAM)
    d["source_x"], d["source_y"] = g.uniform(-SOURCE_OFFSET, SOURCE_OFFSET, size=2)
    d["exposure"] = _exposure(spec, image_seed)
    if spec.noise != "none":
        g = _stream(image_seed, NOISE_STREAM)
        npix = spec.pixels * spec.pixels
        d["z_poisson"] = np.clip(g.standard_normal(npix), -_Z_CLIP, _Z_CLIP)
        d["z_read"] = g.standard_normal(npix)  # instrument: read noise; model1: the 0.01 background
        if spec.noise == "deeplense-model1":  # its first, Gaussian "Poisson" term (see _observe)
            d["z_gauss"] = g.standard_normal(npix)
    if cls.draw is not None:
        bounds = (ranges or {}).get(cls.parameter.key, cls.parameter.default) if cls.parameter else None
        sub = cls.draw(_stream(image_seed, cls.stream), spec, bounds)
        clash = sorted(set(sub) & set(d))
        if clash:
            raise ValueError(f"class {cls.name!r} draws {clash[0]!r}, which the renderer draws itself")
        d.update(sub)
    return d


def image_draws(instrument: str | Instrument, image_seed: int, label: int, ranges: dict | None = None) -> dict:
    """Everything random about one image (source position, substructure, noise deviates), as rendered.

    For a pyHalo class, ``draws["halos"]`` is its :class:`lensdata.populations.Population`: the
    benchmarks hand the same population to lenstronomy.
    """
    return _draw(get_instrument(instrument), int(image_seed), int(label), ranges)


def _exposure(spec: Instrument, image_seed: int) -> float:
    """This image's exposure time, s (NaN for noiseless presets)."""
    g = _stream(image_seed, EXPOSURE_STREAM)
    if spec.noise == "deeplense-model1":
        return float(10.0 ** g.uniform(*MODEL1_EXPOSURE_LOG10))
    if spec.noise == "instrument":
        return float(spec.exposure * 10.0 ** g.uniform(-spec.exposure_dex, spec.exposure_dex))
    return float("nan")


_SHARED_COLUMNS = (("target", math.nan, np.float64), ("n_subhalos", 0, np.int64),
                   ("subhalo_mass_total", 0.0, np.float64))
"""Columns every class may fill from its draw (``target``: its parameter), and their value elsewhere."""


def _columns(draws: list[dict], seeds: np.ndarray, labels: np.ndarray,
             cycle: Sequence[DarkMatterClass]) -> dict[str, np.ndarray]:
    """Per-image columns: the shared ones, then each class's own (its values on its rows, its fill elsewhere)."""
    cols = {"label": labels.astype(np.int64)}
    for key, fill, dtype in _SHARED_COLUMNS:
        cols[key] = np.array([d.get(key, fill) for d in draws], dtype=dtype)
    cols["source_x"] = np.array([d["source_x"] for d in draws], dtype=np.float64)
    cols["source_y"] = np.array([d["source_y"] for d in draws], dtype=np.float64)
    cols["image_seed"] = seeds.astype(np.int64)
    cols["exposure"] = np.array([d["exposure"] for d in draws], dtype=np.float64)
    order = list(cols)
    for cls in cycle:
        rows = np.flatnonzero(labels == cls.label)
        at = order.index(cls.columns_after) + 1 if cls.columns_after else len(order)
        for column in cls.columns:
            values = np.full(len(draws), column.fill, dtype=column.dtype)
            if rows.size:
                values[rows] = column.values([draws[i] for i in rows])
            cols[column.name] = values
            order.insert(at, column.name)
            at += 1
    return {name: cols[name] for name in order}


# ---------------------------------------------------------------- batched rendering (torch)


@dataclass
class _Geometry:
    """Fine ray-tracing grid of an instrument and the fixed macro-lens ray positions on it."""

    x: torch.Tensor      # (G, G) fine-pixel centres, arcsec
    y: torch.Tensor
    xs: torch.Tensor     # (G,) the same as column and row coordinates (x = xs[j], y = ys[i])
    ys: torch.Tensor
    bx0: torch.Tensor    # (G, G) source-plane positions through SIE + shear alone
    by0: torch.Tensor
    kernel: np.ndarray   # 1-D PSF taps on the fine grid
    psf_bin: torch.Tensor  # (H, G): PSF, cut-out and binning of one axis (lensing.psf_bin_matrix)
    pad: int             # fine pixels of the grid before the image's first fine pixel
    fine: int            # image side in fine pixels
    elements: int        # G * G, a multiple of 64


_GEOMETRY: dict[tuple[str, str], _Geometry] = {}


def _geometry(spec: Instrument, device: str) -> _Geometry:
    key = (spec.name, str(device))
    if key not in _GEOMETRY:
        _GEOMETRY[key] = _build_geometry(spec, device)
    return _GEOMETRY[key]


def _lenstronomy_q_phi(e1: float, e2: float) -> tuple[float, float]:
    """Axis ratio and position angle of lenstronomy's ellipticity (e1, e2)."""
    c = math.hypot(e1, e2)
    return (1.0 - c) / (1.0 + c), 0.5 * math.atan2(e2, e1)


def _build_geometry(spec: Instrument, device: str) -> _Geometry:
    import caustics
    import torch

    from lensdata import lensing

    step = spec.pixelscale / spec.supersample
    kernel = (lensing.gaussian_kernel_sampled(spec.psf_fwhm, step, truncate=spec.psf_truncate)
              if spec.psf_truncate > 0 else lensing.gaussian_kernel_1d(spec.psf_fwhm, step))
    radius = (len(kernel) - 1) // 2
    fine = spec.pixels * spec.supersample
    pad = radius
    while (fine + 2 * pad) % 8:  # (G*G) % 64 == 0: no image in a SIMD scalar tail
        pad += 1
    side = fine + 2 * pad
    coords = (torch.arange(side, dtype=torch.float64) - pad - (fine - 1) / 2.0) * step
    y, x = torch.meshgrid(coords, coords, indexing="ij")

    f64 = {"dtype": torch.float64}
    cosmo = lensing.cosmology()
    q, phi = _lenstronomy_q_phi(SIE_E1, SIE_E2)
    sie = caustics.SIE(cosmo, x0=torch.tensor(0.0, **f64), y0=torch.tensor(0.0, **f64),
                       q=torch.tensor(q, **f64), phi=torch.tensor(phi, **f64),
                       Rein=torch.tensor(lensing.einstein_radius(HALO_MASS, convention=spec.distances),
                                         **f64))
    shear = caustics.ExternalShear(cosmo, x0=torch.tensor(0.0, **f64),
                                   y0=torch.tensor(0.0, **f64),
                                   gamma_1=torch.tensor(SHEAR_G1, **f64),
                                   gamma_2=torch.tensor(SHEAR_G2, **f64))
    plane = caustics.SinglePlane(cosmo, lenses=(sie, shear),
                                 z_l=torch.tensor(lensing.Z_LENS, **f64),
                                 z_s=torch.tensor(lensing.Z_SOURCE, **f64))
    bx0, by0 = plane.raytrace(x, y)
    dev = torch.device(device)
    psf_bin = torch.tensor(lensing.psf_bin_matrix(kernel, side, pad, spec.pixels, spec.supersample),
                           dtype=torch.float64, device=dev)
    return _Geometry(x.to(dev), y.to(dev), coords.to(dev), coords.to(dev), bx0.to(dev),
                     by0.to(dev), kernel, psf_bin, pad, fine, side * side)


def _render_batch(spec: Instrument, geo: _Geometry, draws: list[dict], cycle: Sequence[DarkMatterClass],
                  return_model: bool):
    """Noisy images (B, H, W) float32, their peak SNR, and (optionally) the noiseless images."""
    import torch

    f64 = {"dtype": torch.float64, "device": geo.x.device}
    bx, by = _source_positions(geo, draws, cycle)
    rate = _lensed_source_rate(spec, geo, draws, bx, by, f64)
    image = _observe(spec, draws, rate, f64)
    model = rate.cpu().numpy()
    snr = peak_snr(model, spec, np.array([d["exposure"] for d in draws]))
    return image.to(torch.float32).cpu().numpy(), snr, model if return_model else None


def _source_positions(geo: _Geometry, draws: list[dict], cycle: Sequence[DarkMatterClass]):
    """Source-plane positions (B, G, G) of every fine pixel: the macro lens, then each class's substructure."""
    import torch

    b = len(draws)
    labels = np.array([d["label"] for d in draws])
    bx = geo.bx0.expand(b, -1, -1).clone()
    by = geo.by0.expand(b, -1, -1).clone()
    for cls in cycle:
        rows = np.flatnonzero(labels == cls.label)
        if cls.deflect is None or not rows.size:
            continue
        ax, ay = cls.deflect(geo, [draws[i] for i in rows])
        idx = torch.as_tensor(rows, device=geo.x.device)
        bx[idx] = bx[idx] - ax
        by[idx] = by[idx] - ay
    return bx, by


def _lensed_source_rate(spec: Instrument, geo: _Geometry, draws: list[dict], bx, by, f64: dict):
    """Noiseless image (B, H, W) in e-/s per pixel: the Sersic source seen through the lens, PSF, binning."""
    import torch
    from caustics.light import func as light_func
    from scipy.special import gammaincinv

    from lensdata import lensing

    q, phi = _lenstronomy_q_phi(SOURCE_E1, SOURCE_E2)
    x0 = torch.tensor([d["source_x"] for d in draws], **f64)[:, None, None]
    y0 = torch.tensor([d["source_y"] for d in draws], **f64)[:, None, None]

    def scalar(v: float) -> torch.Tensor:
        return torch.tensor(v, **f64)

    mu = light_func.brightness_sersic(
        x0, y0, scalar(q), scalar(phi), scalar(SOURCE_N), scalar(SOURCE_R_SERSIC / math.sqrt(q)),
        scalar(spec.source_ie), bx, by, scalar(spec.sersic_b or float(gammaincinv(2.0 * SOURCE_N, 0.5))))
    ss = spec.supersample
    binned = lensing.blur_and_bin(mu, geo.psf_bin)  # PSF, cut-out and sum over sub-pixels
    return binned * (spec.pixelscale**2 / (ss * ss))  # e-/s per pixel (mean surface brightness x area)


def _observe(spec: Instrument, draws: list[dict], rate, f64: dict):
    """The stored image of each noiseless count rate (B, H, W), by the preset's noise model.

    - ``none``: ``output_scale * rate`` (DeepLenseSim's Model II/III ``image_model + image_model``).
    - ``deeplense-model1``: DeepLenseSim's Model I, ``counts = Poisson(clip(t (m + n_p + n_b), 0))``
      with lenstronomy's Gaussian Poisson approximation ``n_p ~ N(0, m / t)`` and background
      ``n_b ~ N(0, background_rms^2)``; stored as counts.
    - ``instrument``: Poisson counts on ``t (rate + sky)`` plus read noise, sky subtracted, back to e-/s.

    Every Poisson draw is the exact quantile transform of the image's own uniforms
    (:func:`lensdata.noise.poisson_quantile`), so classes rendered from one seed share their noise.
    """
    import torch
    from scipy.special import ndtr

    if spec.noise == "none":
        return spec.output_scale * rate

    def deviates(key: str) -> torch.Tensor:
        return torch.tensor(np.stack([d[key] for d in draws]), **f64).reshape(rate.shape)

    t = torch.tensor([d["exposure"] for d in draws], **f64)[:, None, None]
    z = deviates("z_poisson")
    u = torch.tensor(ndtr(np.stack([d["z_poisson"] for d in draws])), **f64).reshape(rate.shape)
    if spec.noise == "deeplense-model1":
        gauss = torch.sqrt(rate.abs() / t) * deviates("z_gauss")
        lam = (t * (rate + gauss + spec.background_rms * deviates("z_read"))).clamp(min=0.0)
        return poisson_quantile(u, lam, z)
    counts = poisson_quantile(u, t * (rate + spec.sky), z) + spec.read_noise * deviates("z_read")
    return (counts - t * spec.sky) / t
