"""Ingest over Ray: one task per capture, large captures read in record-aligned chunks, one workspace.

Why it equals a single-process ingest, column for column (flow ids and row order included): a flow's features
depend on every packet of the flow before it and the meter's expiry order on every packet of the capture, so
the flow meter of one capture runs in one task, over the capture's packets in file order — exactly the
:class:`~packetclip.traffic.stream.FlowStream` that :func:`~packetclip.traffic.ingest.ingest_captures` runs.
What is split:

- **captures**: one task each (the meter restarts per capture in a plain ingest too); flow ids are offset on
  the driver by the flows of the captures before, ``file_index`` set to the capture's place in the list;
- **a large capture** (more than ``chunk_bytes``): a planning pass hops over record headers (no decoding) and
  cuts it at record boundaries; one task per chunk reads its byte range (a pcapng chunk gets the capture's
  section and interface blocks in front), and the capture's task runs the meter over the chunks in order, so a
  flow crossing a boundary simply continues in the same meter state. Chunks spread the reading of one huge
  capture over nodes; the metering of one capture stays sequential (there is no exact way around that).

The driver writes the tables through the workspace's atomic writers in capture order as results arrive and
the manifest last, so an interrupted run leaves the previous workspace or none. A task whose worker dies is
retried (``max_retries``); one that still fails is reported per capture (manifest ``damaged_captures``), never
silently dropped. Bad captures are reported as in a plain ingest (not retried: the outcome would not change).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from packetclip.errors import PacketClipError
from packetclip.scale.cluster import require_ray, task_failure
from packetclip.traffic.ingest import (IngestSettings, _FlowTableWriter, _packet_schema, _write_packets,
                                       capture_manifest)
from packetclip.traffic.stream import CaptureSummary
from packetclip.traffic.workspace import Workspace
from packetclip.util.progress import progress as progress_bar

#: Captures larger than this are read in chunks of about this size (one task each).
DEFAULT_CHUNK_BYTES = 256 << 20


# --- planning: record-aligned chunks ------------------------------------------------------------------------

@dataclass
class ChunkPlan:
    """Byte ranges ``[starts[i], starts[i+1])`` of a capture, each starting at a record; ``prefix`` is what a
    chunk needs in front to be a capture on its own (pcap global header, pcapng section + interface blocks)."""

    path: str
    prefix_end: int
    starts: list[int]
    size: int

    @property
    def ranges(self) -> list[tuple[int, int]]:
        ends = self.starts[1:] + [self.size]
        return list(zip(self.starts, ends))


def _hop_records(buf: np.ndarray, start: int, chunk_bytes: int, pcapng: bool, big: bool, rec_hdr: int):
    return _hop_kernel(buf, np.int64(start), np.int64(chunk_bytes), pcapng, big, np.int64(rec_hdr))


def _make_hop_kernel():
    from numba import njit

    @njit(cache=True)
    def hop(buf, start, chunk_bytes, pcapng, big, rec_hdr):
        """Walk record/block headers from ``start``; returns (cut offsets, status): status 0 clean end,
        1 damaged (a length that cannot be right), 2 a pcapng control block after packets (not chunkable)."""
        n = buf.shape[0]
        cuts = np.empty(1 + n // max(chunk_bytes, 1) + 1, np.int64)
        k = 0
        p = start
        last = start
        while p < n:
            if p + (12 if pcapng else rec_hdr) > n:
                return cuts[:k], 1
            if pcapng:
                o = p + 4
            else:
                o = p + 8
            if big:
                length = (np.int64(buf[o]) << 24) | (np.int64(buf[o + 1]) << 16) | (np.int64(buf[o + 2]) << 8) \
                    | np.int64(buf[o + 3])
            else:
                length = (np.int64(buf[o + 3]) << 24) | (np.int64(buf[o + 2]) << 16) \
                    | (np.int64(buf[o + 1]) << 8) | np.int64(buf[o])
            if pcapng:
                b0 = np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16) \
                    | (np.int64(buf[p + 3]) << 24)
                if big:
                    b0 = (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) \
                        | np.int64(buf[p + 3])
                if b0 == 1 or b0 == 0x0A0D0D0A:
                    return cuts[:k], 2
                size = length
                if size < 12 or size % 4 != 0:
                    return cuts[:k], 1
            else:
                if length > 262144:
                    return cuts[:k], 1
                size = rec_hdr + length
            if p + size > n:
                return cuts[:k], 1
            if p - last >= chunk_bytes:
                cuts[k] = p
                k += 1
                last = p
            p += size
        return cuts[:k], 0

    return hop


_hop_cache: list = []


def _hop_kernel(*args):
    if not _hop_cache:
        _hop_cache.append(_make_hop_kernel())
    return _hop_cache[0](*args)


def plan_chunks(path: str | os.PathLike, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> ChunkPlan | None:
    """Record-aligned chunks of a capture, or None when it is small, damaged, not a capture, or a pcapng whose
    interfaces are not all declared before its first packet (such captures are read whole, in one task)."""
    import struct

    from packetclip.traffic.pcap import _PCAP_MAGICS, _SHB

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size <= chunk_bytes or size < 64:
        return None
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    magic = struct.unpack_from("<I", buf[:4].tobytes())[0]
    if magic in _PCAP_MAGICS:
        big, _ns, rec_hdr = _PCAP_MAGICS[magic]
        prefix_end, pcapng = 24, False
    elif magic == _SHB:
        bom = buf[8:12].tobytes()
        if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            return None
        big, rec_hdr, pcapng = bom == b"\x1a\x2b\x3c\x4d", 0, True
        e = ">" if big else "<"
        prefix_end = 0
        while prefix_end + 8 <= size:          # the section header and the interfaces before the first packet
            btype, blen = struct.unpack_from(e + "II", buf[prefix_end:prefix_end + 8].tobytes())
            if blen < 12 or blen % 4 or prefix_end + blen > size or (btype == _SHB and prefix_end > 0):
                return None
            if btype in (2, 3, 6):
                break
            prefix_end += blen
    else:
        return None
    cuts, status = _hop_records(buf, prefix_end, chunk_bytes, pcapng, big, rec_hdr)
    del buf
    if status != 0 or len(cuts) == 0:
        return None
    return ChunkPlan(str(path), int(prefix_end), [int(prefix_end), *map(int, cuts)], int(size))


# --- tasks --------------------------------------------------------------------------------------------------

@dataclass
class ChunkRead:
    """The raw (undecoded) batches of one chunk and what the reader counted."""

    batches: list
    skipped_records: int = 0
    bad_link_packets: int = 0
    truncated_at: int | None = None
    warnings: list[str] = field(default_factory=list)


def read_chunk(path: str, prefix_end: int, start: int, end: int, batch_packets: int = 65536) -> ChunkRead:
    """Read bytes ``[start, end)`` of a capture as a capture of its own (prefix in front) into raw batches,
    each holding only its own bytes (small to ship)."""
    from packetclip.traffic.pcap import open_capture

    with open(path, "rb") as fh, tempfile.TemporaryDirectory(prefix="packetclip-chunk-") as tmp:
        part = Path(tmp) / ("chunk" + Path(path).suffix)
        with open(part, "wb") as out:
            out.write(fh.read(prefix_end))
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                block = fh.read(min(remaining, 8 << 20))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
        reader = open_capture(part, batch_packets=batch_packets)
        batches = []
        for batch in reader:
            if len(batch):
                lo = int(batch.offset.min())
                hi = int((batch.offset + batch.caplen).max())
                batch.data = batch.data[lo:hi].copy()
                batch.offset = batch.offset - lo
            for name in ("offset", "caplen", "wirelen", "ts_ns", "linktype"):
                setattr(batch, name, getattr(batch, name).copy())
            batches.append(batch)
        st = reader.stats
        shift = start - prefix_end
        return ChunkRead(batches, int(st.skipped_records), int(getattr(st, "bad_link_packets", 0) or 0),
                         None if st.truncated_at is None else int(st.truncated_at) + shift,
                         [str(w) for w in (st.warnings or [])])


class _ChunkedSource:
    """The chunks of one capture, in order, as a :class:`~packetclip.traffic.stream.PacketSource`: packet
    numbers continue across chunks; reading stops where a chunk found damage, as the plain reader does."""

    def __init__(self, path: str, chunks: Sequence[ChunkRead]):
        self.path = Path(path)
        self.name = self.path.name
        self.chunks = chunks
        self.stats = _Stats()

    def __iter__(self):
        packets = 0
        for chunk in self.chunks:
            for batch in chunk.batches:
                batch.first_packet_number = packets
                packets += len(batch)
                yield batch
            self.stats.skipped_records += chunk.skipped_records
            self.stats.bad_link_packets += chunk.bad_link_packets
            self.stats.warnings.extend(chunk.warnings)
            if chunk.truncated_at is not None:
                self.stats.truncated_at = chunk.truncated_at
                return


@dataclass
class _Stats:
    skipped_records: int = 0
    bad_link_packets: int = 0
    truncated_at: int | None = None
    warnings: list = field(default_factory=list)


class _Collect:
    """A stand-in Parquet writer that keeps the tables ingest's packet writer would have written."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self.tables: list[pa.Table] = []

    def write_table(self, table: pa.Table) -> None:
        self.tables.append(table)


