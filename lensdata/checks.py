"""What a dataset directory must hold, and the checks that it does.

The format's fixed facts live here (manifest name, schema version, the column types) because both
sides need them: :mod:`lensdata.store` writes them, and the checks here hold what it is given
(:func:`check_columns`, :func:`check_replaceable`) and every directory it reads
(:func:`read_manifest`, :func:`verify_dataset`) to them. A dataset that fails a check raises one
:class:`~lensdata.errors.DatasetError` line that names the file, says what is wrong with it, and
says how to make the dataset again (:func:`fix_hint`): regenerate a simulated set, re-import an
imported one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lensdata.errors import DatasetError
from lensdata.names import SPLITS

SCHEMA_VERSION = 2
"""Version 2: images as fixed_size_binary (raw ``<f4`` bytes) and the manifest named ``_dataset.json``."""

MANIFEST = "_dataset.json"
"""The manifest's file name. Arrow tools skip names that start with ``_`` or ``.``, so they read the
directory as plain hive-partitioned Parquet (pyarrow's ``ignore_prefixes`` default)."""

LEGACY_MANIFEST = "dataset.json"
"""Where version 1 kept its manifest (images as lists of float32); only recognised, to refuse it."""

FORMAT_NAME = "deeplense-tuner-dataset"

_RESERVED = ("image", "label", "split", "target")  # column names a parameter column may not take


def image_type(h: int, w: int) -> pa.DataType:
    """The image column's type: one H*W*4-byte value per image, float32 little-endian, row-major."""
    return pa.binary(h * w * 4)


def column_types(manifest: dict) -> dict[str, str]:
    """Every column a part file must have, with its Arrow type as text (``str(pa.DataType)``)."""
    h, w = manifest["image_shape"]
    return {"image": str(image_type(h, w)), "label": "int64", "target": "float",
            **{name: str(kind) for name, kind in (manifest.get("params") or {}).items()}}


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- messages


def fix_hint(manifest: dict | None, root: Path) -> str:
    """How to make this dataset again, from what its manifest says about where it came from."""
    source = str((manifest or {}).get("source") or "")
    if "sim" in source:
        instrument, n, seed = manifest.get("instrument"), manifest.get("n"), manifest.get("seed")
        return (f"regenerate it: python -m tuner data simulate --instrument {instrument} --n {n} "
                f"--seed {seed} --out {root}")
    if "import" in source:
        src = (manifest.get("extra") or {}).get("src", "SRC")
        return f"re-import it: python -m tuner data import {src} --out {root}"
    return ("regenerate it (python -m tuner data simulate --instrument ...) or re-import it "
            "(python -m tuner data import SRC --out DIR)")


def damaged(root: Path, what: str, manifest: dict | None) -> DatasetError:
    """The one-line error for a damaged dataset: where, what, and how to rebuild it."""
    return DatasetError(f"damaged dataset {root}: {what}; {fix_hint(manifest, root)}")


def short_error(err: BaseException) -> str:
    """First line of a pyarrow error, trimmed: enough to tell truncation from a bad format."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------- what is written


def check_columns(
    columns: dict[str, np.ndarray], classes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Validate and normalise the columns given to write_dataset (programming errors: ValueError)."""
    missing = [k for k in ("image", "label", "split") if k not in columns]
    if missing:
        raise ValueError(f"write_dataset needs columns {missing}")
    images = np.asarray(columns["image"])
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or 0 in images.shape[1:]:
        raise ValueError(f"image must be (N, H, W), got shape {images.shape}")
    images = images.astype(np.float32, copy=False)
    n = images.shape[0]
    labels = np.asarray(columns["label"])
    if labels.shape != (n,) or (n and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"label must be ({n},) integers, got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64, copy=False)
    if n and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels must lie in 0..{len(classes) - 1} for classes {list(classes)}")
    splits = np.asarray(columns["split"]).astype(str)
    if splits.shape != (n,) or not np.isin(splits, SPLITS).all():
        raise ValueError(f"split must be ({n},) of {SPLITS}")
    targets = np.asarray(columns.get("target", np.full(n, np.nan)), dtype=np.float32)
    if targets.shape != (n,):
        raise ValueError(f"target must be ({n},), got {targets.shape}")
    params = {}
    for name, values in columns.items():
        if name in _RESERVED:
            continue
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"parameter column {name!r} must be ({n},), got {values.shape}")
        params[name] = values
    return images, labels, splits, targets, params


def check_replaceable(out: Path) -> None:
    """Refuse to overwrite anything that is not a dataset (this version or version 1) or an empty directory."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir() and not out.is_symlink() and (
            (out / MANIFEST).is_file() or (out / LEGACY_MANIFEST).is_file() or not any(out.iterdir())):
        return
    raise DatasetError(f"{out} exists and is not a dataset; choose another output directory or remove it")


# ---------------------------------------------------------------- the manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """The parsed manifest of a dataset directory, checked for format and version."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"no dataset at {root}: the path does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset directory")
    mpath = root / MANIFEST
    if not mpath.is_file():
        _refuse_version_1(root)
        raise DatasetError(
            f"{root} is not a dataset (no {MANIFEST}): an interrupted write or a foreign folder; "
            "make one with `python -m tuner data simulate` or `python -m tuner data import`")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise damaged(root, f"{MANIFEST} is unreadable ({type(err).__name__})", None) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise damaged(root, f"{MANIFEST} is not a {FORMAT_NAME} manifest", None)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{mpath} has schema version {version}; this tuner reads version "
                           f"{SCHEMA_VERSION}; {fix_hint(manifest, root)}")
    needed = ("image_shape", "classes", "counts", "files", "n")
    lacking = [k for k in needed if k not in manifest]
    if lacking:
        raise damaged(root, f"{MANIFEST} lacks {', '.join(lacking)}", manifest)
    return manifest


