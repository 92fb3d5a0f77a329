"""The packet stream: sources → decoder → flow meter → plugins, yielding flow updates and expiries.

One object shared by ``ingest`` (which writes what it yields to a workspace) and ``detect`` (which scores
what it yields), in the spirit of nfstream's ``NFStreamer``::

    stream = FlowStream("traffic.pcap", plugins=[ViewsPlugin(first_k=16)])
    for event in stream:
        if isinstance(event, FlowUpdate):      # one per packet batch: flow id + direction of every packet
            ...
        elif isinstance(event, FlowExpiry):    # flows that ended (CIC columns), their per-flow state now freed
            ...
    assert stream.tracked_flows == 0           # after the last expiry nothing is held

A source is anything iterable as :class:`~packetclip.traffic.batch.PacketBatch` (:class:`PacketSource`):
:class:`CaptureSource` reads a pcap/pcapng file; a live interface only has to yield batches too. Each source
gets its own flow meter (a flow never spans two sources) and flow ids are unique across the whole stream.

Everything stays vectorised per batch: the stream adds a few numpy operations per batch to the meter's numba
kernel, and plugins see whole batches (``on_update``) and whole sets of expired flows (``on_expire``), never
single packets. Plugins must free what they keep for a flow when it expires; :attr:`FlowStream.tracked_flows`
counts what the meter and every plugin still hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from packetclip.errors import PacketClipError
from packetclip.traffic.batch import PacketBatch

__all__ = ["PacketSource", "CaptureSource", "StreamSettings", "CaptureSummary", "FlowUpdate", "FlowExpiry",
           "SourceEnd", "StreamPlugin", "ViewsPlugin", "FlowViews", "FlowStream"]


# --- sources ----------------------------------------------------------------------------------------------

@runtime_checkable
class PacketSource(Protocol):
    """What the stream reads: an iterable of raw (not yet decoded) :class:`PacketBatch`, in time order.

    ``name`` labels its flows (the ``capture`` column). Optional attributes the stream uses when present:
    ``position`` and ``size`` (bytes read / total, for progress), ``stats`` (a ``CaptureStats``: damaged
    records, where a damaged capture stopped).
    """

    name: str

    def __iter__(self) -> Iterator[PacketBatch]: ...


class CaptureSource:
    """A pcap/pcapng file as a :class:`PacketSource` (opened when iteration starts)."""

    def __init__(self, path: str | os.PathLike, *, batch_packets: int = 65536):
        self.path = Path(path)
        self.name = self.path.name
        self.batch_packets = int(batch_packets)
        self.reader = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def position(self) -> int:
        return int(getattr(self.reader, "position", 0) or 0)

    @property
    def stats(self):
        return getattr(self.reader, "stats", None)

    def __iter__(self) -> Iterator[PacketBatch]:
        from packetclip.traffic.pcap import open_capture

        self.reader = open_capture(self.path, batch_packets=self.batch_packets)
        return iter(self.reader)


def as_sources(source) -> list:
    """A path, a :class:`PacketSource`, or a sequence of either → a list of sources."""
    if isinstance(source, (str, os.PathLike)):
        return [CaptureSource(source)]
    if isinstance(source, PacketSource) and not isinstance(source, (list, tuple)):
        return [source]
    out = []
    for s in source:
        out.extend(as_sources(s))
    return out


# --- settings and events ----------------------------------------------------------------------------------

@dataclass
class StreamSettings:
    """Flow rules (seconds): idle and active timeouts, TCP FIN/RST closing, cap on open flows (see
    :mod:`packetclip.traffic.flows`)."""

    idle_timeout: float = 120.0
    active_timeout: float = 1800.0
    tcp_close: bool | str = True
    max_open_flows: int | None = None     # hard cap on open flows, the idlest evicted at the cap (detect sets one)

    @classmethod
    def of(cls, settings) -> "StreamSettings":
        """From any object with these attributes (e.g. ``IngestSettings``); defaults for None."""
        if settings is None:
            return cls()
        return cls(idle_timeout=settings.idle_timeout, active_timeout=settings.active_timeout,
                   tcp_close=settings.tcp_close, max_open_flows=getattr(settings, "max_open_flows", None))


@dataclass
class CaptureSummary:
    """What reading one source did (stored per capture in the workspace manifest)."""

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
class FlowUpdate:
    """One decoded batch with, per packet, its stream-wide flow id (-1: in no flow) and direction (0 forward,
    1 backward, -1 none). Plugins put what they computed for the batch in ``extras`` (e.g. ``"views"``)."""

    source_index: int
    batch: PacketBatch
    flow_id: np.ndarray
    direction: np.ndarray
    extras: dict = field(default_factory=dict)


@dataclass
class FlowExpiry:
    """Flows that ended (timeout, TCP close, eviction, end of source): one row each in ``flows`` (CIC columns,
    :data:`~packetclip.traffic.flows.EXTRA_COLUMNS`, ``capture``), or only their ids (``flows`` None) from a
    stream made with ``flow_tables=False``. Their state is freed once the event is yielded; plugins hand over
    what they kept for them in ``extras``."""

    source_index: int
    flows: pa.Table | None
    extras: dict = field(default_factory=dict)
    ids: np.ndarray | None = None

    @property
    def flow_ids(self) -> np.ndarray:
        if self.flows is None:
            return self.ids
        return self.flows.column("flow_id").to_numpy().astype(np.int64, copy=False)

    def __len__(self) -> int:
        return len(self.ids) if self.flows is None else self.flows.num_rows


@dataclass
class SourceEnd:
    """A source is exhausted (or could not be read: ``summary.error``); its flows have all expired. Plugins
    put what they finalise at the end of a source in ``extras``."""

    source_index: int
    summary: CaptureSummary
    extras: dict = field(default_factory=dict)


# --- plugins ----------------------------------------------------------------------------------------------

class StreamPlugin:
    """Per-flow work on whole batches (nfstream's plug-in hooks, vectorised).

    ``on_init(stream)`` once before the first batch; ``on_update(update)`` per batch; ``on_expire(expiry)``
    per set of ended flows (free their state here); ``on_source_end(end)`` after a source's last expiry.
    ``tracked_flows`` is how many flows the plugin still holds state for.
    """

    def on_init(self, stream: "FlowStream") -> None:
        pass

    def on_update(self, update: FlowUpdate) -> None:
        pass

    def on_expire(self, expiry: FlowExpiry) -> None:
        pass

    def on_source_end(self, end: SourceEnd) -> None:
        pass

    @property
    def tracked_flows(self) -> int:
        return 0


@dataclass
class FlowViews:
    """Masked packet views: ``views[j]`` belongs to packet ``rows[j]`` of the batch (``uint8 [m, n_bytes]``),
    or — handed over at expiry — to flow ``flow_id[j]`` with its ``direction`` and ``ts_ns``."""

    rows: np.ndarray
    flow_id: np.ndarray
    direction: np.ndarray
    ts_ns: np.ndarray
    views: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


class ViewsPlugin(StreamPlugin):
    """The first ``first_k`` masked packet views of every flow (all packets when ``first_k`` is None).

    Each update carries the views computed from its batch in ``update.extras["views"]`` (:class:`FlowViews`);
    with ``hold=True`` they are also kept per flow and handed over at expiry in ``expiry.extras["views"]``
    (what a detector needs to embed a finished flow), then freed. TCP sequence state is freed at expiry.
    """

    name = "views"

    def __init__(self, first_k: int | None = 16, *, n_bytes: int = 128, mask: bool = True, hold: bool = False):
        if first_k is not None and first_k < 1:
            raise PacketClipError(f"first_k must be >= 1 or None, not {first_k}")
        self.first_k = first_k
        self.n_bytes = int(n_bytes)
        self.mask = bool(mask)
        self.hold = bool(hold)

    def on_init(self, stream: "FlowStream") -> None:
        from packetclip.traffic.views import PacketViewer

        self.viewer = PacketViewer(n_bytes=self.n_bytes, mask=self.mask)
        self._held: list[FlowViews] = []
        self._held_rows = 0
        self._dead_rows = 0

    def on_update(self, update: FlowUpdate) -> None:
        rows = self.viewer.first_rows(update.flow_id, self.first_k)
        views = self.viewer.views(update.batch, update.flow_id, update.direction, rows=rows)
        fv = FlowViews(rows, update.flow_id[rows], update.direction[rows], update.batch.ts_ns[rows], views)
        update.extras[self.name] = fv
        if self.hold and len(fv):
            self._held.append(fv)
            self._held_rows += len(fv)

    def on_expire(self, expiry: FlowExpiry) -> None:
        fids = expiry.flow_ids
        self.viewer.release(fids)
        if not self.hold:
            return
        parts, out = [], []
        for fv in self._held:
            sel = np.isin(fv.flow_id, fids)
            if sel.any():
                out.append(FlowViews(fv.rows[sel], fv.flow_id[sel], fv.direction[sel], fv.ts_ns[sel],
                                     fv.views[sel]))
                fv.flow_id = np.where(sel, -1, fv.flow_id)   # dead rows: dropped at the next compaction
                self._dead_rows += int(sel.sum())
            parts.append(fv)
        if self._dead_rows * 2 > self._held_rows:
            parts = [FlowViews(p.rows[k], p.flow_id[k], p.direction[k], p.ts_ns[k], p.views[k])
                     for p in parts for k in [p.flow_id >= 0] if k.any()]
            self._held_rows = sum(len(p) for p in parts)
            self._dead_rows = 0
        self._held = parts
        expiry.extras[self.name] = _concat_views(out, self.n_bytes)

    @property
    def tracked_flows(self) -> int:
        return self.viewer.tracked_flows if hasattr(self, "viewer") else 0


def _concat_views(parts: list[FlowViews], n_bytes: int) -> FlowViews:
    if not parts:
        z = np.zeros(0, np.int64)
        return FlowViews(z, z, z.astype(np.int8), z, np.zeros((0, n_bytes), np.uint8))
    fv = FlowViews(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("rows", "flow_id", "direction", "ts_ns", "views")))
    order = np.argsort(fv.flow_id, kind="stable")      # per flow, packets stay in arrival order
    return FlowViews(fv.rows[order], fv.flow_id[order], fv.direction[order], fv.ts_ns[order], fv.views[order])


# --- the stream -------------------------------------------------------------------------------------------

class FlowStream:
    """Iterate sources as flow events (:class:`FlowUpdate`, :class:`FlowExpiry`, :class:`SourceEnd`).

    ``source``: a capture path, a :class:`PacketSource`, or a sequence of them (read one after the other).
    ``settings``: :class:`StreamSettings` or anything with ``idle_timeout``/``active_timeout``/``tcp_close``.
    A source that cannot be read (not a capture, damaged header) ends with ``summary.error`` set and the
    stream goes on with the next; ``strict=True`` raises instead. Expired flows are popped every
    ``expire_every`` batches (building a flow table costs about a millisecond however few rows it has).
    ``flow_tables=False``: expiries carry flow ids only (no CIC columns computed: ~3 µs per flow saved, what
    a detector with its own per-flow state wants).
    """

    def __init__(self, source, settings=None, plugins: Sequence[StreamPlugin] = (), *, strict: bool = False,
                 expire_every: int = 1, flow_tables: bool = True):
        self.sources = as_sources(source)
        if not self.sources:
            raise PacketClipError("no packet source given")
        self.settings = StreamSettings.of(settings)
        self.plugins = list(plugins)
        self.strict = strict
        self.expire_every = max(1, int(expire_every))
        self.flow_tables = bool(flow_tables)
        self.summaries: list[CaptureSummary] = []
        self.meter = None
        self.flows_emitted = 0
        self.clock_ns: int | None = None      # latest packet time seen
        self._started = False

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def tracked_flows(self) -> int:
        """Flows whose state the meter or a plugin still holds (0 once every flow has expired)."""
        return (self.meter.n_open if self.meter is not None else 0) + sum(p.tracked_flows for p in self.plugins)

    @property
    def open_flows(self) -> int:
        """Flows open in the meter."""
        return self.meter.n_open if self.meter is not None else 0

    def oldest_open_ns(self) -> int | None:
        """First-packet time of the oldest flow still open (None when none is)."""
        return self.meter.oldest_open_ns() if self.meter is not None else None

    # -- iteration -----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[FlowUpdate | FlowExpiry | SourceEnd]:
        if self._started:
            raise PacketClipError("a FlowStream can be iterated once; make a new one")
        self._started = True
        for plugin in self.plugins:
            plugin.on_init(self)
        flow_id_base = 0
        for index, source in enumerate(self.sources):
            summary = CaptureSummary(path=str(getattr(source, "path", getattr(source, "name", index))),
                                     file_index=index)
            self.summaries.append(summary)
            yield from self._run_source(index, source, summary, flow_id_base)
            flow_id_base += self.meter.n_flows
            self.meter = None
            end = SourceEnd(index, summary)
            for plugin in self.plugins:
                plugin.on_source_end(end)
            yield end

    def _run_source(self, index: int, source, summary: CaptureSummary, base: int):
        from packetclip.traffic.decode import decode_batch
        from packetclip.traffic.flows import FlowMeter

        s = self.settings
        self.meter = meter = FlowMeter(idle_timeout=s.idle_timeout, active_timeout=s.active_timeout,
                                       tcp_close=s.tcp_close, max_open=s.max_open_flows)
        name = str(getattr(source, "name", index))
        try:
            for k, batch in enumerate(source):
                batch.file_index = index
                decode_batch(batch)
                fid, direction = meter.update(batch)
                in_flow = fid >= 0
                n_in = int(np.count_nonzero(in_flow))
                summary.packets += len(batch)
                summary.bytes += int(batch.wirelen.sum())
                summary.flow_packets += n_in
                summary.non_ip_packets += len(batch) - n_in
                if len(batch):
                    self.clock_ns = int(batch.ts_ns[-1]) if self.clock_ns is None else max(self.clock_ns,
                                                                                            int(batch.ts_ns[-1]))
                if base:
                    fid = np.where(in_flow, fid + base, fid)
                update = FlowUpdate(index, batch, fid, direction)
                for plugin in self.plugins:
                    plugin.on_update(update)
                yield update
                if (k + 1) % self.expire_every == 0:
                    yield from self._expire(index, self._pop(meter, False), base, name, summary)
            yield from self._expire(index, self._pop(meter, True), base, name, summary)
        except PacketClipError as err:
            if self.strict:
                raise
            summary.error = err.one_line()
            yield from self._expire(index, self._pop(meter, True), base, name, summary)
        stats = getattr(source, "stats", None)
        if stats is not None:
            summary.skipped_records = int(getattr(stats, "skipped_records", 0) or 0)
            summary.bad_link_packets = int(getattr(stats, "bad_link_packets", 0) or 0)
            summary.truncated_at = getattr(stats, "truncated_at", None)
            summary.warnings = [str(w) for w in (getattr(stats, "warnings", None) or [])][:20]

    def _pop(self, meter, flush: bool):
        if self.flow_tables:
            return meter.flush_table() if flush else meter.pop_finished_table()
        return meter.flush_ids() if flush else meter.pop_finished_ids()

    def _expire(self, index: int, table: pa.Table | np.ndarray | None, base: int, name: str,
                summary: CaptureSummary):
        if isinstance(table, np.ndarray):          # flow ids only
            if not len(table):
                return
            summary.flows += len(table)
            self.flows_emitted += len(table)
            expiry = FlowExpiry(index, None, ids=table + base if base else table)
            for plugin in self.plugins:
                plugin.on_expire(expiry)
            yield expiry
            return
        if table is None or table.num_rows == 0:
            return
        n = table.num_rows
        if base:
            at = table.schema.get_field_index("flow_id")
            table = table.set_column(at, "flow_id", pc.add(table.column("flow_id"), pa.scalar(base, pa.int64())))
        table = table.append_column("capture", pa.array([name]).take(pa.array(np.zeros(n, np.int32))))
        summary.flows += n
        self.flows_emitted += n
        expiry = FlowExpiry(index, table)
        for plugin in self.plugins:
            plugin.on_expire(expiry)
        yield expiry

    # -- convenience ---------------------------------------------------------------------------------------
    def flows(self) -> pa.Table:
        """Run the stream to the end and return every flow (Arrow table, in the order flows ended)."""
        tables = [e.flows for e in self if isinstance(e, FlowExpiry)]
        if not tables:
            from packetclip.traffic.flows import FlowMeter

            empty = FlowMeter().flush_table()
            return empty.append_column("capture", pa.array([], pa.string()))
        return pa.concat_tables(tables)


def iter_expiries(events: Iterable) -> Iterator[FlowExpiry]:
    """Only the expiries of a stream (e.g. ``for e in iter_expiries(FlowStream(path)): ...``)."""
    for event in events:
        if isinstance(event, FlowExpiry):
            yield event
