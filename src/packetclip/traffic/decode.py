"""Decode link, network and transport headers of a whole ``PacketBatch`` in one numba pass.

Link layers: Ethernet (802.1Q/802.1ad/QinQ tags, 802.3+SNAP, PPPoE session, MPLS), Linux cooked SLL and
SLL2, raw IP (101/12/14/228/229), BSD NULL/LOOP (AF in either byte order), PPP and Cisco HDLC, and PPI
(192) wrapping any of those (PPI around 802.11 is reported as bad link).
Network: IPv4 (options, fragments) and IPv6 (extension headers hop-by-hop, routing, fragment,
destination options, AH). Transport: TCP, UDP, ICMP, ICMPv6; any other protocol keeps its number and
gets ports 0.

``payload_len`` comes from the IP length fields, not from the captured length, so snaplen-truncated
captures still give the sizes the flow features need. A packet whose L4 header is cut before the
fields a flow key needs (ports, TCP flags) is ``STATUS_TRUNCATED``; malformed headers (IPv4 IHL < 5,
ethertype IP with another version nibble) are reported the same way.
"""

from __future__ import annotations

import ipaddress

import numpy as np
from numba import njit

from packetclip.traffic._numba import prefetch as _prefetch
from packetclip.traffic.batch import (STATUS_BAD_LINK, STATUS_NOT_IP, STATUS_OK, STATUS_TRUNCATED,
                                      PacketBatch)

_V4_MAPPED = 0x0000FFFF00000000

# Link types handled here (see pcap.SUPPORTED_LINKTYPES, which must list the same values).
_LT_NULL, _LT_ETH, _LT_PPP, _LT_RAW12, _LT_RAW14, _LT_PPP_HDLC, _LT_PPP_ETHER = 0, 1, 9, 12, 14, 50, 51
_LT_RAW, _LT_CHDLC, _LT_LOOP, _LT_SLL, _LT_IPV4, _LT_IPV6, _LT_SLL2 = 101, 104, 108, 113, 228, 229, 276
_LT_PPI = 192


@njit(cache=True)
def _be16(d, p):
    return (np.int64(d[p]) << 8) | np.int64(d[p + 1])


@njit(cache=True)
def _be32(d, p):
    return ((np.int64(d[p]) << 24) | (np.int64(d[p + 1]) << 16)
            | (np.int64(d[p + 2]) << 8) | np.int64(d[p + 3]))


@njit(cache=True)
def _be64u(d, p):
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(d[p + k])
    return v


@njit(cache=True)
def _u8(d, p):
    return np.int64(d[p])


@njit(cache=True, inline="always")
def _after_ethertype(d, p, end, etype):
    """Follow VLAN tags, PPPoE and MPLS from an ethertype.

    Returns (l3 position, 0x0800 / 0x86DD / 0 = "IP, version from the nibble", status)."""
    for _ in range(8):
        if etype == 0x0800 or etype == 0x86DD:
            return p, etype, STATUS_OK
        if etype == 0x8100 or etype == 0x88A8 or etype == 0x9100 or etype == 0x9200:
            if p + 4 > end:
                return p, etype, STATUS_TRUNCATED
            etype = _be16(d, p + 2)
            p += 4
            continue
        if etype == 0x8864:                      # PPPoE session: 6-byte header + PPP protocol
            if p + 8 > end:
                return p, etype, STATUS_TRUNCATED
            ppp = _be16(d, p + 6)
            p += 8
            if ppp == 0x0021:
                return p, np.int64(0x0800), STATUS_OK
            if ppp == 0x0057:
                return p, np.int64(0x86DD), STATUS_OK
            return p, etype, STATUS_NOT_IP
        if etype == 0x8847 or etype == 0x8848:   # MPLS label stack, then the version nibble decides
            for _k in range(16):
                if p + 4 > end:
                    return p, etype, STATUS_TRUNCATED
                bottom = _u8(d, p + 2) & 1
                p += 4
                if bottom:
                    break
            v = _u8(d, p) >> 4 if p < end else np.int64(0)
            if v == 4 or v == 6:
                return p, np.int64(0), STATUS_OK
            return p, etype, STATUS_NOT_IP
        return p, etype, STATUS_NOT_IP
    return p, etype, STATUS_NOT_IP


