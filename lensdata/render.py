"""Batched rendering: per-image draws in numpy, pixel-grid ray tracing, PSF and noise in torch.

Everything about an image is a function of ``(instrument, image_seed, label)`` alone: independent
numpy Philox streams, keyed by the image seed, give the source position (stream 0), the subhalos
(1), the vortex (2), the noise (3), the exposure (4) and the pyHalo population (5: its parameter
and pyHalo's seed). :func:`render` of one image seed under the five labels gives images that share
the lens, the source and the noise and differ only by the substructure.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lensdata.instruments import MODEL1_EXPOSURE_LOG10, Instrument, get_instrument
from lensdata.noise import peak_snr, poisson_quantile
from lensdata.populations import SIDM_LOG_SIGMA, TNFWC, WDM_LOG_MHM
from lensdata.recipe import (
    HALO_MASS,
    LOG10_AXION_MASS,
    N_SUBHALOS,
    SHEAR_G1,
    SHEAR_G2,
    SIE_E1,
    SIE_E2,
    SOURCE_E1,
    SOURCE_E2,
    SOURCE_N,
    SOURCE_OFFSET,
    SOURCE_R_SERSIC,
    SUBHALO_MASS_RANGE,
    SUBHALO_RADIUS,
    SUBHALO_SLOPE,
    SUBHALO_SOFTENING,
    VORTEX_HALF_LENGTH_1E22,
    VORTEX_MASS,
    VORTEX_SOFTENING,
)

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch

_STREAM_SOURCE, _STREAM_CDM, _STREAM_AXION, _STREAM_NOISE, _STREAM_EXPOSURE, _STREAM_HALOS = range(6)
_WDM, _SIDM = 3, 4  # labels of the pyHalo classes (lensdata.names.SIM_CLASSES)
DEFAULT_RANGES = {"wdm_log_mhm": WDM_LOG_MHM, "sidm_log_sigma": SIDM_LOG_SIGMA}
"""Per-image parameter ranges of the pyHalo classes (:mod:`lensdata.populations`)."""
_Z_CLIP = 7.0  # noise normal deviates are clipped at 7 sigma (probability 3e-12 per pixel)
_MAX_ELEMENTS = 1 << 17
"""Fine-grid pixels per torch micro-batch (about 6 model2 images; results do not depend on it).
Small enough that the grid-sized float64 tensors stay in the CPU cache: 1.3x faster than 4M
pixels per micro-batch for ``simulate()``, 2x for ``cdm`` (measured, one thread)."""


def render(instrument: str | Instrument, seeds: np.ndarray, labels: np.ndarray, *, device: str = "cpu",
           batch_size: int = 256, return_model: bool = False,
           ranges: dict | None = None) -> dict[str, np.ndarray]:
    """Render the images of given image seeds and labels (the core of :func:`lensdata.simulate.simulate`).

    Labels index :data:`lensdata.names.SIM_CLASSES`. Rendering one seed under labels 0-4 gives the
    same lens, source and noise with no substructure, DeepLenseSim's subhalos, a vortex, or a WDM
    or SIDM pyHalo population: the counterfactuals the tests compare. ``ranges`` overrides
    :data:`DEFAULT_RANGES` (checked by :func:`lensdata.simulate.check_ranges`).
    ``return_model`` adds ``model``: the noiseless image (e-/s per pixel, float64).
    """
    spec = get_instrument(instrument)
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if seeds.shape != labels.shape:
        raise ValueError("seeds and labels must have the same length")
    if labels.size and (labels.min() < 0 or labels.max() > _SIDM):
        raise ValueError("labels must be 0 (no_sub), 1 (cdm), 2 (axion), 3 (wdm) or 4 (sidm)")
    ranges = {**DEFAULT_RANGES, **(ranges or {})}
    draws = [_draw(spec, int(s), int(c), ranges) for s, c in zip(seeds, labels)]
    cols = _columns(draws, seeds, labels)
    geo = _geometry(spec, device)
    step = max(1, min(batch_size, _MAX_ELEMENTS // geo.elements))
    images, snrs, models = [], [], []
    with _one_thread(device):
        for b in range(0, len(draws), step):
            img, snr, model = _render_batch(spec, geo, draws[b : b + step], return_model)
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


def _draw(spec: Instrument, image_seed: int, label: int, ranges: dict = DEFAULT_RANGES) -> dict:
    """All random quantities of one image; the class only decides which substructure is drawn."""
    from lensdata import lensing

    d: dict = {"label": label}

    def rein(mass):
        return lensing.einstein_radius(mass, convention=spec.distances)

    g = _stream(image_seed, _STREAM_SOURCE)
    d["source_x"], d["source_y"] = g.uniform(-SOURCE_OFFSET, SOURCE_OFFSET, size=2)
    if label == 1:
        g = _stream(image_seed, _STREAM_CDM)
        lo, hi = SUBHALO_MASS_RANGE
        a = SUBHALO_SLOPE + 1.0  # inverse CDF of dN/dm ~ m^SLOPE on [lo, hi]
        mass = (lo**a + g.uniform(0.0, 1.0, N_SUBHALOS) * (hi**a - lo**a)) ** (1.0 / a)
        radius = g.uniform(*SUBHALO_RADIUS, size=N_SUBHALOS)
        angle = g.uniform(0.0, 2.0 * math.pi, size=N_SUBHALOS)
        d["sub_x"] = radius * np.cos(angle)
        d["sub_y"] = radius * np.sin(angle)
        d["sub_rein"] = rein(mass)
        d["sub_mass"] = float(mass.sum())
    elif label == 2:
        g = _stream(image_seed, _STREAM_AXION)
        log_m = float(g.uniform(*LOG10_AXION_MASS))
        angle = float(g.uniform(0.0, math.pi))  # a segment through the centre: pi covers all
        d["log_m"] = log_m
        d["length"] = 2.0 * VORTEX_HALF_LENGTH_1E22 * 1e-22 / 10.0**log_m
        d["cos"], d["sin"] = math.cos(angle), math.sin(angle)
        d["vortex_rein"] = rein(VORTEX_MASS)
        if spec.vortex_points:  # DeepLenseSim's make_vortex: equal point masses, ends included
            along = np.linspace(-0.5 * d["length"], 0.5 * d["length"], spec.vortex_points)
            d["sub_x"], d["sub_y"] = along * d["cos"], along * d["sin"]
            d["sub_rein"] = np.full(spec.vortex_points, rein(VORTEX_MASS / spec.vortex_points))
    elif label in (_WDM, _SIDM):
        from lensdata import populations

        g = _stream(image_seed, _STREAM_HALOS)
        key = "wdm_log_mhm" if label == _WDM else "sidm_log_sigma"
        d["dm_parameter"] = float(g.uniform(*ranges[key]))
        pop = populations.draw("wdm" if label == _WDM else "sidm", d["dm_parameter"],
                               int(g.integers(2**32)), z_lens=lensing.Z_LENS, z_source=lensing.Z_SOURCE)
        d["halos"] = pop
        d["sub_mass"] = float(pop.mass.sum())
    d["exposure"] = _exposure(spec, image_seed)
    if spec.noise != "none":
        g = _stream(image_seed, _STREAM_NOISE)
        npix = spec.pixels * spec.pixels
        d["z_poisson"] = np.clip(g.standard_normal(npix), -_Z_CLIP, _Z_CLIP)
        d["z_read"] = g.standard_normal(npix)  # instrument: read noise; model1: the 0.01 background
        if spec.noise == "deeplense-model1":  # its first, Gaussian "Poisson" term (see _observe)
            d["z_gauss"] = g.standard_normal(npix)
    return d


def image_draws(instrument: str | Instrument, image_seed: int, label: int, ranges: dict | None = None) -> dict:
    """Everything random about one image (source position, substructure, noise deviates), as rendered.

    For a pyHalo class, ``draws["halos"]`` is its :class:`lensdata.populations.Population`: the
    benchmarks hand the same population to lenstronomy.
    """
    return _draw(get_instrument(instrument), int(image_seed), int(label), {**DEFAULT_RANGES, **(ranges or {})})


def _exposure(spec: Instrument, image_seed: int) -> float:
    """This image's exposure time, s (NaN for noiseless presets)."""
    g = _stream(image_seed, _STREAM_EXPOSURE)
    if spec.noise == "deeplense-model1":
        return float(10.0 ** g.uniform(*MODEL1_EXPOSURE_LOG10))
    if spec.noise == "instrument":
        return float(spec.exposure * 10.0 ** g.uniform(-spec.exposure_dex, spec.exposure_dex))
    return float("nan")


