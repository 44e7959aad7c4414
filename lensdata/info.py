"""What a dataset holds, in numbers: the statistics stored in its manifest, and the report of them.

:func:`image_stats` runs once, when :mod:`lensdata.store` writes a dataset; :func:`dataset_info`
reads them back (after the fast check) for ``python -m tuner data info``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from lensdata import substructure
from lensdata.checks import verify_dataset
from lensdata.dataset import STATS_CHUNK
from lensdata.errors import DataError
from lensdata.names import SPLITS


def image_stats(images: np.ndarray, targets: np.ndarray) -> dict:
    """Value range, mean and std of the finite pixels (float64 sums over chunks), how many pixels are
    NaN and how many infinite, and the target range."""
    lo, hi, total, total_sq, nan, inf = math.inf, -math.inf, 0.0, 0.0, 0, 0
    for start in range(0, len(images), STATS_CHUNK):
        part = images[start : start + STATS_CHUNK]
        finite = np.isfinite(part)
        if not finite.all():
            nan += int(np.count_nonzero(np.isnan(part)))
            inf += int(np.count_nonzero(np.isinf(part)))
            part = part[finite]
        if part.size:
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
        total += float(part.sum(dtype=np.float64))
        total_sq += float(np.square(part, dtype=np.float64).sum())
    count = images.size - nan - inf
    mean = total / count if count else math.nan
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0)) if count else math.nan
    finite = targets[np.isfinite(targets)]
    return {
        "image_min": lo if count else None, "image_max": hi if count else None,
        "image_mean": mean if count else None, "image_std": std if count else None,
        "image_nan": nan, "image_inf": inf,
        "n_targets": int(finite.size),
        "target_min": float(finite.min()) if finite.size else None,
        "target_max": float(finite.max()) if finite.size else None,
    }


def dataset_info(path: str | os.PathLike, *, verify: str = "fast") -> str:
    """A short report: source, image shape, counts per split and class, value and target ranges.

    ``verify="fast"`` checks sizes, footers and counts, which a same-size change of bytes passes;
    ``"full"`` also recomputes every file's sha256 (reads every byte), which catches it.
    """
    if verify not in ("fast", "full"):
        raise DataError(f"verify must be 'fast' or 'full', got {verify!r}")
    root = Path(path).expanduser()
    m = verify_dataset(root, full=verify == "full")
    h, w = m["image_shape"]
    classes = m["classes"]
    stats = m.get("stats", {})
    size = sum(int(f["bytes"]) for f in m["files"])
    lines = [
        f"dataset    {root}",
        f"source     {m.get('source')}" + (f", instrument {m['instrument']}" if m.get("instrument") else "")
        + (f", seed {m['seed']}" if m.get("seed") is not None else ""),
        f"images     {m['n']} x {h}x{w} {m.get('image_dtype', 'float32')}, "
        f"{size / 2**20:.1f} MiB in {len(m['files'])} files",
        "",
        "split   " + "".join(f"{c:>9}" for c in classes) + f"{'total':>9}",
    ]
    for split in SPLITS:
        row = [int(m["counts"].get(split, {}).get(c, 0)) for c in classes]
        lines.append(f"{split:<8}" + "".join(f"{v:>9}" for v in row) + f"{sum(row):>9}")
    totals = [sum(int(m["counts"].get(s, {}).get(c, 0)) for s in SPLITS) for c in classes]
    lines.append(f"{'all':<8}" + "".join(f"{v:>9}" for v in totals) + f"{sum(totals):>9}")
    lines.append("")
    values = [stats.get(k) for k in ("image_min", "image_max", "image_mean", "image_std")]
    if all(v is not None for v in values):
        lines.append(f"values     min {values[0]:.4g}, max {values[1]:.4g}, mean {values[2]:.4g}, std {values[3]:.4g}")
    lines.extend(_non_finite_warning(stats, m["n"] * h * w, values))
    if stats.get("n_targets"):
        quantities = substructure.targets()
        quantity = " and ".join(quantities[c] for c in classes if c in quantities)
        lines.append(f"target     {quantity or 'target'} for {stats['n_targets']} images, "
                     f"range [{stats['target_min']:.4g}, {stats['target_max']:.4g}]")
    else:
        lines.append("target     none (classification and anomaly detection only)")
    if m.get("params"):
        lines.append(f"params     {', '.join(m['params'])}")
    if verify == "full":
        lines.append("verified   sizes, footers, counts and the sha256 of every byte")
    else:
        lines.append("verified   sizes, footers and counts only: bytes changed in place pass this check; "
                     f"python -m tuner data info {root} --verify full reads every byte")
    return "\n".join(lines)


def _non_finite_warning(stats: dict, pixels: int, values: list) -> list[str]:
    """A line that counts the NaN and infinite pixels, if any: a model trained on them learns NaN."""
    nan, inf = stats.get("image_nan"), stats.get("image_inf")
    fix = "training and the baselines need finite pixels: repair the images and make the dataset again"
    if nan or inf:
        return [f"warning    {nan or 0} NaN and {inf or 0} infinite pixels of {pixels}; the values above are of "
                f"the finite pixels; {fix}"]
    if nan is None and any(v is not None and not math.isfinite(v) for v in values):  # written before they were counted
        return [f"warning    the images hold NaN or infinite pixels (this manifest does not count them); {fix}"]
    return []
