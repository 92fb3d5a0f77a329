"""Parquet parts encoded apart and copied into one file as bytes read back as the concatenated table: row
groups, offsets, dictionary pages, a part of another schema (cast and re-encoded), empty output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from packetclip.scale.parquet_parts import PartConcat, PartError, _write_struct, encode_table, footer_of


def _table(n: int, offset: int, rng) -> pa.Table:
    return pa.table({"a": pa.array(np.arange(n, dtype=np.int64) + offset),
                     "s": pa.array([f"capture{offset % 3}"] * n),
                     "v": pa.array([bytes(rng.integers(0, 255, 16, dtype=np.uint8)) for _ in range(n)], pa.binary(16)),
                     "f": pa.array(rng.random(n))})


def _encode(table: pa.Table) -> bytes:
    return encode_table(table, use_dictionary=["s"], row_group_size=10_000)


def test_parts_copied_as_bytes_read_back_as_the_concatenation(tmp_path):
    rng = np.random.default_rng(0)
    tables = [_table(n, i * 100_000, rng) for i, n in enumerate([5, 25_000, 3, 12_000])]
    odd = _table(7, 999, rng)
    odd = odd.set_column(0, "a", odd.column(0).cast(pa.int32()))     # another schema: cast, re-encoded
    out = PartConcat(tmp_path / "x.parquet", reencode=_encode)
    for t in tables:
        out.append(_encode(t))
    out.append(None)
    out.append(_encode(odd))
    assert out.close() == sum(t.num_rows for t in tables) + 7
    expected = pa.concat_tables([*tables, odd.cast(tables[0].schema)])
    got = pq.read_table(tmp_path / "x.parquet")
    assert got.equals(expected)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "x.parquet"), expected.to_pandas())
    meta = pq.ParquetFile(tmp_path / "x.parquet").metadata
    assert meta.num_row_groups == 1 + 3 + 1 + 2 + 1
    assert [meta.row_group(i).num_rows for i in range(3)] == [5, 10_000, 10_000]


def test_footer_round_trips_and_page_indexes_are_refused(tmp_path):
    data = _encode(_table(100, 0, np.random.default_rng(1)))
    meta, start = footer_of(data)
    out = bytearray()
    _write_struct(out, meta)
    assert bytes(out) == data[start:-8]
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, _table(1, 0, np.random.default_rng(2)).schema, write_page_index=True) as w:
        w.write_table(_table(50, 0, np.random.default_rng(2)))
    with pytest.raises(PartError):
        PartConcat(tmp_path / "y.parquet").append(sink.getvalue().to_pybytes())


def test_no_parts_writes_an_empty_table_of_the_schema(tmp_path):
    schema = pa.schema([("a", pa.int64())])
    assert PartConcat(tmp_path / "z.parquet").close(empty_schema=schema) == 0
    assert pq.read_table(tmp_path / "z.parquet").schema.equals(schema)
