"""Flow meter: CICFlowMeter columns checked by hand, flow semantics (direction, timeouts, TCP closing), streaming
invariants (batch boundaries, bounded table) and the plug-in hook."""

from __future__ import annotations

import math
import statistics
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from packetclip.errors import PacketClipError
from packetclip.traffic.batch import ACK, FIN, PSH, RST, SYN, STATUS_NOT_IP, PacketBatch
from packetclip.traffic.decode import parse_ip
from packetclip.traffic.flows import CIC_FEATURE_COLUMNS, EXTRA_COLUMNS, FirstPacketsPlugin, FlowMeter

CIC_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cicids2017"
T0_NS = 1_700_000_000 * 10**9          # 2023-11-14 22:13:20 UTC
T0_US = T0_NS // 1000


# ---------------------------------------------------------------------------------------------------------
# Building decoded batches by hand


def pkt(t_us, src, dst, sport, dport, proto, *, flags=0, payload=0, hdr=None, win=0, icmp=(-1, -1), status=0):
    if hdr is None:
        hdr = {6: 32, 17: 8, 1: 8, 58: 8}.get(proto, 0)
    return dict(t_us=t_us, src=src, dst=dst, sport=sport, dport=dport, proto=proto, flags=flags,
                payload=payload, hdr=hdr, win=win, icmp=icmp, status=status)


def make_batch(pkts, file_index=0, t0_ns=T0_NS):
    n = len(pkts)
    b = PacketBatch(data=np.zeros(1, np.uint8), offset=np.zeros(n, np.int64), caplen=np.zeros(n, np.int32),
                    wirelen=np.zeros(n, np.int32),
                    ts_ns=np.array([t0_ns + p["t_us"] * 1000 for p in pkts], np.int64),
                    linktype=np.ones(n, np.uint16), file_index=file_index)
    src = [parse_ip(p["src"]) for p in pkts]
    dst = [parse_ip(p["dst"]) for p in pkts]
    b.status = np.array([p["status"] for p in pkts], np.uint8)
    b.l3_off = np.full(n, 14, np.int32)
    b.ip_version = np.array([6 if ":" in p["src"] else 4 for p in pkts], np.uint8)
    b.proto = np.array([p["proto"] for p in pkts], np.uint8)
    b.src_hi = np.array([s[0] for s in src], np.uint64)
    b.src_lo = np.array([s[1] for s in src], np.uint64)
    b.dst_hi = np.array([d[0] for d in dst], np.uint64)
    b.dst_lo = np.array([d[1] for d in dst], np.uint64)
    b.sport = np.array([p["sport"] for p in pkts], np.uint16)
    b.dport = np.array([p["dport"] for p in pkts], np.uint16)
    b.payload_len = np.array([p["payload"] for p in pkts], np.int32)
    b.l4_hdr_len = np.array([p["hdr"] for p in pkts], np.int16)
    b.ip_hdr_len = np.full(n, 20, np.int16)
    b.ip_len = (b.ip_hdr_len + b.l4_hdr_len + b.payload_len).astype(np.int32)
    b.tcp_flags = np.array([p["flags"] for p in pkts], np.uint16)
    b.tcp_window = np.array([p["win"] for p in pkts], np.uint16)
    b.ttl = np.full(n, 64, np.uint8)
    b.icmp_type = np.array([p["icmp"][0] for p in pkts], np.int16)
    b.icmp_code = np.array([p["icmp"][1] for p in pkts], np.int16)
    return b


def run(meter, pkts, batch_size=None):
    """Feed packets (in batches of ``batch_size``) and return (per-packet ids, dirs, all flows by flow id)."""
    batch_size = batch_size or max(len(pkts), 1)
    ids, dirs, frames = [], [], []
    for s in range(0, len(pkts), batch_size):
        fid, d = meter.update(make_batch(pkts[s:s + batch_size]))
        ids.append(fid)
        dirs.append(d)
        frames.append(meter.pop_finished())
    frames.append(meter.flush())
    frames = [f for f in frames if len(f)] or frames[-1:]
    flows = pd.concat(frames, ignore_index=True).sort_values("flow_id", ignore_index=True)
    return np.concatenate(ids), np.concatenate(dirs), flows


# ---------------------------------------------------------------------------------------------------------
# The feature check: three flows with known packets and timing, every CIC column computed by hand.

C, S_WEB, S_DNS, S_PING = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


