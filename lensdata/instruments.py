"""The DeepLense instruments: image geometry, PSF, exposure and noise of Model I, II and III.

Import-light (no numpy): the command line builds its ``--instrument`` choices from
:data:`INSTRUMENT_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lensdata.errors import DataError


@dataclass(frozen=True)
class Instrument:
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
INSTRUMENTS: dict[str, Instrument] = {
    "model1": Instrument("model1", 150, 0.05, 0.087, 2000.0, 0.10, 5.0, 36.9, 1,
                     "DeepLense Model I: 150x150, 0.05\"/px, Gaussian PSF 0.087\""),
    "model2": Instrument("model2", 64, 0.101, 0.16, 2264.0, 0.238, 8.4, 11.95, 2,
                     "DeepLense Model II, Euclid VIS-like: 64x64, 0.101\"/px, seeing 0.16\""),
    "model3": Instrument("model3", 64, 0.08, 0.08, 5400.0, 0.186, 4.0, 7.97, 2,
                     "DeepLense Model III, HST-like: 64x64, 0.08\"/px, seeing 0.08\""),
}


INSTRUMENT_NAMES: tuple[str, ...] = tuple(INSTRUMENTS)
"""``model1``, ``model2``, ``model3``: the names ``sim:NAME`` and ``--instrument`` accept."""


def get_instrument(instrument: str | Instrument) -> Instrument:
    """The instrument of that name, or a one-line DataError listing the valid names."""
    if isinstance(instrument, Instrument):
        return instrument
    try:
        return INSTRUMENTS[instrument]
    except (KeyError, TypeError):
        raise DataError(f"unknown instrument {instrument!r}; choose one of {', '.join(INSTRUMENTS)}") from None
