"""Early-decision features: what a detector knows about a flow at its 1st, 2nd, 4th, 8th … packet.

A flow table row exists only when a flow ends; a flood or a scan must be reported while it runs. So the
detector keeps its own small per-flow state and, for every packet batch of a
:class:`~packetclip.traffic.stream.FlowStream`, finds the packets at which a flow reaches a power-of-two
packet count (its *decision points*) and the features of the flow as of that packet — all vectorised over
the batch (one stable sort by flow slot, one grouped cumulative sum).

Features (:data:`FEATURES`) are of two kinds:

* the flow's prefix up to the decision packet (exact): packets each way, bytes, payload, TCP flag counts,
  duration and rate, protocol, server port, first ICMP type;
* host context (as :mod:`packetclip.traffic.context` reads it from the flow table, here counted as packets
  arrive): flows, distinct hosts and ports of the flow's source, of its source-destination pair and of its
  destination, the pair's unanswered share and packets, over the current and previous ``window_s`` bins.
  Context is counted up to the end of the batch holding the decision packet (batch granularity: at most
  ``batch_packets`` packets of look-ahead; a live source's batches are a few milliseconds).

Bounded state: per-flow state lives in ``slots`` fixed arrays addressed by ``flow_id mod slots`` (a newer
flow reusing a slot restarts the older one's counts: the price of flat memory); context keeps two bins of
count-min sketches (``2**sketch_bits`` buckets per row) and one bin of pair-key bitmaps (``2**set_bits``):
fixed memory whatever the number of hosts, at the cost of rare over-counts on hash collisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from packetclip.traffic.batch import ACK, FIN, PSH, RST, SYN

#: Feature names, in model column order.
FLOW_FEATURES = ("n_pkts", "fwd_pkts", "bwd_pkts", "fwd_bytes", "bwd_bytes", "mean_len", "fwd_payload",
                 "bwd_payload", "syn", "synack", "rst", "fin", "psh", "ack_only", "bwd_share", "syn_share",
                 "duration_s", "pkts_per_s", "proto", "server_port", "server_port_low", "icmp_type")
CONTEXT_FEATURES = ("src_flows", "src_dsts", "src_ports", "dst_flows", "dst_srcs", "pair_flows", "pair_ports",
                    "pair_pkts", "pair_noreply", "dst_pkts", "src_pkts")
FEATURES = FLOW_FEATURES + CONTEXT_FEATURES

# per-packet quantities summed per flow (columns of the grouped cumulative sum)
_N, _FWD, _BF, _BB, _PF, _PB, _SYN, _SYNACK, _RST, _FIN, _PSH, _ACKONLY = range(12)
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)


def host_key(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """One 64-bit key per address (IPv4-mapped addresses keep their low word unchanged)."""
    with np.errstate(over="ignore"):
        return lo.astype(np.uint64) ^ (hi.astype(np.uint64) * _M1)


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An order-sensitive 64-bit key of two keys."""
    with np.errstate(over="ignore"):
        return (a * _M2) ^ (b + _M1) ^ (a >> np.uint64(29))


@dataclass
class Decisions:
    """Decision points of one batch: ``rows`` (packet rows in the batch), their ``flow_id``, ``n`` (packets
    of the flow so far), feature matrix ``X`` [len, len(FEATURES)] and the forward side's addresses/ports."""

    rows: np.ndarray
    flow_id: np.ndarray
    n: np.ndarray
    X: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    proto: np.ndarray
    ts_ns: np.ndarray
    slot: np.ndarray
    at_expiry: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, sel) -> "Decisions":
        return Decisions(*(getattr(self, f)[sel] for f in ("rows", "flow_id", "n", "X", "src_hi", "src_lo",
                                                          "dst_hi", "dst_lo", "sport", "dport", "proto", "ts_ns", "slot")),
                         at_expiry=self.at_expiry)