def feature_check_packets():
    """TCP (handshake, data both ways incl. a 4-packet bulk, 6 s pause, FIN teardown), UDP DNS twice, ICMP echo."""
    c2s = dict(src=C, dst=S_WEB, sport=40000, dport=80, proto=6)
    s2c = dict(src=S_WEB, dst=C, sport=80, dport=40000, proto=6)
    dns_q = dict(src=C, dst=S_DNS, sport=5353, dport=53, proto=17)
    dns_r = dict(src=S_DNS, dst=C, sport=53, dport=5353, proto=17)
    echo = dict(src=C, dst=S_PING, sport=0, dport=0, proto=1)
    reply = dict(src=S_PING, dst=C, sport=0, dport=0, proto=1)
    p = [
        pkt(0, **c2s, flags=SYN, hdr=40, win=64240),                    # A1
        pkt(100, **dns_q, payload=40),                                  # B1
        pkt(200, **echo, payload=56, icmp=(8, 0)),                      # C1
        pkt(350, **dns_r, payload=120),                                 # B2
        pkt(700, **reply, payload=56, icmp=(0, 0)),                     # C2
        pkt(1000, **s2c, flags=SYN | ACK, hdr=40, win=65160),           # A2
        pkt(1500, **c2s, flags=ACK, win=502),                           # A3
        pkt(2500, **c2s, flags=PSH | ACK, payload=100, win=502),        # A4
        pkt(3000, **s2c, flags=ACK, win=509),                           # A5
        pkt(10000, **s2c, flags=PSH | ACK, payload=1000, win=509),      # A6
        pkt(11000, **s2c, flags=ACK, payload=1448, win=509),            # A7
        pkt(12000, **s2c, flags=ACK, payload=1448, win=509),            # A8
        pkt(13000, **s2c, flags=PSH | ACK, payload=500, win=509),       # A9
        pkt(14000, **c2s, flags=ACK, win=502),                          # A10
        pkt(1_000_200, **echo, payload=56, icmp=(8, 0)),                # C3
        pkt(1_000_650, **reply, payload=56, icmp=(0, 0)),               # C4
        pkt(5_000_450, **dns_q, payload=40),                            # B3
        pkt(5_000_700, **dns_r, payload=200),                           # B4
        pkt(6_014_000, **c2s, flags=FIN | ACK, win=502),                # A11
        pkt(6_015_000, **s2c, flags=FIN | ACK, win=509),                # A12
        pkt(6_016_000, **c2s, flags=ACK, win=502),                      # A13
    ]
    return p


def expected_tcp():
    # Forward A1,A3,A4,A10,A11,A13 at 0,1500,2500,14000,6014000,6016000 µs, payload [0,0,100,0,0,0],
    # headers 40+5*32; backward A2,A5..A9,A12 at 1000,3000,10000..13000,6015000, payload [0,0,1000,1448,1448,500,0].
    fwd_len, bwd_len = [0, 0, 100, 0, 0, 0], [0, 0, 1000, 1448, 1448, 500, 0]
    flow_iat = [1000, 500, 1000, 500, 7000, 1000, 1000, 1000, 1000, 6_000_000, 1000, 1000]
    fwd_iat = [1500, 1000, 11500, 6_000_000, 2000]
    bwd_iat = [2000, 7000, 1000, 1000, 1000, 6_002_000]
    seconds = 6.016
    return {
        "Flow ID": "10.0.0.1-10.0.0.2-40000-80-6", "Src IP": C, "Src Port": 40000, "Dst IP": S_WEB,
        "Dst Port": 80, "Protocol": 6, "Timestamp": pd.Timestamp("2023-11-14 22:13:20"),
        "Flow Duration": 6_016_000, "Total Fwd Packet": 6, "Total Bwd packets": 7,
        "Total Length of Fwd Packet": 100, "Total Length of Bwd Packet": 4396,
        "Fwd Packet Length Max": 100, "Fwd Packet Length Min": 0, "Fwd Packet Length Mean": 100 / 6,
        "Fwd Packet Length Std": math.sqrt(10000 / 6),            # sample var = (10000 - 6*(100/6)^2) / 5
        "Bwd Packet Length Max": 1448, "Bwd Packet Length Min": 0, "Bwd Packet Length Mean": 628.0,
        "Bwd Packet Length Std": math.sqrt(447120),               # (5443408 - 7*628^2) / 6 = 447120
        "Flow Bytes/s": 4496 / seconds, "Flow Packets/s": 13 / seconds,
        "Flow IAT Mean": 6_016_000 / 12, "Flow IAT Std": statistics.stdev(flow_iat),
        "Flow IAT Max": 6_000_000, "Flow IAT Min": 500,
        "Fwd IAT Total": 6_016_000, "Fwd IAT Mean": 6_016_000 / 5, "Fwd IAT Std": statistics.stdev(fwd_iat),
        "Fwd IAT Max": 6_000_000, "Fwd IAT Min": 1000,
        "Bwd IAT Total": 6_014_000, "Bwd IAT Mean": 6_014_000 / 6, "Bwd IAT Std": statistics.stdev(bwd_iat),
        "Bwd IAT Max": 6_002_000, "Bwd IAT Min": 1000,
        "Fwd PSH Flags": 1, "Bwd PSH Flags": 2, "Fwd URG Flags": 0, "Bwd URG Flags": 0,
        "Fwd RST Flags": 0, "Bwd RST Flags": 0, "Fwd Header Length": 200, "Bwd Header Length": 232,
        "Fwd Packets/s": 6 / seconds, "Bwd Packets/s": 7 / seconds,
        "Packet Length Min": 0, "Packet Length Max": 1448, "Packet Length Mean": 4496 / 13,
        "Packet Length Std": statistics.stdev(fwd_len + bwd_len),
        "Packet Length Variance": (5453408 - 4496**2 / 13) / 12,  # sum of squares 10000 + 5443408
        "FIN Flag Count": 2, "SYN Flag Count": 2, "RST Flag Count": 0, "PSH Flag Count": 3,
        "ACK Flag Count": 12, "URG Flag Count": 0, "CWR Flag Count": 0, "ECE Flag Count": 0,
        "Down/Up Ratio": 7 / 6, "Average Packet Size": 4496 / 13, "Fwd Segment Size Avg": 100 / 6,
        "Bwd Segment Size Avg": 628.0,
        # forward: a single payload packet, no bulk. backward: A6..A9 are 4 payload packets <= 1 s apart with
        # no forward payload after A4 (2500 µs, before A6 started the bulk) -> one bulk of 4396 bytes,
        # 13000 - 10000 = 3000 µs -> rate 4396 / 0.003 = 1465333.3 -> 1465333
        "Fwd Bytes/Bulk Avg": 0, "Fwd Packet/Bulk Avg": 0, "Fwd Bulk Rate Avg": 0,
        "Bwd Bytes/Bulk Avg": 4396, "Bwd Packet/Bulk Avg": 4, "Bwd Bulk Rate Avg": 1465333,
        # value // 13 packets
        "Subflow Fwd Packets": 0, "Subflow Fwd Bytes": 7, "Subflow Bwd Packets": 0, "Subflow Bwd Bytes": 338,
        "FWD Init Win Bytes": 64240, "Bwd Init Win Bytes": 65160, "Fwd Act Data Pkts": 1, "Fwd Seg Size Min": 32,
        # A11 comes 6,000,000 µs after A10 (> 5 s): active period 0..14000 and one idle gap of 6 s;
        # the final active period (A11..A13) is never recorded, as in the tool
        "Active Mean": 14000.0, "Active Std": 0.0, "Active Max": 14000, "Active Min": 14000,
        "Idle Mean": 6_000_000.0, "Idle Std": 0.0, "Idle Max": 6_000_000, "Idle Min": 6_000_000,
        "ICMP Code": -1, "ICMP Type": -1, "Total TCP Flow Time": 6_016_000,
        "flow_id": 0, "file_index": 0, "first_ts_ns": T0_NS, "last_ts_ns": T0_NS + 6_016_000_000,
        "end_reason": "fin", "ip_version": 4,
    }


