"""Images per second: the project's batched simulator against lenstronomy one image at a time.

The baseline is what DeepLenseSim does for every image of Model II: build a lenstronomy ``SimAPI``
for the image's lens list (SIE + SHEAR, plus 25 POINT_MASS subhalos for ``cdm`` or 100 POINT_MASS
along a line for the ``axion`` vortex), turn the source magnitude into an amplitude, render the
image (Euclid VIS: 64x64, 0.101"/pixel, Gaussian PSF FWHM 0.16", the same ray-tracing supersampling
as the project's ``model2`` instrument) and add sky, read and Poisson noise. A second, faster baseline
("lenstronomy, model reused") builds the ``ImageModel`` once per class and only changes its
parameters per image: the best a careful lenstronomy user could do one image at a time. The
headline ratio is against the DeepLenseSim way; the reused-model ratio is reported beside it.

The pyHalo classes (``wdm``, ``sidm``) are timed apart: both sides draw the same pyHalo population
for each image (``lensdata.render.image_draws``), then the project ray-traces it in batch and
lenstronomy through a per-image ``SimAPI`` of SIE + SHEAR + its TNFW / TNFWC halos and the
convergence sheet. pyHalo's draw is timed alone too, so the rendering alone is compared as well.

The project's side: ``lensdata.simulate.simulate("model2", n, seed, batch_size=..., progress=False)``
(classes mixed equally, as it makes them) for the overall figure, and ``lensdata.simulate.render`` with
one label for the per-class figures. Both sides use one CPU core (the project's simulator pins one
torch thread for bit-identical batching; lenstronomy is single-threaded numpy). Contenders run in
this process, alternately, after one warm-up call each; times are medians.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from _common import alternate, emit, parse_args, pick, rnd, threads

from lensdata import CLASSES
from lensdata.instruments import INSTRUMENTS
from lensdata.recipe import SUBHALO_SLOPE

NUM_PIX = 64
PIXEL_SCALE = 0.101  # arcsec, Euclid VIS (Model II)
SEEING = 0.16  # arcsec FWHM
# Einstein radius of a point mass of 1 Msun at z_l=0.5, z_s=1.0 (angular-diameter distances of
# astropy's FlatLambdaCDM(H0=70, Om0=0.3): 1e10 Msun -> 0.16645"; see docs/data.md).
REIN_1MSUN = 0.16645 / math.sqrt(1e10)
SIE_THETA_E = 1.6645  # arcsec: the project's halo (1e12 Msun, angular-diameter distances)
SOURCE_MAG = 22.0
SUPERSAMPLE = INSTRUMENTS["model2"].supersample  # ray-tracing sub-pixels per side, as the project renders


def lenstronomy_band():
    """Euclid VIS single-band settings (lenstronomy's own config), with DeepLenseSim's seeing."""
    from lenstronomy.SimulationAPI.ObservationConfig.Euclid import Euclid

    band = Euclid(band="VIS", psf_type="GAUSSIAN", coadd_years=6).kwargs_single_band()
    band.update(pixel_scale=PIXEL_SCALE, seeing=SEEING, psf_type="GAUSSIAN")
    return band


def draw_lens(cls: str, rng: np.random.Generator) -> tuple[list[str], list[dict]]:
    """One image's lens model list and parameters, drawn as DeepLenseSim draws them."""
    names = ["SIE", "SHEAR"]
    kwargs = [{"theta_E": SIE_THETA_E, "e1": 0.1, "e2": 0.0, "center_x": 0.0, "center_y": 0.0},
              {"gamma1": 0.05, "gamma2": 0.0}]
    if cls == "cdm":  # 25 subhalos, power-law masses 1e6..1e10 Msun, r in [0.25, 2]"
        u = rng.uniform(size=25)
        a, lo, hi = SUBHALO_SLOPE + 1, 1e6, 1e10  # inverse CDF of dN/dm ~ m^slope, as DeepLenseSim draws
        masses = (lo**a + u * (hi**a - lo**a)) ** (1 / a)
        r, phi = rng.uniform(0.25, 2.0, 25), rng.uniform(0, 2 * np.pi, 25)
        for m, x, y in zip(masses, r * np.cos(phi), r * np.sin(phi)):
            names.append("POINT_MASS")
            kwargs.append({"theta_E": REIN_1MSUN * math.sqrt(m), "center_x": x, "center_y": y})
    elif cls == "axion":  # vortex: 3e10 Msun in 100 equal point masses on a line through the centre
        log_m = rng.uniform(-24, -22)
        half = 0.03 * 10 ** (-22 - log_m)  # 0.03" at 1e-22 eV ... 3" at 1e-24 eV
        angle = rng.uniform(0, np.pi)
        t = np.linspace(-half, half, 100)
        rein = REIN_1MSUN * math.sqrt(3e10 / 100)
        for s in t:
            names.append("POINT_MASS")
            kwargs.append({"theta_E": rein, "center_x": s * math.cos(angle), "center_y": s * math.sin(angle)})
    return names, kwargs


def draw_source(rng: np.random.Generator) -> list[dict]:
    x, y = rng.uniform(-0.35, 0.35, 2)
    return [{"magnitude": SOURCE_MAG, "R_sersic": 0.25, "n_sersic": 1.0, "e1": -0.1, "e2": 0.1,
             "center_x": x, "center_y": y}]


def lenstronomy_deeplensesim(cls: str, n: int, seed: int) -> np.ndarray:
    """n images, each with its own SimAPI and ImageModel (DeepLenseSim's per-image path)."""
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    band = lenstronomy_band()
    rng = np.random.default_rng(seed)
    out = np.empty((n, NUM_PIX, NUM_PIX), dtype=np.float32)
    for i in range(n):
        names, kwargs_lens = draw_lens(cls, rng)
        sim = SimAPI(NUM_PIX, band, {"lens_model_list": names, "source_light_model_list": ["SERSIC_ELLIPSE"]})
        model = sim.image_model_class({"supersampling_factor": SUPERSAMPLE})
        _, kwargs_source, _ = sim.magnitude2amplitude(None, draw_source(rng), None)
        image = model.image(kwargs_lens, kwargs_source, None, None)
        out[i] = image + sim.noise_for_model(model=image)
    return out


def lenstronomy_reused(cls: str, n: int, seed: int) -> np.ndarray:
    """n images from one ImageModel per class; only the parameters change per image."""
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    band = lenstronomy_band()
    rng = np.random.default_rng(seed)
    names, _ = draw_lens(cls, np.random.default_rng(0))
    sim = SimAPI(NUM_PIX, band, {"lens_model_list": names, "source_light_model_list": ["SERSIC_ELLIPSE"]})
    model = sim.image_model_class({"supersampling_factor": SUPERSAMPLE})
    out = np.empty((n, NUM_PIX, NUM_PIX), dtype=np.float32)
    for i in range(n):
        _, kwargs_lens = draw_lens(cls, rng)
        _, kwargs_source, _ = sim.magnitude2amplitude(None, draw_source(rng), None)
        image = model.image(kwargs_lens, kwargs_source, None, None)
        out[i] = image + sim.noise_for_model(model=image)
    return out


def project_class(cls: str, n: int, seed: int, batch_size: int) -> np.ndarray:
    """n images of one class from the project's batched renderer (model2 instrument)."""
    from lensdata.simulate import image_seeds, render

    label = CLASSES.index(cls)
    return render("model2", image_seeds(seed, 0, n), np.full(n, label), batch_size=batch_size)["image"]


def project_mixed(n: int, seed: int, batch_size: int) -> np.ndarray:
    """n images, classes mixed equally: the public entry point."""
    from lensdata.simulate import simulate

    return simulate("model2", n, seed, batch_size=batch_size, progress=False)["image"]


def lenstronomy_halos(label: int, seeds: np.ndarray) -> np.ndarray:
    """pyHalo images one at a time: each image's population drawn (as the project draws it), then a
    SimAPI of SIE + SHEAR + its TNFW / TNFWC halos + pyHalo's convergence sheet (DeepLenseSim's path)."""
    from lenstronomy.SimulationAPI.sim_api import SimAPI

    from lensdata.render import image_draws

    band = lenstronomy_band()
    out = np.empty((len(seeds), NUM_PIX, NUM_PIX), dtype=np.float32)
    for i, seed in enumerate(seeds):
        draw = image_draws("model2", int(seed), label)
        names, kwargs_lens = draw_lens("no_sub", np.random.default_rng(0))
        halo_names, halo_kwargs = draw["halos"].lenstronomy()
        sim = SimAPI(NUM_PIX, band, {"lens_model_list": names + halo_names,
                                     "source_light_model_list": ["SERSIC_ELLIPSE"]})
        model = sim.image_model_class({"supersampling_factor": SUPERSAMPLE})
        source = draw_source(np.random.default_rng(0))
        source[0].update(center_x=draw["source_x"], center_y=draw["source_y"])
        _, kwargs_source, _ = sim.magnitude2amplitude(None, source, None)
        image = model.image(kwargs_lens + halo_kwargs, kwargs_source, None, None)
        out[i] = image + sim.noise_for_model(model=image)
    return out


def pyhalo_draws(label: int, seeds: np.ndarray) -> list:
    """The populations alone (the cost both sides share)."""
    from lensdata.render import image_draws

    return [image_draws("model2", int(s), label)["halos"] for s in seeds]


def pyhalo_classes(size: str, reps: int, batch: int) -> dict:
    """wdm and sidm: the project's render() against lenstronomy, the same populations on both sides."""
    from lensdata.names import SIM_CLASSES
    from lensdata.simulate import image_seeds, render

    n = pick(size, 2, 12, 48)
    out = {}
    for cls in ("wdm", "sidm"):
        label = SIM_CLASSES.index(cls)
        seeds = image_seeds(3, 0, n)
        times = alternate({
            "project": lambda label=label, seeds=seeds: render("model2", seeds, np.full(len(seeds), label),
                                                               batch_size=batch),
            "lenstronomy": lambda label=label, seeds=seeds: lenstronomy_halos(label, seeds),
            "pyhalo_draws": lambda label=label, seeds=seeds: pyhalo_draws(label, seeds),
        }, reps=reps, warmup=1)
        sec = {k: statistics.median(v) / n for k, v in times.items()}
        halos = [len(p) for p in pyhalo_draws(label, seeds)]
        render_p, render_l = sec["project"] - sec["pyhalo_draws"], sec["lenstronomy"] - sec["pyhalo_draws"]
        out[cls] = {"ratio": rnd(sec["lenstronomy"] / sec["project"]),
                    "ratio_rendering": rnd(render_l / max(render_p, 1e-9)),
                    "project_img_s": rnd(1 / sec["project"]), "lenstronomy_img_s": rnd(1 / sec["lenstronomy"]),
                    "pyhalo_draws_s": rnd(1 / sec["pyhalo_draws"]),
                    "project_rendering_ms": rnd(1e3 * render_p), "lenstronomy_rendering_ms": rnd(1e3 * render_l),
                    "median_subhalos": float(np.median(halos)), "n": n}
        print(f"{cls:7s} project {1 / sec['project']:6.2f} img/s   lenstronomy {1 / sec['lenstronomy']:6.2f} img/s"
              f"   ratio {sec['lenstronomy'] / sec['project']:.2f}   (pyHalo draws {1 / sec['pyhalo_draws']:.2f}/s;"
              f" rendering alone {1e3 * render_p:.0f} ms against {1e3 * render_l:.0f} ms per image, ratio "
              f"{render_l / max(render_p, 1e-9):.1f}; median {np.median(halos):.0f} subhalos)", flush=True)
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_proj = pick(args.size, 24, 384, 1536)  # the batched side needs whole batches to show its point
    n_lens = pick(args.size, 6, 48, 192)  # lenstronomy's cost per image is flat: fewer images suffice
    reps = pick(args.size, 1, 3, 5)
    batch = pick(args.size, 24, 128, 256)
    threads(1)  # both sides on one core (the project's simulator pins one thread anyway)

    per_class, spi = {}, {"project": 0.0, "lenstronomy": 0.0, "lenstronomy_reused": 0.0}
    for cls in CLASSES:
        n_p = max(1, n_proj // 3)
        times = alternate({
            "project": lambda cls=cls, n_p=n_p: project_class(cls, n_p, 1, batch),
            "lenstronomy": lambda cls=cls: lenstronomy_deeplensesim(cls, n_lens, 1),
            "lenstronomy_reused": lambda cls=cls: lenstronomy_reused(cls, n_lens, 1),
        }, reps=reps, warmup=1)
        sec = {k: statistics.median(v) / (n_p if k == "project" else n_lens) for k, v in times.items()}
        per_class[cls] = {"ratio": rnd(sec["lenstronomy"] / sec["project"]),
                          "ratio_vs_reused": rnd(sec["lenstronomy_reused"] / sec["project"]),
                          **{f"{k}_img_s": rnd(1 / v) for k, v in sec.items()}}
        for k, v in sec.items():
            spi[k] += v / 3  # equal class mix: mean seconds per image
        print(f"{cls:7s} project {1 / sec['project']:8.1f} img/s   lenstronomy {1 / sec['lenstronomy']:7.1f} "
              f"img/s (model reused {1 / sec['lenstronomy_reused']:7.1f})   ratio "
              f"{sec['lenstronomy'] / sec['project']:.2f}", flush=True)

    mixed = alternate({"project": lambda: project_mixed(n_proj, 2, batch)}, reps=reps, warmup=1)["project"]
    project_img_s = n_proj / statistics.median(mixed)  # the public simulate(): classes mixed
    lens_img_s, reused_img_s = 1 / spi["lenstronomy"], 1 / spi["lenstronomy_reused"]
    print(f"overall project simulate() {project_img_s:.1f} img/s   lenstronomy {lens_img_s:.1f} img/s "
          f"(model reused {reused_img_s:.1f})", flush=True)
    dark = pyhalo_classes(args.size, reps, batch)
    emit("simulate", project_img_s / lens_img_s, 3.0, "higher",
         project_img_s=rnd(project_img_s), lenstronomy_img_s=rnd(lens_img_s),
         lenstronomy_reused_img_s=rnd(reused_img_s), ratio_vs_reused=rnd(project_img_s / reused_img_s),
         project_per_class_mix_img_s=rnd(1 / spi["project"]), per_class=per_class, instrument="model2",
         supersample=SUPERSAMPLE, cores=1, batch_size=batch, n_project=n_proj, n_lenstronomy=n_lens,
         reps=reps, pyhalo_classes=dark,
         counts="images/s = images / median wall time to make them, noise included, one core each; "
                "overall: project = simulate() with its equal class mix, lenstronomy = equal-mix "
                "mean of its per-class seconds per image")


if __name__ == "__main__":
    main()
