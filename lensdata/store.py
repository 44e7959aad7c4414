"""The dataset store: lensing images as hive-partitioned Parquet plus a JSON manifest.

A dataset is a directory::

    DIR/dataset.json                      manifest: schema version, source, shape, classes, counts,
                                          value ranges, and the size and sha256 of every file
    DIR/split=train/part-00000.parquet    columns: image, label, target, then parameter columns
    DIR/split=val/part-00000.parquet
    DIR/split=test/part-00000.parquet

``image`` is a float32 fixed-size list of H*W values (row-major), ``label`` an int64 index into the
manifest's ``classes``, ``target`` float32 (null where undefined, e.g. the axion mass of a ``cdm``
image) and every other column a 1-D per-image parameter. The split is the hive partition, not a
stored column. Any Arrow tool reads the whole dataset as one table; the manifest is not Parquet,
so tell pyarrow to skip it::

    import pyarrow.dataset as ds
    table = ds.dataset(DIR, format="parquet", partitioning="hive",
                       exclude_invalid_files=True).to_table()

(:func:`arrow_dataset` makes exactly that call.)

Writes are atomic: everything goes into a hidden temporary sibling directory, the manifest last,
and the directory is renamed into place, so an interrupted write never looks like a dataset.

Loading checks the dataset first. ``verify=True`` (the default, "fast") costs milliseconds even for
large sets: every listed file must exist with its recorded size, its Parquet footer must be readable
with the recorded row count and image width, no unlisted part files may be present, and the label
counts per split and class must match the manifest. ``verify="full"`` also recomputes the sha256 of
every file (reads every byte: use it after copying a dataset between machines). Any damage becomes
one :class:`~lensdata.errors.DatasetError` line naming the file and how to rebuild the dataset.

Images are stored uncompressed (PLAIN encoding, Data Page V2 pages) so that loading reads each
page's raw values straight into a single preallocated ``(N, 1, H, W)`` array (:mod:`lensdata.parquet_pages`),
with pyarrow as the fallback for files in any other layout: no Python work per image, no buffer
between the file and the array, and peak memory close to the size of the images themselves.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from lensdata import parquet_pages
from lensdata.dataset import LensingData, check_splits
from lensdata.errors import DataError, DatasetError
from lensdata.names import SPLITS

SCHEMA_VERSION = 1
MANIFEST = "dataset.json"
FORMAT_NAME = "deeplense-tuner-dataset"

_RESERVED = ("image", "label", "split", "target")
_FILE_BYTES = 256 * 2**20  # image bytes per part file: several files for big sets, one for small
_GROUP_BYTES = 16 * 2**20  # image bytes per row group: the unit of one bulk copy on load
_STATS_CHUNK = 4096  # images per step when computing statistics (bounds temporaries)


# ---------------------------------------------------------------- writing


def write_dataset(
    out: str | os.PathLike,
    columns: dict[str, np.ndarray],
    *,
    classes: Sequence[str],
    source: str,
    instrument: str | None,
    seed: int | None,
    extra_meta: dict | None = None,
) -> Path:
    """Write a dataset directory atomically and return its path.

    Args:
        out: target directory. An existing dataset there is replaced; an empty directory is
            used; any other existing path is refused (never deletes user files).
        columns: ``image`` (N, H, W) or (N, 1, H, W) float; ``label`` (N,) int in
            ``range(len(classes))``; ``split`` (N,) of train/val/test; optional ``target`` (N,)
            float (NaN is stored as null); any other 1-D (N,) arrays are kept as parameter columns.
        classes: class names in label order.
        source: who made it, e.g. ``"simulate"`` or ``"deeplense-import"``.
        instrument: simulator instrument or instrument model (``"model2"``), if any.
        seed: seed that made the data or split, if any.
        extra_meta: more JSON-serialisable facts, stored under ``"extra"`` in the manifest.

    Rows are grouped by split (train, val, test); within a split the given order is kept.
    """
    out = Path(out).expanduser()
    images, labels, splits, targets, params = _check_columns(columns, classes)
    n, h, w = images.shape
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(out)
    tmp = parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = []
        rows_per_file = max(1, _FILE_BYTES // (h * w * 4))
        rows_per_group = max(1, _GROUP_BYTES // (h * w * 4))
        for split in SPLITS:
            idx = np.flatnonzero(splits == split)
            for part, start in enumerate(range(0, len(idx), rows_per_file)):
                rel = f"split={split}/part-{part:05d}.parquet"
                rows = _as_run(idx[start : start + rows_per_file])
                table = _arrow_table(images[rows], labels[rows], targets[rows],
                                     {k: v[rows] for k, v in params.items()})
                path = tmp / rel
                path.parent.mkdir(exist_ok=True)
                _write_parquet(table, path, rows_per_group)
                files.append({"path": rel, "split": split, "rows": table.num_rows,
                              "bytes": path.stat().st_size, "sha256": _sha256(path)})
        counts = {s: {c: int(np.sum((splits == s) & (labels == i))) for i, c in enumerate(classes)}
                  for s in SPLITS}
        manifest = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "source": source,
            "instrument": instrument,
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "n": int(n),
            "image_shape": [int(h), int(w)],
            "image_dtype": "float32",
            "classes": list(classes),
            "counts": counts,
            "params": {k: str(_arrow_type(v)) for k, v in params.items()},
            "has_targets": bool(np.isfinite(targets).any()),
            "stats": _stats(images, targets),
            "files": files,
            "extra": extra_meta or {},
        }
        _write_json_durably(tmp / MANIFEST, manifest)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_columns(
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


def _as_run(rows: np.ndarray) -> np.ndarray | slice:
    """A slice when the rows are one contiguous run, so that the write takes views, not copies."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _arrow_type(values: np.ndarray) -> pa.DataType:
    """Arrow type of a parameter column: strings for text or objects, else numpy's own type."""
    return pa.string() if values.dtype.kind in "OUS" else pa.from_numpy_dtype(values.dtype)