def expected_udp():
    # forward B1 (100 µs, 40 B), B3 (5000450, 40); backward B2 (350, 120), B4 (5000700, 200)
    seconds = 5.0006
    return {
        "Flow ID": "10.0.0.1-10.0.0.3-5353-53-17", "Src IP": C, "Src Port": 5353, "Dst IP": S_DNS,
        "Dst Port": 53, "Protocol": 17, "Timestamp": pd.Timestamp("2023-11-14 22:13:20.000100"),
        "Flow Duration": 5_000_600, "Total Fwd Packet": 2, "Total Bwd packets": 2,
        "Total Length of Fwd Packet": 80, "Total Length of Bwd Packet": 320,
        "Fwd Packet Length Max": 40, "Fwd Packet Length Min": 40, "Fwd Packet Length Mean": 40.0,
        "Fwd Packet Length Std": 0.0, "Bwd Packet Length Max": 200, "Bwd Packet Length Min": 120,
        "Bwd Packet Length Mean": 160.0, "Bwd Packet Length Std": math.sqrt(3200),   # (40^2 + 40^2) / 1
        "Flow Bytes/s": 400 / seconds, "Flow Packets/s": 4 / seconds,
        "Flow IAT Mean": 5_000_600 / 3, "Flow IAT Std": statistics.stdev([250, 5_000_100, 250]),
        "Flow IAT Max": 5_000_100, "Flow IAT Min": 250,
        "Fwd IAT Total": 5_000_350, "Fwd IAT Mean": 5_000_350.0, "Fwd IAT Std": 0.0,
        "Fwd IAT Max": 5_000_350, "Fwd IAT Min": 5_000_350,
        "Bwd IAT Total": 5_000_350, "Bwd IAT Mean": 5_000_350.0, "Bwd IAT Std": 0.0,
        "Bwd IAT Max": 5_000_350, "Bwd IAT Min": 5_000_350,
        "Fwd PSH Flags": 0, "Bwd PSH Flags": 0, "Fwd URG Flags": 0, "Bwd URG Flags": 0,
        "Fwd RST Flags": 0, "Bwd RST Flags": 0, "Fwd Header Length": 16, "Bwd Header Length": 16,
        "Fwd Packets/s": 2 / seconds, "Bwd Packets/s": 2 / seconds,
        "Packet Length Min": 40, "Packet Length Max": 200, "Packet Length Mean": 100.0,
        "Packet Length Std": math.sqrt(17600 / 3),               # deviations -60, 20, -60, 100
        "Packet Length Variance": 17600 / 3,
        "FIN Flag Count": 0, "SYN Flag Count": 0, "RST Flag Count": 0, "PSH Flag Count": 0,
        "ACK Flag Count": 0, "URG Flag Count": 0, "CWR Flag Count": 0, "ECE Flag Count": 0,
        "Down/Up Ratio": 1.0, "Average Packet Size": 100.0, "Fwd Segment Size Avg": 40.0,
        "Bwd Segment Size Avg": 160.0,
        # payload alternates direction: every packet resets the other side's bulk -> no bulk
        "Fwd Bytes/Bulk Avg": 0, "Fwd Packet/Bulk Avg": 0, "Fwd Bulk Rate Avg": 0,
        "Bwd Bytes/Bulk Avg": 0, "Bwd Packet/Bulk Avg": 0, "Bwd Bulk Rate Avg": 0,
        "Subflow Fwd Packets": 0, "Subflow Fwd Bytes": 20, "Subflow Bwd Packets": 0, "Subflow Bwd Bytes": 80,
        "FWD Init Win Bytes": 0, "Bwd Init Win Bytes": 0, "Fwd Act Data Pkts": 2, "Fwd Seg Size Min": 8,
        # B3 is 5,000,100 µs after B2 (> 5 s): active 100..350 = 250 µs, idle 5,000,100 µs
        "Active Mean": 250.0, "Active Std": 0.0, "Active Max": 250, "Active Min": 250,
        "Idle Mean": 5_000_100.0, "Idle Std": 0.0, "Idle Max": 5_000_100, "Idle Min": 5_000_100,
        "ICMP Code": -1, "ICMP Type": -1, "Total TCP Flow Time": 0,
        "flow_id": 1, "file_index": 0, "first_ts_ns": T0_NS + 100_000, "last_ts_ns": T0_NS + 5_000_700_000,
        "end_reason": "flush", "ip_version": 4,
    }


