"""Host context of each flow, as an analyst reads it from the flow table alone (no labels).

Traffic feature code (it reads flow columns only); :mod:`packetclip.language.context` re-exports it for the
sentences that use it.

One flood packet or one scan probe is a flow of its own, and its row alone shows neither flooding nor
scanning; what does is what its source and its destination did around it. :func:`host_context` counts,
for every flow, over the flows that start in the same time window (``window_s`` seconds, fixed bins of the
flow start time):

========================  =====================================================================================
``ctx_src_flows``         flows the flow's source opened (to any host)
``ctx_src_hosts``         distinct destination hosts of that source
``ctx_src_ports``         distinct destination ports of that source (all hosts)
``ctx_pair_flows``        flows from the source to the flow's destination host
``ctx_pair_ports``        distinct destination ports of that source-destination pair
``ctx_pair_noreply``      fraction of the pair's flows that got no reply (``Total Bwd packets`` == 0)
``ctx_pair_reset``        fraction of the pair's flows with a RST flag
``ctx_pair_pkts``         forward packets of the pair's flows
``ctx_pair_pps``          those packets per second over the pair's active span (first start to last end,
                          at least 1 ms)
``ctx_pair_span_us``      that span, in microseconds
``ctx_dst_flows``         flows the destination host received (from anyone)
``ctx_dst_srcs``          distinct sources that sent them
``ctx_dst_noreply``       fraction of those flows the destination did not answer
``ctx_window_s``          the window length, for the sentences
========================  =====================================================================================

All vectorised (``groupby`` over (bin, source), (bin, source, destination), (bin, destination)); a
42,000-flow table takes well under a second. Tables without addresses or times (flow CSVs without them)
get no context: :func:`add_host_context` returns them unchanged.

:class:`HostContextPlugin` computes the same columns incrementally on a :class:`~packetclip.traffic.stream.
FlowStream`: it keeps the expired flows of each window still open and finalises a window once the stream's
clock has passed its end and no flow that started in it is still open (every flow of a window is then known,
so its context equals the batch one). Memory is the flows of the open windows: a window stays open while one
of its flows does, at most an active timeout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.traffic.stream import FlowExpiry, SourceEnd, StreamPlugin

CONTEXT_COLUMNS = ("ctx_src_flows", "ctx_src_hosts", "ctx_src_ports", "ctx_pair_flows", "ctx_pair_ports",
                   "ctx_pair_noreply", "ctx_pair_reset", "ctx_pair_pkts", "ctx_pair_pps", "ctx_pair_span_us",
                   "ctx_dst_flows", "ctx_dst_srcs", "ctx_dst_noreply", "ctx_window_s")



class ContextInputError(PacketClipError, ValueError):
    """A flow table lacks what host context needs, or the window is not positive."""


_SRC = ("Src IP", "Source IP")
_DST = ("Dst IP", "Destination IP")
_DPORT = ("Dst Port", "Destination Port")
_BWD = ("Total Bwd packets", "Total Backward Packets")
_FWD = ("Total Fwd Packet", "Total Fwd Packets")
_RST = ("RST Flag Count",)
_DURATION = ("Flow Duration",)


def _first(columns, names) -> str | None:
    for name in names:
        if name in columns:
            return name
    return None


def _start_ns(flows: pd.DataFrame) -> np.ndarray | None:
    """Flow start times in ns (int64), from ``first_ts_ns`` or ``Timestamp``; None when neither is usable."""
    if "first_ts_ns" in flows.columns:
        values = pd.to_numeric(flows["first_ts_ns"], errors="coerce")
        if values.notna().any():
            return values.to_numpy(dtype="float64")
    if "Timestamp" in flows.columns:
        ts = flows["Timestamp"]
        if not pd.api.types.is_datetime64_any_dtype(ts):
            ts = pd.to_datetime(ts, errors="coerce")
        if ts.notna().any():
            if getattr(ts.dt, "tz", None) is not None:
                ts = ts.dt.tz_convert(None)
            return ts.astype("datetime64[ns]").astype("int64").where(ts.notna(), np.nan).to_numpy(dtype="float64")
    return None


def has_context_inputs(flows: pd.DataFrame) -> bool:
    """Whether ``flows`` has what :func:`host_context` needs: addresses, destination port and start times."""
    cols = flows.columns
    return (_first(cols, _SRC) is not None and _first(cols, _DST) is not None and _first(cols, _DPORT) is not None
            and ("first_ts_ns" in cols or "Timestamp" in cols))


def _num(flows: pd.DataFrame, names, default: float = 0.0) -> np.ndarray:
    name = _first(flows.columns, names)
    if name is None:
        return np.full(len(flows), default)
    values = pd.to_numeric(flows[name], errors="coerce").to_numpy(dtype="float64")
    return np.where(np.isfinite(values), values, default)


def host_context(flows: pd.DataFrame, *, window_s: float = 10.0) -> pd.DataFrame:
    """Per flow, what its source, its source-destination pair and its destination did in the same
    ``window_s``-second window (see the module doc for the columns).

    Keyed by ``flow_id`` when ``flows`` has one (one row per flow id, first occurrence), else on ``flows``'s
    index. Rows without an address or a start time get NaN context. Raises :class:`ContextInputError` (a ``ValueError``) when the table
    lacks the columns (see :func:`has_context_inputs`).
    """
    if window_s <= 0:
        raise ContextInputError(f"window_s must be positive, not {window_s}")
    if not has_context_inputs(flows):
        raise ContextInputError("host context needs Src IP, Dst IP, Dst Port and first_ts_ns or Timestamp columns")
    cols = flows.columns
    start = _start_ns(flows)
    if start is None:
        start = np.full(len(flows), np.nan)
    duration_us = np.maximum(_num(flows, _DURATION), 0.0)
    bwd = _num(flows, _BWD)
    table = pd.DataFrame({
        "src": flows[_first(cols, _SRC)].astype("string").to_numpy(),
        "dst": flows[_first(cols, _DST)].astype("string").to_numpy(),
        "dport": _num(flows, _DPORT, -1.0),
        "bin": np.floor(start / (window_s * 1e9)),
        "start_us": start / 1e3,
        "end_us": start / 1e3 + duration_us,
        "noreply": (bwd <= 0).astype("float64"),
        "reset": (_num(flows, _RST) > 0).astype("float64"),
        "fwd": np.maximum(_num(flows, _FWD), 0.0),
    })
    valid = table["src"].notna() & table["dst"].notna() & table["bin"].notna()
    t = table[valid.to_numpy()]
    out = pd.DataFrame(index=table.index, columns=list(CONTEXT_COLUMNS), dtype="float64")

    def per_group(keys, **aggs) -> pd.DataFrame:
        grouped = t.groupby(keys, sort=False, dropna=False)
        return pd.DataFrame({name: grouped[col].transform(fn) for name, (col, fn) in aggs.items()})

    if len(t):
        src = per_group(["bin", "src"], ctx_src_flows=("fwd", "size"), ctx_src_hosts=("dst", "nunique"),
                        ctx_src_ports=("dport", "nunique"))
        pair = per_group(["bin", "src", "dst"], ctx_pair_flows=("fwd", "size"), ctx_pair_ports=("dport", "nunique"),
                         ctx_pair_noreply=("noreply", "mean"), ctx_pair_reset=("reset", "mean"),
                         ctx_pair_pkts=("fwd", "sum"), first=("start_us", "min"), last=("end_us", "max"))
        pair["ctx_pair_span_us"] = (pair.pop("last") - pair.pop("first")).clip(lower=0.0)
        pair["ctx_pair_pps"] = pair["ctx_pair_pkts"] / (np.maximum(pair["ctx_pair_span_us"], 1000.0) / 1e6)
        dst = per_group(["bin", "dst"], ctx_dst_flows=("fwd", "size"), ctx_dst_srcs=("src", "nunique"),
                        ctx_dst_noreply=("noreply", "mean"))
        both = pd.concat([src, pair, dst], axis=1)
        out.loc[both.index, both.columns] = both.to_numpy(dtype="float64")
        out.loc[both.index, "ctx_window_s"] = float(window_s)
    if "flow_id" in flows.columns:
        out.insert(0, "flow_id", flows["flow_id"].to_numpy())
        out = out.drop_duplicates("flow_id").reset_index(drop=True)
    else:
        out.index = flows.index
    return out


def add_host_context(flows: pd.DataFrame, *, window_s: float = 10.0) -> pd.DataFrame:
    """``flows`` with the :func:`host_context` columns joined (on ``flow_id``, else by row); unchanged when it
    lacks addresses or times, or already has the context columns."""
    if not has_context_inputs(flows) or "ctx_src_flows" in flows.columns:
        return flows
    context = host_context(flows, window_s=window_s)
    if "flow_id" in flows.columns:
        return flows.merge(context, on="flow_id", how="left")
    return pd.concat([flows, context], axis=1)


#: Flow-table columns the context is computed from (what :class:`HostContextPlugin` keeps per expired flow).
_INPUT_COLUMNS = ("flow_id", "Src IP", "Dst IP", "Dst Port", "first_ts_ns", "Flow Duration", "Total Bwd packets",
                  "Total Fwd Packet", "RST Flag Count")


class HostContextPlugin(StreamPlugin):
    """:func:`host_context` of every flow, computed on the stream window by window.

    Each :class:`~packetclip.traffic.stream.FlowExpiry` carries in ``extras["host_context"]`` the context rows
    (``flow_id`` + :data:`CONTEXT_COLUMNS`) of the flows whose window was finalised by then — not necessarily
    the flows expiring in that event; the :class:`~packetclip.traffic.stream.SourceEnd` of a source carries the
    rest, so every flow gets exactly one row. Windows are
    per source (a source's end finalises its windows), which equals the batch context of each capture's flow
    table. :meth:`provisional` gives the context of open windows from the flows expired so far (for a
    detector that cannot wait).
    """

    name = "host_context"

    def __init__(self, window_s: float = 10.0):
        if not window_s > 0:
            raise ContextInputError(f"window_s must be positive, not {window_s}")
        self.window_s = float(window_s)
        self._window_ns = int(round(self.window_s * 1e9))

    def on_init(self, stream) -> None:
        self.stream = stream
        self._pending: dict[int, list[pd.DataFrame]] = {}
        self._pending_rows = 0
        self._done: list[pd.DataFrame] = []

    def _bins(self, start_ns: np.ndarray) -> np.ndarray:
        return np.floor(start_ns.astype("float64") / (self.window_s * 1e9)).astype(np.int64)

    def on_expire(self, expiry: FlowExpiry) -> None:
        table = expiry.flows.select([c for c in _INPUT_COLUMNS if c in expiry.flows.column_names]).to_pandas()
        if len(table):
            bins = self._bins(table["first_ts_ns"].to_numpy())
            for b, part in table.groupby(bins, sort=False):
                self._pending.setdefault(int(b), []).append(part)
            self._pending_rows += len(table)
        clock = self.stream.clock_ns
        oldest = self.stream.oldest_open_ns()
        limit = clock if oldest is None or clock is None else min(clock, oldest)
        if limit is not None:
            self._finalise([b for b in self._pending if (b + 1) * self.window_s * 1e9 <= limit])
        expiry.extras[self.name] = self._take()

    def on_source_end(self, end: SourceEnd) -> None:
        self._finalise(list(self._pending))
        end.extras[self.name] = self._take()

    def _finalise(self, bins: list[int]) -> None:
        for b in sorted(bins):
            flows = pd.concat(self._pending.pop(b), ignore_index=True)
            self._pending_rows -= len(flows)
            self._done.append(host_context(flows, window_s=self.window_s))

    def _take(self) -> pd.DataFrame:
        if not self._done:
            return pd.DataFrame(columns=["flow_id", *CONTEXT_COLUMNS])
        out = pd.concat(self._done, ignore_index=True) if len(self._done) > 1 else self._done[0]
        self._done = []
        return out

    def provisional(self) -> pd.DataFrame:
        """Context of the flows of windows still open, from the flows of those windows expired so far."""
        parts = [p for parts in self._pending.values() for p in parts]
        if not parts:
            return pd.DataFrame(columns=["flow_id", *CONTEXT_COLUMNS])
        return host_context(pd.concat(parts, ignore_index=True), window_s=self.window_s)

    @property
    def tracked_flows(self) -> int:
        """Expired flows kept until their window is finalised."""
        return int(getattr(self, "_pending_rows", 0))