@dataclass
class CaptureResult:
    """What one capture's task hands back: its flow and packet tables (flow ids from 0, ``file_index`` 0)."""

    summary: CaptureSummary
    flows: pa.Table | None
    packets: pa.Table | None
    n_flows: int
    stored_packets: int
    host: str = ""


def ingest_capture(path: str, settings: IngestSettings, strict: bool, *chunks: ChunkRead) -> CaptureResult:
    """One capture through the same stream as a plain ingest (from its chunks when given)."""
    import socket

    from packetclip.traffic.stream import CaptureSource, FlowExpiry, FlowStream, FlowUpdate, ViewsPlugin

    source = _ChunkedSource(path, chunks) if chunks else CaptureSource(path)
    views = ViewsPlugin(first_k=settings.view_packets, n_bytes=settings.view_bytes, mask=settings.mask)
    stream = FlowStream([source], settings, [views] if settings.write_packets else [], strict=strict)
    collect = _Collect(_packet_schema(settings.view_bytes))
    flows: list[pa.Table] = []
    stored = 0
    for event in stream:
        if isinstance(event, FlowUpdate) and settings.write_packets:
            stored += _write_packets(collect, event.batch, event.extras["views"], settings.view_bytes)
        elif isinstance(event, FlowExpiry):
            flows.append(event.flows)
    summary = stream.summaries[0]
    flow_table = pa.concat_tables(flows) if flows else None
    packets = pa.concat_tables(collect.tables) if collect.tables else None
    return CaptureResult(summary, flow_table, packets, summary.flows, stored, socket.gethostname())


