"""The dataset store: lensing images as hive-partitioned Parquet plus a JSON manifest.

A dataset is a directory::

    DIR/_dataset.json                     manifest: schema version, source, shape, classes, counts,
                                          value ranges, and the size and sha256 of every file
    DIR/split=train/part-00000.parquet    columns: image, label, target, then parameter columns
    DIR/split=val/part-00000.parquet
    DIR/split=test/part-00000.parquet

``image`` is a non-nullable ``fixed_size_binary(H*W*4)`` (Parquet FIXED_LEN_BYTE_ARRAY): each value
is one image's H*W float32 pixels, little-endian and row-major, so ``np.frombuffer(value, "<f4")
.reshape(H, W)`` is the image. ``label`` is an int64 index into the manifest's ``classes``,
``target`` float32 (null where undefined, e.g. the axion mass of a ``cdm`` image) and every other
column a 1-D per-image parameter. The split is the hive partition, not a stored column.

The manifest's name starts with ``_``, which Arrow tools skip, so they read the directory as it is
(each gives every row, with ``split`` from the directory names)::

    pandas.read_parquet(DIR)                                  # split: a categorical column
    pyarrow.parquet.read_table(DIR)
    pyarrow.dataset.dataset(DIR, partitioning="hive").to_table()   # what arrow_dataset returns
    polars.read_parquet(f"{DIR}/**/*.parquet", hive_partitioning=True)
    duckdb.sql(f"SELECT * FROM read_parquet('{DIR}/**/*.parquet', hive_partitioning = true)")

(polars reads a plain directory only when every file in it is Parquet, hence its glob; pyarrow's
``ignore_prefixes`` default is what skips the manifest.)

Writes are atomic: everything goes into a hidden temporary sibling directory, the manifest last,
and the directory is renamed into place, so an interrupted write never looks like a dataset. A
writer holds the destination's lock (:func:`dataset_lock`, a ``flock`` on the hidden sibling
``.NAME.write.lock``) for its whole write, so a second writer of the same directory is refused in
one line naming the first, and the output is checked again at the swap. Holding the lock also
proves that no live writer owns a ``.NAME.tmp-*`` directory there, so the ones a killed writer
left are removed.

Loading checks the dataset first (:mod:`lensdata.checks`). ``verify=True`` (the default, "fast")
costs milliseconds even for large sets: every listed file must exist with its recorded size, its
Parquet footer must be readable with the recorded row count and image width, no unlisted files may
be present, and the label counts per split and class must match the manifest. ``verify="full"``
also recomputes the sha256 of every file (reads every byte: use it after copying a dataset between
machines). Any damage becomes one :class:`~lensdata.errors.DatasetError` line naming the file and
how to rebuild the dataset.

A version-1 directory (manifest ``dataset.json``, images as lists of floats) is refused with one
line that says how to make it again in this version.

Images are stored uncompressed, PLAIN and without a dictionary, so pyarrow's decoding of a row
group is one copy of its bytes; the load then copies each group's values buffer into a single
preallocated ``(N, 1, H, W)`` float32 array: no Python step per image. Two threads share a file's
row groups, so beyond the result at most two groups (:data:`_GROUP_BYTES` each) are alive.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from lensdata.checks import (
    FORMAT_NAME,
    MANIFEST,
    SCHEMA_VERSION,
    check_columns,
    check_replaceable,
    check_vacant,
    column_types,
    damaged,
    image_type,
    read_manifest,
    sha256,
    short_error,
    verify_dataset,
    write_error,
)
from lensdata.dataset import LensingData, check_splits
from lensdata.errors import DataError, DatasetError
from lensdata.files import write_json
from lensdata.info import image_stats
from lensdata.names import SPLITS

__all__ = ["FORMAT_NAME", "MANIFEST", "SCHEMA_VERSION", "arrow_dataset", "dataset_lock", "load_dataset",
           "read_manifest", "verify_dataset", "write_dataset"]

_FILE_BYTES = 256 * 2**20  # image bytes per part file: several files for big sets, one for small
_GROUP_BYTES = 2 * 2**20  # image bytes per row group; a load holds two beside its result (bench/load.py)
# Read part files through a memory map: bench/load.py measured it faster, and allocating less, than reads
# into buffers. The mapped pages count in the resident set while a file is read, but are page cache.
_MEMORY_MAP = True


# ---------------------------------------------------------------- writing

_held = threading.local()  # the destinations this thread holds the lock of: the lock is re-entrant per thread


@contextlib.contextmanager
def dataset_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the one-writer lock of the dataset directory ``out`` (re-entrant within a thread).

    A command takes it before its slow work (simulating, reading files) and :func:`write_dataset`
    takes it again, so one lock covers the whole write. The lock is a ``flock`` on the hidden sibling
    ``.NAME.write.lock``, which the kernel drops when its holder ends, however it ends; the file holds
    the holder's process id and host, and goes when the lock is let go. While it is held, every
    ``.NAME.tmp-*`` directory there is a dead writer's, and is removed.

    Raises:
        DatasetError: another live writer holds the lock (naming it).
        DataError: the folder that holds ``out`` cannot be written.
    """
    out, key = Path(out).expanduser(), Path(out).expanduser().absolute()
    held = _held.__dict__.setdefault("paths", set())
    if key in held:
        yield
        return
    path = key.parent / f".{out.name}.write.lock"
    try:
        key.parent.mkdir(parents=True, exist_ok=True)
        fh = _take_lock(path, out)
    except OSError as err:
        raise write_error(out, err) from None
    held.add(key)
    try:
        fh.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        for stale in key.parent.glob(f".{glob.escape(out.name)}.tmp-*"):  # a dead writer's: this one holds the lock
            shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        held.discard(key)
        path.unlink(missing_ok=True)  # before the lock goes: a writer that opened it meanwhile sees a new file
        fh.close()


