"""Read a plain float32 list column of a Parquet file straight into numpy, without pyarrow decoding.

pyarrow spends most of a load rebuilding list offsets from repetition and definition levels
(apache/arrow#34510), although for a non-nullable fixed-size list those levels say nothing the
schema does not. When a column chunk is laid out exactly as the store writes it (uncompressed,
PLAIN, no dictionary, Data Page V2, no nulls), every page is a small header, the level bytes,
then the raw little-endian values of whole rows, so the values can be read with one ``readinto``
per page into the caller's array. :func:`read_float_values` checks that layout strictly and
answers ``False`` at the first thing it does not expect, so that the caller reads the chunk with
pyarrow instead (which also reports damage in its own words).

Page headers are Thrift compact-protocol structs (apache/parquet-format ``parquet.thrift``,
apache/thrift ``doc/specs/thrift-compact-protocol.md``); the small decoder here keeps the i32
fields and nested structs it is asked for and steps over everything else.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

# Compact-protocol type ids (field headers; collection elements use the same ids, bool as 1 or 2).
_STOP, _TRUE, _FALSE, _I8, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT, _UUID = range(14)
_MAX_DEPTH = 8  # structs nest two deep in a page header; more is damage, not data

# parquet.thrift: PageType.DATA_PAGE_V2 and Encoding.PLAIN.
_DATA_PAGE_V2 = 3
_PLAIN = 0

# The PageHeader fields we need, by field id: ``int`` for an i32 (or enum), a dict for a struct's fields.
# DataPageHeaderV2: num_values, num_nulls, num_rows, encoding, definition and repetition levels' lengths.
_V2_FIELDS = {1: int, 2: int, 3: int, 4: int, 5: int, 6: int}
# PageHeader: type, uncompressed_page_size, compressed_page_size, data_page_header_v2.
_HEADER_FIELDS = {1: int, 2: int, 3: int, 8: _V2_FIELDS}

_HEADER_READ = 256  # bytes read to parse a header; doubled while a header (statistics) is longer
_HEADER_MAX = 64 * 2**10  # far longer than any real page header: beyond it, the header is damaged
_FLOAT_LE = np.dtype("<f4")


class _NotApplicable(Exception):
    """The chunk is not in the exact layout the fast path reads: use pyarrow instead."""


class _Short(_NotApplicable):
    """A struct ran past the end of the bytes read so far (read more, or the page is damaged)."""


@dataclass(frozen=True)
class _Page:
    """Where one page's values lie in the file and which rows of the chunk they hold."""

    values_at: int
    first_row: int
    rows: int


def read_float_values(path: str | os.PathLike, metadata: pq.FileMetaData, row_group: int, column: int,
                      out: np.ndarray) -> bool:
    """Read one float column chunk of list rows into ``out``, or say it cannot.

    Args:
        path: the Parquet file.
        metadata: its footer (``ParquetFile.metadata``), already read and checked by pyarrow.
        row_group: row group index.
        column: leaf column index of the list's float values.
        out: (rows of the group, values per row) C-contiguous little-endian float32 array.

    Returns:
        True when ``out`` holds the chunk's values; False when the chunk is not an uncompressed,
        PLAIN, dictionary-free, null-free run of Data Page V2 pages of whole rows of exactly
        ``out.shape[1]`` values each. After False, ``out`` may hold some of the values: read the
        chunk another way.
    """
    with open(path, "rb", buffering=0) as fh:
        try:
            pages = _layout(fh, metadata, row_group, column, out)
            _read_values(fh, pages, out)
        except _NotApplicable:
            return False
    return True


# ---------------------------------------------------------------- the chunk's pages


def _layout(fh: io.FileIO, metadata: pq.FileMetaData, row_group: int, column: int,
            out: np.ndarray) -> list[_Page]:
    """Check the chunk's metadata and every page header; return where each page's values are."""
    group = metadata.row_group(row_group)
    chunk = group.column(column)
    _check_chunk(metadata.schema.column(column), chunk, group.num_rows, out)
    pos, end = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size
    if pos < 0 or end > os.fstat(fh.fileno()).st_size:
        raise _NotApplicable
    pages: list[_Page] = []
    row = 0
    while pos < end:
        header, header_len = _page_header(fh, pos, end)
        page_rows, levels_len, page_len = _check_page(header, out.shape[1])
        pages.append(_Page(values_at=pos + header_len + levels_len, first_row=row, rows=page_rows))
        row += page_rows
        pos += header_len + page_len
    if pos != end or row != group.num_rows:  # pages must tile the chunk exactly and hold all its rows
        raise _NotApplicable
    return pages


def _check_chunk(leaf: pq.ColumnSchema, chunk: pq.ColumnChunkMetaData, rows: int, out: np.ndarray) -> None:
    """Refuse unless schema, chunk and ``out`` all fit a plain copy of uncompressed float values."""
    # FLOAT values of a required list of required elements: one repeated level (rep 1) whose
    # definition level is 1 for every present element and could only be 0 for an empty list.
    schema_ok = (leaf.physical_type == "FLOAT" and leaf.max_repetition_level == 1
                 and leaf.max_definition_level == 1)
    out_ok = (out.dtype == _FLOAT_LE and out.ndim == 2 and out.flags.c_contiguous
              and out.shape[0] == rows and out.shape[1] > 0)
    chunk_ok = (chunk.compression == "UNCOMPRESSED" and not chunk.has_dictionary_page
                and not chunk.file_path and chunk.num_values == out.size)
    if not (schema_ok and out_ok and chunk_ok):
        raise _NotApplicable