def _refuse_version_1(root: Path) -> None:
    """A version-1 dataset (its manifest under the old name) gets told how to convert it."""
    try:
        old = json.loads((root / LEGACY_MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # no readable old manifest either: not a dataset at all
    if isinstance(old, dict) and old.get("format") == FORMAT_NAME:
        raise DatasetError(
            f"{root} is a version-{old.get('schema_version')} dataset ({LEGACY_MANIFEST}); this tuner "
            f"reads version {SCHEMA_VERSION} ({MANIFEST}, images as fixed-size binary); convert it by "
            f"making it again: {fix_hint(old, root)}")


# ---------------------------------------------------------------- the files


def verify_dataset(path: str | os.PathLike, *, full: bool = False) -> dict:
    """Check a dataset against its manifest; return the manifest or raise one-line DatasetError.

    The fast check (default) reads only file sizes, Parquet footers and the label column.
    ``full=True`` also recomputes every file's sha256.
    """
    root = Path(path).expanduser()
    manifest = read_manifest(root)
    _check_no_strays(root, manifest)
    nclass = len(manifest["classes"])
    rows_seen = {s: 0 for s in SPLITS}
    label_counts = {s: np.zeros(nclass, dtype=np.int64) for s in SPLITS}
    for entry in manifest["files"]:
        labels = _check_file(root, entry, manifest, full=full)
        rows_seen[entry["split"]] += len(labels)
        label_counts[entry["split"]] += np.bincount(labels, minlength=nclass)
    for split in SPLITS:
        stated = manifest["counts"].get(split, {})
        for i, cls in enumerate(manifest["classes"]):
            if int(stated.get(cls, 0)) != int(label_counts[split][i]):
                raise damaged(root, f"{MANIFEST} counts {stated.get(cls, 0)} {cls} images in "
                                    f"{split}, the files hold {label_counts[split][i]}", manifest)
    if sum(rows_seen.values()) != manifest["n"]:
        raise damaged(root, f"{MANIFEST} says {manifest['n']} images, the files hold "
                            f"{sum(rows_seen.values())}", manifest)
    return manifest


def _check_no_strays(root: Path, manifest: dict) -> None:
    """Every file an Arrow tool would read as data (no part of its path starts with ``_`` or ``.``)
    must be listed: a stray part file changes the counts, any other file breaks those tools."""
    listed = {f["path"] for f in manifest["files"]}
    seen = (p.relative_to(root) for p in root.rglob("*") if not p.is_dir())
    data = {p.as_posix() for p in seen if not any(part.startswith(("_", ".")) for part in p.parts)}
    extra = sorted(data - listed)
    if extra:
        raise damaged(root, f"{extra[0]} is not listed in {MANIFEST} (a stray or leftover file)", manifest)


def _check_file(root: Path, entry: dict, manifest: dict, *, full: bool) -> np.ndarray:
    """Size, checksum (``full``), footer, row count, image width and labels of one part file.

    Returns the file's labels, for the counts per split and class.
    """
    rel, fpath = entry["path"], root / entry["path"]
    h, w = manifest["image_shape"]
    nclass = len(manifest["classes"])
    if not fpath.is_file():
        raise damaged(root, f"{rel} is missing", manifest)
    size = fpath.stat().st_size
    if size != entry["bytes"]:
        raise damaged(root, f"{rel} is {size} bytes, the manifest says {entry['bytes']} "
                            "(truncated or replaced)", manifest)
    if full and sha256(fpath) != entry["sha256"]:
        raise damaged(root, f"{rel} fails its sha256 checksum (corrupted)", manifest)
    try:
        pfile = pq.ParquetFile(fpath)
        schema = pfile.schema_arrow
        rows = pfile.metadata.num_rows
        label_column = pfile.read(columns=["label"]).column("label")
    except (pa.ArrowException, OSError, KeyError, ValueError) as err:  # ValueError: e.g. names not UTF-8
        raise damaged(root, f"{rel} is not readable Parquet ({short_error(err)})", manifest) from None
    image = schema.field("image").type if "image" in schema.names else None
    if image != image_type(h, w):
        raise damaged(root, f"{rel} has image column {image}, the manifest says {h}x{w} images "
                            f"({image_type(h, w)})", manifest)
    for name, kind in column_types(manifest).items():
        found = str(schema.field(name).type) if name in schema.names else "no such column"
        if found != kind:
            raise damaged(root, f"{rel} has {name} column {found}, the manifest says {kind}", manifest)
    if rows != entry["rows"]:
        raise damaged(root, f"{rel} has {rows} rows, the manifest says {entry['rows']}", manifest)
    if label_column.null_count:
        raise damaged(root, f"{rel} has {label_column.null_count} null labels", manifest)
    labels = label_column.to_numpy()
    if len(labels) and (labels.min() < 0 or labels.max() >= nclass):
        raise damaged(root, f"{rel} has labels outside 0..{nclass - 1}", manifest)
    return labels
