"""The DeepLense-recipe presets against lenstronomy, driven the way DeepLenseSim drives it.

DeepLenseSim (github.com/mwt5345/DeepLenseSim, ``deeplense/lens.py``) builds each image in lenstronomy:
an SIE + shear of Einstein radius ``mass_to_radius(1e12)`` from luminosity distances, 25 point-mass
subhalos or a vortex of 100 point masses, an elliptical Sersic source, then for Model II
``SimAPI(64, Euclid VIS)`` with the source given by magnitude 20 and ``image_model + image_model``
stored; for Model I an ``ImageModel`` on a 150x150 grid of 0.05" with a Gaussian PSF of FWHM 0.087"
(truncation 3) and amplitude 20, then its two-stage noise. Here the same per-image draws (source
position, subhalo masses and positions, vortex angle and length) go through lenstronomy and through
our renderer, and the noiseless images, their flux and their noise statistics must agree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lenstronomy.Data.imaging_data import ImageData
from lenstronomy.Data.psf import PSF
from lenstronomy.ImSim.image_model import ImageModel
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid
from lenstronomy.SimulationAPI.ObservationConfig.HST import HST
from lenstronomy.SimulationAPI.sim_api import SimAPI
from lenstronomy.Util import util

from lensdata import lensing, recipe, render
from lensdata import simulate as sim
from lensdata.instruments import INSTRUMENTS

VORTEX_POINTS = 100  # DeepLenseSim's make_vortex(res=100)


def lenstronomy_lens(spec, draw: dict) -> tuple[list[str], list[dict]]:
    """DeepLenseSim's lens list for one image's draws (make_single_halo + make_old_cdm / make_vortex)."""
    rein = lensing.einstein_radius(recipe.HALO_MASS, convention=spec.distances)
    models = ["SIE", "SHEAR"]
    kwargs = [{"theta_E": rein, "e1": recipe.SIE_E1, "e2": recipe.SIE_E2, "center_x": 0.0, "center_y": 0.0},
              {"gamma1": recipe.SHEAR_G1, "gamma2": recipe.SHEAR_G2}]
    if draw["label"] == 1:
        for x, y, r in zip(draw["sub_x"], draw["sub_y"], draw["sub_rein"]):
            models.append("POINT_MASS")
            kwargs.append({"theta_E": float(r), "center_x": float(x), "center_y": float(y)})
    elif draw["label"] == 2:
        half = 0.5 * draw["length"]
        each = lensing.einstein_radius(recipe.VORTEX_MASS / VORTEX_POINTS, convention=spec.distances)
        for c in np.linspace(-half, half, VORTEX_POINTS):
            models.append("POINT_MASS")
            kwargs.append({"theta_E": each, "center_x": c * draw["cos"], "center_y": c * draw["sin"]})
    elif draw["label"] in (3, 4):  # wdm, sidm: the image's pyHalo population, as lenstronomy takes it
        names, halo_kwargs = draw["halos"].lenstronomy()
        models += names
        kwargs += halo_kwargs
    return models, kwargs


def source_kwargs(draw: dict, **brightness) -> list[dict]:
    return [{"R_sersic": recipe.SOURCE_R_SERSIC, "n_sersic": recipe.SOURCE_N, "e1": recipe.SOURCE_E1,
             "e2": recipe.SOURCE_E2, "center_x": draw["source_x"], "center_y": draw["source_y"], **brightness}]


def simple_sim_2(spec, draw: dict) -> np.ndarray:
    """DeepLenseSim's ``simple_sim_2`` noiseless model image (SimAPI, magnitude 20 source)."""
    band = (Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6) if spec.name == "model2"
            else HST(band="WFC3_F160W", psf_type="GAUSSIAN")).kwargs_single_band()
    models, kwargs_lens = lenstronomy_lens(spec, draw)
    api = SimAPI(spec.pixels, band, {"lens_model_list": models, "source_light_model_list": ["SERSIC_ELLIPSE"]})
    image_model = api.image_model_class({"point_source_supersampling_factor": 1})
    _, kwargs_source, _ = api.magnitude2amplitude(None, source_kwargs(draw, magnitude=20.0))
    return image_model.image(kwargs_lens, kwargs_source, None)