def _arrow_table(images: np.ndarray, labels: np.ndarray, targets: np.ndarray,
                 params: dict[str, np.ndarray]) -> pa.Table:
    n, h, w = images.shape
    # Non-nullable list and values: Parquet then stores no definition levels for the pixels,
    # which doubles read speed.
    image_type = pa.list_(pa.field("element", pa.float32(), nullable=False), h * w)
    flat = pa.array(np.ascontiguousarray(images).reshape(-1))
    fields = [pa.field("image", image_type, nullable=False), pa.field("label", pa.int64(), nullable=False),
              pa.field("target", pa.float32())]
    arrays = [pa.FixedSizeListArray.from_arrays(flat, type=image_type), pa.array(labels),
              pa.array(targets, type=pa.float32(), from_pandas=True)]  # NaN -> null
    for name, values in params.items():
        fields.append(pa.field(name, _arrow_type(values)))
        arrays.append(pa.array(values.astype(str) if values.dtype.kind in "OS" else values,
                               type=_arrow_type(values)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _write_parquet(table: pa.Table, path: Path, rows_per_group: int) -> None:
    """Images uncompressed and PLAIN in Data Page V2 pages; small columns zstd.

    V2 pages hold whole rows and keep their levels apart from the values, so each page's
    image values are one run of raw floats that :mod:`lensdata.parquet_pages` reads straight
    into the output array; any Parquet reader still reads the file as usual.
    """
    small = [c for c in table.column_names if c != "image"]
    pq.write_table(
        table, path,
        row_group_size=rows_per_group,
        compression={"image": "NONE", **{c: "zstd" for c in small}},
        use_dictionary=[c for c in small if pa.types.is_string(table.schema.field(c).type)],
        write_statistics=small,
        data_page_version="2.0",
        write_page_checksum=False,
    )
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _stats(images: np.ndarray, targets: np.ndarray) -> dict:
    """Value range, mean and std of all pixels (float64 sums over chunks), and the target range."""
    lo, hi, total, total_sq = math.inf, -math.inf, 0.0, 0.0
    for start in range(0, len(images), _STATS_CHUNK):
        part = images[start : start + _STATS_CHUNK]
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
        total += float(part.sum(dtype=np.float64))
        total_sq += float(np.square(part, dtype=np.float64).sum())
    count = images.size
    mean = total / count if count else math.nan
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0)) if count else math.nan
    finite = targets[np.isfinite(targets)]
    return {
        "image_min": lo if count else None, "image_max": hi if count else None,
        "image_mean": mean if count else None, "image_std": std if count else None,
        "n_targets": int(finite.size),
        "target_min": float(finite.min()) if finite.size else None,
        "target_max": float(finite.max()) if finite.size else None,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(4 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_durably(path: Path, obj: dict) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _check_replaceable(out: Path) -> None:
    """Refuse to overwrite anything that is not a dataset or an empty directory."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir() and not out.is_symlink() and ((out / MANIFEST).is_file() or not any(out.iterdir())):
        return
    raise DatasetError(f"{out} exists and is not a dataset; choose another output directory or remove it")


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished temporary directory to ``out``, replacing an old dataset there."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, trash)
        os.rename(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


# ---------------------------------------------------------------- checking


def _fix_hint(manifest: dict | None, root: Path) -> str:
    source = str((manifest or {}).get("source") or "")
    if "sim" in source:
        instrument, n, seed = manifest.get("instrument"), manifest.get("n"), manifest.get("seed")
        return (f"regenerate it: python -m tuner data simulate --instrument {instrument} --n {n} "
                f"--seed {seed} --out {root}")
    if "import" in source:
        src = (manifest.get("extra") or {}).get("src", "SRC")
        return f"re-import it: python -m tuner data import {src} --out {root}"
    return "regenerate it (python -m tuner data simulate) or re-import it (python -m tuner data import)"


def _damaged(root: Path, what: str, manifest: dict | None) -> DatasetError:
    return DatasetError(f"damaged dataset {root}: {what}; {_fix_hint(manifest, root)}")


def read_manifest(path: str | os.PathLike) -> dict:
    """The parsed ``dataset.json`` of a dataset directory, checked for format and version."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"no dataset at {root}: the path does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset directory")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise DatasetError(
            f"{root} is not a dataset (no {MANIFEST}): an interrupted write or a foreign folder; "
            "make one with `python -m tuner data simulate` or `python -m tuner data import`")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(root, f"{MANIFEST} is unreadable ({type(err).__name__})", None) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _damaged(root, f"{MANIFEST} is not a {FORMAT_NAME} manifest", None)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{mpath} has schema version {version}; this tuner reads version "
                           f"{SCHEMA_VERSION}; {_fix_hint(manifest, root)}")
    needed = ("image_shape", "classes", "counts", "files", "n")
    lacking = [k for k in needed if k not in manifest]
    if lacking:
        raise _damaged(root, f"{MANIFEST} lacks {', '.join(lacking)}", manifest)
    return manifest