def _columns(draws: list[dict], seeds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    nan = float("nan")
    log_m = np.array([d.get("log_m", nan) for d in draws], dtype=np.float64)
    dm = np.array([d.get("dm_parameter", nan) for d in draws], dtype=np.float64)
    halos = [d.get("halos") for d in draws]
    n_halos = [len(h) if h is not None else (N_SUBHALOS if c == 1 else 0) for h, c in zip(halos, labels)]
    cored = [float(np.mean(h.profile == TNFWC)) if h is not None and len(h) else nan for h in halos]
    return {
        "label": labels.astype(np.int64),
        "target": np.where(np.isfinite(log_m), log_m, dm),  # lensdata.names.SUBSTRUCTURE_PARAMETERS
        "n_subhalos": np.array(n_halos, dtype=np.int64),
        "subhalo_mass_total": np.array([d.get("sub_mass", 0.0) for d in draws], dtype=np.float64),
        "axion_mass": 10.0**log_m,
        "vortex_length": np.array([d.get("length", nan) for d in draws], dtype=np.float64),
        "source_x": np.array([d["source_x"] for d in draws], dtype=np.float64),
        "source_y": np.array([d["source_y"] for d in draws], dtype=np.float64),
        "image_seed": seeds.astype(np.int64),
        "exposure": np.array([d["exposure"] for d in draws], dtype=np.float64),
        "half_mode_mass": np.where(labels == _WDM, 10.0**dm, nan),
        "sidm_cross_section": np.where(labels == _SIDM, 10.0**dm, nan),
        "cored_fraction": np.where(labels == _SIDM, np.array(cored, dtype=np.float64), nan),
    }


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


def _render_batch(spec: Instrument, geo: _Geometry, draws: list[dict], return_model: bool):
    """Noisy images (B, H, W) float32, their peak SNR, and (optionally) the noiseless images."""
    import torch

    f64 = {"dtype": torch.float64, "device": geo.x.device}
    bx, by = _source_positions(geo, draws, f64)
    rate = _lensed_source_rate(spec, geo, draws, bx, by, f64)
    image = _observe(spec, draws, rate, f64)
    model = rate.cpu().numpy()
    snr = peak_snr(model, spec, np.array([d["exposure"] for d in draws]))
    return image.to(torch.float32).cpu().numpy(), snr, model if return_model else None


def _source_positions(geo: _Geometry, draws: list[dict], f64: dict):
    """Source-plane positions (B, G, G) of every fine pixel: the macro lens, then the substructure."""
    import torch

    from lensdata import lensing

    b = len(draws)
    labels = np.array([d["label"] for d in draws])
    bx = geo.bx0.expand(b, -1, -1).clone()
    by = geo.by0.expand(b, -1, -1).clone()

    points = np.array(["sub_x" in d for d in draws])
    for label in (1, 2):  # cdm: 25 point masses; axion as DeepLenseSim made it: 100 on a line
        rows = np.flatnonzero((labels == label) & points)
        if not rows.size:
            continue
        sx = torch.tensor(np.stack([draws[i]["sub_x"] for i in rows]), **f64)
        sy = torch.tensor(np.stack([draws[i]["sub_y"] for i in rows]), **f64)
        sr = torch.tensor(np.stack([draws[i]["sub_rein"] for i in rows]), **f64)
        ax, ay = lensing.point_masses_deflection(geo.xs, geo.ys, sx, sy, sr, SUBHALO_SOFTENING)
        idx = torch.as_tensor(rows, device=f64["device"])
        bx[idx] = bx[idx] - ax
        by[idx] = by[idx] - ay

    rows = np.flatnonzero((labels == 2) & ~points)
    if rows.size:  # axion: the closed-form line of mass
        def col(key: str) -> torch.Tensor:
            return torch.tensor([draws[i][key] for i in rows], **f64)[:, None, None]

        ax, ay = lensing.line_deflection(geo.x, geo.y, 0.0, 0.0, col("cos"), col("sin"),
                                         col("length"), col("vortex_rein"), VORTEX_SOFTENING)
        idx = torch.as_tensor(rows, device=f64["device"])
        bx[idx] = bx[idx] - ax
        by[idx] = by[idx] - ay

    for i in np.flatnonzero(np.isin(labels, (_WDM, _SIDM))):  # pyHalo populations, one image at a time
        ax, ay = halos_deflection(geo.x, geo.y, draws[i]["halos"])
        bx[i] = bx[i] - ax
        by[i] = by[i] - ay
    return bx, by


_HALO_ELEMENTS = 1 << 15
"""Halo-pixel pairs per step of :func:`halos_deflection` (256 kB per float64 tensor: in cache)."""


def halos_deflection(x, y, pop):
    """Deflection of one pyHalo population on a pixel grid ``x, y`` (arcsec), summed in a fixed order.

    Halos go in chunks of a fixed size whatever the batch, so an image's deflection (and its bits)
    does not depend on what it is rendered with.
    """
    import torch

    from lensdata import halo_profiles

    f64 = {"dtype": torch.float64, "device": x.device}
    flat_x, flat_y = x.reshape(1, -1), y.reshape(1, -1)
    kappa = torch.tensor(pop.kappa_sheet, **f64)
    ax, ay = halo_profiles.sheet_deflection(flat_x[0], flat_y[0], kappa)
    step = max(1, _HALO_ELEMENTS // flat_x.shape[1])
    for cored in (False, True):
        rows = np.flatnonzero((pop.profile == TNFWC) == cored)
        for s in range(0, rows.size, step):
            part = rows[s : s + step]

            def col(values: np.ndarray, part: np.ndarray = part) -> torch.Tensor:
                return torch.tensor(values[part], **f64)[:, None]

            dx, dy = flat_x - col(pop.x), flat_y - col(pop.y)
            if cored:
                px, py = halo_profiles.tnfwc_deflection(dx, dy, col(pop.alpha_rs), col(pop.rs),
                                                        col(pop.r_core), col(pop.r_trunc))
            else:
                px, py = halo_profiles.tnfw_deflection(dx, dy, col(pop.alpha_rs), col(pop.rs), col(pop.r_trunc))
            ax = ax + px.sum(0)
            ay = ay + py.sum(0)
    return ax.reshape(x.shape), ay.reshape(x.shape)


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