def expected_icmp():
    # echo requests C1 (200 µs), C3 (1000200); replies C2 (700), C4 (1000650); 56 payload bytes after 8 header
    seconds = 1.00045
    return {
        "Flow ID": "10.0.0.1-10.0.0.4-0-0-1", "Src IP": C, "Src Port": 0, "Dst IP": S_PING, "Dst Port": 0,
        "Protocol": 1, "Timestamp": pd.Timestamp("2023-11-14 22:13:20.000200"),
        "Flow Duration": 1_000_450, "Total Fwd Packet": 2, "Total Bwd packets": 2,
        "Total Length of Fwd Packet": 112, "Total Length of Bwd Packet": 112,
        "Fwd Packet Length Max": 56, "Fwd Packet Length Min": 56, "Fwd Packet Length Mean": 56.0,
        "Fwd Packet Length Std": 0.0, "Bwd Packet Length Max": 56, "Bwd Packet Length Min": 56,
        "Bwd Packet Length Mean": 56.0, "Bwd Packet Length Std": 0.0,
        "Flow Bytes/s": 224 / seconds, "Flow Packets/s": 4 / seconds,
        "Flow IAT Mean": 1_000_450 / 3, "Flow IAT Std": statistics.stdev([500, 999_500, 450]),
        "Flow IAT Max": 999_500, "Flow IAT Min": 450,
        "Fwd IAT Total": 1_000_000, "Fwd IAT Mean": 1_000_000.0, "Fwd IAT Std": 0.0,
        "Fwd IAT Max": 1_000_000, "Fwd IAT Min": 1_000_000,
        "Bwd IAT Total": 999_950, "Bwd IAT Mean": 999_950.0, "Bwd IAT Std": 0.0,
        "Bwd IAT Max": 999_950, "Bwd IAT Min": 999_950,
        "Fwd PSH Flags": 0, "Bwd PSH Flags": 0, "Fwd URG Flags": 0, "Bwd URG Flags": 0,
        "Fwd RST Flags": 0, "Bwd RST Flags": 0, "Fwd Header Length": 16, "Bwd Header Length": 16,
        "Fwd Packets/s": 2 / seconds, "Bwd Packets/s": 2 / seconds,
        "Packet Length Min": 56, "Packet Length Max": 56, "Packet Length Mean": 56.0,
        "Packet Length Std": 0.0, "Packet Length Variance": 0.0,
        "FIN Flag Count": 0, "SYN Flag Count": 0, "RST Flag Count": 0, "PSH Flag Count": 0,
        "ACK Flag Count": 0, "URG Flag Count": 0, "CWR Flag Count": 0, "ECE Flag Count": 0,
        "Down/Up Ratio": 1.0, "Average Packet Size": 56.0, "Fwd Segment Size Avg": 56.0,
        "Bwd Segment Size Avg": 56.0,
        "Fwd Bytes/Bulk Avg": 0, "Fwd Packet/Bulk Avg": 0, "Fwd Bulk Rate Avg": 0,
        "Bwd Bytes/Bulk Avg": 0, "Bwd Packet/Bulk Avg": 0, "Bwd Bulk Rate Avg": 0,
        "Subflow Fwd Packets": 0, "Subflow Fwd Bytes": 28, "Subflow Bwd Packets": 0, "Subflow Bwd Bytes": 28,
        "FWD Init Win Bytes": 0, "Bwd Init Win Bytes": 0, "Fwd Act Data Pkts": 2, "Fwd Seg Size Min": 8,
        "Active Mean": 0.0, "Active Std": 0.0, "Active Max": 0, "Active Min": 0,       # no gap > 5 s
        "Idle Mean": 0.0, "Idle Std": 0.0, "Idle Max": 0, "Idle Min": 0,
        "ICMP Code": 0, "ICMP Type": 8, "Total TCP Flow Time": 0,
        "flow_id": 2, "file_index": 0, "first_ts_ns": T0_NS + 200_000, "last_ts_ns": T0_NS + 1_000_650_000,
        "end_reason": "flush", "ip_version": 4,
    }


def assert_row(row: pd.Series, expected: dict) -> None:
    assert set(expected) == set(CIC_FEATURE_COLUMNS) | set(EXTRA_COLUMNS), "expected values must cover every column"
    for col, want in expected.items():
        got = row[col]
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=1e-12, abs=1e-9), col
        elif isinstance(want, pd.Timestamp):
            assert pd.Timestamp(got) == want, col
        else:
            assert got == want, f"{col}: {got!r} != {want!r}"


def test_column_names_and_order_match_the_cic_csv():
    csvs = sorted(CIC_DIR.glob("*.csv"))
    if not csvs:
        pytest.skip("../shared/data/cicids2017 not present")
    header = pd.read_csv(csvs[0], nrows=0).columns.tolist()
    assert CIC_FEATURE_COLUMNS == [c for c in header if c not in ("id", "Label", "Attempted Category")]


def test_feature_check_every_column_by_hand():
    ids, dirs, flows = run(FlowMeter(), feature_check_packets())
    assert list(flows.columns) == CIC_FEATURE_COLUMNS + EXTRA_COLUMNS
    assert len(flows) == 3
    assert_row(flows.iloc[0], expected_tcp())
    assert_row(flows.iloc[1], expected_udp())
    assert_row(flows.iloc[2], expected_icmp())
    # per-packet assignment: A=0, B=1, C=2 in the order of feature_check_packets()
    assert ids.tolist() == [0, 1, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 1, 1, 0, 0, 0]
    assert dirs.tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0]


