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
from packetclip.scale.parquet_parts import PartConcat, encode_table
from packetclip.traffic.ingest import IngestSettings, _from_numpy, _packet_schema, _write_packets, capture_manifest
from packetclip.traffic.stream import CaptureSummary
from packetclip.traffic.workspace import Workspace
from packetclip.util.progress import progress as progress_bar

#: Captures larger than this are read in chunks of about this size (one task each).
DEFAULT_CHUNK_BYTES = 256 << 20
#: Small captures are metered in bundles of about this many bytes (one task each).
DEFAULT_BUNDLE_BYTES = 64 << 20


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
    """What one capture's metering yields: its flow and packet tables (flow ids from 0, ``file_index`` 0)."""

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


@dataclass
class MeterInfo:
    """The small half of a metering task's result: enough for the driver to number flows and report, without
    fetching the tables."""

    summaries: list
    n_flows: list
    stored: list
    host: str


def meter_captures(paths: list[str], settings: IngestSettings, strict: bool, *chunks: ChunkRead):
    """Ray task (two returns): the captures of one bundle metered one after another, each on its own (as a
    plain ingest restarts the meter per capture); (:class:`MeterInfo`, per-capture (flows, packets) tables)."""
    results = [ingest_capture(p, settings, strict, *chunks) for p in paths]
    info = MeterInfo([r.summary for r in results], [r.n_flows for r in results],
                     [r.stored_packets for r in results], results[0].host if results else "")
    return info, [(r.flows, r.packets) for r in results]


def flow_part(table: pa.Table) -> bytes:
    """The flow table as one Parquet part, written as :class:`~packetclip.traffic.ingest._FlowTableWriter`
    writes it (required numeric columns, dictionary pages for strings only, row groups of 16,384)."""
    schema = pa.schema([f.with_nullable(False) if _from_numpy(f.type) else f for f in table.schema])
    repeated = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                or pa.types.is_dictionary(f.type)]
    table = pa.Table.from_arrays(table.columns, schema=schema)
    return encode_table(table, row_group_size=16_384, use_dictionary=repeated)


def packet_part(table: pa.Table) -> bytes:
    """The packet table as one Parquet part, with ingest's packet writer settings (no dictionary pages)."""
    return encode_table(table, use_dictionary=False)


