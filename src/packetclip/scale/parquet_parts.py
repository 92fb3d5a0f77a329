"""One Parquet file from Parquet parts encoded elsewhere, by copying bytes: the driver of a Ray ingest stays a
byte copier while the workers do the encoding.

Why: encoding the flow and packet tables is about a quarter of an ingest's work. Done by the one driver, it is
a serial share that caps the speed-up of N workers (two workers on two cores gained ~1x). A Parquet file is
``PAR1``, row groups (self-contained column chunks: page headers hold no file offsets), a Thrift footer and
``PAR1``; so the parts' row groups are copied one after another and one footer is written whose row groups'
offsets are shifted by where their bytes landed. Parts must share one schema (checked; a part that differs is
cast and re-encoded here) and carry no page index or bloom filters (offsets into the file; checked).

The footer is Thrift's compact protocol; :func:`_read_struct` / :func:`_write_struct` round-trip it field by
field (unknown fields kept as they are), so only the offset fields named below are touched.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b"PAR1"

# compact protocol type ids
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# FileMetaData / RowGroup / ColumnChunk / ColumnMetaData field ids (parquet.thrift)
FMD_SCHEMA, FMD_NUM_ROWS, FMD_ROW_GROUPS, FMD_KV = 2, 3, 4, 5
RG_COLUMNS, RG_FILE_OFFSET, RG_ORDINAL = 1, 5, 7
CC_FILE_OFFSET, CC_META, CC_OFFSET_INDEX, CC_COLUMN_INDEX = 2, 3, 4, 6
CM_DATA_PAGE, CM_INDEX_PAGE, CM_DICT_PAGE, CM_BLOOM = 9, 10, 11, 14


class PartError(ValueError):
    """A part that cannot be copied as bytes (page index, bloom filter, encryption)."""


# --- Thrift compact protocol: a struct is a list of [field id, type, value] --------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _read_value(buf: bytes, pos: int, ttype: int):
    if ttype in (_TRUE, _FALSE):          # only inside containers: one byte
        return buf[pos] == _TRUE, pos + 1
    if ttype == _BYTE:
        return buf[pos], pos + 1
    if ttype in (_I16, _I32, _I64):
        n, pos = _varint(buf, pos)
        return _zigzag(n), pos
    if ttype == _DOUBLE:
        return buf[pos:pos + 8], pos + 8
    if ttype == _BINARY:
        n, pos = _varint(buf, pos)
        return bytes(buf[pos:pos + n]), pos + n
    if ttype in (_LIST, _SET):
        head = buf[pos]
        pos += 1
        size, etype = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        items = []
        for _ in range(size):
            item, pos = _read_value(buf, pos, etype)
            items.append(item)
        return (etype, items), pos
    if ttype == _MAP:
        size, pos = _varint(buf, pos)
        if size == 0:
            return (0, 0, []), pos
        kt, vt = buf[pos] >> 4, buf[pos] & 0x0F
        pos += 1
        pairs = []
        for _ in range(size):
            k, pos = _read_value(buf, pos, kt)
            v, pos = _read_value(buf, pos, vt)
            pairs.append((k, v))
        return (kt, vt, pairs), pos
    if ttype == _STRUCT:
        return _read_struct(buf, pos)
    raise PartError(f"unknown Thrift type {ttype}")


def _read_struct(buf: bytes, pos: int) -> tuple[list, int]:
    fields: list = []
    last = 0
    while True:
        head = buf[pos]
        pos += 1
        if head == 0:
            return fields, pos
        ttype, delta = head & 0x0F, head >> 4
        if delta:
            fid = last + delta
        else:
            n, pos = _varint(buf, pos)
            fid = _zigzag(n)
        if ttype in (_TRUE, _FALSE):
            value = ttype == _TRUE
        else:
            value, pos = _read_value(buf, pos, ttype)
        fields.append([fid, ttype, value])
        last = fid


def _put_varint(out: bytearray, n: int) -> None:
    while True:
        if n < 0x80:
            out.append(n)
            return
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _write_value(out: bytearray, ttype: int, value) -> None:
    if ttype in (_TRUE, _FALSE):
        out.append(_TRUE if value else _FALSE)
    elif ttype == _BYTE:
        out.append(value & 0xFF)
    elif ttype in (_I16, _I32, _I64):
        _put_varint(out, (value << 1) ^ (value >> 63))
    elif ttype == _DOUBLE:
        out += value
    elif ttype == _BINARY:
        _put_varint(out, len(value))
        out += value
    elif ttype in (_LIST, _SET):
        etype, items = value
        if len(items) < 15:
            out.append((len(items) << 4) | etype)
        else:
            out.append(0xF0 | etype)
            _put_varint(out, len(items))
        for item in items:
            _write_value(out, etype, item)
    elif ttype == _MAP:
        kt, vt, pairs = value
        _put_varint(out, len(pairs))
        if pairs:
            out.append((kt << 4) | vt)
            for k, v in pairs:
                _write_value(out, kt, k)
                _write_value(out, vt, v)
    elif ttype == _STRUCT:
        _write_struct(out, value)
    else:
        raise PartError(f"unknown Thrift type {ttype}")


def _write_struct(out: bytearray, fields: list) -> None:
    last = 0
    for fid, ttype, value in fields:
        wire_type = (_TRUE if value else _FALSE) if ttype in (_TRUE, _FALSE) else ttype
        delta = fid - last
        if 0 < delta <= 15:
            out.append((delta << 4) | wire_type)
        else:
            out.append(wire_type)
            _put_varint(out, (fid << 1) ^ (fid >> 63))
        if ttype not in (_TRUE, _FALSE):
            _write_value(out, ttype, value)
        last = fid
    out.append(0)


def _field(fields: list, fid: int):
    for f in fields:
        if f[0] == fid:
            return f
    return None


# --- parts and their concatenation ---------------------------------------------------------------------------

def footer_of(data: bytes | memoryview) -> tuple[list, int]:
    """(FileMetaData fields, where the footer starts) of a whole Parquet file in memory."""
    if bytes(data[:4]) != MAGIC or bytes(data[-4:]) != MAGIC:
        raise PartError("not a Parquet file (or an encrypted one)")
    length = struct.unpack("<I", bytes(data[-8:-4]))[0]
    start = len(data) - 8 - length
    meta, _ = _read_struct(bytes(data[start:len(data) - 8]), 0)
    return meta, start


def encode_table(table: pa.Table, row_group_size: int | None = None, **writer_options) -> bytes:
    """A table as Parquet bytes that :class:`PartConcat` can copy (no page index, no bloom filters)."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, write_page_index=False, **writer_options) as writer:
        writer.write_table(table, row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


class PartConcat:
    """Append Parquet parts (whole files as bytes) to one file; ``close`` writes the merged footer.

    ``reencode(table) -> bytes`` is called for a part whose schema differs from the first part's, with the part
    cast to the first part's Arrow schema."""

    def __init__(self, path: str | Path, reencode=None):
        self.fh = open(path, "wb")
        self.fh.write(MAGIC)
        self.pos = len(MAGIC)
        self.reencode = reencode
        self.meta: list | None = None
        self.schema_key: tuple | None = None
        self.arrow_schema: pa.Schema | None = None
        self.row_groups: list = []
        self.rows = 0

    def append(self, data) -> None:
        """One part: bytes, or any buffer (a numpy array straight from Ray's object store: no copy)."""
        if data is None or len(data) == 0:
            return
        data = memoryview(data).cast("B")
        meta, footer_start = footer_of(data)
        key = self._schema_key(meta)
        if self.meta is None:
            self.meta, self.schema_key = meta, key
            self.arrow_schema = pq.read_schema(pa.BufferReader(pa.py_buffer(data)))
        elif key != self.schema_key:
            if self.reencode is None:
                raise PartError("a part's schema differs from the first part's")
            table = pq.read_table(pa.BufferReader(pa.py_buffer(data))).cast(self.arrow_schema)
            data = memoryview(self.reencode(table)).cast("B")
            meta, footer_start = footer_of(data)
            if self._schema_key(meta) != self.schema_key:
                raise PartError("a re-encoded part's schema still differs from the first part's")
        shift = self.pos - len(MAGIC)
        groups = _field(meta, FMD_ROW_GROUPS)
        for group in (groups[2][1] if groups else []):
            self._shift_row_group(group, shift)
            self.row_groups.append(group)
        self.rows += _field(meta, FMD_NUM_ROWS)[2]
        self.fh.write(data[len(MAGIC):footer_start])
        self.pos += footer_start - len(MAGIC)

    @staticmethod
    def _schema_key(meta: list) -> tuple:
        kv = _field(meta, FMD_KV)
        out = bytearray()
        _write_value(out, _LIST, _field(meta, FMD_SCHEMA)[2])
        return bytes(out), repr(kv[2]) if kv else ""

    def _shift_row_group(self, group: list, shift: int) -> None:
        for f in group:
            if f[0] == RG_FILE_OFFSET:
                f[2] += shift
            elif f[0] == RG_ORDINAL:
                f[2] = len(self.row_groups)
        for chunk in _field(group, RG_COLUMNS)[2][1]:
            for f in chunk:
                if f[0] == CC_FILE_OFFSET:
                    f[2] += shift
                elif f[0] in (CC_OFFSET_INDEX, CC_COLUMN_INDEX) or f[0] > CC_COLUMN_INDEX + 1:
                    raise PartError("a part with a page index or encryption cannot be copied as bytes")
            column = _field(chunk, CC_META)[2]
            for f in column:
                if f[0] in (CM_DATA_PAGE, CM_INDEX_PAGE, CM_DICT_PAGE):
                    f[2] += shift
                elif f[0] == CM_BLOOM:
                    raise PartError("a part with a bloom filter cannot be copied as bytes")
        if len(self.row_groups) >= 32767:      # i16 ordinals: drop them past that (they are optional)
            group[:] = [f for f in group if f[0] != RG_ORDINAL]

    def close(self, empty_schema: pa.Schema | None = None) -> int:
        """Write the footer (no part at all: an empty file of ``empty_schema``); returns the rows written."""
        if self.meta is None:
            self.fh.close()
            if empty_schema is not None:
                pq.ParquetWriter(self.fh.name, empty_schema).close()
            return 0
        meta = [list(f) for f in self.meta]
        _field(meta, FMD_NUM_ROWS)[2] = self.rows
        groups = _field(meta, FMD_ROW_GROUPS)
        if groups is None:
            meta.append([FMD_ROW_GROUPS, _LIST, (_STRUCT, self.row_groups)])
            meta.sort(key=lambda f: f[0])
        else:
            groups[2] = (_STRUCT, self.row_groups)
        out = bytearray()
        _write_struct(out, meta)
        self.fh.write(out)
        self.fh.write(struct.pack("<I", len(out)))
        self.fh.write(MAGIC)
        self.fh.close()
        return self.rows