def test_feature_check_batch_by_batch_is_identical():
    _, _, whole = run(FlowMeter(), feature_check_packets())
    for size in (1, 2, 5):
        _, _, parts = run(FlowMeter(), feature_check_packets(), batch_size=size)
        pd.testing.assert_frame_equal(whole, parts)


# ---------------------------------------------------------------------------------------------------------
# Through a real capture file: the same packets written with PcapWriter, read back and decoded.


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(p) -> bytes:
    src = bytes(int(x) for x in p["src"].split("."))
    dst = bytes(int(x) for x in p["dst"].split("."))
    body = bytes(p["payload"])
    if p["proto"] == 6:
        opts = b"\x02\x04\x05\xb4" + b"\x01" * (p["hdr"] - 24)            # MSS + NOPs to reach the header size
        l4 = struct.pack("!HHIIBBHHH", p["sport"], p["dport"], 1000, 2000, (p["hdr"] // 4) << 4, p["flags"],
                         p["win"], 0, 0) + opts + body
    elif p["proto"] == 17:
        l4 = struct.pack("!HHHH", p["sport"], p["dport"], 8 + len(body), 0) + body
    else:
        l4 = struct.pack("!BBHHH", p["icmp"][0], p["icmp"][1], 0, 7, 1) + body
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, p["proto"], 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    out = eth + ip + l4
    return out + b"\0" * max(0, 60 - len(out))                              # Ethernet padding must not count


def test_feature_check_through_a_pcap_file(tmp_path):
    pcap = pytest.importorskip("packetclip.traffic.pcap")
    decode = pytest.importorskip("packetclip.traffic.decode")
    from packetclip.traffic.writer import PcapWriter

    path = tmp_path / "check.pcap"
    packets = feature_check_packets()
    arp = b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x06" + bytes(28)
    with PcapWriter(path, nanosecond=True) as w:
        w.write(T0_NS - 1000, arp)                                           # not IP: no flow
        for p in packets:
            w.write(T0_NS + p["t_us"] * 1000, frame(p))
    meter = FlowMeter()
    ids = []
    frames = []
    for batch in pcap.open_capture(path):
        decode.decode_batch(batch)
        fid, _ = meter.update(batch)
        ids.append(fid)
        frames.append(meter.pop_finished())
    frames.append(meter.flush())
    flows = pd.concat(frames, ignore_index=True).sort_values("flow_id", ignore_index=True)
    assert np.concatenate(ids)[0] == -1
    assert_row(flows.iloc[0], expected_tcp())
    assert_row(flows.iloc[1], expected_udp())
    assert_row(flows.iloc[2], expected_icmp())


# ---------------------------------------------------------------------------------------------------------
# Flow semantics

A, B = "192.168.1.10", "192.168.1.20"


def tcp(t_us, fwd=True, flags=ACK, payload=0, sport=5000, dport=443):
    if fwd:
        return pkt(t_us, A, B, sport, dport, 6, flags=flags, payload=payload, win=1000)
    return pkt(t_us, B, A, dport, sport, 6, flags=flags, payload=payload, win=2000)


def udp(t_us, fwd=True, payload=10, sport=7000, dport=53):
    if fwd:
        return pkt(t_us, A, B, sport, dport, 17, payload=payload)
    return pkt(t_us, B, A, dport, sport, 17, payload=payload)


def test_direction_is_the_first_packets_sender_even_for_a_server_reply():
    # the first packet seen is the server's answer: the server becomes the forward side
    ids, dirs, flows = run(FlowMeter(), [udp(0, fwd=False), udp(10), udp(20, fwd=False)])
    assert ids.tolist() == [0, 0, 0]
    assert dirs.tolist() == [0, 1, 0]
    row = flows.iloc[0]
    assert (row["Src IP"], row["Src Port"], row["Dst IP"], row["Dst Port"]) == (B, 53, A, 7000)
    assert (row["Total Fwd Packet"], row["Total Bwd packets"]) == (2, 1)


def test_non_ip_packets_get_no_flow():
    p = [udp(0), dict(udp(1), status=STATUS_NOT_IP), udp(2, fwd=False)]
    ids, dirs, flows = run(FlowMeter(), p)
    assert ids.tolist() == [0, -1, 0] and dirs.tolist() == [0, -1, 1]
    assert flows["Total Fwd Packet"].tolist() == [1] and flows["Total Bwd packets"].tolist() == [1]


def test_idle_timeout_splits_flows():
    p = [udp(0), udp(1_000_000, fwd=False), udp(12_000_001), udp(12_500_000, fwd=False)]
    ids, dirs, flows = run(FlowMeter(idle_timeout=10.0), p)
    assert ids.tolist() == [0, 0, 1, 1]
    assert flows["end_reason"].tolist() == ["idle", "flush"]
    assert flows["Total Fwd Packet"].tolist() == [1, 1]
    # exactly the timeout is not more than the timeout
    ids, _, _ = run(FlowMeter(idle_timeout=10.0), [udp(0), udp(10_000_000)])
    assert ids.tolist() == [0, 0]


def test_active_timeout_splits_a_long_flow_and_keeps_orientation():
    # a TCP connection with a packet every 4 s for 40 s, active timeout 10 s
    p = [tcp(k * 4_000_000, fwd=(k % 2 == 0)) for k in range(11)]
    p[0] = tcp(0, flags=SYN)
    ids, dirs, flows = run(FlowMeter(idle_timeout=120.0, active_timeout=10.0), p)
    # flows start at 0, 12, 24, 36 s (each packet more than 10 s after its flow's start opens the next)
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert flows["end_reason"].tolist() == ["active", "active", "active", "flush"]
    # flow 1 starts with a backward packet (k=3) but keeps the connection's orientation
    assert (flows["Src IP"] == A).all() and dirs.tolist()[3] == 1
    # Total TCP Flow Time counts from the connection's first packet: last packets at 8, 20, 32, 40 s
    assert flows["Total TCP Flow Time"].tolist() == [8_000_000, 20_000_000, 32_000_000, 40_000_000]
    assert flows["Flow Duration"].tolist() == [8_000_000, 8_000_000, 8_000_000, 4_000_000]


def handshake_and_close(t0=0, sport=5000, closer_rst=False):
    p = [tcp(t0, flags=SYN, sport=sport), tcp(t0 + 10, fwd=False, flags=SYN | ACK, sport=sport),
         tcp(t0 + 20, flags=ACK, sport=sport), tcp(t0 + 30, flags=PSH | ACK, payload=20, sport=sport)]
    if closer_rst:
        p += [tcp(t0 + 40, fwd=False, flags=RST | ACK, sport=sport)]
    else:
        p += [tcp(t0 + 40, flags=FIN | ACK, sport=sport), tcp(t0 + 50, fwd=False, flags=FIN | ACK, sport=sport),
              tcp(t0 + 60, flags=ACK, sport=sport)]
    return p


def test_fin_exchange_then_syn_starts_a_new_flow_and_late_packets_stay():
    p = handshake_and_close() + [tcp(70, fwd=False, flags=ACK)]          # a late duplicate ACK is absorbed
    p += handshake_and_close(t0=1000)                                    # port reuse: new connection
    ids, dirs, flows = run(FlowMeter(), p)
    assert ids.tolist() == [0] * 8 + [1] * 7
    assert flows["end_reason"].tolist() == ["fin", "fin"]
    assert flows["Total Fwd Packet"].tolist() == [5, 5] and flows["Total Bwd packets"].tolist() == [3, 2]


def test_rst_closes_and_syn_reopens():
    p = handshake_and_close(closer_rst=True) + [tcp(45, fwd=False, flags=RST)] + handshake_and_close(t0=500)
    ids, _, flows = run(FlowMeter(), p)
    assert ids.tolist() == [0] * 6 + [1] * 7
    assert flows["end_reason"].tolist() == ["rst", "fin"]
    assert flows["Bwd RST Flags"].tolist() == [2, 0]


def test_one_sided_fin_does_not_close():
    p = [tcp(0, flags=SYN), tcp(10, fwd=False, flags=SYN | ACK), tcp(20, flags=FIN | ACK), tcp(30, flags=ACK),
         tcp(40, flags=SYN)]
    ids, _, flows = run(FlowMeter(), p)
    assert ids.tolist() == [0] * 5 and flows["end_reason"].tolist() == ["flush"]


def test_tcp_close_first_mode_ends_at_the_first_fin_or_rst():
    p = handshake_and_close()
    ids, _, flows = run(FlowMeter(tcp_close="first"), p)
    # FIN (5th packet) ends flow 0; the FIN/ACK reply and the last ACK start flow 1 (then another FIN closes it)
    assert ids.tolist() == [0, 0, 0, 0, 0, 1, 2]
    assert flows["end_reason"].tolist() == ["fin", "fin", "flush"]
    meter = FlowMeter(tcp_close="first")
    meter.update(make_batch(handshake_and_close(closer_rst=True)))
    done = meter.pop_finished()                                          # closed flows leave the table at once
    assert done["end_reason"].tolist() == ["rst"] and meter.n_open == 0


def test_tcp_close_off_only_timeouts_end_flows():
    p = handshake_and_close() + handshake_and_close(t0=1000)
    ids, _, flows = run(FlowMeter(tcp_close=False), p)
    assert ids.tolist() == [0] * 14 and flows["end_reason"].tolist() == ["flush"]
    assert flows["SYN Flag Count"].tolist() == [4]


def test_presets():
    cic = FlowMeter.cicflowmeter_like()
    assert (cic.idle_timeout, cic.active_timeout, cic.tcp_close) == (120.0, 120.0, "cic")
    nfs = FlowMeter.nfstream_like()
    assert (nfs.idle_timeout, nfs.active_timeout, nfs.tcp_close) == (120.0, 1800.0, False)
    nd = FlowMeter.ndpi_like()
    assert nd.tcp_close is False and nd.idle_timeout >= 86400


def test_ipv6_flows_and_file_change():
    v6a, v6b = "2001:db8::1", "2001:db8::2"
    p = [pkt(0, v6a, v6b, 1000, 443, 6, flags=SYN), pkt(5, v6b, v6a, 443, 1000, 6, flags=SYN | ACK)]
    meter = FlowMeter()
    fid1, _ = meter.update(make_batch(p, file_index=0))
    # the same 5-tuple in the next capture file is a different flow: file changes close every open flow
    fid2, _ = meter.update(make_batch(p, file_index=1))
    flows = pd.concat([meter.pop_finished(), meter.flush()], ignore_index=True)
    assert fid1.tolist() == [0, 0] and fid2.tolist() == [1, 1]
    assert flows["Flow ID"].tolist() == ["2001:db8::1-2001:db8::2-1000-443-6"] * 2
    assert flows["file_index"].tolist() == [0, 1] and flows["ip_version"].tolist() == [6, 6]
    assert flows["end_reason"].tolist() == ["flush", "flush"]


# ---------------------------------------------------------------------------------------------------------
# Streaming invariants


def random_traffic(n_packets=3000, n_tuples=200, seed=7):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(20_000, n_packets)).astype(np.int64)      # mean 20 ms between packets
    out = []
    for k in range(n_packets):
        f = int(rng.integers(n_tuples))
        fwd = bool(rng.random() < 0.55)
        proto = 6 if f % 3 else 17
        flags = int(rng.choice([ACK, PSH | ACK, SYN, FIN | ACK, RST, SYN | ACK], p=[.6, .2, .08, .06, .03, .03]))
        a, b = f"10.1.{f // 200}.{f % 200 + 1}", "10.2.0.1"
        sport, dport = 20000 + f, 443 if proto == 6 else 53
        src, dst, sp, dp = (a, b, sport, dport) if fwd else (b, a, dport, sport)
        out.append(pkt(int(t[k]), src, dst, sp, dp, proto, flags=flags if proto == 6 else 0,
                       payload=int(rng.integers(0, 1500)), win=int(rng.integers(0, 65536))))
    return out