def verify_dataset(path: str | os.PathLike, *, full: bool = False) -> dict:
    """Check a dataset against its manifest; return the manifest or raise one-line DatasetError.

    The fast check (default) reads only file sizes, Parquet footers and the label column.
    ``full=True`` also recomputes every file's sha256.
    """
    root = Path(path).expanduser()
    manifest = read_manifest(root)
    h, w = manifest["image_shape"]
    nclass = len(manifest["classes"])
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("split=*/*.parquet")}
    extra = sorted(on_disk - listed)
    if extra:
        raise _damaged(root, f"{extra[0]} is not listed in {MANIFEST} (a stray or leftover file)", manifest)
    rows_seen = {s: 0 for s in SPLITS}
    label_counts = {s: np.zeros(nclass, dtype=np.int64) for s in SPLITS}
    for entry in manifest["files"]:
        rel, fpath = entry["path"], root / entry["path"]
        if not fpath.is_file():
            raise _damaged(root, f"{rel} is missing", manifest)
        size = fpath.stat().st_size
        if size != entry["bytes"]:
            raise _damaged(root, f"{rel} is {size} bytes, the manifest says {entry['bytes']} "
                                 "(truncated or replaced)", manifest)
        if full and _sha256(fpath) != entry["sha256"]:
            raise _damaged(root, f"{rel} fails its sha256 checksum (corrupted)", manifest)
        try:
            pfile = pq.ParquetFile(fpath)
            schema = pfile.schema_arrow
            rows = pfile.metadata.num_rows
            labels = pfile.read(columns=["label"]).column("label").to_numpy()
        except (pa.ArrowException, OSError, KeyError) as err:
            raise _damaged(root, f"{rel} is not readable Parquet ({_short(err)})", manifest) from None
        image_type = schema.field("image").type if "image" in schema.names else None
        if not (isinstance(image_type, pa.FixedSizeListType) and image_type.list_size == h * w):
            raise _damaged(root, f"{rel} has image column {image_type}, the manifest says "
                                 f"{h}x{w} images", manifest)
        if rows != entry["rows"]:
            raise _damaged(root, f"{rel} has {rows} rows, the manifest says {entry['rows']}", manifest)
        if len(labels) and (labels.min() < 0 or labels.max() >= nclass):
            raise _damaged(root, f"{rel} has labels outside 0..{nclass - 1}", manifest)
        rows_seen[entry["split"]] += rows
        label_counts[entry["split"]] += np.bincount(labels, minlength=nclass)
    for split in SPLITS:
        stated = manifest["counts"].get(split, {})
        for i, cls in enumerate(manifest["classes"]):
            if int(stated.get(cls, 0)) != int(label_counts[split][i]):
                raise _damaged(root, f"{MANIFEST} counts {stated.get(cls, 0)} {cls} images in "
                                     f"{split}, the files hold {label_counts[split][i]}", manifest)
    if sum(rows_seen.values()) != manifest["n"]:
        raise _damaged(root, f"{MANIFEST} says {manifest['n']} images, the files hold "
                             f"{sum(rows_seen.values())}", manifest)
    return manifest


