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

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lensdata.errors import DataError, DatasetError
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
                f"--seed {seed} --out {root} --overwrite")
    if "import" in source:
        extra = manifest.get("extra")
        src = extra.get("src", "SRC") if isinstance(extra, dict) else "SRC"
        return f"re-import it: python -m tuner data import {src} --out {root} --overwrite"
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


def holds_dataset(path: Path) -> bool:
    """Whether a directory holds a dataset's manifest (this version or version 1)."""
    return (path / MANIFEST).is_file() or (path / LEGACY_MANIFEST).is_file()


def check_replaceable(out: Path) -> None:
    """Refuse to overwrite anything that is not a dataset (this version or version 1) or an empty directory.

    A dataset is its manifest and its ``split=`` folders: anything else beside them (a model or a table
    written into it) would be deleted with it, so it is refused too.
    """
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink() or not (holds_dataset(out) or not any(out.iterdir())):
        raise DatasetError(f"{out} exists and is not a dataset; choose another output directory or remove it")
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in (MANIFEST, LEGACY_MANIFEST) and not p.name.startswith("split="))
    if foreign:
        raise DatasetError(f"{out} holds a dataset and other files ({', '.join(foreign[:3])}); replacing it would "
                           f"delete them; move them out of {out} or choose another output directory")


def check_vacant(out: Path, *, overwrite: bool) -> None:
    """Refuse an output that is not free for a new dataset: one that holds other files, or a dataset
    (unless ``overwrite``). Run before the work and again, under the writer's lock, at the swap."""
    check_replaceable(out)
    if not overwrite and holds_dataset(out):
        raise DatasetError(f"{out} already holds a dataset; pass --overwrite to replace it, or choose "
                           "another output directory")


def dataset_around(path: str | os.PathLike) -> Path | None:
    """The dataset directory that ``path`` is, or lies inside (its nearest such ancestor), else None.

    Every file under a dataset directory is part of it to its check (an unlisted one reads as damage), so
    nothing of ours may be written there: a model, a table, a run, a cache, another dataset.
    """
    here = Path(path).expanduser().absolute()
    for folder in (here, *here.parents):
        try:
            if holds_dataset(folder):
                return folder
        except OSError:  # a folder we may not look into: no dataset of ours
            continue
    return None


def check_not_a_dataset(out: Path, what: str, flag: str = "--out") -> None:
    """Refuse to write ``what`` (a model, a table, a run) into a dataset directory or any folder inside one:
    its files would read as damage there, and replacing the dataset would delete them."""
    around = dataset_around(out)
    if around is not None:
        here = Path(out).expanduser().absolute()
        inside = "holds a dataset" if around == here else f"lies inside the dataset {around}"
        raise DatasetError(f"{out} {inside}; {what} written there would mix with its files; "
                           f"choose another {flag}, outside the dataset")


# ---------------------------------------------------------------- before and while writing

_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def check_output(out: Path, *, overwrite: bool, disk_bytes: int = 0) -> None:
    """Refuse, before any image is made, an output directory that cannot take a new dataset.

    ``out`` must lie in a folder (not under a file, nor inside a dataset), be absent, empty or a dataset
    (one only with ``overwrite``), and its file system must take a new directory and ``disk_bytes`` more: the new
    dataset is written beside an old one before it replaces it.
    """
    out = Path(out).expanduser().absolute()
    base = out.parent
    while not os.path.exists(base):
        base = base.parent
    if not base.is_dir():
        raise DataError(f"cannot write a dataset at {out}: {base} is a file, not a folder; "
                        "choose another output directory")
    around = dataset_around(out.parent)
    if around is not None:
        raise DatasetError(f"cannot write a dataset at {out}: it lies inside the dataset {around}, which would "
                           "then read as damaged; choose an output directory outside it")
    check_vacant(out, overwrite=overwrite)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=base))
    except OSError as err:
        raise DataError(f"cannot write a dataset at {out}: {base} is not writable ({err.strerror}); "
                        "choose a writable output directory") from None
    free = shutil.disk_usage(base).free
    if disk_bytes > free:
        raise DataError(f"{out} needs {human_size(disk_bytes)}, {human_size(free)} free on {base}; free space there, "
                        "choose another output directory, or make fewer images")


def check_memory(nbytes: int, what: str, fix: str) -> None:
    """Refuse work whose arrays (``nbytes``) cannot fit in the memory available now."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise DataError(f"{what} need {human_size(nbytes)} of memory, {human_size(free)} available; {fix}")


def available_memory() -> int | None:
    """Bytes a new allocation can have now: Linux's MemAvailable (page cache counts as free), capped by
    a cgroup v2 limit (containers); ``os.sysconf``'s free pages elsewhere; None where unknown."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            free = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(free, 0)


def write_error(out: Path, err: OSError) -> DataError:
    """The one line for a failed write of the dataset ``out``: a full disk (or a file-size limit) says so and where."""
    reason = err.strerror or str(err)
    if err.filename:
        reason += f": {err.filename}"
    if err.errno in _DISK_FULL:
        base = Path(out).absolute().parent
        while not os.path.exists(base):
            base = base.parent
        return DataError(f"disk full while writing {out} ({reason}); {human_size(shutil.disk_usage(base).free)} free "
                         f"on {base}; {out} is unchanged; free space there or choose another output directory")
    return DataError(f"cannot write {out} ({reason}); {out} is unchanged; choose a writable output directory")