@pytest.mark.parametrize("tcp_close", [True, "first", False])
def test_flows_spanning_batches_match_one_batch(tcp_close):
    p = random_traffic()
    kw = dict(idle_timeout=30.0, active_timeout=60.0, tcp_close=tcp_close)
    ids1, dirs1, whole = run(FlowMeter(**kw), p)
    for size in (1, 97, 1000):
        ids2, dirs2, parts = run(FlowMeter(**kw), p, batch_size=size)
        assert np.array_equal(ids1, ids2) and np.array_equal(dirs1, dirs2)
        pd.testing.assert_frame_equal(whole, parts)
    assert set(whole["end_reason"]) >= {"idle", "flush"}
    # flow ids are unique, start at 0 and have no gaps; every packet is counted once
    assert whole["flow_id"].tolist() == list(range(len(whole)))
    assert (whole["Total Fwd Packet"] + whole["Total Bwd packets"]).sum() == len(p)


def test_many_flows_leave_the_table_after_expiry():
    # 200k single-packet UDP flows over 400 s; with a 5 s idle timeout at most ~2.5k are alive at any time
    n = 200_000
    rng = np.random.default_rng(1)
    hosts = rng.permutation(n)
    b = make_batch([udp(0)])
    b = PacketBatch(data=b.data, offset=np.zeros(n, np.int64), caplen=np.zeros(n, np.int32),
                    wirelen=np.zeros(n, np.int32), ts_ns=T0_NS + np.arange(n, dtype=np.int64) * 2_000_000,
                    linktype=np.ones(n, np.uint16))
    b.status = np.zeros(n, np.uint8)
    b.ip_version = np.full(n, 4, np.uint8)
    b.proto = np.full(n, 17, np.uint8)
    b.src_hi = np.zeros(n, np.uint64)
    b.dst_hi = np.zeros(n, np.uint64)
    b.src_lo = (0xFFFF_0A00_0000 + hosts).astype(np.uint64)
    b.dst_lo = np.full(n, 0xFFFF_0808_0808, np.uint64)
    b.sport = (1024 + hosts % 60000).astype(np.uint16)
    b.dport = np.full(n, 53, np.uint16)
    b.payload_len = np.full(n, 30, np.int32)
    b.l4_hdr_len = np.full(n, 8, np.int16)
    b.tcp_flags = np.zeros(n, np.uint16)
    b.tcp_window = np.zeros(n, np.uint16)
    b.icmp_type = np.full(n, -1, np.int16)
    b.icmp_code = np.full(n, -1, np.int16)
    meter = FlowMeter(idle_timeout=5.0)
    finished = 0
    peak_open = 0
    for s in range(0, n, 10_000):
        part = PacketBatch(**{k: (v[s:s + 10_000] if isinstance(v, np.ndarray) and v.shape == (n,) else v)
                              for k, v in b.__dict__.items()})
        fid, _ = meter.update(part)
        assert fid.tolist() == list(range(s, s + 10_000))
        peak_open = max(peak_open, meter.n_open)
        finished += len(meter.pop_finished())
    assert peak_open < 15_000
    assert meter.capacity <= 16_384
    rest = meter.flush()
    assert finished + len(rest) == n
    assert finished > 190_000 and meter.n_open == 0