@njit(cache=True, inline="always")
def _link(d, base, end, lt):
    """Skip the link-layer header. Returns (position, ethertype or 0 = "IP, version from nibble", status).

    The ethertype may still be a VLAN/PPPoE/MPLS one that ``_after_ethertype`` follows."""
    none = np.int64(-1)
    if lt == _LT_PPI:                            # Per-Packet Information header, then the inner link type
        if base + 8 > end:
            return base, none, STATUS_TRUNCATED
        hdr = _u8(d, base + 2) | (_u8(d, base + 3) << 8)
        lt = _u8(d, base + 4) | (_u8(d, base + 5) << 8) | (_u8(d, base + 6) << 16) | (_u8(d, base + 7) << 24)
        if hdr < 8 or lt == _LT_PPI:
            return base, none, STATUS_TRUNCATED
        base += hdr
    if lt == _LT_ETH:
        if base + 14 > end:
            return base, none, STATUS_TRUNCATED
        etype = _be16(d, base + 12)
        if etype < 0x0600:                       # 802.3 length field: only LLC/SNAP can carry IP
            if base + 22 <= end and _u8(d, base + 14) == 0xAA and _u8(d, base + 15) == 0xAA \
                    and _u8(d, base + 16) == 0x03:
                return base + 22, _be16(d, base + 20), STATUS_OK
            return base, none, STATUS_NOT_IP
        return base + 14, etype, STATUS_OK
    if lt == _LT_SLL:
        if base + 16 > end:
            return base, none, STATUS_TRUNCATED
        return base + 16, _be16(d, base + 14), STATUS_OK
    if lt == _LT_SLL2:
        if base + 20 > end:
            return base, none, STATUS_TRUNCATED
        return base + 20, _be16(d, base), STATUS_OK
    if lt == _LT_RAW or lt == _LT_RAW12 or lt == _LT_RAW14 or lt == _LT_IPV4 or lt == _LT_IPV6:
        return base, np.int64(0), STATUS_OK
    if lt == _LT_NULL or lt == _LT_LOOP:
        if base + 4 > end:
            return base, none, STATUS_TRUNCATED
        af = _u8(d, base) | (_u8(d, base + 1) << 8) | (_u8(d, base + 2) << 16) | (_u8(d, base + 3) << 24)
        if af > 0xFFFF:                          # written in the other byte order
            af = _be32(d, base)
        if af == 2:
            return base + 4, np.int64(0x0800), STATUS_OK
        if af == 24 or af == 28 or af == 30 or af == 10:
            return base + 4, np.int64(0x86DD), STATUS_OK
        return base, none, STATUS_NOT_IP
    if lt == _LT_CHDLC:
        if base + 4 > end:
            return base, none, STATUS_TRUNCATED
        return base + 4, _be16(d, base + 2), STATUS_OK
    if lt == _LT_PPP or lt == _LT_PPP_HDLC or lt == _LT_PPP_ETHER:
        p = base
        if lt == _LT_PPP_ETHER:
            p += 6                               # PPPoE header, then the PPP protocol
        if p + 2 > end:
            return base, none, STATUS_TRUNCATED
        b0 = _u8(d, p)
        if lt != _LT_PPP_ETHER and (b0 == 0x0F or b0 == 0x8F):   # Cisco HDLC framing in a PPP capture
            if p + 4 > end:
                return base, none, STATUS_TRUNCATED
            return p + 4, _be16(d, p + 2), STATUS_OK
        if b0 == 0xFF and _u8(d, p + 1) == 0x03:
            p += 2
            if p >= end:
                return base, none, STATUS_TRUNCATED
            b0 = _u8(d, p)
        if b0 & 1:                               # compressed one-byte protocol field
            ppp = b0
            p += 1
        else:
            if p + 2 > end:
                return base, none, STATUS_TRUNCATED
            ppp = _be16(d, p)
            p += 2
        if ppp == 0x21:
            return p, np.int64(0x0800), STATUS_OK
        if ppp == 0x57:
            return p, np.int64(0x86DD), STATUS_OK
        return base, none, STATUS_NOT_IP
    return base, none, STATUS_BAD_LINK


