"""Fuzzing the reader, decoder and views: random and mutated captures may only raise PacketClipError."""

from __future__ import annotations

import signal
import struct
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _frames import (epb, eth, icmp, idb, ipv4, ipv6, ext_frag, ext_opts, null, other_block, shb, sll, sll2, spb,
                     tcp, udp)
from packetclip.errors import PacketClipError
from packetclip.traffic.decode import decode_batch, format_ips
from packetclip.traffic.pcap import open_capture
from packetclip.traffic.views import PacketViewer

PER_EXAMPLE_SECONDS = 10


def _frames() -> list[bytes]:
    opts = b"\x02\x04\x05\xb4\x01\x01\x08\x0a" + b"\0" * 8 + b"\x01\x01\x05\x0a" + b"\0" * 8
    return [
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 3, 4, 0x12, options=opts, payload=b"x" * 40))),
        eth(0x86DD, ipv6("2001:db8::1", "2001:db8::2", 17, udp(5, 6, b"y" * 20),
                         ext=[(0, ext_opts(1)), (44, ext_frag(0, True))]), vlans=((0x8100, 3),)),
        eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(3, 3, rest=b"\0" * 4,
                                                          payload=ipv4("10.0.0.1", "10.0.0.2", 17, udp(7, 8))))),
        eth(0x86DD, ipv6("::1", "::2", 58, icmp(135, 0, payload=b"\0" * 24))),
        eth(0x0806, b"\0" * 28),
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(9, 9, b"o"),
                         options=b"\x01\x07\x07\x04\x01\x02\x03\x04\x44\x08\x05\x00\x00\x00\x00\x00")),
        eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 4, ipv4("10.9.9.1", "10.9.9.2", 6, tcp(1, 2, 3, 4, 0x10)))),
        eth(0x86DD, ipv6("::1", "::2", 58, icmp(1, 4, rest=b"\0" * 4,
                                                 payload=ipv6("::2", "::1", 17, udp(1, 2, b"u"))))),
    ]


def _pcap(linktype: int, frames: list[bytes], big: bool = False, ns: bool = False) -> bytes:
    e = ">" if big else "<"
    out = struct.pack(e + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 1000 + i, i, len(f), len(f)) + f
    return out


def _seeds() -> list[bytes]:
    fr = _frames()
    ip_only = [f[14:] for f in fr[:4]]
    ng = shb() + idb(1, tsresol=9) + idb(101, tsresol=0x94) + other_block(4, b"\0" * 8)
    ng += b"".join(epb(0, 10**9 * i, f) for i, f in enumerate(fr)) + epb(1, 5, ip_only[0]) + spb(fr[1])
    ng_be = shb(">") + idb(113, ">") + b"".join(epb(0, i, sll(0x0800, p), ">") for i, p in enumerate(ip_only))
    return [
        _pcap(1, fr),
        _pcap(1, fr, big=True, ns=True),
        _pcap(101, ip_only),
        _pcap(0, [null(2, ip_only[0]), null(30, ip_only[1], big=True)]),
        _pcap(276, [sll2(0x0800, ip_only[0]), sll2(0x86DD, ip_only[1])]),
        _pcap(192, [struct.pack("<BBHI", 0, 0, 8, 1) + f for f in fr[:3]]),
        ng,
        ng_be,
        ng + ng_be,
    ]


SEEDS = _seeds()


@st.composite
def mutated_capture(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "byte", "u32", "truncate", "splice", "delete", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "u32" and len(data) >= 4:
            at = min(at, len(data) - 4)
            value = draw(st.sampled_from([0, 1, 11, 12, 16, 28, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 262145, 1 << 20]))
            struct.pack_into(draw(st.sampled_from(["<I", ">I"])), data, at, value)
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            a = draw(st.integers(0, len(other) - 1))
            piece = other[a:a + draw(st.integers(1, 64))]
            data[at:at] = piece
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 32))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


magic_prefix = st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                                b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",
                                b"\x0a\x0d\x0d\x0a\x00\x00\x00\x1c\x1a\x2b\x3c\x4d"])


@contextmanager
def time_limit(seconds: int):
    def on_alarm(signum, frame):
        raise TimeoutError(f"reader did not finish within {seconds} s (hang?)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_everything(path, data: bytes, chunk_bytes: int, batch_packets: int) -> None:
    path.write_bytes(data)
    with time_limit(PER_EXAMPLE_SECONDS):
        try:
            reader = open_capture(path, chunk_bytes=chunk_bytes, batch_packets=batch_packets)
            viewer = PacketViewer(n_bytes=96)
            for batch in reader:
                decode_batch(batch)
                n = len(batch)
                flow_id = (np.arange(n) % 5) - 1          # includes -1: "in no flow"
                viewer.views(batch, flow_id, np.arange(n) % 2)
                viewer.views(batch, flow_id, np.arange(n) % 2, mask=False)
                format_ips(batch.src_hi, batch.src_lo)
            stats = reader.stats
            assert stats.packets >= 0 and stats.skipped_records >= 0
        except PacketClipError as exc:
            assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "capture.bin"
    # Compile the numba kernels before any example runs under the hang alarm.
    path.write_bytes(SEEDS[-1])
    for batch in open_capture(path):
        PacketViewer().views(decode_batch(batch))
    return path


def test_seeds_are_valid(fuzz_path):
    for seed in SEEDS:
        fuzz_path.write_bytes(seed)
        reader = open_capture(fuzz_path)
        assert sum(len(decode_batch(b)) for b in reader) >= 2
        assert reader.stats.skipped_records == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=mutated_capture(), chunk_bytes=st.sampled_from([64, 200, 4096, 1 << 20]),
       batch_packets=st.sampled_from([1, 3, 65536]))
def test_mutated_captures_only_raise_packetclip_errors(fuzz_path, data, chunk_bytes, batch_packets):
    read_everything(fuzz_path, data, chunk_bytes, batch_packets)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(prefix=magic_prefix, body=st.binary(max_size=600), chunk_bytes=st.sampled_from([64, 1 << 20]))
def test_random_bytes_only_raise_packetclip_errors(fuzz_path, prefix, body, chunk_bytes):
    read_everything(fuzz_path, prefix + body, chunk_bytes, 65536)
