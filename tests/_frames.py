"""Hand-built frames for reader/decoder/view tests: every byte is chosen here, so tests can assert exact values."""

from __future__ import annotations

import ipaddress
import struct


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 0x1234,
         flags_frag: int = 0x4000, options: bytes = b"", total_len: int | None = None) -> bytes:
    ihl = (20 + len(options)) // 4
    assert (20 + len(options)) % 4 == 0
    tl = 20 + len(options) + len(payload) if total_len is None else total_len
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tl, ident, flags_frag, ttl, proto, 0,
                      ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    c = _csum(hdr)
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, *, hop: int = 64, flow_label: int = 0xABCDE,
         ext: list[tuple[int, bytes]] | None = None) -> bytes:
    """``ext``: list of (header type, body) where body excludes the next-header byte; chained in order."""
    chain = b""
    ext = ext or []
    types = [t for t, _ in ext] + [nh]
    for k, (t, body) in enumerate(ext):
        chain += bytes([types[k + 1]]) + body
    first = types[0]
    plen = len(chain) + len(payload)
    hdr = struct.pack("!IHBB16s16s", (6 << 28) | flow_label, plen, first, hop,
                      ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return hdr + chain + payload


def ext_opts(n8: int = 1) -> bytes:
    """Body (after next-header) of a hop-by-hop/dst-options/routing header of n8*8 bytes, PadN filled."""
    body = bytes([n8 - 1]) + b"\x01" + bytes([n8 * 8 - 4]) + b"\0" * (n8 * 8 - 4)
    assert len(body) == n8 * 8 - 1
    return body


def ext_frag(offset8: int, more: bool, ident: int = 0xCAFEBABE) -> bytes:
    return b"\0" + struct.pack("!HI", (offset8 << 3) | int(more), ident)


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, *, window: int = 65535, options: bytes = b"",
        payload: bytes = b"", checksum: int = 0xBEEF) -> bytes:
    assert len(options) % 4 == 0
    off = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (off << 4) | ((flags >> 8) & 1), flags & 0xFF,
                       window, checksum, 0) + options + payload


def udp(sport: int, dport: int, payload: bytes = b"", checksum: int = 0xBEEF) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), checksum) + payload


def icmp(typ: int, code: int, rest: bytes = b"\x12\x34\x00\x01", payload: bytes = b"") -> bytes:
    return struct.pack("!BBH", typ, code, 0xBEEF) + rest + payload


MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def eth(etype: int, payload: bytes, *, vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """``vlans``: (tpid, vid) tags outermost first."""
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    return MAC_B + MAC_A + tags + struct.pack("!H", etype) + payload


def sll(etype: int, payload: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", etype) + payload


def sll2(etype: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + payload


def null(af: int, payload: bytes, *, big: bool = False) -> bytes:
    return struct.pack(">I" if big else "<I", af) + payload


# pcapng -------------------------------------------------------------------------------------------


def _block(btype: int, body: bytes, e: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(e + "II", btype, total) + body + struct.pack(e + "I", total)


def _opt(code: int, value: bytes, e: str) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(e: str = "<") -> bytes:
    return _block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)


def idb(linktype: int, e: str = "<", *, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += _opt(9, bytes([tsresol]), e)
    if tsoffset is not None:
        opts += _opt(14, struct.pack(e + "q", tsoffset), e)
    if opts:
        opts += _opt(0, b"", e)
    return _block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts, e)


def epb(iface: int, ts_units: int, frame: bytes, e: str = "<", *, wirelen: int | None = None) -> bytes:
    body = struct.pack(e + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(frame),
                       len(frame) if wirelen is None else wirelen) + frame
    return _block(6, body, e)


def spb(frame: bytes, e: str = "<", *, wirelen: int | None = None) -> bytes:
    return _block(3, struct.pack(e + "I", len(frame) if wirelen is None else wirelen) + frame, e)


def other_block(btype: int, body: bytes, e: str = "<") -> bytes:
    return _block(btype, body, e)