def simple_sim_model(spec, draw: dict) -> np.ndarray:
    """DeepLenseSim's ``simple_sim`` (Model I) noiseless ``image_model``, amplitude-20 source."""
    _, _, ra0, dec0, _, _, pix2coord, _ = util.make_grid_with_coordtransform(
        num_pix=spec.pixels, delta_pix=spec.pixelscale, center_ra=0, center_dec=0, subgrid_res=1, inverse=False)
    data = ImageData(background_rms=spec.background_rms, exposure_time=1000.0, ra_at_xy_0=ra0,
                     dec_at_xy_0=dec0, transform_pix2angle=pix2coord,
                     image_data=np.zeros((spec.pixels, spec.pixels)))
    psf = PSF(psf_type="GAUSSIAN", fwhm=spec.psf_fwhm, pixel_size=spec.pixelscale, truncation=spec.psf_truncate)
    models, kwargs_lens = lenstronomy_lens(spec, draw)
    model = ImageModel(data, psf, lens_model_class=LensModel(models),
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics={"supersampling_factor": 1, "supersampling_convolution": False})
    return model.image(kwargs_lens, source_kwargs(draw, amp=20.0), kwargs_lens_light=None, kwargs_ps=None)


def ours(name: str, seeds, labels) -> tuple[dict, list[dict]]:
    spec = INSTRUMENTS[name]
    out = sim.render(name, seeds, labels, return_model=True)
    return out, [render._draw(spec, int(s), int(c)) for s, c in zip(seeds, labels)]


def test_deeplense_einstein_radius_uses_luminosity_distances():
    assert lensing.einstein_radius(1e12, convention="luminosity") == pytest.approx(1.2815, abs=1e-4)
    assert lensing.einstein_radius(1e12) == pytest.approx(1.6645, abs=1e-4)
    for name in ("model1", "model2", "model3"):
        assert INSTRUMENTS[name].distances == "luminosity"
        assert INSTRUMENTS[f"{name}-physical"].distances == "angular"


@pytest.mark.parametrize("name", ["model2", "model3"])
def test_model2_and_model3_are_lenstronomy_simapi_images_doubled(name):
    """Flux within 0.5%, every pixel within 1% of the peak, correlation above 0.9999, per class."""
    spec = INSTRUMENTS[name]
    seeds = sim.image_seeds(11, 0, 6)
    labels = np.arange(6) % 3
    out, draws = ours(name, seeds, labels)
    for image, model, draw in zip(out["image"], out["model"], draws):
        ref = simple_sim_2(spec, draw)
        # The stored image is image_model + image_model: no noise at all.
        np.testing.assert_allclose(image, (2.0 * model).astype(np.float32), rtol=1e-6)
        assert model.sum() == pytest.approx(ref.sum(), rel=5e-3)
        assert np.abs(model - ref).max() < 0.01 * ref.max()
        assert np.corrcoef(model.ravel(), ref.ravel())[0, 1] > 0.9999
    assert np.isinf(out["snr"]).all()


@pytest.mark.slow
def test_pyhalo_classes_are_lenstronomys_images_of_the_same_populations():
    """wdm and sidm images: lenstronomy's SimAPI of SIE + shear + the same TNFW / TNFWC halos and sheet."""
    spec = INSTRUMENTS["model2"]
    seeds = sim.image_seeds(14, 0, 4)
    labels = np.array([3, 4, 3, 4])
    out, draws = ours("model2", seeds, labels)
    plain, _ = ours("model2", seeds, np.zeros(4, np.int64))
    for model, base, draw in zip(out["model"], plain["model"], draws):
        ref = simple_sim_2(spec, draw)
        assert model.sum() == pytest.approx(ref.sum(), rel=5e-3)
        assert np.abs(model - ref).max() < 0.01 * ref.max()
        # The substructure's own signal (image minus the smooth lens) agrees too, not only the arcs.
        ours_sub, ref_sub = model - base, ref - simple_sim_2(spec, {**draw, "label": 0})
        assert np.corrcoef(ours_sub.ravel(), ref_sub.ravel())[0, 1] > 0.99