@njit(cache=True)
def _decode(data, offset, caplen, linktype, status, l3_off, ip_version, proto, src_hi, src_lo, dst_hi, dst_lo,
            sport, dport, ip_len, ip_hdr_len, l4_hdr_len, payload_len, tcp_flags, tcp_window, ttl,
            icmp_type, icmp_code):
    d = data
    n_pkts = offset.shape[0]
    for i in range(n_pkts):
        ahead = i + 16
        if ahead < n_pkts:
            p_at = offset[ahead]
            if p_at >= 0 and p_at + 64 < d.shape[0]:
                _prefetch(d, p_at)
                _prefetch(d, p_at + 64)
        base = offset[i]
        end = base + np.int64(caplen[i])
        status[i] = STATUS_NOT_IP
        l3_off[i] = -1
        ip_version[i] = 0
        proto[i] = 0
        src_hi[i] = 0
        src_lo[i] = 0
        dst_hi[i] = 0
        dst_lo[i] = 0
        sport[i] = 0
        dport[i] = 0
        ip_len[i] = 0
        ip_hdr_len[i] = 0
        l4_hdr_len[i] = 0
        payload_len[i] = 0
        tcp_flags[i] = 0
        tcp_window[i] = 0
        ttl[i] = 0
        icmp_type[i] = -1
        icmp_code[i] = -1
        if end > d.shape[0] or base < 0:
            status[i] = STATUS_TRUNCATED
            continue
        p, etype, st = _link(d, base, end, np.int64(linktype[i]))
        if st == STATUS_OK and etype != 0 and etype != 0x0800 and etype != 0x86DD:
            p, etype, st = _after_ethertype(d, p, end, etype)
        if st != STATUS_OK:
            status[i] = st
            continue
        if p >= end:
            status[i] = STATUS_TRUNCATED
            continue
        ver = _u8(d, p) >> 4
        if etype == 0:
            if ver != 4 and ver != 6:
                status[i] = STATUS_NOT_IP
                continue
        elif ver != (4 if etype == 0x0800 else 6):
            status[i] = STATUS_TRUNCATED         # the link layer says IP, the header disagrees
            continue
        l3_off[i] = p - base
        ip_version[i] = ver
        nonfirst = False
        if ver == 4:
            if p + 20 > end:
                status[i] = STATUS_TRUNCATED
                continue
            hl = (_u8(d, p) & 15) * 4
            total = _be16(d, p + 2)
            pr = np.int64(d[p + 9])
            proto[i] = pr
            ttl[i] = d[p + 8]
            src_lo[i] = np.uint64(_V4_MAPPED | _be32(d, p + 12))
            dst_lo[i] = np.uint64(_V4_MAPPED | _be32(d, p + 16))
            if hl < 20 or p + hl > end:
                status[i] = STATUS_TRUNCATED
                continue
            if total < hl:                        # 0 from TCP segmentation offload: use what was captured
                total = end - p
            nonfirst = (_be16(d, p + 6) & 0x1FFF) != 0
            q = p + hl
        else:
            if p + 40 > end:
                status[i] = STATUS_TRUNCATED
                continue
            plen = _be16(d, p + 4)
            pr = np.int64(d[p + 6])
            ttl[i] = d[p + 7]
            src_hi[i] = _be64u(d, p + 8)
            src_lo[i] = _be64u(d, p + 16)
            dst_hi[i] = _be64u(d, p + 24)
            dst_lo[i] = _be64u(d, p + 32)
            q = p + 40
            cut = False
            for _k in range(16):
                if pr == 0 or pr == 43 or pr == 60:
                    if q + 8 > end:
                        cut = True
                        break
                    nxt = np.int64(d[q])
                    q += (np.int64(d[q + 1]) + 1) * 8
                    pr = nxt
                elif pr == 44:
                    if q + 8 > end:
                        cut = True
                        break
                    nxt = np.int64(d[q])
                    nonfirst = (_be16(d, q + 2) & 0xFFF8) != 0
                    q += 8
                    pr = nxt
                    if nonfirst:
                        break
                elif pr == 51:
                    if q + 8 > end:
                        cut = True
                        break
                    nxt = np.int64(d[q])
                    q += (np.int64(d[q + 1]) + 2) * 4
                    pr = nxt
                else:
                    break
            proto[i] = pr
            hl = q - p
            if plen == 0:                         # jumbogram / offload: use what was captured
                plen = max(end - p - 40, np.int64(0))
            total = 40 + plen
            if cut or q > end:
                ip_hdr_len[i] = min(hl, np.int64(32767))
                ip_len[i] = total
                status[i] = STATUS_TRUNCATED
                continue
        ip_len[i] = min(total, np.int64(2147483647))
        ip_hdr_len[i] = min(hl, np.int64(32767))
        l4 = np.int64(0)
        if not nonfirst:
            if pr == 6:
                if q + 4 <= end:
                    sport[i] = _be16(d, q)
                    dport[i] = _be16(d, q + 2)
                if q + 14 > end:
                    status[i] = STATUS_TRUNCATED
                    continue
                off = (_u8(d, q + 12) >> 4) * 4
                l4 = min(max(off, np.int64(20)), np.int64(60))
                tcp_flags[i] = _u8(d, q + 13) | ((_u8(d, q + 12) & 1) << 8)
                if q + 16 <= end:
                    tcp_window[i] = _be16(d, q + 14)
            elif pr == 17:
                if q + 4 > end:
                    status[i] = STATUS_TRUNCATED
                    continue
                sport[i] = _be16(d, q)
                dport[i] = _be16(d, q + 2)
                l4 = 8
            elif pr == 1 or pr == 58:
                if q + 2 > end:
                    status[i] = STATUS_TRUNCATED
                    continue
                icmp_type[i] = d[q]
                icmp_code[i] = d[q + 1]
                l4 = 8
        l4_hdr_len[i] = l4
        payload_len[i] = max(total - hl - l4, np.int64(0))
        status[i] = STATUS_OK


