"""Captures → workspace: runs a :class:`~packetclip.traffic.stream.FlowStream` (reader → decoder → flow meter →
packet views) and writes its flows and views through :class:`~packetclip.traffic.workspace.Workspace`.

What a workspace holds (file names live in the workspace module only):

- the manifest: what was ingested, with which settings, per-capture counts and what was skipped or damaged
- the flow table: one row per bidirectional flow (CICFlowMeter columns + ``flow_id``, ``file_index``, ``capture``)
- the packet table: one row per stored packet view: ``packet_number`` (index in its capture), ``file_index``,
  ``flow_id``, ``direction`` (0 forward, 1 backward), ``ts_ns``, ``length`` (bytes on the wire) and ``view``
  (the first ``view_bytes`` bytes from the IP header, masked by default). By default only the first
  :data:`DEFAULT_VIEW_PACKETS` packets of each flow are stored (``keep_all_views`` stores every packet).

Both tables are written in row groups as batches stream through, so memory stays bounded whatever the capture
size, to temporary names renamed into place when complete, the manifest last: a killed ingest leaves the
previous workspace (or none), never a truncated table.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from packetclip import __version__
from packetclip.errors import PacketClipError
from packetclip.traffic.stream import CaptureSummary  # noqa: F401  (re-export: stored per capture in the manifest)
from packetclip.traffic.workspace import Workspace, WorkspaceError  # noqa: F401  (re-export for older imports)

#: Packet views stored per flow by default. The encoders read each flow's first 8-16 packets (Lens and ET-BERT
#: take the first k <= 16, the flow's opening is where protocol behaviour shows), and on real traffic most
#: packets belong to a few long flows whose later packets no encoder reads; storing them was a third of ingest
#: time and most of the packet table. ``keep_all_views`` stores every packet.
DEFAULT_VIEW_PACKETS = 32


@dataclass
class IngestSettings:
    """Everything that changes what ingest produces; stored in the manifest so a workspace describes itself."""

    view_bytes: int = 128
    mask: bool = True
    idle_timeout: float = 120.0
    active_timeout: float = 1800.0
    tcp_close: bool = True
    write_packets: bool = True
    view_packets: int | None = DEFAULT_VIEW_PACKETS   # views stored per flow (None: every packet)

    @property
    def keep_all_views(self) -> bool:
        return self.view_packets is None

    def meter_kwargs(self) -> dict:
        return {"idle_timeout": self.idle_timeout, "active_timeout": self.active_timeout, "tcp_close": self.tcp_close}


def _packet_schema(view_bytes: int) -> pa.Schema:
    # every column is filled from numpy arrays: required (no definition levels to write)
    return pa.schema([
        pa.field("packet_number", pa.int64(), nullable=False),
        pa.field("file_index", pa.int32(), nullable=False),
        pa.field("flow_id", pa.int64(), nullable=False),
        pa.field("direction", pa.int8(), nullable=False),
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
        pa.field("view", pa.binary(view_bytes), nullable=False),
    ])


def _from_numpy(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t) or pa.types.is_boolean(t)


class _FlowTableWriter:
    """Streams finished flows to Parquet in row groups of ``rows_per_group`` (fewer, larger writes are several
    times cheaper than one write per batch); the schema is fixed by the first table."""

    def __init__(self, path: Path, rows_per_group: int = 16_384):
        self.path = path
        self.rows_per_group = rows_per_group
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table is None or table.num_rows == 0:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        self.rows += table.num_rows
        if self.pending_rows >= self.rows_per_group:
            self._drain()

    def _drain(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            # numbers and times come from numpy arrays and are never null: declared required, Parquet writes no
            # definition levels for them (40 % of the flow table's write time)
            schema = pa.schema([f.with_nullable(False) if _from_numpy(f.type) else f
                                for f in self.pending[0].schema])
            # dictionary pages only where values repeat (capture names, end reasons); on the numeric feature
            # columns they cost more time than they save space
            repeated = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                        or pa.types.is_dictionary(f.type)]
            self.writer = pq.ParquetWriter(self.path, schema, use_dictionary=repeated)
        tables = [self._conform(t) for t in self.pending]
        self.writer.write_table(pa.concat_tables(tables))
        self.pending, self.pending_rows = [], 0

    def _conform(self, table: pa.Table) -> pa.Table:
        schema = self.writer.schema
        if table.schema.equals(schema):
            return table
        if table.schema.names == schema.names and all(a.type == b.type for a, b in zip(table.schema, schema)):
            return pa.Table.from_arrays(table.columns, schema=schema)   # only nullability differs: no cast
        return table.cast(schema)

    def close(self, empty_columns: Iterable[str]) -> None:
        self._drain()
        if self.writer is None:
            pd.DataFrame({c: [] for c in empty_columns}).to_parquet(self.path, index=False)
        else:
            self.writer.close()


def ingest_captures(
    captures: Sequence[str | Path],
    out_dir: str | Path,
    *,
    settings: IngestSettings | None = None,
    progress: bool = True,
    strict: bool = False,
    overwrite: bool = False,
) -> Workspace:
    """Read every capture, assemble flows, compute features and packet views, write a workspace.

    A capture that cannot be read at all is reported in the manifest and skipped (``strict=True`` raises
    instead), so one malformed file in a folder of hundreds does not lose the others. A folder that already
    holds a workspace is refused unless ``overwrite``.
    """
    from packetclip.traffic.flows import CIC_FEATURE_COLUMNS
    from packetclip.traffic.stream import CaptureSource, FlowExpiry, FlowStream, FlowUpdate, ViewsPlugin

    settings = settings or IngestSettings()
    paths = [Path(p) for p in captures]
    if not paths:
        raise PacketClipError("no capture files given")
    for p in paths:
        if not p.is_file():
            raise PacketClipError("no such capture file", path=str(p))
    ws = Workspace.create(out_dir, overwrite=overwrite)

    views = ViewsPlugin(first_k=settings.view_packets, n_bytes=settings.view_bytes, mask=settings.mask)
    plugins = [views] if settings.write_packets else []
    sources = [CaptureSource(p) for p in paths]
    stream = FlowStream(sources, settings, plugins, strict=strict)
    started = time.perf_counter()
    sizes = [p.stat().st_size for p in paths]
    bar = _progress(progress)
    task = bar.add_task("ingest", total=sum(sizes)) if bar else None
    stored = 0
    try:
        if bar:
            bar.start()
        with contextlib.ExitStack() as files:
            flow_writer = _FlowTableWriter(files.enter_context(ws.atomic(ws.path("flows").name)))
            packet_writer = None
            if settings.write_packets:
                # no dictionary pages: views and timestamps rarely repeat exactly; dictionary encoding was 2/3
                # of the write time
                packet_writer = pq.ParquetWriter(files.enter_context(ws.atomic(ws.path("packets").name)),
                                                 _packet_schema(settings.view_bytes), use_dictionary=False)
            try:
                for event in stream:
                    if isinstance(event, FlowUpdate):
                        if packet_writer is not None:
                            stored += _write_packets(packet_writer, event.batch, event.extras["views"],
                                                     settings.view_bytes)
                        if bar:
                            i = event.source_index
                            bar.update(task, completed=sum(sizes[:i]) + min(sources[i].position, sizes[i]))
                    elif isinstance(event, FlowExpiry):
                        flow_writer.write(event.flows)
            finally:
                if packet_writer is not None:
                    packet_writer.close()
                flow_writer.close(["flow_id", "file_index", "capture", *CIC_FEATURE_COLUMNS])
        if not settings.write_packets:
            ws.path("packets").unlink(missing_ok=True)   # a replaced workspace keeps no packets of other flows
    finally:
        if bar:
            bar.stop()

    ws.write_manifest(capture_manifest(settings, stream.summaries, stored=stored, flows=flow_writer.rows,
                                       started=started))
    return ws


def capture_manifest(settings, summaries, *, stored: int, flows: int, started: float) -> dict:
    """The manifest of an ingested workspace: settings, per-capture summaries and totals. One builder, so a
    plain ingest and a Ray ingest describe their workspaces identically."""
    return {
        "kind": "capture",
        "packetclip_version": __version__,
        "created_unix": time.time(),
        "settings": asdict(settings),
        "elapsed_s": time.perf_counter() - started,
        "captures": [asdict(s) for s in summaries],
        "damaged_captures": damaged_captures_of(summaries),
        "totals": {
            "packets": sum(s.packets for s in summaries),
            "flow_packets": sum(s.flow_packets for s in summaries),
            "stored_packets": stored,
            "flows": flows,
            "captures": len(summaries),
            "captures_with_errors": sum(1 for s in summaries if s.error),
            "skipped_records": sum(s.skipped_records for s in summaries),
            "bad_link_packets": sum(s.bad_link_packets for s in summaries),
            "truncated_captures": sum(1 for s in summaries if s.truncated_at is not None),
        },
    }


def _write_packets(writer: pq.ParquetWriter, batch, fv, view_bytes: int) -> int:
    """The packets whose views the views plugin kept (``fv.rows``); returns how many."""
    idx = fv.rows
    if idx.size == 0:
        return 0
    views = np.ascontiguousarray(fv.views)
    view_array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(view_bytes), idx.size,
                                                      [None, pa.py_buffer(views)])
    table = pa.table({
        "packet_number": pa.array(batch.first_packet_number + idx.astype(np.int64)),
        "file_index": pa.array(np.full(idx.size, batch.file_index, dtype=np.int32)),
        "flow_id": pa.array(fv.flow_id.astype(np.int64, copy=False)),
        "direction": pa.array(fv.direction.astype(np.int8, copy=False)),
        "ts_ns": pa.array(fv.ts_ns.astype(np.int64, copy=False)),
        "length": pa.array(batch.wirelen[idx].astype(np.int32)),
        "view": view_array,
    }, schema=writer.schema)
    writer.write_table(table)
    return int(idx.size)


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), transient=False)


def damaged_captures_of(summaries: Sequence[CaptureSummary]) -> list[str]:
    """One line per capture that could not be read or was cut short: file, offset and why."""
    lines = []
    for s in summaries:
        if s.error:
            lines.append(s.error if s.error.startswith(s.path) else f"{s.path}: {s.error}")
        elif s.truncated_at is not None:
            why = next((w for w in s.warnings if w), "damaged record")
            lines.append(f"{s.path} (offset {s.truncated_at}): cut short by damage: {' '.join(str(why).split())}")
    return lines


def damaged_captures(workspace: Workspace) -> list[str]:
    """:func:`damaged_captures_of` for a workspace's manifest (one line each, for ``ingest`` and ``info``)."""
    m = workspace.manifest
    if "damaged_captures" in m:
        return list(m["damaged_captures"])
    fields = set(CaptureSummary.__dataclass_fields__)
    return damaged_captures_of([CaptureSummary(**{k: v for k, v in c.items() if k in fields})
                                for c in m.get("captures", [])])


def summary_rows(workspace: Workspace) -> list[tuple[str, str]]:
    """Key figures of a workspace, for ``packetclip info`` and reports; each damaged capture is named on a row
    of its own (file and offset), protocols by name."""
    rows = list(workspace.summary_rows())
    if workspace.kind != "csv":
        rows.extend(("damaged capture", line) for line in damaged_captures(workspace))
    return rows
