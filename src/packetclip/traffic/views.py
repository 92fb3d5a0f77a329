"""Packet views for the encoders: the first N bytes of each packet from its IP header on, masked.

A view starts at the IP header, so MAC addresses (and the rest of the link layer) are never in it.
It stops at the end of the IP packet (Ethernet padding is not packet content) and is zero-padded to
``n_bytes``. Packets that are not decoded IP (status other than OK) get an all-zero view.

Masking (on by default) removes what identifies hosts or a particular capture rather than behaviour:

- IPv4: identification, header checksum, source and destination address, and the contents of options
  that carry addresses (record route, timestamp, source routes);
- IPv6: flow label, source and destination address, routing-header and destination-option contents,
  fragment-header identification;
- TCP: ports, checksum; sequence and acknowledgement numbers become flow-relative (seq minus the first
  seq seen in that flow and direction; ack minus the first seq of the other direction, 0 while that is
  unknown or when ACK is not set); SACK edges relative like acks; timestamp option TSval/TSecr zeroed;
- UDP: ports and checksum; SCTP: ports and checksum;
- ICMP/ICMPv6: checksum, echo identifier, redirect gateway; the IP header and ports quoted inside
  error messages are masked like the outer ones; neighbour-discovery targets and options (which carry
  MAC addresses) are zeroed;
- IP-in-IP (protocols 4 and 41): the inner IP header is masked like the outer one.

Application payload is left as is (it is what the encoders learn from). Flow-relative numbers need
state across batches, kept by ``PacketViewer`` per (flow id, direction); flow id -1 means "in no flow"
and gives relative values 0. ``mask=False`` returns the raw bytes (for ablations only).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from packetclip.traffic._numba import memcpy as _memcpy
from packetclip.traffic._numba import memzero as _memzero
from packetclip.traffic._numba import prefetch as _prefetch
from packetclip.traffic.batch import ACK, STATUS_OK, PacketBatch


@njit(cache=True)
def _put32(row, a, value, m):
    for k in range(4):
        if a + k < m:
            row[a + k] = (value >> (24 - 8 * k)) & 0xFF


@njit(cache=True)
def _get32(row, a):
    return ((np.int64(row[a]) << 24) | (np.int64(row[a + 1]) << 16)
            | (np.int64(row[a + 2]) << 8) | np.int64(row[a + 3]))


@njit(cache=True)
def _mask_ip(row, s, m, zr, k):
    """Mask plan for the IP header at ``s`` (v4 or v6): appends byte ranges to zero to ``zr``.

    Returns (transport start or -1, protocol, non-first fragment, new range count). The IPv6 flow label
    (a partial byte) is cleared here directly."""
    none = np.int64(-1)
    if s >= m or k + 8 > zr.shape[0]:
        return none, none, False, k
    v = np.int64(row[s]) >> 4
    if v == 4:
        hl = (np.int64(row[s]) & 15) * 4
        pr = np.int64(row[s + 9]) if s + 9 < m else none
        nonfirst = False
        if s + 7 < m:
            nonfirst = (((np.int64(row[s + 6]) & 0x1F) << 8) | np.int64(row[s + 7])) != 0
        zr[k, 0] = s + 4                     # identification
        zr[k, 1] = s + 6
        zr[k + 1, 0] = s + 10                # checksum, source, destination
        zr[k + 1, 1] = s + 20
        k += 2
        if hl < 20:
            return none, pr, nonfirst, k
        o = s + 20                           # options that carry addresses: route records, timestamps
        o_end = min(s + hl, m)
        while o + 1 < o_end and k < zr.shape[0] - 8:
            kind = np.int64(row[o])
            if kind == 0:
                break
            if kind == 1:
                o += 1
                continue
            ln = np.int64(row[o + 1])
            if ln < 2:
                break
            if kind == 7 or kind == 68 or kind == 131 or kind == 137:
                zr[k, 0] = o + (4 if kind == 68 else 3)     # keep type, length, pointer (and TS flags)
                zr[k, 1] = o + ln
                k += 1
            o += ln
        return s + hl, pr, nonfirst, k
    if v == 6:
        if s + 1 < m:
            row[s + 1] = row[s + 1] & 0xF0
        zr[k, 0] = s + 2                     # rest of the flow label
        zr[k, 1] = s + 4
        zr[k + 1, 0] = s + 8                 # source, destination
        zr[k + 1, 1] = s + 40
        k += 2
        if s + 6 >= m:
            return none, none, False, k
        pr = np.int64(row[s + 6])
        q = s + 40
        nonfirst = False
        for _h in range(16):
            if pr != 0 and pr != 43 and pr != 60 and pr != 44 and pr != 51:
                break
            if q + 2 > m or k + 1 > zr.shape[0]:
                return none, pr, nonfirst, k
            nxt = np.int64(row[q])
            if pr == 44:
                ln = np.int64(8)
                if q + 4 <= m:
                    nonfirst = (((np.int64(row[q + 2]) << 8) | np.int64(row[q + 3])) & 0xFFF8) != 0
                zr[k, 0] = q + 4             # fragment identification
                zr[k, 1] = q + 8
                k += 1
            elif pr == 51:
                ln = (np.int64(row[q + 1]) + 2) * 4
            else:
                ln = (np.int64(row[q + 1]) + 1) * 8
                if pr == 43:                 # routing header: segment addresses
                    zr[k, 0] = q + 4
                    zr[k, 1] = q + ln
                    k += 1
                elif pr == 60:               # destination options: e.g. home address
                    zr[k, 0] = q + 2
                    zr[k, 1] = q + ln
                    k += 1
            q += ln
            pr = nxt
            if nonfirst:
                break
        return q, pr, nonfirst, k
    return none, none, False, k


@njit(cache=True)
def _mask_quoted_l4(t, pr, zr, k):
    """Ports/checksums of a transport header quoted in an ICMP error or carried in IP-in-IP."""
    if t < 0 or k + 2 > zr.shape[0]:
        return k
    if pr == 6:
        zr[k, 0] = t                         # ports and the (absolute) sequence number
        zr[k, 1] = t + 8
        zr[k + 1, 0] = t + 16
        zr[k + 1, 1] = t + 18
        return k + 2
    if pr == 17:
        zr[k, 0] = t
        zr[k, 1] = t + 4
        zr[k + 1, 0] = t + 6
        zr[k + 1, 1] = t + 8
        return k + 2
    if pr == 132:
        zr[k, 0] = t
        zr[k, 1] = t + 4
        zr[k + 1, 0] = t + 8
        zr[k + 1, 1] = t + 12
        return k + 2
    return k


@njit(cache=True)
def _views(data, offset, caplen, status, l3_off, proto, ip_len, ip_hdr_len, l4_hdr_len, tcp_flags,
           flow_id, direction, mask, first_seq, seen, base, rows, out):
    """Views of packets ``rows`` (batch indices, ascending) into ``out[j]``; per-flow TCP state at
    ``(flow_id - base) * 2 + direction``."""
    n_bytes = np.int64(out.shape[1])
    flat = out.reshape(-1)
    zr = np.zeros((64, 2), np.int64)         # byte ranges to zero in the current view
    n_rows = rows.shape[0]
    for j in range(n_rows):
        i = rows[j]
        if j + 16 < n_rows:
            p_at = offset[rows[j + 16]] + 14
            if p_at >= 0 and p_at + 64 < data.shape[0]:
                _prefetch(data, p_at)
                _prefetch(data, p_at + 64)
        row = out[j]
        m = np.int64(0)
        if status[i] == STATUS_OK and l3_off[i] >= 0:
            s0 = offset[i] + np.int64(l3_off[i])
            pkt_end = offset[i] + np.int64(caplen[i])
            m = max(min(n_bytes, pkt_end - s0, np.int64(ip_len[i])), np.int64(0))
            if s0 < 0 or s0 + m > data.shape[0]:
                m = 0
            _memcpy(flat, j * n_bytes, data, s0, m)
        _memzero(flat, j * n_bytes + m, n_bytes - m)
        if m == 0:
            continue
        pr = np.int64(proto[i])
        rel_seq = np.int64(0)
        rel_ack = np.int64(0)
        other = np.int64(-1)
        tcp = pr == 6 and l4_hdr_len[i] > 0
        if tcp and s0 + np.int64(ip_hdr_len[i]) + 12 <= pkt_end:
            t = s0 + np.int64(ip_hdr_len[i])
            seq = _get32(data, t + 4)
            ack = _get32(data, t + 8)
            fid = np.int64(flow_id[i]) - base
            if flow_id[i] >= 0:
                dr = np.int64(1) if direction[i] else np.int64(0)
                key = fid * 2 + dr
                other = fid * 2 + (1 - dr)
                if seen[key] == 0:
                    seen[key] = 1
                    first_seq[key] = seq
                rel_seq = (seq - np.int64(first_seq[key])) & 0xFFFFFFFF
                if (tcp_flags[i] & ACK) and seen[other]:
                    rel_ack = (ack - np.int64(first_seq[other])) & 0xFFFFFFFF
        if not mask:
            continue
        k = np.int64(0)
        l4, pr2, nonfirst, k = _mask_ip(row, np.int64(0), m, zr, k)
        if l4 >= 0 and not nonfirst:
            if tcp:
                zr[k, 0] = l4                # ports
                zr[k, 1] = l4 + 4
                zr[k + 1, 0] = l4 + 16       # checksum
                zr[k + 1, 1] = l4 + 18
                k += 2
                _put32(row, l4 + 4, rel_seq, m)
                _put32(row, l4 + 8, rel_ack, m)
                o = l4 + 20
                o_end = min(l4 + np.int64(l4_hdr_len[i]), m)
                while o < o_end:
                    kind = row[o]
                    if kind == 0:
                        break
                    if kind == 1:
                        o += 1
                        continue
                    if o + 1 >= o_end:
                        break
                    ln = np.int64(row[o + 1])
                    if ln < 2:
                        break
                    if kind == 8 and k < zr.shape[0]:    # timestamps: TSval, TSecr
                        zr[k, 0] = o + 2
                        zr[k, 1] = o + ln
                        k += 1
                    elif kind == 5:                      # SACK edges live in the peer's sequence space
                        b = o + 2
                        while b + 4 <= o + ln and b + 4 <= m:
                            edge = np.int64(0)
                            if other >= 0 and seen[other]:
                                edge = (_get32(row, b) - np.int64(first_seq[other])) & 0xFFFFFFFF
                            _put32(row, b, edge, m)
                            b += 4
                    o += ln
            elif pr == 17 or pr == 132:
                k = _mask_quoted_l4(l4, pr, zr, k)
            elif (pr == 1 or pr == 58) and l4 < m:
                zr[k, 0] = l4 + 2            # checksum
                zr[k, 1] = l4 + 4
                k += 1
                typ = np.int64(row[l4])
                inner = False
                if pr == 1:
                    if typ == 0 or typ == 8 or typ == 13 or typ == 14 or typ == 15 or typ == 16:
                        zr[k, 0] = l4 + 4    # echo / timestamp / info identifier
                        zr[k, 1] = l4 + 6
                        k += 1
                    elif typ == 3 or typ == 4 or typ == 5 or typ == 11 or typ == 12:
                        if typ == 5:
                            zr[k, 0] = l4 + 4    # redirect gateway address
                            zr[k, 1] = l4 + 8
                            k += 1
                        inner = True
                else:
                    if typ == 128 or typ == 129:
                        zr[k, 0] = l4 + 4
                        zr[k, 1] = l4 + 6
                        k += 1
                    elif 1 <= typ <= 4:
                        inner = True
                    elif typ == 133 or typ == 135 or typ == 136 or typ == 137:
                        zr[k, 0] = l4 + 8    # neighbour discovery: targets and link-layer options
                        zr[k, 1] = m
                        k += 1
                    elif typ == 134:
                        zr[k, 0] = l4 + 16
                        zr[k, 1] = m
                        k += 1
                if inner:
                    t2, p2, nf2, k = _mask_ip(row, l4 + 8, m, zr, k)
                    if not nf2:
                        k = _mask_quoted_l4(t2, p2, zr, k)
            elif pr == 4 or pr == 41:
                t2, p2, nf2, k = _mask_ip(row, l4, m, zr, k)
                if not nf2:
                    k = _mask_quoted_l4(t2, p2, zr, k)
        for j in range(k):
            for b in range(max(zr[j, 0], np.int64(0)), min(zr[j, 1], m)):
                row[b] = 0


@njit(cache=True)
def _rank_rows(flow_id, base, count, first_k, rows):
    """Batch indices of packets among their flow's first ``first_k`` (counting across batches in ``count``);
    returns how many were written to ``rows``. Packets outside flows are skipped."""
    n = 0
    for i in range(flow_id.shape[0]):
        f = flow_id[i]
        if f < 0:
            continue
        c = count[f - base]
        if c < first_k:
            rows[n] = i
            n += 1
        if c < 2147483647:
            count[f - base] = c + 1
    return n


class PacketViewer:
    """Turns decoded batches into fixed-size masked byte views, keeping TCP sequence state per flow.

    Feed batches in capture order. ``flow_id`` (int64, -1 = no flow) and ``direction`` (0 forward,
    1 backward) come from the flow meter, one per packet of the batch.

    Per-flow state (first sequence number per direction, packets seen) lives in arrays indexed by
    ``flow_id - base``; :meth:`release` frees expired flows and moves ``base`` up to the oldest flow still
    open, so memory is bounded by the flows created while one flow stays open (at most one active timeout),
    not by the capture. Flow ids must increase in order of creation (the meter's do).
    """

    def __init__(self, n_bytes: int = 128, mask: bool = True):
        if n_bytes < 1:
            raise ValueError("n_bytes must be >= 1")
        self.n_bytes = int(n_bytes)
        self.mask = bool(mask)
        self.reset()

    def reset(self) -> None:
        """Forget all flows (e.g. before the next capture, whose flow ids restart)."""
        # Per (flow id, direction): first TCP sequence number seen, and whether one was seen; per flow: packets
        # seen so far (for ``first_k``) and whether it was released.
        self._base = 0
        self._first_seq = np.zeros(1024, np.uint32)
        self._seen = np.zeros(1024, np.uint8)
        self._count = np.zeros(512, np.int32)
        self._released = np.zeros(512, np.bool_)
        self._high = 0                       # one past the highest flow id seen (relative to nothing: absolute)

    @property
    def tracked_flows(self) -> int:
        """Flows whose state is held (seen and not released)."""
        span = self._high - self._base
        return int(span - np.count_nonzero(self._released[:max(span, 0)]))

    def _ensure(self, max_flow_id: int) -> None:
        self._high = max(self._high, max_flow_id + 1)
        need = max_flow_id + 1 - self._base
        if need > len(self._count):
            size = max(need, 2 * len(self._count))
            self._first_seq = _grow(self._first_seq, 2 * size)
            self._seen = _grow(self._seen, 2 * size)
            self._count = _grow(self._count, size)
            self._released = _grow(self._released, size)

    def release(self, flow_ids: np.ndarray) -> None:
        """Forget expired flows; state below the oldest flow still open is dropped."""
        fids = np.asarray(flow_ids, np.int64)
        fids = fids[(fids >= self._base) & (fids < self._high)] - self._base
        if fids.size == 0:
            return
        self._released[fids] = True
        span = self._high - self._base
        alive = np.flatnonzero(~self._released[:span])
        shift = int(alive[0]) if alive.size else span
        if shift == 0 or (shift < len(self._count) // 4 and alive.size):
            return                           # shift in bulk: moving the arrays costs their length
        keep = span - shift
        for name, width in (("_first_seq", 2), ("_seen", 2), ("_count", 1), ("_released", 1)):
            arr = getattr(self, name)
            arr[:keep * width] = arr[shift * width: span * width]
            arr[keep * width: span * width] = 0
        self._base += shift
        if keep * 8 < len(self._count) and len(self._count) > 4096:   # give a big table back
            size = max(4096, 2 * keep)
            self._first_seq = self._first_seq[:2 * size].copy()
            self._seen = self._seen[:2 * size].copy()
            self._count = self._count[:size].copy()
            self._released = self._released[:size].copy()

    def first_rows(self, flow_id: np.ndarray, first_k: int | None) -> np.ndarray:
        """Batch indices of the packets that are among their flow's first ``first_k`` (all in-flow packets when
        None); advances the per-flow packet counts, so call it once per batch, before :meth:`views`."""
        flow_id = np.ascontiguousarray(flow_id, dtype=np.int64)
        if flow_id.size == 0:
            return np.zeros(0, np.int64)
        self._ensure(int(flow_id.max()))
        if first_k is None:
            return np.flatnonzero(flow_id >= 0)
        rows = np.empty(flow_id.size, np.int64)
        n = _rank_rows(flow_id, np.int64(self._base), self._count, np.int64(first_k), rows)
        return rows[:n]

    def views(self, batch: PacketBatch, flow_id: np.ndarray | None = None, direction: np.ndarray | None = None,
              n_bytes: int | None = None, mask: bool | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """uint8 array [len(batch), n_bytes] of views (or [len(rows), n_bytes] for the packets ``rows``, batch
        indices in ascending order); ``batch`` must be decoded (``decode_batch``)."""
        if batch.status is None:
            raise ValueError("decode the batch first (packetclip.traffic.decode.decode_batch)")
        n = len(batch)
        n_bytes = self.n_bytes if n_bytes is None else int(n_bytes)
        mask = self.mask if mask is None else bool(mask)
        if n_bytes < 1:
            raise ValueError("n_bytes must be >= 1")
        flow_id = np.full(n, -1, np.int64) if flow_id is None else np.ascontiguousarray(flow_id, dtype=np.int64)
        direction = (np.zeros(n, np.int8) if direction is None
                     else np.ascontiguousarray(direction).astype(np.int8, copy=False))
        if flow_id.shape != (n,) or direction.shape != (n,):
            raise ValueError("flow_id and direction need one entry per packet")
        rows = np.arange(n, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty((rows.size, n_bytes), np.uint8)
        if rows.size == 0:
            return out
        if int(flow_id.max()) >= 0 and int(flow_id[flow_id >= 0].min()) < self._base:
            raise ValueError("a packet belongs to a flow already released")
        self._ensure(int(flow_id.max()))
        c = np.ascontiguousarray
        _views(c(batch.data, dtype=np.uint8), c(batch.offset, dtype=np.int64), c(batch.caplen, dtype=np.int32),
               c(batch.status, dtype=np.uint8), c(batch.l3_off, dtype=np.int32), c(batch.proto, dtype=np.uint8),
               c(batch.ip_len, dtype=np.int32), c(batch.ip_hdr_len, dtype=np.int16),
               c(batch.l4_hdr_len, dtype=np.int16), c(batch.tcp_flags, dtype=np.uint16), flow_id, direction, mask,
               self._first_seq, self._seen, np.int64(self._base), rows, out)
        return out


def _grow(arr: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, arr.dtype)
    out[: len(arr)] = arr
    return out


def packet_views(batch: PacketBatch, flow_id: np.ndarray | None = None, direction: np.ndarray | None = None,
                 n_bytes: int = 128, mask: bool = True, viewer: PacketViewer | None = None) -> np.ndarray:
    """One-shot views of a decoded batch; pass a ``PacketViewer`` to keep sequence state across batches."""
    viewer = viewer if viewer is not None else PacketViewer(n_bytes=n_bytes, mask=mask)
    return viewer.views(batch, flow_id, direction, n_bytes=n_bytes, mask=mask)