def decode_batch(batch: PacketBatch) -> PacketBatch:
    """Fill the decoded columns of ``batch`` in place (one numba pass) and return it."""
    n = len(batch)
    batch.status = np.empty(n, np.uint8)
    batch.l3_off = np.empty(n, np.int32)
    batch.ip_version = np.empty(n, np.uint8)
    batch.proto = np.empty(n, np.uint8)
    batch.src_hi = np.empty(n, np.uint64)
    batch.src_lo = np.empty(n, np.uint64)
    batch.dst_hi = np.empty(n, np.uint64)
    batch.dst_lo = np.empty(n, np.uint64)
    batch.sport = np.empty(n, np.uint16)
    batch.dport = np.empty(n, np.uint16)
    batch.ip_len = np.empty(n, np.int32)
    batch.ip_hdr_len = np.empty(n, np.int16)
    batch.l4_hdr_len = np.empty(n, np.int16)
    batch.payload_len = np.empty(n, np.int32)
    batch.tcp_flags = np.empty(n, np.uint16)
    batch.tcp_window = np.empty(n, np.uint16)
    batch.ttl = np.empty(n, np.uint8)
    batch.icmp_type = np.empty(n, np.int16)
    batch.icmp_code = np.empty(n, np.int16)
    if n == 0:
        return batch
    _decode(np.ascontiguousarray(batch.data, dtype=np.uint8), np.ascontiguousarray(batch.offset, dtype=np.int64),
            np.ascontiguousarray(batch.caplen, dtype=np.int32), np.ascontiguousarray(batch.linktype, dtype=np.uint16),
            batch.status, batch.l3_off, batch.ip_version, batch.proto, batch.src_hi, batch.src_lo,
            batch.dst_hi, batch.dst_lo, batch.sport, batch.dport, batch.ip_len, batch.ip_hdr_len,
            batch.l4_hdr_len, batch.payload_len, batch.tcp_flags, batch.tcp_window, batch.ttl,
            batch.icmp_type, batch.icmp_code)
    return batch


# ----------------------------------------------------------------------------------------------------
# Addresses as text


def format_ip(hi: int, lo: int) -> str:
    """128-bit address halves -> text: dotted quad for IPv4-mapped values, compressed IPv6 otherwise."""
    hi = int(hi)
    lo = int(lo)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        v = lo & 0xFFFFFFFF
        return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"
    return ipaddress.IPv6Address((hi << 64) | lo).compressed


def format_ips(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Vectorised ``format_ip``: formats each distinct address once. Returns an object array of str."""
    hi = np.asarray(hi, dtype=np.uint64)
    lo = np.asarray(lo, dtype=np.uint64)
    if hi.shape != lo.shape:
        raise ValueError("hi and lo must have the same shape")
    if hi.size == 0:
        return np.empty(hi.shape, dtype=object)
    pairs = np.empty(hi.shape[0] if hi.ndim == 1 else hi.size, dtype=[("hi", np.uint64), ("lo", np.uint64)])
    pairs["hi"] = hi.ravel()
    pairs["lo"] = lo.ravel()
    uniq, inverse = np.unique(pairs, return_inverse=True)
    text = np.array([format_ip(h, l) for h, l in zip(uniq["hi"].tolist(), uniq["lo"].tolist())], dtype=object)
    return text[inverse.ravel()].reshape(hi.shape)


def parse_ip(text: str) -> tuple[int, int]:
    """Text address -> (hi, lo) in the layout the decoder uses (IPv4 stored IPv4-mapped)."""
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return 0, _V4_MAPPED | int(addr)
    v = int(addr)
    return v >> 64, v & 0xFFFFFFFFFFFFFFFF