def encode_parts(tables: list, base: int, first_index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Ray task: a bundle's tables renumbered (flow ids from ``base``, file indexes from ``first_index``) and
    encoded as Parquet parts, so that the driver only copies bytes (uint8 arrays: Ray hands them to the driver
    from its object store without a copy)."""
    flows, packets = [], []
    for k, (f, p) in enumerate(tables):
        if f is not None and f.num_rows:
            flows.append(_renumber(f, base, first_index + k))
        if p is not None and p.num_rows:
            packets.append(_renumber(p, base, first_index + k))
        base += 0 if f is None else f.num_rows
    return (np.frombuffer(flow_part(pa.concat_tables(flows)), np.uint8) if flows else None,
            np.frombuffer(packet_part(pa.concat_tables(packets)), np.uint8) if packets else None)


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


def plan_bundles(sizes: Sequence[int], chunked: Sequence[bool], target_bytes: int) -> list[list[int]]:
    """Consecutive captures grouped into tasks of about ``target_bytes`` (a chunked capture alone): one task per
    tiny capture spent more on Ray's per-task costs than on the capture."""
    bundles: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for i, (size, is_chunked) in enumerate(zip(sizes, chunked)):
        if is_chunked:
            if current:
                bundles.append(current)
                current, current_bytes = [], 0
            bundles.append([i])
            continue
        current.append(i)
        current_bytes += size
        if current_bytes >= target_bytes or len(current) >= 256:
            bundles.append(current)
            current, current_bytes = [], 0
    if current:
        bundles.append(current)
    return bundles


@dataclass
class RayIngestReport:
    """What happened on the cluster (stored in the manifest under ``ray``)."""

    tasks: int = 0
    bundles: int = 0
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
    bundle_bytes: int = DEFAULT_BUNDLE_BYTES,
    max_retries: int = 3,
    window: int | None = None,
) -> Workspace:
    """:func:`~packetclip.traffic.ingest.ingest_captures` over a Ray cluster (``ray.init`` done by the caller,
    e.g. :func:`~packetclip.scale.cluster.ray_session`); same tables, same manifest keys plus ``ray``.

    Two kinds of task: *meter* (a bundle of captures, or one chunked capture, through the flow meter; returns
    the flow counts apart from the tables) and *encode* (a bundle's tables renumbered and encoded as Parquet
    parts, submitted once the flow counts of every earlier bundle are known). The driver copies the parts'
    bytes into the two tables (:class:`~packetclip.scale.parquet_parts.PartConcat`) and writes the manifest.
    At most ``window`` (default: twice the cluster's CPUs) bundles are in flight, which bounds the memory the
    object store holds whatever the number of captures."""
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
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    window = window or 2 * cpus

    sizes = [p.stat().st_size for p in paths]
    plans = [plan_chunks(p, chunk_bytes) for p in paths]
    target = max(1 << 20, min(bundle_bytes, sum(sizes) // (4 * cpus)))   # several tasks per CPU at least
    bundles = plan_bundles(sizes, [pl is not None for pl in plans], target)
    report.bundles = len(bundles)
    read_task = ray.remote(num_cpus=1, max_retries=max_retries)(read_chunk)
    meter_task = ray.remote(num_cpus=1, max_retries=max_retries, num_returns=2)(meter_captures)
    encode_task = ray.remote(num_cpus=1, max_retries=max_retries)(encode_parts)
    meter_refs: list = []

    def submit(b: int) -> None:
        members = bundles[b]
        chunk_refs = []
        plan = plans[members[0]]
        if plan is not None:
            chunk_refs = [read_task.remote(str(paths[members[0]]), plan.prefix_end, a, e) for a, e in plan.ranges]
            report.chunked_captures += 1
            report.chunks += len(chunk_refs)
        # absolute paths, so that workers in other folders (or nodes sharing the storage) find them
        meter_refs.append(meter_task.remote([str(paths[i].resolve()) for i in members], settings, strict,
                                            *chunk_refs))

    summaries: list[CaptureSummary] = []
    stored = 0
    hosts: set[str] = set()
    bundle_size = [sum(sizes[i] for i in members) for members in bundles]

    def failed(members: list[int], what: str, err: BaseException) -> None:
        for i in members:
            line = f"{paths[i]}: {what} failed after {max_retries} retries: {task_failure(err)}"
            report.failed_captures.append(line)
            summaries.append(CaptureSummary(path=str(paths[i]), file_index=i, error=line))

    with contextlib.ExitStack() as files, progress_bar("ingest (ray)", total=sum(sizes), enabled=progress,
                                                       unit="bytes") as bar:
        flows_path = files.enter_context(ws.atomic(ws.path("flows").name))
        flow_out = PartConcat(flows_path, reencode=flow_part)
        packet_out = None
        if settings.write_packets:
            packet_out = PartConcat(files.enter_context(ws.atomic(ws.path("packets").name)), reencode=packet_part)
        try:
            base = 0
            encoding: list = []            # (bundle, encode ref, tables ref) in bundle order, written in order
            done_bytes = 0
            info_pending: dict = {}

            def write_head() -> None:
                nonlocal stored
                b, enc_ref, tables_ref, info = encoding.pop(0)
                try:
                    flow_bytes, packet_bytes = ray.get(enc_ref)
                except Exception as err:  # noqa: BLE001 (the encode task died for good: try here once)
                    try:
                        first_base = info["base"]
                        flow_bytes, packet_bytes = encode_parts(ray.get(tables_ref), first_base, bundles[b][0])
                    except Exception:  # noqa: BLE001 (reported per capture below)
                        for k, i in enumerate(bundles[b]):
                            line = f"{paths[i]}: encoding failed: {task_failure(err)}"
                            report.failed_captures.append(line)
                            info["summaries"][k].error = line
                        return
                flow_out.append(flow_bytes)
                if packet_out is not None:
                    packet_out.append(packet_bytes)
                stored += info["stored"]

            for b, members in enumerate(bundles):
                while len(meter_refs) < min(len(bundles), b + window):
                    submit(len(meter_refs))
                    info_pending[meter_refs[-1][0].hex()] = len(meter_refs) - 1
                info_ref, tables_ref = meter_refs[b]
                while info_ref.hex() in info_pending:    # progress over every finished bundle
                    done, _ = ray.wait([r for r, _t in meter_refs if r is not None and r.hex() in info_pending],
                                       num_returns=1,
                                       timeout=0.5)
                    for r in done:
                        done_bytes += bundle_size[info_pending.pop(r.hex())]
                    bar.set(done_bytes)
                try:
                    info: MeterInfo = ray.get(info_ref)
                except Exception as err:  # noqa: BLE001 (Ray wraps worker deaths and task errors alike)
                    cause = getattr(err, "cause", None)
                    if strict and isinstance(cause, PacketClipError):
                        raise cause from None
                    failed(members, "task", err)
                    meter_refs[b] = (None, None)
                    continue
                meter_refs[b] = (None, None)      # the driver keeps no reference once the encode task holds one
                for i, summary in zip(members, info.summaries):
                    summary.path, summary.file_index = str(paths[i]), i
                    summaries.append(summary)
                hosts.add(info.host)
                n = sum(info.n_flows)
                encoding.append((b, encode_task.remote(tables_ref, base, members[0]), tables_ref,
                                 {"base": base, "stored": sum(info.stored), "summaries": info.summaries}))
                base += n
                while encoding and (len(encoding) > window or ray.wait([encoding[0][1]], timeout=0)[0]):
                    write_head()
            while encoding:
                write_head()
        finally:
            flow_written = flow_out.close()
            if packet_out is not None:
                packet_out.close(empty_schema=_packet_schema(settings.view_bytes))
        if flow_written == 0:
            import pandas as pd

            pd.DataFrame({c: [] for c in ["flow_id", "file_index", "capture", *CIC_FEATURE_COLUMNS]}).to_parquet(
                flows_path, index=False)
    if not settings.write_packets:
        ws.path("packets").unlink(missing_ok=True)
    report.tasks = 2 * len(bundles) + report.chunks          # meter + encode per bundle, reads per chunk
    report.hosts = sorted(hosts)
    summaries.sort(key=lambda s: s.file_index)
    manifest = capture_manifest(settings, summaries, stored=stored, flows=flow_written, started=started)
    manifest["ray"] = asdict(report)
    ws.write_manifest(manifest)
    return ws
