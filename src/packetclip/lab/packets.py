"""Byte-exact frame building: Ethernet / IPv4 / IPv6 / TCP / UDP / ICMP with correct checksums.

The lab writes frames that any dissector accepts, so everything here follows the RFCs to the byte:
header lengths, checksums over the pseudo-headers, TCP option encodings, minimum Ethernet frame size
(frames are padded to 60 bytes, as a switch mirror port shows them). Built on ``struct`` with
precompiled formats because a 10-minute lab run builds a few hundred thousand frames in Python.
"""

from __future__ import annotations

import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")
_PSEUDO4 = struct.Struct("!4s4sBBH")
_PSEUDO6 = struct.Struct("!16s16sIxxxB")
_MIN_FRAME = 60


def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum.

    Uses that 2**16 = 1 (mod 0xFFFF): the ones'-complement sum of the 16-bit words equals the whole
    buffer read as one big-endian integer, reduced mod 0xFFFF (one C-level big-int operation instead of
    a Python loop over words).
    """
    if len(data) & 1:
        data += b"\x00"
    n = int.from_bytes(data, "big")
    folded = ((n - 1) % 0xFFFF) + 1 if n else 0
    return (~folded) & 0xFFFF


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def ip_text(addr: bytes) -> str:
    if len(addr) == 4:
        return ".".join(str(b) for b in addr)
    import ipaddress

    return str(ipaddress.IPv6Address(addr))


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ethernet(dst_mac: bytes, src_mac: bytes, ethertype: int, payload: bytes) -> bytes:
    frame = _ETH.pack(dst_mac, src_mac, ethertype) + payload
    if len(frame) < _MIN_FRAME:
        frame += b"\x00" * (_MIN_FRAME - len(frame))
    return frame


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 0,
         df: bool = True, tos: int = 0) -> bytes:
    total = 20 + len(payload)
    hdr = _IPV4.pack(0x45, tos, total, ident & 0xFFFF, 0x4000 if df else 0, ttl, proto, 0, src, dst)
    csum = inet_checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def ipv6(src: bytes, dst: bytes, next_header: int, payload: bytes, *, hop_limit: int = 64,
         traffic_class: int = 0, flow_label: int = 0) -> bytes:
    first = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return _IPV6.pack(first, len(payload), next_header, hop_limit, src, dst) + payload


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return _PSEUDO4.pack(src, dst, 0, proto, length)
    return _PSEUDO6.pack(src, dst, length, proto)


def tcp_segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                window: int, options: bytes = b"", payload: bytes = b"", urgent: int = 0) -> bytes:
    """TCP header + payload with the checksum over the IPv4/IPv6 pseudo-header."""
    if len(options) & 3:
        options += b"\x00" * (4 - (len(options) & 3))  # EOL padding
    offset = (20 + len(options)) // 4
    hdr = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, offset << 4, flags & 0xFF,
                    window & 0xFFFF, 0, urgent) + options
    seg = hdr + payload
    csum = inet_checksum(_pseudo(src, dst, PROTO_TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    dgram = _UDP.pack(sport, dport, length, 0) + payload
    csum = inet_checksum(_pseudo(src, dst, PROTO_UDP, length) + dgram)
    if csum == 0:
        csum = 0xFFFF  # RFC 768: zero means "no checksum"
    return dgram[:6] + struct.pack("!H", csum) + dgram[8:]


def icmp_message(icmp_type: int, code: int, rest: int, payload: bytes) -> bytes:
    """ICMPv4 message; ``rest`` is the 32-bit rest-of-header (id<<16|seq for echo)."""
    msg = _ICMP.pack(icmp_type, code, 0, (rest >> 16) & 0xFFFF, rest & 0xFFFF) + payload
    csum = inet_checksum(msg)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


def icmpv6_message(src: bytes, dst: bytes, icmp_type: int, code: int, rest: int, payload: bytes) -> bytes:
    msg = _ICMP.pack(icmp_type, code, 0, (rest >> 16) & 0xFFFF, rest & 0xFFFF) + payload
    csum = inet_checksum(_pseudo(src, dst, PROTO_ICMPV6, len(msg)) + msg)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


def ip_packet(src: bytes, dst: bytes, proto: int, l4: bytes, *, ttl: int, ident: int = 0, df: bool = True,
              tos: int = 0) -> tuple[int, bytes]:
    """(ethertype, IP packet) for either address family."""
    if len(src) == 4:
        return ETH_IPV4, ipv4(src, dst, proto, l4, ttl=ttl, ident=ident, df=df, tos=tos)
    return ETH_IPV6, ipv6(src, dst, proto, l4, hop_limit=ttl, traffic_class=tos)


# -- TCP options ----------------------------------------------------------------------------------------

def opt_mss(mss: int) -> bytes:
    return struct.pack("!BBH", 2, 4, mss)


def opt_wscale(shift: int) -> bytes:
    return struct.pack("!BBB", 3, 3, shift)


OPT_SACK_PERM = b"\x04\x02"
OPT_NOP = b"\x01"
OPT_EOL = b"\x00"


def opt_timestamp(tsval: int, tsecr: int) -> bytes:
    return struct.pack("!BBII", 8, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)


def opt_sack(blocks: list[tuple[int, int]]) -> bytes:
    body = b"".join(struct.pack("!II", a & 0xFFFFFFFF, b & 0xFFFFFFFF) for a, b in blocks)
    return bytes([5, 2 + len(body)]) + body