_COUNTERS = ("src_flows", "src_dsts", "src_ports", "dst_flows", "dst_srcs", "pair_flows", "pair_ports",
             "pair_pkts", "pair_replied", "dst_pkts", "src_pkts")
_SETS = ("sd", "sp", "sdp")


def _buckets(keys: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent bucket indices per key."""
    mask = np.uint64((1 << bits) - 1)
    with np.errstate(over="ignore"):
        h1 = keys & mask
        h2 = ((keys * _M2) >> np.uint64(64 - bits)) & mask
    return h1.astype(np.int64), h2.astype(np.int64)


class _Window:
    """Host counters of one time bin as count-min sketches (two hash rows, a key reads the smaller count)
    and pair-key membership as two-hash bitmaps: fixed memory, vectorised, whatever the traffic. Collisions
    can only over-count (a rare small key may read a little high)."""

    def __init__(self, bits: int, set_bits: int, with_sets: bool = True):
        self.bits = bits
        self.set_bits = set_bits
        self.count = np.zeros((len(_COUNTERS), 2, 1 << bits), np.float32)
        self.seen = np.zeros((len(_SETS), 1 << set_bits), bool) if with_sets else None

    def drop_sets(self) -> None:
        self.seen = None


class EarlyFeatures:
    """Per-flow prefix state + host context windows; :meth:`update` → the batch's :class:`Decisions`.

    ``max_doublings``: decisions at packets 1, 2, 4, … 2**max_doublings (later packets only at expiry).
    """

    def __init__(self, *, window_s: float = 10.0, slots: int = 1 << 19, sketch_bits: int = 18,
                 set_bits: int = 22, max_doublings: int = 16):
        if slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.window_ns = int(window_s * 1e9)
        self.window_s = float(window_s)
        self.slots = int(slots)
        self.sketch_bits = int(sketch_bits)
        self.set_bits = int(set_bits)
        self.max_n = 1 << int(max_doublings)
        self.fid = np.full(slots, -1, np.int64)
        self.acc = np.zeros((slots, 12), np.float32)
        self.first_ts = np.zeros(slots, np.int64)
        self.last_ts = np.zeros(slots, np.int64)
        self.static = np.zeros((slots, 3), np.int32)          # proto, server port, icmp type
        self.fwd_addr = np.zeros((slots, 4), np.uint64)        # src hi, lo, dst hi, lo (forward side)
        self.fwd_ports = np.zeros((slots, 2), np.int32)        # sport, dport (forward side)
        self.alert_cls = np.full(slots, -1, np.int16)       # class a flow alerted as (detector's state)
        self.alert_n = np.zeros(slots, np.int32)              # packets of it already counted in alerts
        # host context as of each flow's last decision (float16: counts clipped at 65,000), for its decision
        # at expiry: a flow that ends by idle timeout ends 30 s after its last packet, when the context
        # windows have moved on and read empty (a lone SYN with no context looked like a flood to the model)
        self.last_ctx = np.zeros((slots, len(CONTEXT_FEATURES)), np.float16)
        self.cur = _Window(self.sketch_bits, self.set_bits)
        self.prev = _Window(self.sketch_bits, self.set_bits, with_sets=False)
        self.cur_bin: int | None = None
        self.slot_collisions = 0

    # -- context windows ------------------------------------------------------------------------------------
    def _roll(self, ts_ns: int) -> None:
        b = ts_ns // self.window_ns
        if self.cur_bin is None:
            self.cur_bin = b
        elif b != self.cur_bin:
            if b == self.cur_bin + 1:
                self.prev, self.cur = self.cur, self.prev     # reuse the old buffers: no allocation per window
                self.prev.drop_sets()
                self.cur.count[:] = 0.0
                self.cur.seen = np.zeros((len(_SETS), 1 << self.set_bits), bool)
            else:
                self.prev.count[:] = 0.0
                self.cur.count[:] = 0.0
                self.cur.seen[:] = False
            self.cur_bin = b

    def _add(self, name: str, keys: np.ndarray, weights: np.ndarray | None = None) -> None:
        if not len(keys):
            return
        c = self.cur.count[_COUNTERS.index(name)]
        h1, h2 = _buckets(keys, self.sketch_bits)
        w = np.ones(len(keys), np.float32) if weights is None else weights.astype(np.float32)
        np.add.at(c[0], h1, w)
        np.add.at(c[1], h2, w)

    def _distinct(self, which: str, pair_keys: np.ndarray, *groups: tuple[str, np.ndarray]) -> None:
        """Count, per group key, pair keys not seen before in this bin."""
        if not len(pair_keys):
            return
        uk, first = np.unique(pair_keys, return_index=True)
        seen = self.cur.seen[_SETS.index(which)]
        h1, h2 = _buckets(uk, self.set_bits)
        new = ~(seen[h1] & seen[h2])
        seen[h1] = True
        seen[h2] = True
        if new.any():
            rows = first[new]
            for name, keys in groups:
                self._add(name, keys[rows])

    def _lookup(self, name: str, keys: np.ndarray) -> np.ndarray:
        i = _COUNTERS.index(name)
        h1, h2 = _buckets(keys, self.sketch_bits)
        out = np.zeros(len(keys), np.float64)
        for w in (self.cur, self.prev):
            c = w.count[i]
            out += np.minimum(c[0][h1], c[1][h2])
        return out

    # -- per batch ------------------------------------------------------------------------------------------
    def update(self, batch, flow_id: np.ndarray, direction: np.ndarray) -> Decisions:
        """Account the batch's packets and return its decision points (features as of each decision)."""
        sel = np.flatnonzero(flow_id >= 0)
        if len(batch):
            self._roll(int(batch.ts_ns[-1]))
        if not len(sel):
            return self._empty()
        fid = flow_id[sel]
        d = direction[sel].astype(np.int8)
        slot = (fid & (self.slots - 1)).astype(np.int64)
        order = np.argsort(slot, kind="stable")
        s_sorted = slot[order]
        start = np.ones(len(order), bool)
        start[1:] = s_sorted[1:] != s_sorted[:-1]
        first_rows = order[start]                      # first packet of each slot in this batch
        fslot = slot[first_rows]
        fresh = self.fid[fslot] != fid[first_rows]
        # a slot shared by two flows inside one batch: the later flow restarts the slot (counted)
        self.slot_collisions += int(len(np.unique(fid)) - len(fslot))
        ts = batch.ts_ns[sel]
        if fresh.any():
            r, fs = first_rows[fresh], fslot[fresh]
            rr = sel[r]
            fwd0 = d[r] == 0
            self.fid[fs] = fid[r]
            self.acc[fs] = 0.0
            self.alert_cls[fs] = -1
            self.alert_n[fs] = 0
            self.last_ctx[fs] = 0.0
            self.first_ts[fs] = ts[r]
            sh, slo, dh, dlo = batch.src_hi[rr], batch.src_lo[rr], batch.dst_hi[rr], batch.dst_lo[rr]
            sp, dp = batch.sport[rr].astype(np.int32), batch.dport[rr].astype(np.int32)
            self.fwd_addr[fs] = np.stack([np.where(fwd0, sh, dh), np.where(fwd0, slo, dlo),
                                          np.where(fwd0, dh, sh), np.where(fwd0, dlo, slo)], axis=1)
            self.fwd_ports[fs] = np.stack([np.where(fwd0, sp, dp), np.where(fwd0, dp, sp)], axis=1)
            self.static[fs] = np.stack([batch.proto[rr].astype(np.int32), np.where(fwd0, dp, sp),
                                        batch.icmp_type[rr].astype(np.int32)], axis=1)
        # per-packet quantities
        rows = sel
        length = batch.ip_len[rows].astype(np.float32)
        pay = batch.payload_len[rows].astype(np.float32)
        fl = batch.tcp_flags[rows].astype(np.int32)
        is_tcp = batch.proto[rows] == 6
        fwd = (d == 0).astype(np.float32)
        bwd = 1.0 - fwd
        X = np.zeros((len(rows), 12), np.float32)
        X[:, _N] = 1.0
        X[:, _FWD] = fwd
        X[:, _BF] = length * fwd
        X[:, _BB] = length * bwd
        X[:, _PF] = pay * fwd
        X[:, _PB] = pay * bwd
        X[:, _SYN] = is_tcp & ((fl & SYN) != 0) & ((fl & ACK) == 0)
        X[:, _SYNACK] = is_tcp & ((fl & SYN) != 0) & ((fl & ACK) != 0)
        X[:, _RST] = is_tcp & ((fl & RST) != 0)
        X[:, _FIN] = is_tcp & ((fl & FIN) != 0)
        X[:, _PSH] = is_tcp & ((fl & PSH) != 0)
        X[:, _ACKONLY] = is_tcp & ((fl & 0x3F) == ACK) & (pay == 0)
        xs = X[order].astype(np.float64)
        cs = np.cumsum(xs, axis=0)
        excl = cs - xs
        gstart = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
        cum = cs - excl[gstart] + self.acc[s_sorted]       # flow totals as of each packet (sorted order)
        last = np.ones(len(order), bool)
        last[:-1] = start[1:]
        prior_bwd = self.acc[s_sorted[last], _N] - self.acc[s_sorted[last], _FWD]
        self.acc[s_sorted[last]] = cum[last]
        self.last_ts[s_sorted[last]] = ts[order[last]]
        # host context: new flows, forward packets, first replies
        n_sorted = cum[:, _N]
        fa = self.fwd_addr[s_sorted]
        src_k = host_key(fa[:, 0], fa[:, 1])
        dst_k = host_key(fa[:, 2], fa[:, 3])
        sd_k = mix(src_k, dst_k)
        new_flow = n_sorted == 1
        port = self.static[s_sorted, 1].astype(np.uint64)
        if new_flow.any():
            s, t, sd = src_k[new_flow], dst_k[new_flow], sd_k[new_flow]
            sp_k = mix(s, port[new_flow])
            sdp_k = mix(sd, port[new_flow])
            self._add("src_flows", s)
            self._add("dst_flows", t)
            self._add("pair_flows", sd)
            self._distinct("sd", sd, ("src_dsts", s), ("dst_srcs", t))
            self._distinct("sp", sp_k, ("src_ports", s))
            self._distinct("sdp", sdp_k, ("pair_ports", sd))
        fwd_s = xs[:, _FWD] > 0
        self._add("pair_pkts", sd_k[fwd_s])
        self._add("dst_pkts", dst_k[fwd_s])
        self._add("src_pkts", src_k[fwd_s])
        bwd_total = cum[:, _N] - cum[:, _FWD]
        first_reply = (bwd_total >= 1) & last
        first_reply[last] &= prior_bwd < 1
        if first_reply.any():
            self._add("pair_replied", sd_k[first_reply])
        # decision points: packet counts 1, 2, 4, … up to max_n
        ni = n_sorted.astype(np.int64)
        dec = (ni & (ni - 1)) == 0
        dec &= ni <= self.max_n
        idx = np.flatnonzero(dec)
        return self._decisions(order[idx], s_sorted[idx], cum[idx], ts[order[idx]], src_k[idx], dst_k[idx],
                               sd_k[idx], fid[order[idx]], sel)

    def _decisions(self, local_rows, slots, cum, ts, src_k, dst_k, sd_k, fid, sel, at_expiry=False) -> Decisions:
        X = self._matrix(slots, cum, ts, src_k, dst_k, sd_k)
        k = len(FLOW_FEATURES)
        if at_expiry:
            # windows that no longer hold the flow's last packet read stale: keep the context it last had
            stale = ts // self.window_ns < (self.cur_bin if self.cur_bin is not None else 0) - 1
            if stale.any():
                X[stale, k:] = self.last_ctx[slots[stale]].astype(np.float32)
        else:       # a slot's decisions come in packet order: the last write is its latest context
            self.last_ctx[slots] = np.minimum(X[:, k:], 65000.0)
        fa = self.fwd_addr[slots]
        fp = self.fwd_ports[slots]
        return Decisions(sel[local_rows], fid, cum[:, _N].astype(np.int64), X, fa[:, 0], fa[:, 1], fa[:, 2],
                         fa[:, 3], fp[:, 0], fp[:, 1], self.static[slots, 0], ts, slots)

    def _matrix(self, slots, cum, ts, src_k, dst_k, sd_k) -> np.ndarray:
        n = cum[:, _N]
        fwd = cum[:, _FWD]
        bwd = n - fwd
        dur = np.maximum(ts - self.first_ts[slots], 0) / 1e9
        st = self.static[slots]
        X = np.empty((len(n), len(FEATURES)), np.float32)
        cols = [n, fwd, bwd, cum[:, _BF], cum[:, _BB], (cum[:, _BF] + cum[:, _BB]) / np.maximum(n, 1),
                cum[:, _PF], cum[:, _PB], cum[:, _SYN], cum[:, _SYNACK], cum[:, _RST], cum[:, _FIN], cum[:, _PSH],
                cum[:, _ACKONLY], bwd / np.maximum(n, 1), cum[:, _SYN] / np.maximum(n, 1), dur,
                n / np.maximum(dur, 1e-3), st[:, 0], st[:, 1], st[:, 1] < 1024, st[:, 2]]
        for j, c in enumerate(cols):
            X[:, j] = c
        k = len(FLOW_FEATURES)
        pair_flows = self._lookup("pair_flows", sd_k)
        ctx = {"src_flows": self._lookup("src_flows", src_k), "src_dsts": self._lookup("src_dsts", src_k),
               "src_ports": self._lookup("src_ports", src_k), "dst_flows": self._lookup("dst_flows", dst_k),
               "dst_srcs": self._lookup("dst_srcs", dst_k), "pair_flows": pair_flows,
               "pair_ports": self._lookup("pair_ports", sd_k), "pair_pkts": self._lookup("pair_pkts", sd_k),
               "pair_noreply": 1.0 - np.minimum(self._lookup("pair_replied", sd_k) / np.maximum(pair_flows, 1), 1),
               "dst_pkts": self._lookup("dst_pkts", dst_k), "src_pkts": self._lookup("src_pkts", src_k)}
        for j, name in enumerate(CONTEXT_FEATURES):
            X[:, k + j] = ctx[name]
        return X

    def expire(self, flow_ids: np.ndarray) -> Decisions:
        """Final decision of flows that ended (features as of their last packet), then their state is freed."""
        fids = np.asarray(flow_ids, np.int64)
        slots = (fids & (self.slots - 1)).astype(np.int64)
        mine = self.fid[slots] == fids
        slots, fids = slots[mine], fids[mine]
        if not len(slots):
            return self._empty(at_expiry=True)
        cum = self.acc[slots].astype(np.float64)
        fa = self.fwd_addr[slots]
        src_k, dst_k = host_key(fa[:, 0], fa[:, 1]), host_key(fa[:, 2], fa[:, 3])
        ts = self.last_ts[slots]
        dec = self._decisions(np.zeros(len(slots), np.int64), slots, cum, ts, src_k, dst_k, mix(src_k, dst_k),
                              fids, np.full(len(slots), -1, np.int64), at_expiry=True)
        dec.at_expiry = True
        self.fid[slots] = -1
        return dec

    @property
    def tracked_flows(self) -> int:
        return int(np.count_nonzero(self.fid >= 0))

    def _empty(self, at_expiry: bool = False) -> Decisions:
        z = np.zeros(0, np.int64)
        u = np.zeros(0, np.uint64)
        return Decisions(z, z, z, np.zeros((0, len(FEATURES)), np.float32), u, u, u, u, z, z, z, z, z, at_expiry)