# --- driver -------------------------------------------------------------------------------------------------

def _renumber(table: pa.Table | None, base: int, file_index: int) -> pa.Table | None:
    """Flow ids offset by ``base`` and ``file_index`` set, types unchanged (what FlowStream does per source)."""
    if table is None or table.num_rows == 0:
        return table
    for name, fix in (("flow_id", lambda col: pc.add(col, pa.scalar(base, col.type))),
                      ("file_index", lambda col: pa.array(np.full(len(col), file_index), col.type))):
        at = table.schema.get_field_index(name)
        if at >= 0:
            table = table.set_column(at, table.schema.field(at), fix(table.column(at)))
    return table


@dataclass
class RayIngestReport:
    """What happened on the cluster (stored in the manifest under ``ray``)."""

    tasks: int = 0
    chunked_captures: int = 0
    chunks: int = 0
    failed_captures: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


def ingest_captures_ray(
    captures: Sequence[str | Path],
    out_dir: str | Path,
    *,
    settings: IngestSettings | None = None,
    progress: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_retries: int = 3,
) -> Workspace:
    """:func:`~packetclip.traffic.ingest.ingest_captures` over a Ray cluster (``ray.init`` done by the caller,
    e.g. :func:`~packetclip.scale.cluster.ray_session`); same tables, same manifest keys plus ``ray``."""
    from packetclip.traffic.flows import CIC_FEATURE_COLUMNS

    ray = require_ray()
    if not ray.is_initialized():
        raise PacketClipError("Ray is not initialised; use packetclip.scale.cluster.ray_session()")
    settings = settings or IngestSettings()
    paths = [Path(p) for p in captures]
    if not paths:
        raise PacketClipError("no capture files given")
    for p in paths:
        if not p.is_file():
            raise PacketClipError("no such capture file", path=str(p))
    ws = Workspace.create(out_dir, overwrite=overwrite)
    started = time.perf_counter()
    report = RayIngestReport()

    read_task = ray.remote(num_cpus=1, max_retries=max_retries)(read_chunk)
    capture_task = ray.remote(num_cpus=1, max_retries=max_retries)(ingest_capture)
    refs = []
    for p in paths:
        plan = plan_chunks(p, chunk_bytes)
        chunk_refs = []
        if plan is not None:
            chunk_refs = [read_task.remote(str(p), plan.prefix_end, a, b) for a, b in plan.ranges]
            report.chunked_captures += 1
            report.chunks += len(chunk_refs)
        # the path is absolute so that workers in other folders (or nodes sharing the storage) find it
        refs.append(capture_task.remote(str(p.resolve()), settings, strict, *chunk_refs))
    report.tasks = len(refs) + report.chunks

    sizes = [p.stat().st_size for p in paths]
    summaries: list[CaptureSummary] = []
    stored = 0
    hosts: set[str] = set()
    with contextlib.ExitStack() as files, progress_bar("ingest (ray)", total=sum(sizes), enabled=progress,
                                                       unit="bytes") as bar:
        flow_writer = _FlowTableWriter(files.enter_context(ws.atomic(ws.path("flows").name)))
        packet_writer = None
        if settings.write_packets:
            import pyarrow.parquet as pq

            packet_writer = pq.ParquetWriter(files.enter_context(ws.atomic(ws.path("packets").name)),
                                             _packet_schema(settings.view_bytes), use_dictionary=False)
        try:
            base = 0
            pending = list(refs)
            size_of = {r.hex(): size for r, size in zip(refs, sizes)}    # hex keys: they do not pin results
            finished = 0
            for index in range(len(refs)):
                ref, refs[index] = refs[index], None    # written results are released from the object store
                while ref in pending:   # progress over every finished task, written in capture order
                    done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                    finished += sum(size_of[r.hex()] for r in done)
                    bar.set(finished)
                try:
                    result: CaptureResult = ray.get(ref)
                except Exception as err:  # noqa: BLE001 (Ray wraps worker deaths and task errors alike)
                    cause = getattr(err, "cause", None)
                    if strict and isinstance(cause, PacketClipError):
                        raise cause from None
                    line = f"{paths[index]}: task failed after {max_retries} retries: {task_failure(err)}"
                    report.failed_captures.append(line)
                    summaries.append(CaptureSummary(path=str(paths[index]), file_index=index, error=line))
                    continue
                summary = result.summary
                summary.path, summary.file_index = str(paths[index]), index
                summaries.append(summary)
                hosts.add(result.host)
                flow_writer.write(_renumber(result.flows, base, index))
                if packet_writer is not None and result.packets is not None:
                    for batch in _renumber(result.packets, base, index).to_batches():
                        packet_writer.write_batch(batch)
                    stored += result.stored_packets
                base += result.n_flows
        finally:
            if packet_writer is not None:
                packet_writer.close()
            flow_writer.close(["flow_id", "file_index", "capture", *CIC_FEATURE_COLUMNS])
    if not settings.write_packets:
        ws.path("packets").unlink(missing_ok=True)
    report.hosts = sorted(hosts)
    manifest = capture_manifest(settings, summaries, stored=stored, flows=flow_writer.rows, started=started)
    manifest["ray"] = asdict(report)
    ws.write_manifest(manifest)
    return ws
