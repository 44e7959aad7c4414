"""The data presets: image geometry, PSF, source brightness and noise of Model I, II and III.

Two recipes of each DeepLense model:

- ``model1``, ``model2``, ``model3``: the DeepLense sets as DeepLenseSim's public code made them
  (github.com/mwt5345/DeepLenseSim, ``deeplense/lens.py``): Einstein radii from luminosity
  distances, lenstronomy's sampled Gaussian PSF without supersampling, and its output as written:
  Model II and III store ``image_model + image_model`` (no noise at all); Model I draws an
  exposure ``10^U(3, 3.5)``, adds lenstronomy's Gaussian Poisson approximation and a 0.01
  background, scales to counts and draws Poisson counts of that again. A model trained here can be
  put beside published numbers.
- ``model1-physical``, ``model2-physical``, ``model3-physical``: the same lens and source physics
  with the corrections: angular-diameter distances, a pixel-integrated PSF on a supersampled grid,
  and the instrument's noise (Poisson on ``exposure * (source + sky)`` plus read noise, sky
  subtracted) at an exposure that varies from image to image, so that the SNR spreads about 25
  rather than sitting at one value.

``docs/data.md`` says where each departs from DeepLenseSim and why. Import-light (no numpy): the
command line builds its ``--instrument`` choices from :data:`INSTRUMENT_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lensdata.errors import DataError

RECIPES = ("deeplense", "physical")
NOISE_MODELS = ("none", "deeplense-model1", "instrument")


@dataclass(frozen=True)
class Instrument:
    """A data preset: instrument geometry and PSF, source brightness, distance convention, noise.

    Attributes:
        name: CLI key (``model2``, ``model2-physical``, ...).
        recipe: ``deeplense`` (DeepLenseSim's public code) or ``physical`` (corrected).
        pixels: image side, pixels.
        pixelscale: arcsec per pixel.
        psf_fwhm: FWHM of the Gaussian PSF, arcsec.
        psf_truncate: ``> 0``: lenstronomy's Gaussian PSF, sampled at pixel centres and cut at this
            many sigma (``scipy.ndimage.gaussian_filter``, which lenstronomy calls); ``0``: a
            pixel-integrated Gaussian cut at 4 sigma.
        supersample: ray-tracing sub-pixels per pixel side (anti-aliasing of arcs and subhalos).
        distances: ``luminosity`` (DeepLenseSim's Einstein radii) or ``angular`` (the correct ones).
        source_ie: source surface brightness at the Sersic half-light radius, e-/s/arcsec^2
            (DeepLenseSim's ``amp`` 20, its magnitude 20 at the band's zero point, or for the
            physical presets the value that gives a median peak SNR of about 25).
        vortex_points: ``> 0``: the vortex as that many equal point masses on the line, ends
            included (DeepLenseSim's ``make_vortex``, 100); ``0``: the closed-form uniform line, their
            limit (see :mod:`lensdata.lensing`).
        sersic_b: the Sersic ``b_n``: ``0`` for the exact ``gammaincinv(2n, 1/2)``, else this value
            (lenstronomy's ``1.9992 n - 0.3271``, which DeepLenseSim's images have).
        noise: ``none`` (the noiseless model image times ``output_scale``), ``deeplense-model1``
            (DeepLenseSim's Model I noise, see :mod:`lensdata.noise`), or ``instrument``.
        output_scale: factor on the stored image (2 for DeepLenseSim's ``image_model + image_model``).
        exposure: exposure time, s (``instrument``: the median of the per-image exposures).
        exposure_dex: per-image exposure ``exposure * 10^U(-dex, dex)`` (``instrument``), or for
            ``deeplense-model1`` the exposure is ``10^U(3, 3.5)`` as DeepLenseSim drew it.
        sky: sky background, electrons per second per pixel (``instrument``).
        read_noise: Gaussian read noise of the whole exposure, electrons rms per pixel (``instrument``).
        background_rms: DeepLenseSim Model I's Gaussian background, e-/s per pixel.
        description: one line for ``dataset info`` and the manifest.
    """

    name: str
    recipe: str
    pixels: int
    pixelscale: float
    psf_fwhm: float
    psf_truncate: float
    supersample: int
    distances: str
    source_ie: float
    noise: str
    vortex_points: int = 0
    sersic_b: float = 0.0
    output_scale: float = 1.0
    exposure: float = 0.0
    exposure_dex: float = 0.0
    sky: float = 0.0
    read_noise: float = 0.0
    background_rms: float = 0.0
    description: str = ""

    @property
    def counterpart(self) -> str:
        """The same DeepLense model under the other recipe."""
        base = self.name.removesuffix("-physical")
        return base if self.recipe == "physical" else f"{base}-physical"


MODEL1_EXPOSURE_LOG10 = (3.0, 3.5)
"""DeepLenseSim Model I: ``exp_time = 10**np.random.uniform(3, 3.5)``."""

# DeepLenseSim's source is a Sersic of lenstronomy ``amp`` 20 (Model I, ``make_source_light``) or of
# magnitude 20 (Model II/III, ``make_source_light_mag``) converted by lenstronomy's
# ``magnitude2amplitude`` at the band's zero point (lenstronomy 1.14: Euclid VIS 25.72, HST WFC3
# F160W 25.96). For n=1, R_sersic=0.25" (area-preserving radius, so q drops out) the total flux
# is Ie * 2 pi n R^2 e^b b^(-2n) Gamma(2n), with lenstronomy's b_n = 1.9992 n - 0.3271 (its Sersic
# uses that approximation, not the exact 1.678347): F = 0.747686 Ie for F in e-/s.
LENSTRONOMY_SERSIC_B = 1.9992 * 1.0 - 0.3271
_SERSIC_FLUX_PER_IE = 0.7476859
_MAG20 = {"euclid_vis": 10 ** (-0.4 * (20.0 - 25.72)) / _SERSIC_FLUX_PER_IE,
          "hst_f160w": 10 ** (-0.4 * (20.0 - 25.96)) / _SERSIC_FLUX_PER_IE}

# Physical presets: exposure, sky and read noise follow the instruments (lenstronomy's Euclid VIS and
# HST configs for model2/model3: sky 22.3 mag/arcsec^2 at zero points 25.72 / 25.96, 4 x 566 s and
# 5400 s); the source brightness is set so that the median peak SNR is ~25, DeepLense's "SNR around
# 25", and the exposure spreads by 10^U(-0.3, 0.3) (a factor 4 end to end) per image.
_SPREAD = 0.3
INSTRUMENTS: dict[str, Instrument] = {
    "model1": Instrument(
        "model1", "deeplense", 150, 0.05, 0.087, 3.0, 1, "luminosity", 20.0, "deeplense-model1",
        vortex_points=100, sersic_b=LENSTRONOMY_SERSIC_B, background_rms=0.01,
        description="DeepLense Model I as DeepLenseSim made it: 150x150, 0.05\"/px, PSF 0.087\", "
                    "exposure 10^U(3,3.5), Poisson counts"),
    "model2": Instrument(
        "model2", "deeplense", 64, 0.101, 0.16, 5.0, 1, "luminosity", _MAG20["euclid_vis"], "none",
        vortex_points=100, sersic_b=LENSTRONOMY_SERSIC_B, output_scale=2.0,
        description="DeepLense Model II as DeepLenseSim made it: Euclid VIS 64x64, 0.101\"/px, "
                    "seeing 0.16\", no noise"),
    "model3": Instrument(
        "model3", "deeplense", 64, 0.08, 0.08, 5.0, 1, "luminosity", _MAG20["hst_f160w"], "none",
        vortex_points=100, sersic_b=LENSTRONOMY_SERSIC_B, output_scale=2.0,
        description="DeepLense Model III (assumed DeepLenseSim-like): HST 64x64, 0.08\"/px, "
                    "seeing 0.08\", no noise"),
    "model1-physical": Instrument(
        "model1-physical", "physical", 150, 0.05, 0.087, 0.0, 1, "angular", 36.9, "instrument",
        exposure=2000.0, exposure_dex=_SPREAD, sky=0.10, read_noise=5.0,
        description="Model I geometry, angular-diameter radii, Poisson + read noise, SNR ~25"),
    "model2-physical": Instrument(
        "model2-physical", "physical", 64, 0.101, 0.16, 0.0, 2, "angular", 11.95, "instrument",
        exposure=2264.0, exposure_dex=_SPREAD, sky=0.238, read_noise=8.4,
        description="Euclid VIS-like 64x64, angular-diameter radii, Poisson + read noise, SNR ~25"),
    "model3-physical": Instrument(
        "model3-physical", "physical", 64, 0.08, 0.08, 0.0, 2, "angular", 7.97, "instrument",
        exposure=5400.0, exposure_dex=_SPREAD, sky=0.186, read_noise=4.0,
        description="HST-like 64x64, angular-diameter radii, Poisson + read noise, SNR ~25"),
}


INSTRUMENT_NAMES: tuple[str, ...] = tuple(INSTRUMENTS)
"""The names ``sim:NAME`` and ``--instrument`` accept."""


def get_instrument(instrument: str | Instrument) -> Instrument:
    """The preset of that name, or a one-line DataError listing the valid names."""
    if isinstance(instrument, Instrument):
        return instrument
    try:
        return INSTRUMENTS[instrument]
    except (KeyError, TypeError):
        raise DataError(f"unknown instrument {instrument!r}; choose one of {', '.join(INSTRUMENTS)}") from None
