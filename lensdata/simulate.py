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

Classes and seeds: image ``i`` of a run has label ``i % 3`` (0 ``no_sub``, 1 ``cdm``, 2 ``axion``;
balanced to within one image) and its own ``image_seed`` derived from ``(seed, i)``; everything
about an image follows from ``(instrument, image_seed, label)`` (:mod:`lensdata.render`). So the
same seed gives bit-identical arrays whatever ``batch_size`` or ``workers``.
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import asdict

import numpy as np

from lensdata.errors import DataError
from lensdata.instruments import INSTRUMENTS, get_instrument
from lensdata.names import CLASSES
from lensdata.recipe import physics_summary
from lensdata.render import render

SIM_VERSION = 2
"""Bumped whenever the same seed would give different bits; part of the ``sim:`` cache key.
Version 2 (PSF as a matrix product, in-place subhalo sum) changed images by rounding, and near
subhalos by their softening (Plummer ``|d|^2 + s^2`` instead of caustics' ``(|d| + s)^2``: 4e-4 of
the deflection 0.05" away, now 4e-8)."""

_ROW_BYTES = 128
"""Bytes on disk per image beside its pixels (labels, targets and the parameter columns), a bound."""


def simulate(instrument: str, n: int, seed: int, *, start: int = 0, batch_size: int = 256,
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
    spec = get_instrument(instrument)
    _check_request(n, seed, workers, batch_size)
    _check_int("start", start, 0, "a non-negative integer")

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


def simulate_to_dataset(instrument: str, n: int, seed: int, out: str | pathlib.Path, *, workers: int = 1,
                        batch_size: int = 256, progress: bool = True, address: str | None = None,
                        overwrite: bool = False) -> pathlib.Path:
    """Simulate ``n`` images and write them as a dataset directory (``lensdata.store`` format).

    The train/val/test split is :func:`lensdata.dataset.assign_splits` of the labels and seed; the manifest's
    ``extra`` records the instrument, the physics constants and the SNR definition.

    Everything that can be checked is checked before the first image is simulated: the arguments, the
    output directory (a dataset already there is replaced only with ``overwrite``), and that the images
    fit in memory and on the output's disk.
    """
    from lensdata.checks import check_memory, check_output
    from lensdata.dataset import assign_splits
    from lensdata.store import write_dataset

    spec = get_instrument(instrument)
    _check_request(n, seed, workers, batch_size)
    image_bytes = n * spec.pixels**2 * 4
    check_output(pathlib.Path(out), overwrite=overwrite, disk_bytes=image_bytes + n * _ROW_BYTES)
    check_memory(image_bytes, f"{n} {spec.name} images", "simulate fewer images (--n)")
    columns = simulate(instrument, n, seed, batch_size=batch_size, workers=workers,
                       progress=progress, address=address)
    columns["split"] = assign_splits(columns["label"], seed)
    spec = INSTRUMENTS[instrument]
    extra = {
        "instrument": asdict(spec),
        "simulator_version": SIM_VERSION,
        "image_units": "sky-subtracted electrons per second per pixel",
        "label_rule": "label = index % 3 (no_sub, cdm, axion)",
        "snr_definition": "peak pixel: S / sqrt(S + exposure*sky + read_noise^2), S = brightest "
                          "noiseless source pixel in electrons",
        "snr_median": float(np.median(columns["snr"])),
        "physics": physics_summary(),
    }
    return write_dataset(out, columns, classes=CLASSES, source="simulate",
                               instrument=spec.name, seed=seed, extra_meta=extra)


def image_seeds(seed: int, start: int, n: int) -> np.ndarray:
    """Per-image seeds (int64, 63 bits) of images ``start .. start+n-1`` of run ``seed``."""
    out = np.empty(n, dtype=np.int64)
    for j in range(n):
        state = np.random.SeedSequence(seed, spawn_key=(start + j,)).generate_state(1, np.uint64)
        out[j] = int(state[0] >> np.uint64(1))
    return out


# ---------------------------------------------------------------- validation and execution


def _check_request(n: int, seed: int, workers: int, batch_size: int) -> None:
    """The arguments of a run, each refused in one line (the command line passes them unchecked)."""
    _check_int("n", n, 3, "at least 3 images (one per class)")
    _check_int("seed", seed, 0, "a non-negative integer")
    _check_int("workers", workers, 1, "at least 1")
    _check_int("batch_size", batch_size, 1, "at least 1")


def _check_int(name: str, value, minimum: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be {what}, got {value!r}")


def _simulate_chunk(instrument: str, seed: int, start: int, n: int, batch_size: int,
                    device: str) -> dict[str, np.ndarray]:
    """Images ``start .. start+n-1`` of run ``seed``: the unit of work of processes and Ray tasks."""
    labels = np.arange(start, start + n, dtype=np.int64) % 3
    return render(instrument, image_seeds(seed, start, n), labels, device=device,
                  batch_size=batch_size)


def _run_processes(instrument, seed, chunks, batch_size, device, workers, bar) -> list[dict]:
    import concurrent.futures as cf
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
        futures = {pool.submit(_simulate_chunk, instrument, seed, s, m, batch_size, device): i
                   for i, (s, m) in enumerate(chunks)}
        parts: list[dict | None] = [None] * len(chunks)
        for fut in cf.as_completed(futures):
            i = futures[fut]
            parts[i] = fut.result()
            bar.update(chunks[i][1])
    return parts  # type: ignore[return-value]


def _run_ray(instrument, seed, chunks, batch_size, device, address, bar) -> list[dict]:
    """One Ray task per chunk; an existing connection of this process is reused, not replaced."""
    import ray

    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_simulate_chunk)
        refs = [task.remote(instrument, seed, s, m, batch_size, device) for s, m in chunks]
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