def _take_lock(path: Path, out: Path) -> IO[str]:
    """The lock file ``path``, open, emptied and exclusively locked; a DatasetError naming its holder if taken."""
    import fcntl

    while True:
        fh = open(path, "a+")  # noqa: SIM115 - the caller closes it
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise DatasetError(f"{out} is being written by {holder}; wait for it to end, or write the dataset "
                               "elsewhere") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            fh.seek(0)
            fh.truncate()
            return fh
        fh.close()  # its holder removed it as this one opened it: lock the file there now


def write_dataset(
    out: str | os.PathLike,
    columns: dict[str, np.ndarray],
    *,
    classes: Sequence[str],
    source: str,
    instrument: str | None,
    seed: int | None,
    extra_meta: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a dataset directory atomically, under its lock (:func:`dataset_lock`), and return its path.

    Args:
        out: target directory. An existing dataset there (of any version) is replaced when
            ``overwrite`` (else refused); an empty directory is used; any other existing path, or a
            dataset with other files beside its own, is refused (never deletes user files). This is
            checked again at the swap. A write that fails (a full disk) is one DataError line and
            leaves ``out`` as it was.
        columns: ``image`` (N, H, W) or (N, 1, H, W) float; ``label`` (N,) int in
            ``range(len(classes))``; ``split`` (N,) of train/val/test; optional ``target`` (N,)
            float (NaN is stored as null); any other 1-D (N,) arrays are kept as parameter columns.
        classes: class names in label order.
        source: who made it, e.g. ``"simulate"`` or ``"deeplense-import"``.
        instrument: simulator instrument or instrument model (``"model2"``), if any.
        seed: seed that made the data or split, if any.
        extra_meta: more JSON-serialisable facts, stored under ``"extra"`` in the manifest.
        overwrite: whether a dataset already at ``out`` may be replaced.

    Rows are grouped by split (train, val, test); within a split the given order is kept.
    """
    out = Path(out).expanduser()
    images, labels, splits, targets, params = check_columns(columns, classes)
    tmp = out.absolute().parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    with dataset_lock(out):
        try:
            check_replaceable(out)
            tmp.mkdir()
        except OSError as err:  # not writable
            raise write_error(out, err) from None
        try:
            files = _write_parts(tmp, images, labels, splits, targets, params)
            facts = {"source": source, "instrument": instrument, "seed": seed}
            write_json(tmp / MANIFEST, _manifest(images, labels, splits, targets, params, classes, files, facts,
                                                 extra_meta))
            check_vacant(out, overwrite=overwrite)  # again: a writer that takes no lock may have been here
            _swap_into_place(tmp, out)
        except OSError as err:  # a full disk, most often: one line, and the temporary directory goes
            shutil.rmtree(tmp, ignore_errors=True)
            raise write_error(out, err) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _manifest(images: np.ndarray, labels: np.ndarray, splits: np.ndarray, targets: np.ndarray,
              params: dict[str, np.ndarray], classes: Sequence[str], files: list[dict], facts: dict,
              extra_meta: dict | None) -> dict:
    """The manifest of a dataset: where it came from (``facts``), its shape, counts, statistics and files."""
    counts = {s: {c: int(np.sum((splits == s) & (labels == i))) for i, c in enumerate(classes)} for s in SPLITS}
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        **facts,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n": int(images.shape[0]),
        "image_shape": [int(images.shape[1]), int(images.shape[2])],
        "image_dtype": "float32",
        "image_encoding": "fixed_size_binary(H*W*4): float32 little-endian, row-major",
        "classes": list(classes),
        "counts": counts,
        "params": {k: str(_arrow_type(v)) for k, v in params.items()},
        "has_targets": bool(np.isfinite(targets).any()),
        "stats": image_stats(images, targets),
        "files": files,
        "extra": extra_meta or {},
    }


def _write_parts(tmp: Path, images: np.ndarray, labels: np.ndarray, splits: np.ndarray, targets: np.ndarray,
                 params: dict[str, np.ndarray]) -> list[dict]:
    """Write every split's part files under ``tmp``; return their manifest entries."""
    _, h, w = images.shape
    rows_per_file = max(1, _FILE_BYTES // (h * w * 4))
    rows_per_group = max(1, _GROUP_BYTES // (h * w * 4))
    files = []
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
                          "bytes": path.stat().st_size, "sha256": sha256(path)})
    return files


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
    """One part file's table; the images' little-endian bytes become the binary values without a copy
    when they already are contiguous ``<f4``."""
    n, h, w = images.shape
    pixels = pa.py_buffer(np.ascontiguousarray(images, dtype="<f4"))
    fields = [pa.field("image", image_type(h, w), nullable=False),
              pa.field("label", pa.int64(), nullable=False), pa.field("target", pa.float32())]
    arrays = [pa.FixedSizeBinaryArray.from_buffers(image_type(h, w), n, [None, pixels]), pa.array(labels),
              pa.array(targets, type=pa.float32(), from_pandas=True)]  # NaN -> null
    for name, values in params.items():
        fields.append(pa.field(name, _arrow_type(values)))
        arrays.append(pa.array(values.astype(str) if values.dtype.kind in "OS" else values,
                               type=_arrow_type(values)))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _write_parquet(table: pa.Table, path: Path, rows_per_group: int) -> None:
    """Every column uncompressed; images PLAIN, without dictionary or statistics; a page index.

    The image pages then hold the raw bytes of whole images, which every Parquet reader decodes
    with one copy. The small columns are a fraction of a percent of the file, and a codec costs
    more per column chunk than the few values in it are worth (zstd: five times the read time of
    uncompressed labels in 128-row groups). Data Page V1 (pyarrow's default, the most widely
    read): a required flat column has no levels, so V2 pages would change nothing but the header.

    The page index (apache/parquet-format PageIndex.md) moves page statistics out of the page
    headers, and that is why it is written: without it pyarrow ends every page header with an
    optional statistics struct (empty for the images), and one zeroed byte there ends the header
    early, so pyarrow reads the page's values a byte or two too soon without any error (pyarrow
    does not check that a chunk's pages use up its bytes). A header that ends with its required
    fields can only fail to parse or grow past its page, which pyarrow reports (tests/lensdata:
    every damaged byte of the headers and footer gives an error or the exact data).
    """
    small = [c for c in table.column_names if c != "image"]
    pq.write_table(
        table, path,
        row_group_size=rows_per_group,
        compression="NONE",
        use_dictionary=[c for c in small if pa.types.is_string(table.schema.field(c).type)],
        column_encoding={"image": "PLAIN"},
        write_statistics=small,
        data_page_version="1.0",
        write_page_index=True,
        write_page_checksum=False,
    )
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished temporary directory to ``out``, replacing an old dataset there."""
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, trash)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(trash, out)  # the old dataset stays where it was
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, out)


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

    Images are read with pyarrow one row group at a time and copied straight into a single
    preallocated (N, 1, H, W) float32 array: no Python step per image. Whatever a file holds, the
    result is its exact values or one DatasetError line, never a misplaced row.
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
    types = column_types(manifest)
    image_bytes = images.reshape(n, h * w).view(np.uint8)  # (N, H*W*4), the same memory
    pos = 0
    with ThreadPoolExecutor(1, thread_name_prefix="lensdata-read") as reader:
        for entry in files:
            rows = int(entry["rows"])
            try:
                _read_file(root / entry["path"], reader, image_bytes[pos : pos + rows], labels[pos : pos + rows],
                           targets[pos : pos + rows], param_parts, types)
            except (pa.ArrowException, OSError, KeyError, ValueError) as err:
                raise damaged(root, f"{entry['path']} could not be read ({short_error(err)})", manifest) from None
            finally:
                pa.default_memory_pool().release_unused()  # the last groups' memory, kept for reuse till now
            split_col[pos : pos + rows] = entry["split"]
            pos += rows
    if sys.byteorder == "big":  # the bytes are little-endian floats
        images.byteswap(inplace=True)
    params = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in param_parts.items()}
    return LensingData(images=images, labels=labels, targets=targets, splits=split_col,
                       classes=tuple(manifest["classes"]), manifest=manifest, params=params)


def _read_file(fpath: Path, reader: Executor, image_bytes: np.ndarray, labels: np.ndarray, targets: np.ndarray,
               param_parts: dict[str, list[np.ndarray]], types: dict[str, str]) -> None:
    """Fill the rows of the output arrays that belong to one part file (ValueError if it has other rows
    or other column types than ``types``, which verification may not have seen).

    The small columns come in one read. The images come one row group at a time, read by pyarrow
    and copied by numpy, which both release the GIL: ``reader`` (one thread) does the second half
    of the groups while this thread does the first, each with its own ParquetFile, so at most two
    groups are alive. On two cores that loads 1.8x as fast as one thread doing both (the
    bench/load.py set). The pool is not released between groups: mimalloc hands a freed group's
    memory to the next one, where returning it to the system would cost a page fault per 4 KiB on
    every group (a fifth slower).
    """
    pfile = pq.ParquetFile(fpath, memory_map=_MEMORY_MAP, pre_buffer=False)
    small = pfile.read(columns=["label", "target", *param_parts], use_threads=False)
    if small.num_rows != len(labels):
        raise ValueError(f"the file holds {small.num_rows} rows, the manifest says {len(labels)}")
    for name in small.column_names:
        if str(small.schema.field(name).type) != types[name]:
            raise ValueError(f"the {name} column is {small.schema.field(name).type}, the manifest says {types[name]}")
    if small.column("label").null_count:
        raise ValueError("the label column has nulls")
    labels[:] = small.column("label").to_numpy()
    targets[:] = small.column("target").to_numpy()  # nulls arrive as NaN
    for name, parts in param_parts.items():
        parts.append(small.column(name).to_numpy())
    del small
    groups = pfile.metadata.num_row_groups
    starts = np.cumsum([0] + [pfile.metadata.row_group(g).num_rows for g in range(groups)]).tolist()
    if starts[-1] != len(image_bytes):  # the footer and the columns read disagree
        raise ValueError(f"the row groups hold {starts[-1]} rows, the columns {len(image_bytes)}")
    half = (groups + 1) // 2
    second = reader.submit(_copy_groups, fpath, range(half, groups), starts, image_bytes)
    try:
        _copy_groups(pfile, range(half), starts, image_bytes)
    finally:
        failed = second.exception()  # waits: no copy may outlive this call
    if failed is not None:
        raise failed


def _copy_groups(source: Path | pq.ParquetFile, groups: range, starts: list[int], image_bytes: np.ndarray) -> None:
    """Read these row groups' images and copy each into its rows (``starts[g]`` to ``starts[g + 1]``)."""
    if not groups:
        return
    pfile = source if isinstance(source, pq.ParquetFile) else pq.ParquetFile(source, memory_map=_MEMORY_MAP)
    for group in groups:
        rows = image_bytes[starts[group] : starts[group + 1]]
        got = _copy_images(pfile.read_row_group(group, columns=["image"], use_threads=False).column("image"), rows)
        if got != len(rows):
            raise ValueError(f"row group {group} holds {got} images, its footer says {len(rows)}")


def _copy_images(column: pa.ChunkedArray, out: np.ndarray) -> int:
    """Copy a row group's images (raw bytes) into the first rows of ``out``; return how many.

    One copy per chunk: the values buffer of a FixedSizeBinaryArray holds its images back to back,
    from ``offset`` images in (a sliced array shares its parent's buffer).
    """
    width, row = out.shape[1], 0
    if column.type != pa.binary(width):
        raise ValueError(f"the image column is {column.type}, the manifest says {pa.binary(width)}")
    for chunk in column.chunks:
        if not len(chunk):
            continue
        if chunk.null_count:
            raise ValueError("the image column has nulls")
        if row + len(chunk) > len(out):
            raise ValueError(f"the image column holds more than {len(out)} rows")
        values = np.frombuffer(chunk.buffers()[1], np.uint8, count=len(chunk) * width, offset=chunk.offset * width)
        out[row : row + len(chunk)] = values.reshape(len(chunk), width)
        row += len(chunk)
    return row


# ---------------------------------------------------------------- other readers


def arrow_dataset(path: str | os.PathLike) -> pads.Dataset:
    """The dataset as a ``pyarrow.dataset.Dataset`` (one table, ``split`` from the hive partitions).

    No flags beyond the partitioning: pyarrow skips the ``_dataset.json`` manifest by its name.
    """
    return pads.dataset(Path(path).expanduser(), format="parquet", partitioning="hive")
