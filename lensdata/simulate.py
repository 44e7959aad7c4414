"""DeepLense-like strong-lensing datasets: ``python -m tuner data simulate``.

Reproduces the DeepLenseSim recipe (:mod:`lensdata.recipe`; github.com/mwt5345/DeepLenseSim) with
caustics' batched lenses, for the instruments of :mod:`lensdata.instruments`:

- the image is ray-traced on a supersampled grid, convolved with a pixel-integrated Gaussian PSF,
  binned to the instrument's pixels, then observed (:mod:`lensdata.noise`): Poisson noise on
  ``exposure * (source + sky)`` electrons plus Gaussian read noise; the stored image is the
  sky-subtracted count rate in electrons per second per pixel (float32, like lenstronomy's images;
  projects normalise per image). Exposure and sky follow the instruments; the source brightness is
  set so that the median peak SNR is ~25 (DeepLense's "SNR around 25"), where
  ``SNR = S / sqrt(S + exposure*sky + read_noise^2)`` and ``S`` is the brightest noiseless source
  pixel in electrons (see :func:`lensdata.noise.peak_snr`; each image's value is stored in the
  ``snr`` column).

Classes, seeds and splits: the registered dark-matter classes (:mod:`lensdata.substructure`) make
the run cycle, and image ``i`` of a run is of class ``i % k`` of the ``k`` classes (0 ``no_sub``,
1 ``cdm``, 2 ``axion``, 3 ``wdm``, 4 ``sidm``: :data:`lensdata.names.SIM_CLASSES`) and has its own
``image_seed`` derived from ``(seed, i)``; everything about an image follows from
``(instrument, image_seed, class)`` and the parameter ranges (:mod:`lensdata.render`), and its split
from ``(seed, class, i // k)`` (:func:`lensdata.dataset.splits_by_identity`). The default set is
DeepLense's three classes; ``wdm`` and ``sidm`` need the ``dark-matter`` extra (pyHalo). A set of ``n`` images of
some classes is the first ``n`` images of the run that are of those classes, so every set of a run,
of any size and class subset, holds the same images under the same splits: a model trained on one
is never tested on its own training images in another. The same seed gives bit-identical arrays
whatever ``batch_size`` or ``workers``.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from lensdata import substructure
from lensdata.errors import DataError
from lensdata.instruments import INSTRUMENTS, Instrument, get_instrument  # noqa: F401 - re-exported
from lensdata.names import CLASSES
from lensdata.recipe import physics_summary
from lensdata.redact import first_line, redact
from lensdata.render import render
from lensdata.substructure import DarkMatterClass

SIM_VERSION = 4
"""Bumped whenever the same seed would give different bits or splits; part of the ``sim:`` cache key.
Version 2 (PSF as a matrix product, in-place subhalo sum) changed images by rounding, and near
subhalos by their softening (Plummer ``|d|^2 + s^2`` instead of caustics' ``(|d| + s)^2``: 4e-4 of
the deflection 0.05" away, now 4e-8). Version 3: ``model1``-``model3`` follow DeepLenseSim's public
recipe (the corrected physics moved to ``*-physical``), splits are a function of each image's
identity (version 2's depended on the set size, so nested sets leaked test images into training),
and 70/15/15 instead of 80/10/10. Version 4: runs cycle through five classes (``wdm`` and ``sidm``
joined), so image ``i``'s class, seed and split follow ``i % 5`` and ``i // 5``. A class appended to
the registry (:mod:`lensdata.substructure`) changes the cycle the same way: a new version."""

MIN_SIM_VERSION = SIM_VERSION
"""Simulated dataset directories older than this are refused (their splits leak across sizes)."""

_ROW_BYTES = 128
"""Bytes on disk per image beside its pixels (labels, targets and the parameter columns), a bound."""


def run_indices(n: int, classes: Sequence[str] = CLASSES, start: int = 0) -> np.ndarray:
    """Run indices of images ``start .. start+n-1`` of the run's images of these classes."""
    cycle = substructure.names()
    wanted = np.array([cycle.index(name) for name in classes], dtype=np.int64)
    per_cycle = len(wanted)
    k = np.arange(start, start + n, dtype=np.int64)
    return (k // per_cycle) * len(cycle) + np.sort(wanted)[k % per_cycle]


def simulate(instrument: str, n: int, seed: int, *, start: int = 0, batch_size: int = 256,
             workers: int = 1, progress: bool = True, address: str | None = None,
             device: str = "cpu", classes: Sequence[str] = CLASSES,
             ranges: dict | None = None) -> dict[str, np.ndarray]:
    """Simulate images ``start .. start+n-1`` of run ``seed`` that are of these classes.

    Returns ``image`` (n, H, W) float32 (the preset's units, see :data:`lensdata.instruments.INSTRUMENTS`)
    and per-image columns of shape (n,): ``label`` (int64, index into ``classes`` in
    :data:`lensdata.names.SIM_CLASSES` order), ``target`` (the class's parameter,
    :data:`lensdata.names.SUBSTRUCTURE_PARAMETERS`; NaN for no_sub and cdm), ``n_subhalos``,
    ``subhalo_mass_total`` (Msun, 0 without subhalos), ``source_x``, ``source_y`` (arcsec),
    ``image_seed`` (int64), ``exposure`` (s, NaN for noiseless presets), ``snr`` (peak SNR, infinite
    without noise), ``run_index`` (the image's index in the run, which decides its class, seed and
    split), and every registered class's own columns, NaN on other classes' images
    (:mod:`lensdata.substructure`): ``axion_mass`` (eV) and ``vortex_length`` (full length of the
    line, arcsec), ``half_mode_mass`` (Msun, wdm), ``sidm_cross_section`` (cm^2/g, sidm) and
    ``cored_fraction`` (share of cored subhalos, sidm). ``ranges`` overrides the classes' parameter
    ranges (:func:`check_ranges`).

    ``workers > 1`` spreads fixed chunks over spawned processes, or over Ray tasks when
    ``address`` is given (``ray.init(address=address)``; an existing Ray connection of this
    process is reused); the output is bit-identical to one process with any batch size.
    ``device`` is a torch device: ``"cuda"`` renders on a GPU (the bit-identity across batch sizes
    is tested on CPU, where each process renders with one torch thread).
    """
    spec = get_instrument(instrument)
    classes = check_classes(classes)
    ranges = check_ranges(ranges)
    _check_request(n, seed, workers, batch_size, len(classes))
    _check_int("start", start, 0, "a non-negative integer")
    indices = run_indices(n, classes, start)
    cycle = substructure.classes()  # handed to worker processes, which may not have a plugin's classes

    chunk = batch_size if workers == 1 and address is None else min(
        batch_size, max(1, math.ceil(n / (4 * workers))))
    chunks = [indices[s : s + chunk] for s in range(0, n, chunk)]
    from tqdm.auto import tqdm

    bar = tqdm(total=n, unit="img", desc=f"simulate {spec.name}", disable=not progress)
    try:
        if address is not None:
            parts = _run_ray(spec.name, seed, chunks, batch_size, device, address, bar, ranges, cycle)
        elif workers > 1:
            parts = _run_processes(spec.name, seed, chunks, batch_size, device, workers, bar, ranges, cycle)
        else:
            parts = []
            for part in chunks:
                parts.append(_simulate_chunk(spec.name, seed, part, batch_size, device, ranges, cycle))
                bar.update(len(part))
    finally:
        bar.close()
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    names = [c.name for c in cycle]
    out["label"] = np.searchsorted(np.array([names.index(c) for c in classes]), out["label"])
    return out


def check_classes(classes: Sequence[str] | str) -> tuple[str, ...]:
    """The classes to simulate in run order (:data:`lensdata.names.SIM_CLASSES`), or a one-line DataError.

    A class whose optional extra is not installed (pyHalo for ``wdm`` and ``sidm``) names the extra.
    """
    known = substructure.names()
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(classes)
    names = [c for c in names if c] if isinstance(classes, str) else names
    unknown = [c for c in names if c not in known]
    if unknown or not names:
        what = f"unknown class {unknown[0]!r}" if unknown else "no classes given"
        raise DataError(f"{what}; choose from {', '.join(known)} (comma-separated, e.g. --classes axion)")
    if len(set(names)) != len(names):
        raise DataError(f"class given twice in {','.join(names)}; give each class once")
    substructure.require_extras(names)
    return tuple(c for c in known if c in names)


def check_ranges(ranges: dict | None, classes: Sequence[str] | None = None) -> dict:
    """Every class's parameter range (defaults filled in), each inside its model's limits.

    A range given for a class that is not among ``classes`` (the ones simulated, when given) would be
    accepted and never drawn from, so it is refused.
    """
    known = {r.key: r for r in substructure.parameter_ranges()}
    unknown = sorted(set(ranges or {}) - set(known))
    if unknown:
        raise DataError(f"unknown parameter range {unknown[0]!r}; choose from {', '.join(known)}")
    owner = {c.parameter.key: c.name for c in substructure.classes() if c.parameter}
    unused = [key for key, value in (ranges or {}).items() if value is not None and classes is not None
              and owner[key] not in classes]
    if unused:
        flag, cls = known[unused[0]].flag, owner[unused[0]]
        raise DataError(f"{flag} sets the range of the {cls} images, but the classes simulated ({','.join(classes)}) "
                        f"have no {cls}; add {cls} to --classes, or drop {flag}")
    out = {key: r.default for key, r in known.items()}
    for key, value in (ranges or {}).items():
        if value is not None:
            out[key] = known[key].check(value)
    return out


def simulate_to_dataset(instrument: str, n: int, seed: int, out: str | pathlib.Path, *, workers: int = 1,
                        batch_size: int = 256, progress: bool = True, address: str | None = None,
                        overwrite: bool = False, classes: Sequence[str] = CLASSES,
                        ranges: dict | None = None) -> pathlib.Path:
    """Simulate ``n`` images of these classes and write them as a dataset directory (``lensdata.store``).

    The train/val/test split is :func:`lensdata.dataset.splits_by_identity` of each image's place in
    the run; the manifest's ``extra`` records the preset, its recipe and the physics constants.

    Everything that can be checked is checked before the first image is simulated: the arguments, the
    output directory (a dataset already there is replaced only with ``overwrite``), and that the images
    fit in memory and on the output's disk. The output's lock (:func:`lensdata.store.dataset_lock`) is
    held from then to the end, so a second writer of ``out`` is refused at once.
    """
    from lensdata.checks import check_memory, check_output
    from lensdata.store import dataset_lock

    spec = get_instrument(instrument)
    classes = check_classes(classes)
    ranges = check_ranges(ranges, classes)
    _check_request(n, seed, workers, batch_size, len(classes))
    image_bytes = n * spec.pixels**2 * 4
    check_output(pathlib.Path(out), overwrite=overwrite, disk_bytes=image_bytes + n * _ROW_BYTES)
    check_memory(image_bytes, f"{n} {spec.name} images", "simulate fewer images (--n)")
    with dataset_lock(out):
        columns = simulate(instrument, n, seed, batch_size=batch_size, workers=workers,
                           progress=progress, address=address, classes=classes, ranges=ranges)
        return _write_simulated(out, columns, spec, seed, classes, ranges, overwrite)


def _write_simulated(out: str | pathlib.Path, columns: dict[str, np.ndarray], spec: Instrument, seed: int,
                     classes: Sequence[str], ranges: dict, overwrite: bool) -> pathlib.Path:
    """Write the simulated columns as a dataset, with their splits and what made them in the manifest."""
    from lensdata.dataset import splits_by_identity
    from lensdata.store import write_dataset

    run = substructure.names()  # the run cycle
    k = len(run)
    index = columns["run_index"]
    columns["split"] = splits_by_identity(index % k, index // k, seed)
    snr = columns["snr"][np.isfinite(columns["snr"])]
    chosen = [substructure.get_class(c) for c in classes]
    extra = {
        "instrument": asdict(spec),
        "recipe": RECIPE_NOTES[spec.recipe],
        "simulator_version": SIM_VERSION,
        "image_units": IMAGE_UNITS[spec.noise],
        "label_rule": f"run image i is of class i % {k} ({', '.join(run)}); a set of some "
                      "classes holds the first n run images of those classes",
        "split_rule": f"lensdata.dataset.splits_by_identity(i % {k}, i // {k}, seed): "
                      "the same image has the same split in every set of the run",
        "targets": {c.name: c.target for c in chosen if c.target},
        "snr_definition": "peak pixel: S / sqrt(noise variance of that pixel), S = brightest "
                          "noiseless pixel in electrons; infinite for noiseless presets",
        "snr_median": float(np.median(snr)) if snr.size else None,
        "physics": physics_summary(spec.distances),
    }
    for describe in dict.fromkeys(c.manifest for c in chosen if c.manifest):  # once per shared function
        extra.update(describe({c.parameter.key: list(ranges[c.parameter.key])
                               for c in chosen if c.manifest is describe and c.parameter}))
    return write_dataset(out, columns, classes=classes, source="simulate",
                         instrument=spec.name, seed=seed, extra_meta=extra, overwrite=overwrite)


RECIPE_NOTES = {
    "deeplense": "DeepLenseSim's public code (github.com/mwt5345/DeepLenseSim): luminosity-distance "
                 "Einstein radii, lenstronomy's PSF and Sersic, its output as written (see docs/data.md)",
    "physical": "DeepLenseSim's lens and source with angular-diameter distances, a pixel-integrated "
                "PSF and instrument noise at a spread of exposures (see docs/data.md)",
}
IMAGE_UNITS = {
    "none": "twice the noiseless model, e-/s per pixel (DeepLenseSim's image_model + image_model)",
    "deeplense-model1": "photon counts (DeepLenseSim Model I)",
    "instrument": "sky-subtracted electrons per second per pixel",
}


def image_seeds(seed: int, start: int, n: int) -> np.ndarray:
    """Per-image seeds (int64, 63 bits) of images ``start .. start+n-1`` of run ``seed``."""
    return seeds_of(seed, np.arange(start, start + n))


def seeds_of(seed: int, indices: np.ndarray) -> np.ndarray:
    """Per-image seeds (int64, 63 bits) of these run indices of run ``seed``."""
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty(indices.size, dtype=np.int64)
    for j, i in enumerate(indices):
        state = np.random.SeedSequence(seed, spawn_key=(int(i),)).generate_state(1, np.uint64)
        out[j] = int(state[0] >> np.uint64(1))
    return out


# ---------------------------------------------------------------- validation and execution


def _check_request(n: int, seed: int, workers: int, batch_size: int, n_classes: int = 3) -> None:
    """The arguments of a run, each refused in one line (the command line passes them unchecked)."""
    _check_int("n", n, n_classes, f"at least {n_classes} images (one per class)")
    _check_int("seed", seed, 0, "a non-negative integer")
    _check_int("workers", workers, 1, "at least 1")
    _check_int("batch_size", batch_size, 1, "at least 1")


def _check_int(name: str, value, minimum: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be {what}, got {value!r}")


def _simulate_chunk(instrument: str, seed: int, indices: np.ndarray, batch_size: int, device: str,
                    ranges: dict, cycle: Sequence[DarkMatterClass]) -> dict[str, np.ndarray]:
    """These run indices of run ``seed`` under this run cycle: the unit of work of processes and Ray tasks."""
    out = render(instrument, seeds_of(seed, indices), indices % len(cycle), device=device,
                 batch_size=batch_size, ranges=ranges, cycle=cycle)
    out["run_index"] = np.asarray(indices, dtype=np.int64)
    return out


def _run_processes(instrument, seed, chunks, batch_size, device, workers, bar, ranges, cycle) -> list[dict]:
    import concurrent.futures as cf
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
        futures = {pool.submit(_simulate_chunk, instrument, seed, part, batch_size, device, ranges, cycle): i
                   for i, part in enumerate(chunks)}
        parts: list[dict | None] = [None] * len(chunks)
        for fut in cf.as_completed(futures):
            i = futures[fut]
            parts[i] = fut.result()
            bar.update(len(chunks[i]))
    return parts  # type: ignore[return-value]


def _run_ray(instrument, seed, chunks, batch_size, device, address, bar, ranges, cycle) -> list[dict]:
    """One Ray task per chunk; an existing connection of this process is reused, not replaced."""
    import ray

    connected_here = not ray.is_initialized()
    if connected_here:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:  # Ray's text may repeat a token in the address
            raise DataError(f"cannot reach the Ray cluster at {redact(address)} ({first_line(err)}); check --address, "
                            "that the head is running, or leave --address out to simulate here") from None
    try:
        task = ray.remote(num_cpus=1)(_simulate_chunk)
        refs = [task.remote(instrument, seed, part, batch_size, device, ranges, cycle) for part in chunks]
        index = {ref: i for i, ref in enumerate(refs)}
        parts: list[dict | None] = [None] * len(chunks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                parts[index[ref]] = ray.get(ref)
                bar.update(len(chunks[index[ref]]))
    finally:
        if connected_here:
            ray.shutdown()
    return parts  # type: ignore[return-value]