def _short(err: BaseException) -> str:
    """First line of a pyarrow error, trimmed: enough to tell truncation from a bad format."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------- loading



def load_dataset(
    path: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    verify: bool | str = True,
) -> LensingData:
    """Load a dataset (or some of its splits) into numpy arrays.

    Args:
        path: dataset directory.
        splits: splits to load (default all); rows come in train, val, test order.
        verify: ``True``/``"fast"`` checks sizes, footers and counts (cheap);
            ``"full"`` also checks sha256 checksums (reads every byte twice); ``False`` skips.

    Images are read one row group at a time straight into a single preallocated (N, 1, H, W)
    float32 array (through pyarrow and one bulk copy for files this store did not write): no
    Python step per image.
    """
    root = Path(path).expanduser()
    if verify not in (True, False, "fast", "full"):
        raise DataError(f"verify must be True, False, 'fast' or 'full', got {verify!r}")
    manifest = verify_dataset(root, full=verify == "full") if verify else read_manifest(root)
    wanted = check_splits(SPLITS if splits is None else ([splits] if isinstance(splits, str) else splits))
    h, w = manifest["image_shape"]
    files = [f for s in SPLITS if s in wanted for f in manifest["files"] if f["split"] == s]
    n = sum(int(f["rows"]) for f in files)
    images = np.empty((n, 1, h, w), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    targets = np.full(n, np.nan, dtype=np.float32)
    split_col = np.empty(n, dtype="<U5")
    param_parts: dict[str, list[np.ndarray]] = {k: [] for k in manifest.get("params", {})}
    pos = 0
    for entry in files:
        try:
            pos = _read_file(root / entry["path"], images, labels, targets, param_parts, pos, h * w)
        except (pa.ArrowException, OSError, KeyError, ValueError) as err:
            raise _damaged(root, f"{entry['path']} could not be read ({_short(err)})", manifest) from None
        split_col[pos - int(entry["rows"]) : pos] = entry["split"]
    if pos != n:
        raise _damaged(root, f"the files hold {pos} rows, the manifest says {n}", manifest)
    params = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in param_parts.items()}
    return LensingData(images=images, labels=labels, targets=targets, splits=split_col,
                       classes=tuple(manifest["classes"]), manifest=manifest, params=params)


def _read_file(fpath: Path, images: np.ndarray, labels: np.ndarray, targets: np.ndarray,
               param_parts: dict[str, list[np.ndarray]], pos: int, width: int) -> int:
    """Copy one part file into the preallocated arrays from ``pos``; return the next position.

    Each row group's images are read straight into ``images`` by :mod:`lensdata.parquet_pages`
    when the file has the layout this store writes, else (older files, other writers) through
    pyarrow; the small columns always come through pyarrow.
    """
    pfile = pq.ParquetFile(fpath, memory_map=True, pre_buffer=False)
    metadata = pfile.metadata
    leaf = _image_leaf(metadata)
    columns = ["label", "target", *param_parts]
    flat_out = images.reshape(len(images), -1)
    pool = pa.default_memory_pool()
    for group in range(metadata.num_row_groups):
        table = pfile.read_row_group(group, columns=columns)
        end = pos + table.num_rows
        fast = leaf is not None and parquet_pages.read_float_values(fpath, metadata, group, leaf,
                                                                     flat_out[pos:end])
        if not fast:
            _copy_images(pfile.read_row_group(group, columns=["image"]).column("image"),
                         flat_out[pos:end], width)
        labels[pos:end] = table.column("label").to_numpy()
        targets[pos:end] = table.column("target").to_numpy()  # nulls arrive as NaN
        for name, parts in param_parts.items():
            parts.append(table.column(name).to_numpy())
        pos = end
        del table
        pool.release_unused()  # else mimalloc keeps every group's buffers until the load ends
    return pos


def _image_leaf(metadata: pq.FileMetaData) -> int | None:
    """Index of the image column's one leaf (its float values) in the Parquet schema, if there is one."""
    leaves = [i for i in range(metadata.num_columns)
              if metadata.schema.column(i).path.split(".")[0] == "image"]
    return leaves[0] if len(leaves) == 1 else None


