"""Decoder fields for every supported link layer and IP/transport variant, address text, and masked views."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from _frames import (MAC_A, eth, ext_frag, ext_opts, icmp, ipv4, ipv6, null, sll, sll2, tcp, udp)
from packetclip.traffic.batch import (ACK, FIN, NS, PSH, RST, STATUS_NOT_IP, STATUS_OK, STATUS_TRUNCATED, SYN)
from packetclip.traffic.decode import decode_batch, format_ip, format_ips, parse_ip
from packetclip.traffic.pcap import open_capture
from packetclip.traffic.views import PacketViewer, packet_views
from packetclip.traffic.writer import (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL,
                                       LINKTYPE_LINUX_SLL2, LINKTYPE_NULL, LINKTYPE_RAW, PcapWriter)

LINKTYPE_LOOP = 108
LINKTYPE_PPP = 9

TCP_OPTS = (b"\x02\x04\x05\xb4"                      # MSS 1460
            b"\x01\x01"                              # NOP NOP
            b"\x08\x0a\x00\x00\x00\x6f\x00\x00\x00\x00")   # timestamps TSval=111 TSecr=0
PAYLOAD = bytes(range(100))


def decode_frames(tmp_path, linktype: int, frames: list[bytes | tuple[bytes, int]], name: str = "x.pcap"):
    """Write frames (or (captured bytes, wire length)) with PcapWriter, read back, decode one batch."""
    path = tmp_path / name
    with PcapWriter(path, linktype) as w:
        for i, f in enumerate(frames):
            if isinstance(f, tuple):
                w.write(1_000_000_000 * (i + 1), f[0], wirelen=f[1])
            else:
                w.write(1_000_000_000 * (i + 1), f)
    batches = [decode_batch(b) for b in open_capture(path)]
    assert len(batches) == 1
    return batches[0]


def fields(batch, i: int) -> dict:
    return {
        "status": int(batch.status[i]), "l3_off": int(batch.l3_off[i]), "ip_version": int(batch.ip_version[i]),
        "proto": int(batch.proto[i]),
        "src": format_ip(batch.src_hi[i], batch.src_lo[i]), "dst": format_ip(batch.dst_hi[i], batch.dst_lo[i]),
        "sport": int(batch.sport[i]), "dport": int(batch.dport[i]), "ip_len": int(batch.ip_len[i]),
        "ip_hdr_len": int(batch.ip_hdr_len[i]), "l4_hdr_len": int(batch.l4_hdr_len[i]),
        "payload_len": int(batch.payload_len[i]), "tcp_flags": int(batch.tcp_flags[i]),
        "tcp_window": int(batch.tcp_window[i]), "ttl": int(batch.ttl[i]),
        "icmp_type": int(batch.icmp_type[i]), "icmp_code": int(batch.icmp_code[i]),
    }


def expect(**kw) -> dict:
    base = {"status": STATUS_OK, "l3_off": 14, "ip_version": 4, "proto": 6, "src": "10.0.0.1", "dst": "10.0.0.2",
            "sport": 0, "dport": 0, "ip_len": 0, "ip_hdr_len": 20, "l4_hdr_len": 0, "payload_len": 0,
            "tcp_flags": 0, "tcp_window": 0, "ttl": 64, "icmp_type": -1, "icmp_code": -1}
    base.update(kw)
    return base


V6A, V6B = "2001:db8::1", "2001:db8:0:1::abcd"

# (linktype, frame, expected fields): each case names the variant it covers.
CASES = {
    "eth_ipv4_options_tcp_options_ns_flag": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80, 1, 2, SYN | ACK | NS, window=29200,
                                                           options=TCP_OPTS, payload=PAYLOAD),
                         ttl=57, options=b"\x01\x01\x01\x00")),
        expect(sport=40000, dport=80, ip_len=24 + 36 + 100, ip_hdr_len=24, l4_hdr_len=36, payload_len=100,
               tcp_flags=SYN | ACK | NS, tcp_window=29200, ttl=57)),
    "vlan_ipv6_udp": (
        LINKTYPE_ETHERNET,
        eth(0x86DD, ipv6(V6A, V6B, 17, udp(5353, 53, b"0123456789")), vlans=((0x8100, 42),)),
        expect(l3_off=18, ip_version=6, proto=17, src=V6A, dst=V6B, sport=5353, dport=53, ip_len=58,
               ip_hdr_len=40, l4_hdr_len=8, payload_len=10)),
    "qinq_ipv4_icmp_echo": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, payload=b"p" * 32), ttl=1),
            vlans=((0x88A8, 100), (0x8100, 200))),
        expect(l3_off=22, proto=1, ip_len=20 + 8 + 32, l4_hdr_len=8, payload_len=32, ttl=1,
               icmp_type=8, icmp_code=0)),
    "ipv6_ext_headers_first_fragment_tcp": (
        LINKTYPE_ETHERNET,
        eth(0x86DD, ipv6(V6A, V6B, 6, tcp(1, 2, 3, 4, PSH | ACK, window=7, payload=b"abc"),
                         ext=[(0, ext_opts(1)), (60, ext_opts(2)), (44, ext_frag(0, True))])),
        expect(ip_version=6, src=V6A, dst=V6B, sport=1, dport=2, ip_len=40 + 32 + 23, ip_hdr_len=72,
               l4_hdr_len=20, payload_len=3, tcp_flags=PSH | ACK, tcp_window=7)),
    "ipv6_routing_and_ah_then_udp": (
        LINKTYPE_ETHERNET,
        eth(0x86DD, ipv6(V6A, V6B, 17, udp(7, 8, b"zz"),
                         ext=[(43, ext_opts(3)), (51, b"\x04" + b"\0" * 22)])),   # AH: (4+2)*4 = 24 bytes
        expect(ip_version=6, proto=17, src=V6A, dst=V6B, sport=7, dport=8, ip_len=40 + 24 + 24 + 10,
               ip_hdr_len=88, l4_hdr_len=8, payload_len=2)),
    "ipv6_non_first_fragment": (
        LINKTYPE_ETHERNET,
        eth(0x86DD, ipv6(V6A, V6B, 17, b"x" * 50, ext=[(44, ext_frag(100, False))])),
        expect(ip_version=6, proto=17, src=V6A, dst=V6B, ip_len=40 + 58, ip_hdr_len=48, payload_len=50)),
    "ipv4_non_first_fragment": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, b"y" * 40, flags_frag=0x2000 | 185)),
        expect(proto=17, ip_len=60, payload_len=40)),
    "ipv4_first_fragment_udp": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1111, 2222, b"w" * 30), flags_frag=0x2000)),
        expect(proto=17, sport=1111, dport=2222, ip_len=58, l4_hdr_len=8, payload_len=30)),
    "ipv4_gre_is_other": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 47, b"\0\0\x08\x00" + b"g" * 20)),
        expect(proto=47, ip_len=44, payload_len=24)),
    "ipv4_tso_zero_total_length": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(5, 6, 0, 0, ACK, payload=b"t" * 1000), total_len=0)),
        expect(sport=5, dport=6, ip_len=1040, l4_hdr_len=20, payload_len=1000, tcp_flags=ACK, tcp_window=65535)),
    "ethernet_padding_is_not_payload": (
        LINKTYPE_ETHERNET,
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(9, 10, b"abcd"))) + b"\0" * 14,
        expect(proto=17, sport=9, dport=10, ip_len=32, l4_hdr_len=8, payload_len=4)),
    "snaplen_cut_keeps_ip_lengths": (
        LINKTYPE_ETHERNET,
        (eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(80, 4000, 9, 9, ACK | FIN, payload=b"d" * 1400)))[:68],
         14 + 20 + 20 + 1400),
        expect(sport=80, dport=4000, ip_len=1440, l4_hdr_len=20, payload_len=1400, tcp_flags=ACK | FIN,
               tcp_window=65535)),
    "llc_snap_ipv4": (
        LINKTYPE_ETHERNET,
        MAC_A + MAC_A + struct.pack("!H", 60) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
        + ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)),
        expect(l3_off=22, proto=17, sport=1, dport=2, ip_len=28, l4_hdr_len=8)),
    "pppoe_session_ipv4": (
        LINKTYPE_ETHERNET,
        eth(0x8864, b"\x11\x00\x00\x01\x00\x1e\x00\x21" + ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 0, 0, RST))),
        expect(l3_off=22, sport=1, dport=2, ip_len=40, l4_hdr_len=20, tcp_flags=RST, tcp_window=65535)),
    "sll_ipv4_udp": (
        LINKTYPE_LINUX_SLL,
        sll(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(123, 123, b"n" * 48))),
        expect(l3_off=16, proto=17, sport=123, dport=123, ip_len=76, l4_hdr_len=8, payload_len=48)),
    "sll2_ipv6_tcp": (
        LINKTYPE_LINUX_SLL2,
        sll2(0x86DD, ipv6(V6A, V6B, 6, tcp(443, 50000, 7, 8, SYN), hop=255)),
        expect(l3_off=20, ip_version=6, src=V6A, dst=V6B, sport=443, dport=50000, ip_len=60, ip_hdr_len=40,
               l4_hdr_len=20, tcp_flags=SYN, tcp_window=65535, ttl=255)),
    "raw101_ipv4_tcp": (
        LINKTYPE_RAW, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 0, 0, SYN, window=1)),
        expect(l3_off=0, sport=1, dport=2, ip_len=40, l4_hdr_len=20, tcp_flags=SYN, tcp_window=1)),
    "raw101_ipv6_udp": (
        LINKTYPE_RAW, ipv6(V6A, V6B, 17, udp(3, 4)),
        expect(l3_off=0, ip_version=6, proto=17, src=V6A, dst=V6B, sport=3, dport=4, ip_len=48, ip_hdr_len=40,
               l4_hdr_len=8)),
    "linktype228_ipv4_icmp": (
        LINKTYPE_IPV4, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(0, 0)),
        expect(l3_off=0, proto=1, ip_len=28, l4_hdr_len=8, icmp_type=0, icmp_code=0)),
    "linktype229_icmpv6_echo": (
        LINKTYPE_IPV6, ipv6(V6A, V6B, 58, icmp(128, 0, payload=b"e" * 8)),
        expect(l3_off=0, ip_version=6, proto=58, src=V6A, dst=V6B, ip_len=56, ip_hdr_len=40, l4_hdr_len=8,
               payload_len=8, icmp_type=128, icmp_code=0)),
    "null_le_af2": (
        LINKTYPE_NULL, null(2, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2))),
        expect(l3_off=4, proto=17, sport=1, dport=2, ip_len=28, l4_hdr_len=8)),
    "null_be_af30_ipv6": (
        LINKTYPE_NULL, null(30, ipv6(V6A, V6B, 17, udp(1, 2)), big=True),
        expect(l3_off=4, ip_version=6, proto=17, src=V6A, dst=V6B, sport=1, dport=2, ip_len=48, ip_hdr_len=40,
               l4_hdr_len=8)),
    "null_le_af24_ipv6": (
        LINKTYPE_NULL, null(24, ipv6(V6A, V6B, 6, tcp(1, 2, 0, 0, SYN))),
        expect(l3_off=4, ip_version=6, src=V6A, dst=V6B, sport=1, dport=2, ip_len=60, ip_hdr_len=40,
               l4_hdr_len=20, tcp_flags=SYN, tcp_window=65535)),
    "loop_be_af2": (
        LINKTYPE_LOOP, null(2, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)), big=True),
        expect(l3_off=4, proto=17, sport=1, dport=2, ip_len=28, l4_hdr_len=8)),
    "ppi_around_ethernet": (
        192, struct.pack("<BBHI", 0, 0, 8, 1) + eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(30490, 30490))),
        expect(l3_off=22, proto=17, sport=30490, dport=30490, ip_len=28, l4_hdr_len=8)),
    "ppp_hdlc_framed_ipv4": (
        LINKTYPE_PPP, b"\xff\x03\x00\x21" + ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)),
        expect(l3_off=4, proto=17, sport=1, dport=2, ip_len=28, l4_hdr_len=8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decoded_fields_exact(tmp_path, case):
    linktype, frame, expected = CASES[case]
    batch = decode_frames(tmp_path, linktype, [frame])
    assert fields(batch, 0) == expected


def test_all_cases_in_one_batch_per_linktype_match_single_decodes(tmp_path):
    by_lt: dict[int, list] = {}
    for name in sorted(CASES):
        by_lt.setdefault(CASES[name][0], []).append(name)
    for lt, names in by_lt.items():
        batch = decode_frames(tmp_path, lt, [CASES[n][1] for n in names], name=f"lt{lt}.pcap")
        for i, n in enumerate(names):
            assert fields(batch, i) == CASES[n][2], n


@pytest.mark.parametrize("frame,status", [
    (eth(0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20), STATUS_NOT_IP),        # ARP
    (eth(0x88CC, b"\x02\x07\x04" + b"\0" * 30), STATUS_NOT_IP),                           # LLDP
    (MAC_A + MAC_A + b"\x00\x26\x42\x42\x03" + b"\0" * 40, STATUS_NOT_IP),                # 802.3 + STP LLC
    (eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 0, 0, SYN)))[:24], STATUS_TRUNCATED),
    (eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 0, 0, SYN)))[:40], STATUS_TRUNCATED),   # TCP cut at flags
    (eth(0x86DD, ipv6(V6A, V6B, 17, udp(1, 2)))[:50], STATUS_TRUNCATED),
    (eth(0x86DD, ipv6(V6A, V6B, 6, tcp(1, 2, 0, 0, 0), ext=[(0, ext_opts(4))]))[:14 + 48], STATUS_TRUNCATED),
    (eth(0x0800, b"\x65" + ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2))[1:]), STATUS_TRUNCATED),  # IHL 5, version 6
    (eth(0x0800, b"\x44" + ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2))[1:]), STATUS_TRUNCATED),  # IHL 4
    (b"\x02\x00", STATUS_TRUNCATED),
])
def test_non_ip_and_truncated_frames(tmp_path, frame, status):
    batch = decode_frames(tmp_path, LINKTYPE_ETHERNET, [frame])
    assert int(batch.status[0]) == status
    assert int(batch.payload_len[0]) == 0 and int(batch.l4_hdr_len[0]) == 0
    if status == STATUS_NOT_IP:
        assert int(batch.l3_off[0]) == -1 and int(batch.proto[0]) == 0 and int(batch.sport[0]) == 0


def test_raw_linktype_with_non_ip_version_is_not_ip(tmp_path):
    batch = decode_frames(tmp_path, LINKTYPE_RAW, [b"\x10" + b"\0" * 30])
    assert int(batch.status[0]) == STATUS_NOT_IP


def test_address_text_round_trip():
    assert format_ip(*parse_ip("192.168.1.2")) == "192.168.1.2"
    assert parse_ip("192.168.1.2") == (0, 0x0000FFFF_C0A80102)
    assert format_ip(*parse_ip("2001:db8::1")) == "2001:db8::1"
    assert format_ip(*parse_ip("::ffff:1.2.3.4")) == "1.2.3.4"      # mapped addresses print as IPv4
    assert format_ip(*parse_ip("fe80::1:2:3:4")) == "fe80::1:2:3:4"
    pairs = [parse_ip(t) for t in ["10.0.0.1", "2001:db8::1", "10.0.0.1", "::1"]]
    text = format_ips(np.array([p[0] for p in pairs], np.uint64), np.array([p[1] for p in pairs], np.uint64))
    assert text.tolist() == ["10.0.0.1", "2001:db8::1", "10.0.0.1", "::1"]
    assert format_ips(np.zeros(0, np.uint64), np.zeros(0, np.uint64)).shape == (0,)


# ---------------------------------------------------------------------------------------------------
# views

C, S = "10.0.0.1", "10.0.0.2"
TS_OPT = b"\x01\x01\x08\x0a" + struct.pack("!II", 123456, 654321)          # NOP NOP TS
SACK_OPT = b"\x01\x01\x05\x0a" + struct.pack("!II", 2000, 2100)            # one SACK block


def _tcp4(src, dst, sport, dport, seq, ack, flags, options=b"", payload=b"", ident=0x1111):
    return ipv4(src, dst, 6, tcp(sport, dport, seq, ack, flags, options=options, payload=payload), ident=ident)


def flow_packets():
    """(ip packet, flow id, direction) in capture order."""
    icmp_err_inner = ipv4(S, C, 17, udp(53, 33333, b""))[:20] + udp(53, 33333, b"")[:8]
    return [
        (_tcp4(C, S, 40000, 80, 1000, 0, SYN, options=TS_OPT), 0, 0),
        (_tcp4(S, C, 80, 40000, 5000, 1001, SYN | ACK, options=TS_OPT), 0, 1),
        (_tcp4(C, S, 40000, 80, 1001, 5001, ACK, payload=b"GET /"), 0, 0),
        (_tcp4(S, C, 80, 40000, 5001, 1006, ACK, options=SACK_OPT, payload=b"HTTP"), 0, 1),
        (ipv4(C, S, 17, udp(5353, 53, b"query")), 1, 0),
        (ipv4(C, S, 1, icmp(8, 0, rest=b"\xab\xcd\x00\x07", payload=b"ping")), 2, 0),
        (ipv4(S, C, 1, icmp(3, 3, rest=b"\0\0\0\0", payload=icmp_err_inner)), 3, 1),
        (ipv6(V6A, V6B, 6, tcp(1234, 443, 0xFFFFFFF0, 0, SYN)), 4, 0),
        (ipv6(V6A, V6B, 6, tcp(1234, 443, 0x00000010, 0, ACK)), 4, 0),
        (_tcp4(C, S, 1, 2, 777, 888, ACK), -1, 0),                        # in no flow
    ]


def write_flow_capture(tmp_path):
    path = tmp_path / "flow.pcap"
    pkts = flow_packets()
    with PcapWriter(path, LINKTYPE_ETHERNET) as w:
        for i, (ip, _, _) in enumerate(pkts):
            w.write(i * 1000, eth(0x86DD if ip[0] >> 4 == 6 else 0x0800, ip))
        w.write(99_000, eth(0x0806, b"\0" * 28))                            # ARP: not IP
    fids = np.array([p[1] for p in pkts] + [-1], np.int64)
    dirs = np.array([p[2] for p in pkts] + [0], np.int8)
    return path, pkts, fids, dirs


def _u32(view, at):
    return struct.unpack("!I", bytes(view[at:at + 4]))[0]


def test_masked_views_zero_identifiers_and_make_seq_relative_across_batches(tmp_path):
    path, pkts, fids, dirs = write_flow_capture(tmp_path)
    viewer = PacketViewer()                  # n_bytes=128, mask=True by default
    views = []
    start = 0
    for batch in open_capture(path, batch_packets=3):       # state must survive batch boundaries
        decode_batch(batch)
        n = len(batch)
        views.append(viewer.views(batch, fids[start:start + n], dirs[start:start + n]))
        start += n
    v = np.concatenate(views)
    assert v.shape == (11, 128) and v.dtype == np.uint8

    for i, (ip, _, _) in enumerate(pkts):
        row = v[i]
        assert not row[len(ip):].any()                       # zero padding after the packet
        if ip[0] >> 4 == 4:
            assert bytes(row[:4]) == ip[:4] and bytes(row[6:10]) == ip[6:10]   # len, flags, ttl, proto kept
            assert not row[4:6].any() and not row[10:20].any()                   # IP ID, checksum, addresses
        else:
            assert row[0] == 0x60 and not row[1:4].any() and bytes(row[4:8]) == ip[4:8]   # flow label zeroed
            assert not row[8:40].any()

    # TCP handshake: relative seq/ack, ports and checksum zero, timestamps zero, MSS-free options kept
    expected_seq_ack = [(0, 0), (0, 1), (1, 1), (1, 6)]
    for i, (seq, ack) in enumerate(expected_seq_ack):
        row = v[i]
        assert not row[20:24].any()
        assert (_u32(row, 24), _u32(row, 28)) == (seq, ack)
        assert not row[36:38].any()
        assert bytes(row[32:36]) == pkts[i][0][32:36]                  # offset, flags, window kept
    for i in (0, 1):
        assert bytes(v[i][40:44]) == b"\x01\x01\x08\x0a" and not v[i][44:52].any()
    assert (_u32(v[3], 44), _u32(v[3], 48)) == (1000, 1100)            # SACK edges relative to the peer's ISN
    assert bytes(v[2][40:45]) == b"GET /" and bytes(v[3][52:56]) == b"HTTP"

    # UDP: ports and checksum zero, length and payload kept
    assert not v[4][20:24].any() and bytes(v[4][24:26]) == pkts[4][0][24:26] and not v[4][26:28].any()
    assert bytes(v[4][28:33]) == b"query"
    # ICMP echo: checksum and identifier zero, sequence kept
    assert v[5][20] == 8 and not v[5][22:26].any() and bytes(v[5][26:28]) == b"\x00\x07"
    # ICMP error: the quoted IP header and UDP ports are masked too
    inner = 28
    assert v[6][inner] == 0x45 and not v[6][inner + 12:inner + 20].any() and not v[6][inner + 4:inner + 6].any()
    assert not v[6][inner + 20:inner + 24].any() and not v[6][inner + 26:inner + 28].any()
    # IPv6 flow: wrap-around of the 32-bit sequence space
    assert _u32(v[7], 44) == 0 and _u32(v[8], 44) == 0x20
    # packet in no flow: relative numbers 0; ARP: all zero
    assert _u32(v[9], 24) == 0 and _u32(v[9], 28) == 0
    assert not v[10].any()


def test_unmasked_views_are_raw_ip_bytes(tmp_path):
    path, pkts, fids, dirs = write_flow_capture(tmp_path)
    batch = decode_batch(open_capture(path).read_all()[0])
    raw = packet_views(batch, fids, dirs, n_bytes=64, mask=False)
    for i, (ip, _, _) in enumerate(pkts):
        expected = np.zeros(64, np.uint8)
        expected[:min(64, len(ip))] = np.frombuffer(ip[:64], np.uint8)
        assert np.array_equal(raw[i], expected)
    assert not raw[-1].any()


def test_view_length_is_configurable_and_prefix_consistent(tmp_path):
    path, _, fids, dirs = write_flow_capture(tmp_path)
    batch = decode_batch(open_capture(path).read_all()[0])
    long = PacketViewer(n_bytes=128).views(batch, fids, dirs)
    short = PacketViewer(n_bytes=30).views(batch, fids, dirs)
    assert short.shape == (11, 30)
    assert np.array_equal(short, long[:, :30])
    # Without flow ids every packet counts as "in no flow": relative numbers are 0
    nofl = PacketViewer().views(batch)
    assert _u32(nofl[1], 24) == 0 and _u32(nofl[1], 28) == 0


def test_views_need_a_decoded_batch(tmp_path):
    path, _, _, _ = write_flow_capture(tmp_path)
    batch = open_capture(path).read_all()[0]
    with pytest.raises(ValueError, match="decode"):
        PacketViewer().views(batch)


def test_ipv4_record_route_option_is_masked_and_nop_kept(tmp_path):
    rr = b"\x01\x07\x0b\x04" + bytes([192, 168, 9, 9, 172, 16, 0, 1]) + b"\x00\x00\x00\x00"   # NOP, RR(11), EOL pad
    ip = ipv4(C, S, 17, udp(1, 2, b"hi"), options=rr)
    path = tmp_path / "rr.pcap"
    with PcapWriter(path, LINKTYPE_RAW) as w:
        w.write(0, ip)
    batch = decode_batch(open_capture(path).read_all()[0])
    assert int(batch.ip_hdr_len[0]) == 36 and int(batch.sport[0]) == 1
    view = PacketViewer().views(batch)[0]
    assert bytes(view[20:24]) == b"\x01\x07\x0b\x04"          # NOP, type, length, pointer kept
    assert not view[24:32].any()                              # recorded addresses zeroed
    assert bytes(view[44:46]) == b"hi"