def test_first_packets_plugin():
    plugin = FirstPacketsPlugin(n=3)
    p = [udp(0, payload=5), udp(1, fwd=False, payload=6), udp(2, payload=7), udp(3, payload=8),
         pkt(4, A, B, 1, 2, 17, payload=9)]
    meter = FlowMeter(plugins=[plugin])
    for s in range(0, len(p), 2):                                            # plug-in state spans batches
        meter.update(make_batch(p[s:s + 2]))
    flows = meter.flush().sort_values("flow_id")
    assert list(flows.columns[-6:]) == ["pkt0_len", "pkt0_dir", "pkt1_len", "pkt1_dir", "pkt2_len", "pkt2_dir"]
    assert flows.iloc[0][["pkt0_len", "pkt0_dir", "pkt1_len", "pkt1_dir", "pkt2_len", "pkt2_dir"]].tolist() == \
        [5, 0, 6, 1, 7, 0]
    assert flows.iloc[1][["pkt0_len", "pkt0_dir", "pkt1_len"]].tolist() == [9, 0, -1]
    assert plugin._rows == {}                                                # state released at expiry


def test_oldest_open_flow_start():
    """What the stream's host-context plugin uses to know that a window has no open flow left."""
    meter = FlowMeter(idle_timeout=10.0)
    assert meter.oldest_open_ns() is None
    meter.update(make_batch([udp(0), pkt(2_000_000, A, B, 1, 2, 17, payload=9)]))
    assert meter.oldest_open_ns() == T0_NS
    meter.update(make_batch([pkt(11_000_000, A, B, 1, 2, 17, payload=9)]))   # first flow idle 11 s: expired
    meter.pop_finished()
    assert meter.n_open == 1 and meter.oldest_open_ns() == T0_NS + 2_000_000_000
    meter.flush()
    assert meter.oldest_open_ns() is None


