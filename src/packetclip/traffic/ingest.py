"""Captures → workspace: the one place that runs reader → decoder → flow meter → packet views and writes Parquet.

A workspace is a folder every later stage reads:

- ``manifest.json``  what was ingested, with which settings, and what was skipped
- ``flows.parquet``  one row per bidirectional flow (CICFlowMeter columns + ``flow_id``, ``file_index``, ``capture``)
- ``packets.parquet`` one row per packet that belongs to a flow: ``packet_number`` (index in its capture),
  ``file_index``, ``flow_id``, ``direction`` (0 forward, 1 backward), ``ts_ns``, ``length`` (bytes on the wire)
  and ``view`` (the first ``view_bytes`` bytes from the IP header, masked by default)

Both tables are written in row groups as batches stream through, so memory stays bounded whatever the capture size.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from packetclip import __version__
from packetclip.errors import PacketClipError

MANIFEST = "manifest.json"
FLOWS = "flows.parquet"
PACKETS = "packets.parquet"


@dataclass
class IngestSettings:
    """Everything that changes what ingest produces; stored in the manifest so a workspace describes itself."""

    view_bytes: int = 128
    mask: bool = True
    idle_timeout: float = 120.0
    active_timeout: float = 1800.0
    tcp_close: bool = True
    write_packets: bool = True

    def meter_kwargs(self) -> dict:
        return {"idle_timeout": self.idle_timeout, "active_timeout": self.active_timeout, "tcp_close": self.tcp_close}


@dataclass
class CaptureSummary:
    path: str
    file_index: int
    packets: int = 0
    bytes: int = 0
    flow_packets: int = 0
    non_ip_packets: int = 0
    flows: int = 0
    skipped_records: int = 0
    bad_link_packets: int = 0          # packets on an interface whose link type we cannot decode
    truncated_at: int | None = None    # file offset where a damaged capture stopped being readable
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Workspace:
    """A folder written by :func:`ingest_captures`; open an existing one with :meth:`open`."""

    root: Path

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        root = Path(root)
        if not (root / MANIFEST).is_file():
            raise PacketClipError("not a packetclip workspace (no manifest.json); create one with `packetclip ingest`",
                                  path=str(root))
        return cls(root)

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / MANIFEST).read_text())

    @property
    def flows_path(self) -> Path:
        return self.root / FLOWS

    @property
    def packets_path(self) -> Path:
        return self.root / PACKETS

    def flows(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.flows_path, columns=list(columns) if columns else None)

    def packets(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.packets_path, columns=list(columns) if columns else None)

    def views(self) -> tuple[np.ndarray, pd.DataFrame]:
        """Packet views as a ``uint8 [n, view_bytes]`` array plus the packet table without the view column."""
        table = pq.read_table(self.packets_path)
        return views_from_column(table.column("view")), table.drop(["view"]).to_pandas()


def views_from_column(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Zero-copy-ish conversion of a fixed_size_binary column to a 2-D uint8 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.byte_width
    buf = column.buffers()[1]
    start = column.offset * width
    return np.frombuffer(buf, dtype=np.uint8, count=len(column) * width, offset=start).reshape(len(column), width)


def _packet_schema(view_bytes: int) -> pa.Schema:
    return pa.schema([
        ("packet_number", pa.int64()),
        ("file_index", pa.int32()),
        ("flow_id", pa.int64()),
        ("direction", pa.int8()),
        ("ts_ns", pa.int64()),
        ("length", pa.int32()),
        ("view", pa.binary(view_bytes)),
    ])


class _FlowTableWriter:
    """Streams finished flows to Parquet in row groups of ``rows_per_group`` (fewer, larger writes are several
    times cheaper than one write per batch); the schema is fixed by the first table."""

    def __init__(self, path: Path, rows_per_group: int = 65_536):
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
            schema = self.pending[0].schema
            # dictionary pages only where values repeat (capture names, end reasons); on the numeric feature
            # columns they cost more time than they save space
            repeated = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                        or pa.types.is_dictionary(f.type)]
            self.writer = pq.ParquetWriter(self.path, schema, use_dictionary=repeated)
        tables = [t if t.schema.equals(self.writer.schema) else t.cast(self.writer.schema) for t in self.pending]
        self.writer.write_table(pa.concat_tables(tables))
        self.pending, self.pending_rows = [], 0

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
) -> Workspace:
    """Read every capture, assemble flows, compute features and packet views, write a workspace.

    A capture that cannot be read at all is reported in the manifest and skipped (``strict=True`` raises
    instead), so one malformed file in a folder of hundreds does not lose the others.
    """
    from packetclip.traffic.decode import decode_batch
    from packetclip.traffic.flows import CIC_FEATURE_COLUMNS, FlowMeter
    from packetclip.traffic.pcap import open_capture
    from packetclip.traffic.views import PacketViewer

    settings = settings or IngestSettings()
    paths = [Path(p) for p in captures]
    if not paths:
        raise PacketClipError("no capture files given")
    for p in paths:
        if not p.is_file():
            raise PacketClipError("no such capture file", path=str(p))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    flow_writer = _FlowTableWriter(out / FLOWS)
    # no dictionary pages: views and timestamps rarely repeat exactly, and dictionary encoding was 2/3 of write time
    packet_writer = (pq.ParquetWriter(out / PACKETS, _packet_schema(settings.view_bytes), use_dictionary=False)
                     if settings.write_packets else None)
    summaries: list[CaptureSummary] = []
    flow_id_base = 0
    started = time.perf_counter()
    total_bytes = sum(p.stat().st_size for p in paths)

    bar = _progress(progress)
    task = bar.add_task("ingest", total=total_bytes) if bar else None
    done_bytes = 0
    try:
        if bar:
            bar.start()
        for file_index, path in enumerate(paths):
            summary = CaptureSummary(path=str(path), file_index=file_index)
            summaries.append(summary)
            meter = FlowMeter(**settings.meter_kwargs())
            viewer = PacketViewer()
            capture_name = path.name
            max_flow_id = -1

            def emit_flows(table: pa.Table) -> None:
                if table is None or table.num_rows == 0:
                    return
                n = table.num_rows
                at = table.schema.get_field_index("flow_id")
                table = table.set_column(at, "flow_id", pc.add(table.column("flow_id"), pa.scalar(flow_id_base, pa.int64())))
                at = table.schema.get_field_index("file_index")
                table = table.set_column(at, "file_index", pa.array(np.full(n, file_index, np.int32)))
                table = table.append_column("capture", pa.array([capture_name]).take(pa.array(np.zeros(n, np.int32))))
                summary.flows += n
                flow_writer.write(table)

            try:
                reader = open_capture(path)
                for batch in reader:
                    batch.file_index = file_index
                    decode_batch(batch)
                    flow_id, direction = meter.update(batch)
                    in_flow = flow_id >= 0
                    summary.packets += len(batch)
                    summary.bytes += int(batch.wirelen.sum())
                    summary.flow_packets += int(in_flow.sum())
                    summary.non_ip_packets += int((~in_flow).sum())
                    if in_flow.any():
                        max_flow_id = max(max_flow_id, int(flow_id.max()))
                    if packet_writer is not None:
                        views = viewer.views(batch, flow_id, direction, n_bytes=settings.view_bytes, mask=settings.mask)
                        _write_packets(packet_writer, batch, flow_id + np.where(in_flow, flow_id_base, 0), direction,
                                       views, in_flow, settings.view_bytes)
                    emit_flows(meter.pop_finished_table())
                    if bar:
                        bar.update(task, completed=done_bytes + min(reader_position(reader), path.stat().st_size))
                emit_flows(meter.flush_table())
                stats = getattr(reader, "stats", None)
                if stats is not None:
                    summary.skipped_records = int(getattr(stats, "skipped_records", 0) or 0)
                    summary.bad_link_packets = int(getattr(stats, "bad_link_packets", 0) or 0)
                    summary.truncated_at = getattr(stats, "truncated_at", None)
                    summary.warnings = [str(w) for w in (getattr(stats, "warnings", None) or [])][:20]
            except PacketClipError as err:
                if strict:
                    raise
                summary.error = err.one_line()
                emit_flows(meter.flush_table())
            flow_id_base += max_flow_id + 1
            done_bytes += path.stat().st_size
            if bar:
                bar.update(task, completed=done_bytes)
    finally:
        if bar:
            bar.stop()
        if packet_writer is not None:
            packet_writer.close()
        flow_writer.close(["flow_id", "file_index", "capture", *CIC_FEATURE_COLUMNS])

    elapsed = time.perf_counter() - started
    manifest = {
        "packetclip_version": __version__,
        "created_unix": time.time(),
        "settings": asdict(settings),
        "elapsed_s": elapsed,
        "captures": [asdict(s) for s in summaries],
        "totals": {
            "packets": sum(s.packets for s in summaries),
            "flow_packets": sum(s.flow_packets for s in summaries),
            "flows": flow_writer.rows,
            "captures": len(summaries),
            "captures_with_errors": sum(1 for s in summaries if s.error),
            "skipped_records": sum(s.skipped_records for s in summaries),
            "bad_link_packets": sum(s.bad_link_packets for s in summaries),
            "truncated_captures": sum(1 for s in summaries if s.truncated_at is not None),
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Workspace(out)


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")


def expand_capture_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the capture files inside them (sorted, recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in CAPTURE_SUFFIXES)
            if not found:
                raise PacketClipError("folder holds no .pcap/.pcapng files", path=str(p))
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise PacketClipError("no such capture file or folder", path=str(p))
    return out


def reader_position(reader) -> int:
    """Bytes consumed so far, if the reader tells; used only for the progress bar."""
    return int(getattr(reader, "position", 0) or 0)


def _write_packets(writer: pq.ParquetWriter, batch, flow_id, direction, views, keep, view_bytes: int) -> None:
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return
    views = np.ascontiguousarray(views[idx])
    view_array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(view_bytes), idx.size,
                                                      [None, pa.py_buffer(views)])
    table = pa.table({
        "packet_number": pa.array(batch.first_packet_number + idx.astype(np.int64)),
        "file_index": pa.array(np.full(idx.size, batch.file_index, dtype=np.int32)),
        "flow_id": pa.array(flow_id[idx].astype(np.int64)),
        "direction": pa.array(direction[idx].astype(np.int8)),
        "ts_ns": pa.array(batch.ts_ns[idx].astype(np.int64)),
        "length": pa.array(batch.wirelen[idx].astype(np.int32)),
        "view": view_array,
    }, schema=writer.schema)
    writer.write_table(table)


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), transient=False)


def summary_rows(workspace: Workspace) -> list[tuple[str, str]]:
    """Key figures of a workspace, for ``packetclip info`` and reports."""
    m = workspace.manifest
    totals = m["totals"]
    rows = [
        ("captures", f"{totals['captures']:,} ({totals['captures_with_errors']} unreadable)"),
        ("packets", f"{totals['packets']:,}"),
        ("packets in flows", f"{totals['flow_packets']:,}"),
        ("flows", f"{totals['flows']:,}"),
        ("skipped records", f"{totals['skipped_records']:,}"),
        ("packets on unsupported link types", f"{totals.get('bad_link_packets', 0):,}"),
        ("captures cut short by damage", f"{totals.get('truncated_captures', 0):,}"),
        ("view bytes / masked", f"{m['settings']['view_bytes']} / {m['settings']['mask']}"),
        ("timeouts idle/active", f"{m['settings']['idle_timeout']} s / {m['settings']['active_timeout']} s"),
        ("ingest time", f"{m['elapsed_s']:.1f} s"),
    ]
    if workspace.flows_path.is_file():
        schema = pq.read_schema(workspace.flows_path)
        if "Protocol" in schema.names:
            protos = pd.read_parquet(workspace.flows_path, columns=["Protocol"])["Protocol"].value_counts()
            names = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}
            rows.append(("flows by protocol", ", ".join(f"{names.get(int(k), k)} {v:,}" for k, v in protos.items())))
        if "label" in schema.names:
            labels = pd.read_parquet(workspace.flows_path, columns=["label"])["label"].value_counts()
            rows.append(("flows by label", ", ".join(f"{k} {v:,}" for k, v in labels.items())))
    return rows