def test_model1_noiseless_image_is_lenstronomy_image_model():
    spec = INSTRUMENTS["model1"]
    seeds = sim.image_seeds(12, 0, 3)
    out, draws = ours("model1", seeds, np.arange(3))
    for model, draw in zip(out["model"], draws):
        ref = simple_sim_model(spec, draw)
        assert model.sum() == pytest.approx(ref.sum(), rel=5e-3)
        assert np.abs(model - ref).max() < 0.01 * ref.max()
        assert np.corrcoef(model.ravel(), ref.ravel())[0, 1] > 0.9999


def test_model1_noise_is_deeplensesims_two_stage_poisson():
    """Counts = Poisson(clip(t (m + N(0, m/t) + N(0, 0.01^2)), 0)), t = 10^U(3, 3.5), per image.

    The same recipe drawn with numpy (lenstronomy's add_poisson and add_background, then
    np.random.poisson, as DeepLenseSim's simple_sim does) on our noiseless model must give the same
    distribution: integer counts, the same share of zero pixels, and the same mean and variance in
    sky-only and bright pixels.
    """
    spec = INSTRUMENTS["model1"]
    n = 8
    out, _ = ours("model1", sim.image_seeds(13, 0, n), np.zeros(n, np.int64))
    t = out["exposure"]
    assert ((t >= 1e3) & (t <= 10**3.5)).all() and np.ptp(np.log10(t)) > 0.1
    images = out["image"].astype(np.float64)
    np.testing.assert_array_equal(images, np.round(images))  # integer photon counts
    gen = np.random.default_rng(0)
    model = out["model"]
    tt = t[:, None, None]
    ref = gen.poisson(np.clip(tt * (model + gen.standard_normal(model.shape) * np.sqrt(model / tt)
                                    + gen.standard_normal(model.shape) * spec.background_rms), 0, None))
    sky = model < 1e-6
    bright = model > 0.3 * model.max(axis=(1, 2), keepdims=True)
    assert sky.sum() > 10_000 and bright.sum() > 500
    assert (images[sky] == 0).mean() == pytest.approx((ref[sky] == 0).mean(), abs=0.01)
    for mask in (sky, bright):
        assert images[mask].mean() == pytest.approx(ref[mask].mean(), rel=0.03)
        assert images[mask].var() == pytest.approx(ref[mask].var(), rel=0.06)
    # Bright pixels: variance 2 t m + (t 0.01)^2 (Poisson twice), not t m.
    expected = (2 * tt * model + (tt * spec.background_rms) ** 2)[bright]
    z = (images[bright] - (tt * model)[bright]) / np.sqrt(expected)
    assert z.std() == pytest.approx(1.0, rel=0.05)


def test_magnitude_20_source_flux_matches_lenstronomy_zero_points():
    """Ie of the Model II/III presets is lenstronomy's magnitude2amplitude of magnitude 20."""
    for name, band in (("model2", Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6)),
                       ("model3", HST(band="WFC3_F160W", psf_type="GAUSSIAN"))):
        api = SimAPI(64, band.kwargs_single_band(), {"source_light_model_list": ["SERSIC_ELLIPSE"]})
        _, kwargs, _ = api.magnitude2amplitude(None, source_kwargs({"source_x": 0.0, "source_y": 0.0},
                                                                   magnitude=20.0))
        assert INSTRUMENTS[name].source_ie == pytest.approx(kwargs[0]["amp"], rel=1e-5)


def test_physical_presets_keep_the_angular_diameter_physics():
    """The corrected presets: larger ring (1.6645"), instrument noise, exposure spread per image."""
    for name in ("model2-physical", "model3-physical"):
        spec = INSTRUMENTS[name]
        out = sim.render(name, sim.image_seeds(14, 0, 12), np.zeros(12, np.int64), return_model=True)
        t = out["exposure"]
        assert t.min() >= spec.exposure * 10 ** -spec.exposure_dex
        assert t.max() <= spec.exposure * 10 ** spec.exposure_dex
        assert np.ptp(np.log10(t)) > 0.2  # the SNR spreads with the exposure
        assert np.ptp(out["snr"]) > 5
        assert math.isfinite(float(np.median(out["snr"])))
