"""The instrument's noise: an exact Poisson quantile transform, and the SNR it is calibrated by.

Images are observed as Poisson counts on ``exposure * (source + sky)`` electrons plus Gaussian
read noise. :func:`poisson_quantile` draws the counts as an exact quantile transform of fixed
uniforms, so that images rendered from the same seed under different substructure share their
noise wherever they share their light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lensdata.instruments import Instrument, get_instrument

if TYPE_CHECKING:  # torch loads inside the functions that use it
    import torch


def peak_snr(model_rate: np.ndarray, instrument: str | Instrument, exposure: np.ndarray) -> np.ndarray:
    """Peak-pixel signal-to-noise of noiseless images (N, H, W) in e-/s per pixel at these exposures (N,).

    ``SNR = S / sqrt(var)``, ``S`` the brightest noiseless pixel in electrons and ``var`` that pixel's
    noise variance: ``S + t*sky + read_noise^2`` (instrument noise); ``2 S + (t * background_rms)^2``
    for DeepLenseSim's Model I, whose Poisson noise is applied twice (a Gaussian approximation, then
    Poisson counts); infinite for the noiseless presets. (Definitions in the literature differ by an
    order of magnitude: an SNR summed over the arc would be ~10x larger.)
    """
    spec = get_instrument(instrument)
    peak = np.asarray(model_rate, dtype=np.float64).reshape(len(model_rate), -1).max(axis=1)
    if spec.noise == "none":
        return np.full(peak.shape, np.inf)
    t = np.asarray(exposure, dtype=np.float64)
    s = peak * t
    if spec.noise == "deeplense-model1":
        return s / np.sqrt(2.0 * s + (t * spec.background_rms) ** 2)
    return s / np.sqrt(s + t * spec.sky + spec.read_noise**2)


def sky_noise_rms(instrument: str | Instrument, exposure: float | np.ndarray | None = None) -> float | np.ndarray:
    """Expected rms (e-/s per pixel) of a sky-only pixel under instrument noise: ``sqrt(t*sky + read^2) / t``.

    ``exposure`` defaults to the preset's median exposure.
    """
    spec = get_instrument(instrument)
    t = spec.exposure if exposure is None else np.asarray(exposure, dtype=np.float64)
    return np.sqrt(t * spec.sky + spec.read_noise**2) / t


def poisson_quantile(u: torch.Tensor, lam: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
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

    dark = lam <= 0  # P(X = 0) = 1: DeepLenseSim's Model I clips its mean at zero
    if bool(dark.any()):
        lam = torch.where(dark, torch.ones_like(lam), lam)
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
    return torch.where(dark, torch.zeros_like(k), k) if bool(dark.any()) else k


_CF_LAM = (200.0, 1e5)
"""Means (counts) where the expansion decides; the sky alone gives every instrument's pixels >= 200."""
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
