"""DeepLense-like strong-lensing images: ``python -m tuner data simulate``.

Reproduces the DeepLenseSim physics (REFERENCE section 2) with caustics' batched lenses:

- Lens (the same in every image): an SIE (caustics ``SIE``) of a 1e12 Msun halo, e1=0.1, e2=0,
  plus external shear gamma1=0.05 (caustics ``ExternalShear``), z_l=0.5, z_s=1.0. Its Einstein
  radius is the point-mass radius of 1e12 Msun from proper angular-diameter distances
  (H0=70, Om0=0.3): 1.6645". DeepLenseSim used luminosity distances, giving 1.28".
- Source: elliptical Sersic (caustics ``Sersic`` profile), n=1, R_sersic=0.25" and e1=-0.1, e2=0.1
  in lenstronomy's convention, centre uniform in +-0.35" per axis.
- ``cdm``: 25 point-mass subhalos (:func:`tuner.lensing.point_masses_deflection`), masses from a
  power law on [1e6, 1e10] Msun, radius uniform in [0.25, 2.0]", angle uniform.
- ``axion``: a 3e10 Msun uniform line of mass (:class:`tuner.lensing.LineMass`) through the centre at
  a uniform random angle, half-length ``0.03" * 1e-22 eV / m_a`` (0.03" at 1e-22 eV, 3" at 1e-24 eV),
  ``log10(m_a / eV)`` uniform in [-24, -22].
- Instrument: the image is ray-traced on a supersampled grid, convolved with a pixel-integrated
  Gaussian PSF, binned to the preset's pixels, then observed: Poisson noise on
  ``exposure * (source + sky)`` electrons plus Gaussian read noise; the stored image is the
  sky-subtracted count rate in electrons per second per pixel (float32, like lenstronomy's images;
  projects normalise per image). Exposure and sky follow the instruments; the source brightness is
  set so that the median peak SNR is ~25 (DeepLense's "SNR around 25"), where
  ``SNR = S / sqrt(S + exposure*sky + read_noise^2)`` and ``S`` is the brightest noiseless source
  pixel in electrons (see :func:`peak_snr`; each image's value is stored in the ``snr`` column).

Classes and seeds: image ``i`` of a run has label ``i % 3`` (0 ``no_sub``, 1 ``cdm``, 2 ``axion``;
balanced to within one image) and its own ``image_seed`` derived from ``(seed, i)``. Everything about
an image is a function of ``(preset, image_seed, label)`` alone: independent numpy Philox streams,
keyed by the image seed, give the source position (stream 0), the subhalos (1), the vortex (2) and
the noise (3). So the same seed gives bit-identical arrays whatever ``batch_size`` or ``workers``,
and :func:`render` of one image seed under the three labels gives images that share the lens, the
source and the noise and differ only by the substructure.

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
import pathlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from tuner.errors import ConfigError

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch

CLASS_NAMES = ("no_sub", "cdm", "axion")
"""Label order; the same as ``tuner.store.CLASSES``."""

SIM_VERSION = 2
"""Bumped whenever the same seed would give different bits; part of the ``sim:`` cache key.
Version 2 (PSF as a matrix product, in-place subhalo sum) changed images by rounding, and near
subhalos by their softening (Plummer ``|d|^2 + s^2`` instead of caustics' ``(|d| + s)^2``: 4e-4 of
the deflection 0.05" away, now 4e-8)."""


@dataclass(frozen=True)
class Preset:
    """An instrument: image geometry, PSF, exposure and noise.

    Attributes:
        name: CLI key (``model1``, ``model2``, ``model3``).
        pixels: image side, pixels.
        pixelscale: arcsec per pixel.
        psf_fwhm: FWHM of the Gaussian PSF, arcsec.
        exposure: exposure time, s.
        sky: sky background, electrons per second per pixel.
        read_noise: Gaussian read noise of the whole exposure, electrons rms per pixel.
        source_ie: source surface brightness at the Sersic half-light radius, e-/s/arcsec^2.
            Set so that the median peak SNR (see :func:`peak_snr`) is about 25.
        supersample: ray-tracing sub-pixels per pixel side (anti-aliasing of arcs and subhalos).
        description: one line for ``dataset info`` and the manifest.
    """

    name: str
    pixels: int
    pixelscale: float
    psf_fwhm: float
    exposure: float
    sky: float
    read_noise: float
    source_ie: float
    supersample: int
    description: str


# Exposure, sky and read noise follow the instruments (lenstronomy's Euclid VIS and HST configs for
# model2/model3: sky 22.3 mag/arcsec^2 at zero points 25.72 / 25.96, 4 x 566 s and 5400 s); the
# source brightness is then set for a median peak SNR of ~25, DeepLense's "SNR around 25".
PRESETS: dict[str, Preset] = {
    "model1": Preset("model1", 150, 0.05, 0.087, 2000.0, 0.10, 5.0, 36.9, 1,
                     "DeepLense Model I: 150x150, 0.05\"/px, Gaussian PSF 0.087\""),
    "model2": Preset("model2", 64, 0.101, 0.16, 2264.0, 0.238, 8.4, 11.95, 2,
                     "DeepLense Model II, Euclid VIS-like: 64x64, 0.101\"/px, seeing 0.16\""),
    "model3": Preset("model3", 64, 0.08, 0.08, 5400.0, 0.186, 4.0, 7.97, 2,
                     "DeepLense Model III, HST-like: 64x64, 0.08\"/px, seeing 0.08\""),
}

# ---------------------------------------------------------------- physics (DeepLenseSim)

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

_STREAM_SOURCE, _STREAM_CDM, _STREAM_AXION, _STREAM_NOISE = 0, 1, 2, 3
_Z_CLIP = 7.0  # noise normal deviates are clipped at 7 sigma (probability 3e-12 per pixel)
_MAX_ELEMENTS = 1 << 17
"""Fine-grid pixels per torch micro-batch (about 6 model2 images; results do not depend on it).
Small enough that the grid-sized float64 tensors stay in the CPU cache: 1.3x faster than 4M
pixels per micro-batch for ``simulate()``, 2x for ``cdm`` (measured, one thread)."""

# ---------------------------------------------------------------- public API


def simulate(preset: str, n: int, seed: int, *, start: int = 0, batch_size: int = 256,
             workers: int = 1, progress: bool = True, address: str | None = None,
             device: str = "cpu") -> dict[str, np.ndarray]:
    """Simulate images ``start .. start+n-1`` of run ``seed``.

    Returns ``image`` (n, H, W) float32 (sky-subtracted e-/s per pixel) and per-image columns of
    shape (n,): ``label`` (int64, ``i % 3``), ``target`` (log10(m_a/eV) for axion, NaN elsewhere),
    ``n_subhalos``, ``subhalo_mass_total`` (Msun, 0 for non-cdm), ``axion_mass`` (eV, NaN),
    ``vortex_length`` (full length of the line, arcsec, NaN), ``source_x``, ``source_y`` (arcsec),
    ``image_seed`` (int64) and ``snr`` (peak SNR, see :func:`peak_snr`).

    ``workers > 1`` spreads fixed chunks over spawned processes, or over Ray tasks when
    ``address`` is given (``ray.init(address=address)``; an existing Ray connection of this
    process is reused); the output is bit-identical to one process with any batch size.
    ``device`` is a torch device: ``"cuda"`` renders on a GPU (the bit-identity across batch sizes
    is tested on CPU, where each process renders with one torch thread).
    """
    spec = get_preset(preset)
    _check_int("n", n, 3, "at least 3 images (one per class)")
    _check_int("seed", seed, 0, "a non-negative integer")
    _check_int("start", start, 0, "a non-negative integer")
    _check_int("workers", workers, 1, "at least 1")
    _check_int("batch_size", batch_size, 1, "at least 1")

    chunk = batch_size if workers == 1 and address is None else min(
        batch_size, max(1, math.ceil(n / (4 * workers))))
    chunks = [(s, min(chunk, start + n - s)) for s in range(start, start + n, chunk)]
    from tqdm.auto import tqdm

    bar = tqdm(total=n, unit="img", desc=f"simulate {spec.name}", disable=not progress)
    try:
        if address is not None:
            parts = _run_ray(spec.name, seed, chunks, batch_size, device, address, bar)
        elif workers > 1:
            parts = _run_processes(spec.name, seed, chunks, batch_size, device, workers, bar)
        else:
            parts = []
            for s, m in chunks:
                parts.append(_simulate_chunk(spec.name, seed, s, m, batch_size, device))
                bar.update(m)
    finally:
        bar.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def simulate_to_dataset(preset: str, n: int, seed: int, out, *, workers: int = 1,
                        batch_size: int = 256, progress: bool = True,
                        address: str | None = None) -> pathlib.Path:
    """Simulate ``n`` images and write them as a dataset directory (``tuner.store`` format).

    The train/val/test split is ``tuner.store.assign_splits(labels, seed)``; the manifest's
    ``extra`` records the preset, the physics constants and the SNR definition.
    """
    from tuner import store

    columns = simulate(preset, n, seed, batch_size=batch_size, workers=workers,
                       progress=progress, address=address)
    columns["split"] = store.assign_splits(columns["label"], seed)
    spec = PRESETS[preset]
    extra = {
        "preset": asdict(spec),
        "simulator_version": SIM_VERSION,
        "image_units": "sky-subtracted electrons per second per pixel",
        "label_rule": "label = index % 3 (no_sub, cdm, axion)",
        "snr_definition": "peak pixel: S / sqrt(S + exposure*sky + read_noise^2), S = brightest "
                          "noiseless source pixel in electrons",
        "snr_median": float(np.median(columns["snr"])),
        "physics": physics_summary(),
    }
    return store.write_dataset(out, columns, classes=store.CLASSES, source="simulate",
                               preset=spec.name, seed=seed, extra_meta=extra)


def get_preset(preset: str | Preset) -> Preset:
    """The preset of that name, or a one-line ConfigError listing the valid names."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}") from None


def image_seeds(seed: int, start: int, n: int) -> np.ndarray:
    """Per-image seeds (int64, 63 bits) of images ``start .. start+n-1`` of run ``seed``."""
    out = np.empty(n, dtype=np.int64)
    for j in range(n):
        state = np.random.SeedSequence(seed, spawn_key=(start + j,)).generate_state(1, np.uint64)
        out[j] = int(state[0] >> np.uint64(1))
    return out


def render(preset: str | Preset, seeds, labels, *, device: str = "cpu", batch_size: int = 256,
           return_model: bool = False) -> dict[str, np.ndarray]:
    """Render the images of given image seeds and labels (the core of :func:`simulate`).

    Rendering one seed under labels 0, 1, 2 gives the same lens, source and noise with no
    substructure, subhalos, or a vortex: the counterfactuals the tests compare.
    ``return_model`` adds ``model``: the noiseless image (e-/s per pixel, float64).
    """
    spec = get_preset(preset)
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if seeds.shape != labels.shape:
        raise ValueError("seeds and labels must have the same length")
    if labels.size and (labels.min() < 0 or labels.max() > 2):
        raise ValueError("labels must be 0 (no_sub), 1 (cdm) or 2 (axion)")
    draws = [_draw(spec, int(s), int(c)) for s, c in zip(seeds, labels)]
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


def peak_snr(model_rate, preset: str | Preset) -> np.ndarray:
    """Peak-pixel signal-to-noise of noiseless images (N, H, W) in e-/s per pixel.

    ``SNR = S / sqrt(S + exposure * sky + read_noise^2)`` where ``S`` is the brightest pixel of the
    noiseless lensed source, in electrons. (Definitions in the literature differ by an order of
    magnitude: an SNR summed over the arc would be ~10x larger.)
    """
    spec = get_preset(preset)
    s = np.asarray(model_rate, dtype=np.float64).reshape(len(model_rate), -1).max(axis=1)
    s = s * spec.exposure
    return s / np.sqrt(s + spec.exposure * spec.sky + spec.read_noise**2)


def sky_noise_rms(preset: str | Preset) -> float:
    """Expected rms (e-/s per pixel) of a sky-only pixel: ``sqrt(t*sky + read^2) / t``."""
    spec = get_preset(preset)
    return math.sqrt(spec.exposure * spec.sky + spec.read_noise**2) / spec.exposure


def physics_summary() -> dict:
    """The fixed physics constants, for the dataset manifest."""
    from tuner import lensing

    return {
        "cosmology": {"H0": lensing.H0, "Om0": lensing.OM0, "distances": "angular diameter"},
        "z_lens": lensing.Z_LENS, "z_source": lensing.Z_SOURCE,
        "halo": {"profile": "SIE", "mass_msun": HALO_MASS, "e1": SIE_E1, "e2": SIE_E2,
                 "einstein_radius_arcsec": lensing.einstein_radius(HALO_MASS)},
        "shear": {"gamma1": SHEAR_G1, "gamma2": SHEAR_G2},
        "source": {"profile": "Sersic", "n": SOURCE_N, "R_sersic_lenstronomy": SOURCE_R_SERSIC,
                   "e1": SOURCE_E1, "e2": SOURCE_E2, "offset_arcsec": SOURCE_OFFSET},
        "cdm": {"n_subhalos": N_SUBHALOS, "mass_range_msun": list(SUBHALO_MASS_RANGE),
                "dn_dm_slope": SUBHALO_SLOPE, "radius_arcsec": list(SUBHALO_RADIUS)},
        "axion": {"vortex_mass_msun": VORTEX_MASS, "log10_m_a_range": list(LOG10_AXION_MASS),
                  "half_length_arcsec": f"{VORTEX_HALF_LENGTH_1E22} * 1e-22 eV / m_a"},
    }


def poisson_quantile(u, lam, z):
    """Exact Poisson quantile ``min{k : P(X <= k; lam) >= u}`` for float64 tensors.

    ``z`` is the normal deviate with ``Phi(z) = u`` (``|z| <= 7``). A quantile transform rather
    than a sampler: the same ``u`` and the same ``lam`` give the same count, so images that differ
    only near a subhalo keep identical noise elsewhere.

    Most pixels are settled by the Cornish-Fisher expansion of the quantile (:func:`_cornish_fisher`):
    where ``_CF_LAM[0] <= lam <= _CF_LAM[1]`` its continuous value is within ``_CF_ERROR`` counts of
    the exact switching points for ``|z| <= 7`` (checked on a dense grid against scipy, see
    ``tests/test_simulate.py``), so wherever it lies more than ``_CF_BAND`` from an integer its
    ceiling *is* the exact quantile, and nearer to an integer ``n`` the quantile is ``n`` or
    ``n + 1``, told apart by one evaluation of the exact CDF ``P(X <= n) = Q(n + 1, lam)``
    (regularised upper incomplete gamma) for about ``2 * _CF_BAND`` of the pixels. Outside that
    range of ``lam`` the quantile is searched with the exact CDF from the expansion's guess. (The
    search for every pixel was 56% of a ``no_sub`` image's time.)
    """
    import torch

    x = _cornish_fisher(lam, z)
    k = torch.clamp(torch.ceil(x), min=0.0)
    covered = (lam >= _CF_LAM[0]) & (lam <= _CF_LAM[1])
    near = torch.round(x)
    close = covered & ((x - near).abs() <= _CF_BAND)
    if bool(close.any()):  # the quantile is `near` or `near + 1`: P(X <= near) < u decides
        n = near[close]
        k[close] = n + (torch.special.gammaincc(n + 1.0, lam[close]) < u[close]).to(n.dtype)
    if not bool(covered.all()):
        out = ~covered
        k[out] = _exact_poisson_search(u[out], lam[out], k[out])
    return k


_CF_LAM = (200.0, 1e5)
"""Means (counts) where the expansion decides; the sky alone gives every preset's pixels >= 200."""
_CF_ERROR = 0.035
"""Largest distance (counts) of the expansion from the exact switching points for
``_CF_LAM[0] <= lam <= _CF_LAM[1]``, ``|z| <= 7.05`` (reached at ``lam`` = 200, ``z`` = -7)."""
_CF_BAND = 0.08
"""Values closer than this to an integer are decided by the exact CDF (over 2x margin on _CF_ERROR)."""


def _cornish_fisher(lam, z):
    """Continuous Poisson quantile minus one half: its ceiling is the quantile, to O(lam^-3/2).

    Cornish-Fisher expansion in the Poisson cumulants (all equal to ``lam``) to third order,
    with the continuity correction.
    """
    import torch

    sd = torch.sqrt(lam)
    z2 = z * z
    return (lam + sd * z + (z2 - 1.0) / 6.0 + z * (1.0 - z2) / (72.0 * sd)
            + (12.0 * z2 * z2 - 17.0 * z2 - 19.0) / (3240.0 * lam) - 0.5)


def _exact_poisson_search(u, lam, k):
    """Step ``k`` (a first guess) up or down to the exact quantile with the incomplete gamma."""
    import torch

    moved_up = torch.zeros_like(u, dtype=torch.bool)
    cand = torch.ones_like(u, dtype=torch.bool)
    while bool(cand.any()):  # step up while P(X <= k) < u
        step = torch.zeros_like(cand)
        step[cand] = torch.special.gammaincc(k[cand] + 1.0, lam[cand]) < u[cand]
        k = k + step.to(k.dtype)
        moved_up |= step
        cand = step
    cand = (k > 0) & ~moved_up
    while bool(cand.any()):  # step down while P(X <= k - 1) >= u
        step = torch.zeros_like(cand)
        step[cand] = torch.special.gammaincc(k[cand], lam[cand]) >= u[cand]
        k = k - step.to(k.dtype)
        cand = step & (k > 0)
    return k


# ---------------------------------------------------------------- validation and execution


def _check_int(name: str, value, minimum: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _simulate_chunk(preset: str, seed: int, start: int, n: int, batch_size: int,
                    device: str) -> dict[str, np.ndarray]:
    """Images ``start .. start+n-1`` of run ``seed``: the unit of work of processes and Ray tasks."""
    labels = np.arange(start, start + n, dtype=np.int64) % 3
    return render(preset, image_seeds(seed, start, n), labels, device=device,
                  batch_size=batch_size)


def _run_processes(preset, seed, chunks, batch_size, device, workers, bar) -> list[dict]:
    import concurrent.futures as cf
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
        futures = {pool.submit(_simulate_chunk, preset, seed, s, m, batch_size, device): i
                   for i, (s, m) in enumerate(chunks)}
        parts: list[dict | None] = [None] * len(chunks)
        for fut in cf.as_completed(futures):
            i = futures[fut]
            parts[i] = fut.result()
            bar.update(chunks[i][1])
    return parts  # type: ignore[return-value]


def _run_ray(preset, seed, chunks, batch_size, device, address, bar) -> list[dict]:
    """One Ray task per chunk; an existing connection of this process is reused, not replaced."""
    import ray

    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_simulate_chunk)
        refs = [task.remote(preset, seed, s, m, batch_size, device) for s, m in chunks]
        index = {ref: i for i, ref in enumerate(refs)}
        parts: list[dict | None] = [None] * len(chunks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                parts[index[ref]] = ray.get(ref)
                bar.update(chunks[index[ref]][1])
    finally:
        if connected_here:
            ray.shutdown()
    return parts  # type: ignore[return-value]


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


def _draw(spec: Preset, image_seed: int, label: int) -> dict:
    """All random quantities of one image; the class only decides which substructure is drawn."""
    from tuner import lensing

    d: dict = {"label": label}
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
        d["sub_rein"] = lensing.einstein_radius(mass)
        d["sub_mass"] = float(mass.sum())
    elif label == 2:
        g = _stream(image_seed, _STREAM_AXION)
        log_m = float(g.uniform(*LOG10_AXION_MASS))
        angle = float(g.uniform(0.0, math.pi))  # a segment through the centre: pi covers all
        d["log_m"] = log_m
        d["length"] = 2.0 * VORTEX_HALF_LENGTH_1E22 * 1e-22 / 10.0**log_m
        d["cos"], d["sin"] = math.cos(angle), math.sin(angle)
    g = _stream(image_seed, _STREAM_NOISE)
    npix = spec.pixels * spec.pixels
    z = np.clip(g.standard_normal(npix), -_Z_CLIP, _Z_CLIP)
    d["z_poisson"] = z
    d["z_read"] = g.standard_normal(npix)
    return d


def _columns(draws: list[dict], seeds: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    nan = float("nan")
    log_m = np.array([d.get("log_m", nan) for d in draws], dtype=np.float64)
    return {
        "label": labels.astype(np.int64),
        "target": log_m,
        "n_subhalos": np.array([N_SUBHALOS if c == 1 else 0 for c in labels], dtype=np.int64),
        "subhalo_mass_total": np.array([d.get("sub_mass", 0.0) for d in draws], dtype=np.float64),
        "axion_mass": 10.0**log_m,
        "vortex_length": np.array([d.get("length", nan) for d in draws], dtype=np.float64),
        "source_x": np.array([d["source_x"] for d in draws], dtype=np.float64),
        "source_y": np.array([d["source_y"] for d in draws], dtype=np.float64),
        "image_seed": seeds.astype(np.int64),
    }


# ---------------------------------------------------------------- batched rendering (torch)


@dataclass
class _Geometry:
    """Fine ray-tracing grid of a preset and the fixed macro-lens ray positions on it."""

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


def _geometry(spec: Preset, device: str) -> _Geometry:
    key = (spec.name, str(device))
    if key not in _GEOMETRY:
        _GEOMETRY[key] = _build_geometry(spec, device)
    return _GEOMETRY[key]


def _lenstronomy_q_phi(e1: float, e2: float) -> tuple[float, float]:
    """Axis ratio and position angle of lenstronomy's ellipticity (e1, e2)."""
    c = math.hypot(e1, e2)
    return (1.0 - c) / (1.0 + c), 0.5 * math.atan2(e2, e1)


def _build_geometry(spec: Preset, device: str) -> _Geometry:
    import caustics
    import torch

    from tuner import lensing

    kernel = lensing.gaussian_kernel_1d(spec.psf_fwhm, spec.pixelscale / spec.supersample)
    radius = (len(kernel) - 1) // 2
    fine = spec.pixels * spec.supersample
    pad = radius
    while (fine + 2 * pad) % 8:  # (G*G) % 64 == 0: no image in a SIMD scalar tail
        pad += 1
    side = fine + 2 * pad
    step = spec.pixelscale / spec.supersample
    coords = (torch.arange(side, dtype=torch.float64) - pad - (fine - 1) / 2.0) * step
    y, x = torch.meshgrid(coords, coords, indexing="ij")

    f64 = {"dtype": torch.float64}
    cosmo = lensing.cosmology()
    q, phi = _lenstronomy_q_phi(SIE_E1, SIE_E2)
    sie = caustics.SIE(cosmo, x0=torch.tensor(0.0, **f64), y0=torch.tensor(0.0, **f64),
                       q=torch.tensor(q, **f64), phi=torch.tensor(phi, **f64),
                       Rein=torch.tensor(lensing.einstein_radius(HALO_MASS), **f64))
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


def _render_batch(spec: Preset, geo: _Geometry, draws: list[dict], return_model: bool):
    """Noisy images (B, H, W) float32, their peak SNR, and (optionally) the noiseless images."""
    import torch
    from caustics.light import func as light_func
    from scipy.special import gammaincinv, ndtr

    from tuner import lensing

    dev = geo.x.device
    f64 = {"dtype": torch.float64, "device": dev}
    b = len(draws)
    labels = np.array([d["label"] for d in draws])
    bx = geo.bx0.expand(b, -1, -1).clone()
    by = geo.by0.expand(b, -1, -1).clone()

    rows = np.flatnonzero(labels == 1)
    if rows.size:  # cdm: the sum of 25 point masses, in a fixed order
        sx = torch.tensor(np.stack([draws[i]["sub_x"] for i in rows]), **f64)
        sy = torch.tensor(np.stack([draws[i]["sub_y"] for i in rows]), **f64)
        sr = torch.tensor(np.stack([draws[i]["sub_rein"] for i in rows]), **f64)
        ax, ay = lensing.point_masses_deflection(geo.xs, geo.ys, sx, sy, sr, SUBHALO_SOFTENING)
        idx = torch.as_tensor(rows, device=dev)
        bx[idx] = bx[idx] - ax
        by[idx] = by[idx] - ay

    rows = np.flatnonzero(labels == 2)
    if rows.size:  # axion: the closed-form line of mass
        col = lambda key: torch.tensor([draws[i][key] for i in rows], **f64)[:, None, None]  # noqa: E731
        rein = lensing.einstein_radius(VORTEX_MASS)
        ax, ay = lensing.line_deflection(geo.x, geo.y, 0.0, 0.0, col("cos"), col("sin"),
                                         col("length"), rein, VORTEX_SOFTENING)
        idx = torch.as_tensor(rows, device=dev)
        bx[idx] = bx[idx] - ax
        by[idx] = by[idx] - ay

    q, phi = _lenstronomy_q_phi(SOURCE_E1, SOURCE_E2)
    x0 = torch.tensor([d["source_x"] for d in draws], **f64)[:, None, None]
    y0 = torch.tensor([d["source_y"] for d in draws], **f64)[:, None, None]
    scalar = lambda v: torch.tensor(v, **f64)  # noqa: E731
    mu = light_func.brightness_sersic(
        x0, y0, scalar(q), scalar(phi), scalar(SOURCE_N), scalar(SOURCE_R_SERSIC / math.sqrt(q)),
        scalar(spec.source_ie), bx, by, scalar(float(gammaincinv(2.0 * SOURCE_N, 0.5))))

    ss = spec.supersample
    binned = lensing.blur_and_bin(mu, geo.psf_bin)  # PSF, cut-out and sum over sub-pixels
    rate = binned * (spec.pixelscale**2 / (ss * ss))  # e-/s per pixel (mean surface brightness x area)

    t = spec.exposure
    z = torch.tensor(np.stack([d["z_poisson"] for d in draws]), **f64).reshape(rate.shape)
    u = torch.tensor(ndtr(np.stack([d["z_poisson"] for d in draws])), **f64).reshape(rate.shape)
    read = torch.tensor(np.stack([d["z_read"] for d in draws]), **f64).reshape(rate.shape)
    counts = poisson_quantile(u, t * (rate + spec.sky), z) + spec.read_noise * read
    image = (counts - t * spec.sky) / t

    peak = rate.reshape(b, -1).amax(dim=1) * t
    snr = peak / torch.sqrt(peak + t * spec.sky + spec.read_noise**2)
    model = rate.cpu().numpy() if return_model else None
    return image.to(torch.float32).cpu().numpy(), snr.cpu().numpy(), model