def _page_header(fh: io.FileIO, pos: int, end: int) -> tuple[dict, int]:
    """Decode the page header at ``pos``; return its fields and its length in bytes."""
    size = _HEADER_READ
    while True:
        fh.seek(pos)
        buf = fh.read(min(size, end - pos))
        try:
            reader = _Compact(buf)
            return reader.struct(_HEADER_FIELDS), reader.pos
        except _Short:
            if len(buf) < size or size >= _HEADER_MAX:  # cut off by the chunk's end, or damaged
                raise
            size *= 2


def _check_page(header: dict, width: int) -> tuple[int, int, int]:
    """Rows, level bytes and size after the header of a page whose values can be copied as they are."""
    if (header.keys() != _HEADER_FIELDS.keys() or header[8].keys() != _V2_FIELDS.keys()
            or header[1] != _DATA_PAGE_V2):
        raise _NotApplicable
    values, nulls, rows, encoding, def_len, rep_len = (header[8][k] for k in sorted(_V2_FIELDS))
    size, stored = header[2], header[3]
    # With no nulls (num_nulls also counts empty lists) and ``width`` values in every row, the
    # definition levels are all 1 and the repetition levels one 0 then ``width - 1`` ones per row:
    # they tell nothing new, so they are skipped undecoded. Damage to them cannot change the array
    # read here, which comes from the value bytes alone (damage to those, pyarrow does not see
    # either; ``verify="full"``, the file's sha256, catches both).
    ok = (encoding == _PLAIN and nulls == 0 and rows >= 0 and values == rows * width
          and def_len >= 0 and rep_len >= 0 and size == stored == def_len + rep_len + 4 * values)
    if not ok:
        raise _NotApplicable
    return rows, def_len + rep_len, stored


def _read_values(fh: io.FileIO, pages: list[_Page], out: np.ndarray) -> None:
    """One ``readinto`` per page, straight into the rows of ``out`` that the page holds."""
    target = memoryview(out.reshape(-1).view(np.uint8))  # ``out`` is C-contiguous: no copy
    row_bytes = out.shape[1] * out.itemsize
    for page in pages:
        fh.seek(page.values_at)
        view = target[page.first_row * row_bytes : (page.first_row + page.rows) * row_bytes]
        while view:
            got = fh.readinto(view)
            if not got:  # the file ended early (shrunk since its footer was read)
                raise _NotApplicable
            view = view[got:]


# ---------------------------------------------------------------- Thrift compact protocol


class _Compact:
    """A cursor over compact-protocol bytes that decodes just what a page header needs."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        """The next byte."""
        if self.pos >= len(self.buf):
            raise _Short
        self.pos += 1
        return self.buf[self.pos - 1]

    def varint(self) -> int:
        """Unsigned LEB128, at most 10 bytes (an int64)."""
        value = 0
        for shift in range(0, 70, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise _NotApplicable

    def zigzag(self) -> int:
        """A signed int (i16, i32, i64): zigzag-folded, then varint."""
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def fields(self) -> Iterator[tuple[int, int]]:
        """Yield (field id, type) of each field of a struct until its stop byte."""
        last = 0
        while (head := self.byte()) != _STOP:
            kind, delta = head & 0x0F, head >> 4
            last = last + delta if delta else self.zigzag()  # short form: id delta; long form: i16
            yield last, kind

    def struct(self, wanted: dict, depth: int = 0) -> dict:
        """Decode a struct: the fields in ``wanted`` (``int`` or a nested dict of fields), skip the rest."""
        if depth > _MAX_DEPTH:
            raise _NotApplicable
        found: dict = {}
        for fid, kind in self.fields():
            want = wanted.get(fid)
            if want is None:
                self.skip(kind, depth)
            elif isinstance(want, dict) and kind == _STRUCT:
                found[fid] = self.struct(want, depth + 1)
            elif want is int and kind == _I32:
                found[fid] = self.zigzag()
            else:
                raise _NotApplicable  # a known field with an unexpected type: damage
        return found

    def skip(self, kind: int, depth: int, in_field: bool = True) -> None:
        """Step over one value of this type (a bool is a byte inside collections, nothing in a field)."""
        if depth > _MAX_DEPTH:
            raise _NotApplicable
        if kind in (_TRUE, _FALSE):
            self.take(0 if in_field else 1)
        elif kind == _I8:
            self.take(1)
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.take(8)
        elif kind == _UUID:
            self.take(16)
        elif kind == _BINARY:
            self.take(self.varint())
        elif kind in (_LIST, _SET):
            head = self.byte()
            count = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(count):
                self.skip(head & 0x0F, depth + 1, in_field=False)
        elif kind == _MAP:
            count = self.varint()
            types = self.byte() if count else 0
            for _ in range(count):
                self.skip(types >> 4, depth + 1, in_field=False)
                self.skip(types & 0x0F, depth + 1, in_field=False)
        elif kind == _STRUCT:
            for _, inner in self.fields():
                self.skip(inner, depth + 1)
        else:
            raise _NotApplicable

    def take(self, n: int) -> None:
        """Step over ``n`` raw bytes."""
        if self.pos + n > len(self.buf):
            raise _Short
        self.pos += n