def human_size(nbytes: int) -> str:
    """Bytes as a person reads them: ``12.3 GiB``, ``4.0 MiB``, ``512 bytes``."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes} bytes"


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
    _check_types(root, manifest)
    return manifest


def _check_types(root: Path, manifest: dict) -> None:
    """Every key the readers use holds the type they expect, so that a hand-edited or damaged manifest is
    one line naming the key (not a TypeError deep in a reader)."""
    def refuse(key: str, value: object, expected: str) -> DatasetError:
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return damaged(root, f"{MANIFEST} has {key} = {shown}, expected {expected}", manifest)

    n, shape, classes, counts, files = (manifest[k] for k in ("n", "image_shape", "classes", "counts", "files"))
    if not _whole(n):
        raise refuse('"n"', n, "a whole number of images")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_whole(v, 1) for v in shape)):
        raise refuse('"image_shape"', shape, "[height, width] in pixels")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise refuse('"classes"', classes, "a list of class names")
    if not isinstance(counts, dict):
        raise refuse('"counts"', counts, "an object of split -> class -> count")
    for split, per_class in counts.items():
        if not (isinstance(per_class, dict) and all(_whole(v) for v in per_class.values())):
            raise refuse(f'"counts"."{split}"', per_class, "an object of class -> whole number")
    if not isinstance(files, list):
        raise refuse('"files"', files, "a list of file entries")
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise refuse(f'"files"[{i}]', entry, "an object with path, split, rows, bytes and sha256")
        path = entry.get("path")
        if not (isinstance(path, str) and path and not Path(path).is_absolute() and ".." not in Path(path).parts):
            raise refuse(f'"files"[{i}]."path"', path, "a relative path inside the dataset")
        if entry.get("split") not in SPLITS:
            raise refuse(f'"files"[{i}]."split"', entry.get("split"), f"one of {', '.join(SPLITS)}")
        if not _in_partition(path, entry["split"]):  # Arrow readers take the split from the folder
            raise refuse(f'"files"[{i}]."path"', path, f"a .parquet file in split={entry['split']}/, the folder "
                                                       "Arrow readers take its split from")
        for key in ("rows", "bytes"):
            if not _whole(entry.get(key)):
                raise refuse(f'"files"[{i}]."{key}"', entry.get(key), "a whole number")
        if not isinstance(entry.get("sha256"), str):
            raise refuse(f'"files"[{i}]."sha256"', entry.get("sha256"), "a hex sha256 string")
    _check_listed_once(root, manifest)
    params, stats = manifest.get("params", {}), manifest.get("stats", {})
    if not (isinstance(params, dict) and all(isinstance(v, str) for v in params.values())):
        raise refuse('"params"', params, "an object of column name -> Arrow type")
    if not (isinstance(stats, dict) and all(v is None or _real(v) for v in stats.values())):
        raise refuse('"stats"', stats, "an object of name -> number or null")


def _in_partition(path: str, split: str) -> bool:
    """A part file sits directly in its split's hive folder, under a name Arrow readers do not skip."""
    parts = Path(path).parts
    return (len(parts) == 2 and parts[0] == f"split={split}" and parts[1].endswith(".parquet")
            and not parts[1].startswith(("_", ".")))


def _check_listed_once(root: Path, manifest: dict) -> None:
    """Every file, and every file's bytes, listed once: a copy of a part file listed again puts the same
    images in two places (the test split would hold training images)."""
    by_path: set[str] = set()
    by_hash: dict[str, str] = {}
    for entry in manifest["files"]:
        if entry["path"] in by_path:
            raise damaged(root, f"{MANIFEST} lists {entry['path']} twice", manifest)
        by_path.add(entry["path"])
        first = by_hash.setdefault(entry["sha256"], entry["path"])
        if first != entry["path"]:
            raise damaged(root, f"{MANIFEST} lists {first} and {entry['path']} with the same bytes (sha256): "
                                "the same images twice, in one split or two", manifest)


def _whole(value: object, least: int = 0) -> bool:
    """A JSON whole number >= ``least`` (JSON's true and false are not numbers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    must be listed: a stray part file changes the counts, any other file breaks those tools. No
    directory may be a link: Arrow readers follow it (a link to a folder of part files adds its
    rows, a link to ``..`` reads the set forty times over), which the manifest cannot describe."""
    listed = {f["path"] for f in manifest["files"]}
    seen = []
    for folder, dirs, names in os.walk(root):  # does not follow links to directories
        here = Path(folder)
        for name in dirs:
            if (here / name).is_symlink():
                rel = (here / name).relative_to(root)
                raise DatasetError(f"{root} holds {rel}, a link to the directory {os.readlink(here / name)}; Arrow "
                                   "readers follow it and read what it holds as part of the dataset: remove the link")
        seen.extend((here / name).relative_to(root) for name in names)
    data = {p.as_posix() for p in seen if not any(part.startswith(("_", ".")) for part in p.parts)}
    extra = sorted(data - listed)
    beside = [rel for rel in extra if "/" not in rel]  # not in a split folder: someone else's file, not a leftover
    if beside:  # rebuilding the dataset (the advice below) would delete it
        raise DatasetError(f"{root}: {beside[0]} is not listed in {MANIFEST} and is not part of a dataset (a model "
                           f"or a table written into it?); move it out of {root}")
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