def _copy_images(column: pa.ChunkedArray, out: np.ndarray, width: int) -> None:
    """One bulk copy per chunk: view the list's flat float32 values as (rows, H*W)."""
    if len(column) != len(out):  # read apart from the other columns, so no one else compares lengths
        raise ValueError(f"the image column holds {len(column)} rows, the other columns {len(out)}")
    row = 0
    for chunk in column.chunks:
        values = chunk.flatten().to_numpy(zero_copy_only=True)
        out[row : row + len(chunk)] = values.reshape(len(chunk), width)
        row += len(chunk)


# ---------------------------------------------------------------- inspection


def arrow_dataset(path: str | os.PathLike) -> pads.Dataset:
    """The dataset as a ``pyarrow.dataset.Dataset`` (one table, ``split`` from the hive partitions)."""
    return pads.dataset(Path(path).expanduser(), format="parquet", partitioning="hive",
                        exclude_invalid_files=True)


def dataset_info(path: str | os.PathLike) -> str:
    """A short report: source, image shape, counts per split and class, value and target ranges."""
    root = Path(path).expanduser()
    m = verify_dataset(root)
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
    if stats.get("image_min") is not None:
        lines.append(f"values     min {stats['image_min']:.4g}, max {stats['image_max']:.4g}, "
                     f"mean {stats['image_mean']:.4g}, std {stats['image_std']:.4g}")
    if stats.get("n_targets"):
        lines.append(f"target     log10(m_a/eV) for {stats['n_targets']} images, "
                     f"range [{stats['target_min']:.4g}, {stats['target_max']:.4g}]")
    else:
        lines.append("target     none (classification and anomaly detection only)")
    if m.get("params"):
        lines.append(f"params     {', '.join(m['params'])}")
    lines.append("verified   sizes, footers and counts (full sha256: load_dataset(..., verify='full'))")
    return "\n".join(lines)