def test_bad_input_raises_one_error_type():
    with pytest.raises(PacketClipError):
        FlowMeter(tcp_close="sometimes")
    with pytest.raises(PacketClipError):
        FlowMeter(idle_timeout=0)
    raw = make_batch([udp(0)])
    raw.status = None
    with pytest.raises(PacketClipError):
        FlowMeter().update(raw)
    empty = make_batch([])
    fid, d = FlowMeter().update(empty)
    assert fid.shape == (0,) and d.shape == (0,)


# ---------------------------------------------------------------------------------------------------------
# Property: whatever the packets, every OK packet lands in exactly one flow and the counts add up.

_packet = st.tuples(
    st.integers(0, 400_000_000),                    # µs offset (up to ~6.7 min, beyond the 120 s idle timeout)
    st.integers(0, 5),                              # endpoint pair
    st.booleans(),                                  # direction
    st.sampled_from([6, 17, 1, 58, 47]),
    st.integers(0, 0x1FF),                          # any TCP flag combination
    st.integers(0, 70_000),                         # payload (jumbo/TSO sizes too)
    st.integers(0, 2),                              # status: OK / not IP / truncated
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_packet, min_size=0, max_size=120), st.sampled_from([True, "first", False]),
       st.integers(1, 50))
def test_every_ok_packet_is_counted_once(raw, tcp_close, batch_size):
    raw = sorted(raw, key=lambda r: r[0])
    p = []
    for t, pair, fwd, proto, flags, payload, status in raw:
        a, b = f"10.9.0.{pair}", "10.9.1.1"
        sp, dp = (1000 + pair, 80) if proto in (6, 17) else (0, 0)
        src, dst, s_, d_ = (a, b, sp, dp) if fwd else (b, a, dp, sp)
        p.append(pkt(t, src, dst, s_, d_, proto, flags=flags if proto == 6 else 0, payload=payload,
                     icmp=(8, 0) if proto in (1, 58) else (-1, -1), status=status))
    if not p:
        return
    ids, dirs, flows = run(FlowMeter(tcp_close=tcp_close), p, batch_size=batch_size)
    ok = np.array([q["status"] == 0 for q in p])
    assert (ids[~ok] == -1).all() and (dirs[~ok] == -1).all()
    assert (ids[ok] >= 0).all() and set(dirs[ok].tolist()) <= {0, 1}
    assert flows["flow_id"].tolist() == list(range(len(flows)))
    per_flow = np.bincount(ids[ok], minlength=len(flows))
    assert (flows["Total Fwd Packet"] + flows["Total Bwd packets"]).tolist() == per_flow.tolist()
    fwd_count = np.bincount(ids[ok][dirs[ok] == 0], minlength=len(flows))
    assert flows["Total Fwd Packet"].tolist() == fwd_count.tolist()
    assert (flows["Flow Duration"] >= 0).all() and (flows["Flow IAT Min"] >= 0).all()
    numeric = flows[[c for c in CIC_FEATURE_COLUMNS if flows[c].dtype.kind in "if"]]
    assert np.isfinite(numeric.to_numpy(dtype=float)).all()


def test_mass_expiry_without_popping_matches_popping():
    # 3000 flows go idle together and expire in one sweep; the finished buffer must grow mid-sweep
    p = [udp(k, sport=10000 + k) for k in range(3000)] + [udp(60_000_000 + k, sport=9) for k in range(5)]
    meter = FlowMeter(idle_timeout=10.0)
    ids = []
    for s in range(0, len(p), 500):
        ids.append(meter.update(make_batch(p[s:s + 500]))[0])                # never popped in between
    flows = meter.flush().sort_values("flow_id", ignore_index=True)
    _, _, popped = run(FlowMeter(idle_timeout=10.0), p, batch_size=500)
    pd.testing.assert_frame_equal(flows, popped)
    assert flows["end_reason"].astype(str).value_counts().to_dict() == {"idle": 3000, "flush": 1}
    assert np.concatenate(ids).tolist() == list(range(3000)) + [3000] * 5


def test_max_open_caps_the_table_and_evicts_the_idlest():
    # 2000 one-packet flows (a spoofed flood) and one flow that keeps talking: the table never passes the cap,
    # the talking flow is never evicted, every packet still lands in exactly one finished flow
    p = []
    for k in range(2000):
        p.append(udp(k * 10, sport=10000 + k))
        if k % 50 == 0:
            p.append(udp(k * 10 + 1, sport=9))
    meter = FlowMeter(max_open=100)            # rounded up to 128
    ids = []
    for s in range(0, len(p), 64):
        ids.append(meter.update(make_batch(p[s:s + 64]))[0])
        assert meter.n_open <= 128 and meter.capacity <= 128
    flows = meter.flush()
    ids = np.concatenate(ids)
    assert meter.evicted > 1500 and (flows["end_reason"].astype(str) == "evicted").sum() == meter.evicted
    talker = flows[flows["Src Port"] == 9]
    assert len(talker) == 1 and talker["Total Fwd Packet"].iloc[0] == 40
    assert int((flows["Total Fwd Packet"] + flows["Total Bwd packets"]).sum()) == len(p)
    assert sorted(flows["flow_id"].tolist()) == sorted(set(ids.tolist()))
    with pytest.raises(PacketClipError):
        FlowMeter(max_open=10)
