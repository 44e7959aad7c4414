"""The instruments' noise: the exact Poisson quantile transform, its Cornish-Fisher shortcut, the SNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from lensdata import noise
from lensdata import simulate as sim


def test_poisson_quantile_is_exact():
    gen = np.random.default_rng(0)
    lam = np.repeat([0.3, 4.0, 57.0, 900.0, 2.5e4], 400)
    z = gen.standard_normal(lam.size)
    u = stats.norm.cdf(z)
    k = noise.poisson_quantile(torch.tensor(u), torch.tensor(lam), torch.tensor(z)).numpy()
    np.testing.assert_array_equal(k, stats.poisson.ppf(u, lam))


def test_cornish_fisher_error_bound_holds_where_it_decides():
    """The expansion's distance from the exact switching points stays below noise._CF_ERROR.

    Quantile ``k`` switches to ``k + 1`` at ``u = P(X <= k)``, i.e. at ``z_k = Phi^-1(P(X <= k))``;
    there the expansion must sit at the integer ``k``. If it is within ``_CF_ERROR`` of it at every
    switching point, any value further than ``_CF_BAND`` from an integer has the exact ceiling.
    """
    assert noise._CF_ERROR < noise._CF_BAND
    worst = 0.0
    for lam in np.geomspace(noise._CF_LAM[0], noise._CF_LAM[1], 300):
        sd = math.sqrt(lam)
        k = np.arange(max(0, int(lam - 8 * sd)), int(lam + 8 * sd) + 2)
        z = special.ndtri(stats.poisson.cdf(k, lam))
        keep = np.abs(z) <= 7.05
        x = noise._cornish_fisher(torch.tensor(lam), torch.tensor(z[keep])).numpy()
        worst = max(worst, float(np.abs(x - k[keep]).max()))
    assert worst <= noise._CF_ERROR


def test_poisson_quantile_is_exact_on_many_sky_like_pixels():
    gen = np.random.default_rng(1)
    lam = np.exp(gen.uniform(math.log(150.0), math.log(2e5), 200_000))
    z = np.clip(gen.standard_normal(lam.size) * 2.5, -7.0, 7.0)
    u = stats.norm.cdf(z)
    k = noise.poisson_quantile(torch.tensor(u), torch.tensor(lam), torch.tensor(z)).numpy()
    np.testing.assert_array_equal(k, stats.poisson.ppf(u, lam))


PHYSICAL = ["model1-physical", "model2-physical", "model3-physical"]


@pytest.mark.parametrize("instrument", PHYSICAL)
def test_noise_matches_poisson_plus_read_noise(instrument):
    spec = sim.INSTRUMENTS[instrument]
    n = 12 if instrument.startswith("model1") else 30
    out = sim.render(instrument, sim.image_seeds(2, 0, n), np.zeros(n, np.int64), return_model=True)
    t = out["exposure"][:, None, None]
    rms = noise.sky_noise_rms(instrument, t)
    assert noise.sky_noise_rms(instrument) == pytest.approx(
        math.sqrt(spec.exposure * spec.sky + spec.read_noise**2) / spec.exposure)
    # Sky-only pixels (no source light to 1e-3 of the noise): zero mean, each image's expected rms.
    sky = out["model"] < 1e-3 * rms
    assert sky.sum() > 2000
    z_sky = (out["image"] / rms)[sky].astype(np.float64)
    assert z_sky.mean() == pytest.approx(0.0, abs=4 / math.sqrt(z_sky.size))
    assert z_sky.std() == pytest.approx(1.0, rel=0.03)
    # Everywhere, source pixels included: variance = (t * (model + sky) + read^2) / t^2.
    var = (t * (out["model"] + spec.sky) + spec.read_noise**2) / t**2
    z = (out["image"] - out["model"]) / np.sqrt(var)
    assert z.mean() == pytest.approx(0.0, abs=0.01)
    assert z.std() == pytest.approx(1.0, rel=0.02)
    bright = out["model"] > 20 * rms
    assert z[bright].std() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("instrument", PHYSICAL)
def test_peak_snr_spreads_about_25(instrument):
    n = 12 if instrument.startswith("model1") else 30
    out = sim.render(instrument, sim.image_seeds(4, 0, n), np.arange(n) % 3, return_model=True)
    np.testing.assert_allclose(out["snr"], noise.peak_snr(out["model"], instrument, out["exposure"]),
                               rtol=1e-12)
    assert 18 < np.median(out["snr"]) < 33


def test_poisson_quantile_of_a_zero_mean_is_zero():
    lam = torch.tensor([0.0, 0.0, 2.0, 0.0])
    z = torch.tensor([-1.0, 3.0, 0.5, 6.9], dtype=torch.float64)
    u = torch.tensor(stats.norm.cdf(z.numpy()))
    k = noise.poisson_quantile(u, lam.double(), z).numpy()
    np.testing.assert_array_equal(k, [0, 0, stats.poisson.ppf(u[2].item(), 2.0), 0])
