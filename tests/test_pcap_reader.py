"""Capture reader: classic pcap and pcapng layouts, streaming across chunk boundaries, damage handling."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from _frames import (eth, epb, icmp, idb, ipv4, ipv6, other_block, shb, spb, tcp, udp)
from packetclip.errors import CaptureFormatError, PacketClipError
from packetclip.traffic.batch import STATUS_BAD_LINK, STATUS_OK
from packetclip.traffic.decode import decode_batch
from packetclip.traffic.pcap import open_capture
from packetclip.traffic.writer import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

NDPI_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ndpi" / "pcap").resolve()


def frames_of(reader) -> list[tuple[int, bytes, int, int]]:
    """(ts_ns, frame bytes, wirelen, linktype) of every packet, in order."""
    out = []
    for b in reader:
        for i in range(len(b)):
            o = int(b.offset[i])
            out.append((int(b.ts_ns[i]), bytes(b.data[o:o + int(b.caplen[i])]), int(b.wirelen[i]),
                        int(b.linktype[i])))
    return out


def sample_frames(k: int) -> list[bytes]:
    """k varied Ethernet frames (different sizes so records straddle chunk ends at many offsets)."""
    frames = []
    for i in range(k):
        payload = bytes((i * 7 + j) & 0xFF for j in range((i * 37) % 300))
        if i % 3 == 0:
            l4 = tcp(1000 + i, 80, i, 0, 0x18, payload=payload)
            frames.append(eth(0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, l4)))
        elif i % 3 == 1:
            frames.append(eth(0x86DD, ipv6("2001:db8::1", "2001:db8::2", 17, udp(53, 4000 + i, payload))))
        else:
            frames.append(eth(0x0800, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(8, 0, payload=payload))))
    return frames


def write_pcap(path: Path, frames: list[bytes], *, nanosecond: bool = False, t0: int = 1_700_000_000_123_456_789,
               linktype: int = LINKTYPE_ETHERNET) -> list[int]:
    ts = []
    with PcapWriter(path, linktype, nanosecond=nanosecond) as w:
        for i, f in enumerate(frames):
            t = t0 + i * 1_000_001_001
            w.write(t, f)
            ts.append(t if nanosecond else t - t % 1000)
    return ts


# ---------------------------------------------------------------------------------------------------
# classic pcap


@pytest.mark.parametrize("nanosecond", [False, True])
def test_classic_pcap_roundtrip_us_and_ns(tmp_path, nanosecond):
    frames = sample_frames(20)
    path = tmp_path / "a.pcap"
    ts = write_pcap(path, frames, nanosecond=nanosecond)
    reader = open_capture(path)
    assert reader.format == "pcap" and reader.linktypes == [1]
    got = frames_of(reader)
    assert [g[1] for g in got] == frames
    assert [g[0] for g in got] == ts          # µs files lose the sub-µs digits, ns files keep them
    assert [g[2] for g in got] == [len(f) for f in frames]
    assert {g[3] for g in got} == {1}
    assert reader.stats.packets == 20 and reader.stats.bytes == sum(map(len, frames))
    assert reader.stats.skipped_records == 0 and reader.stats.truncated_at is None


def test_classic_pcap_big_endian_and_wirelen(tmp_path):
    frames = sample_frames(5)
    body = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, f in enumerate(frames):
        body += struct.pack(">IIII", 1_600_000_000 + i, 250_000, len(f), len(f) + 100) + f
    path = tmp_path / "be.pcap"
    path.write_bytes(body)
    got = frames_of(open_capture(path))
    assert [g[1] for g in got] == frames
    assert [g[0] for g in got] == [(1_600_000_000 + i) * 10**9 + 250_000_000 for i in range(5)]
    assert [g[2] for g in got] == [len(f) + 100 for f in frames]


def test_classic_pcap_big_endian_nanosecond_magic(tmp_path):
    f = sample_frames(1)[0]
    body = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    body += struct.pack(">IIII", 7, 123_456_789, len(f), len(f)) + f
    path = tmp_path / "bens.pcap"
    path.write_bytes(body)
    assert frames_of(open_capture(path))[0][0] == 7 * 10**9 + 123_456_789


@pytest.mark.parametrize("chunk_bytes", [64, 100, 333, 4096])
@pytest.mark.parametrize("batch_packets", [1, 3, 65536])
def test_streaming_chunks_and_batches_give_identical_packets(tmp_path, chunk_bytes, batch_packets):
    frames = sample_frames(40)
    path = tmp_path / "s.pcap"
    ts = write_pcap(path, frames)
    reader = open_capture(path, chunk_bytes=chunk_bytes, batch_packets=batch_packets)
    batches = list(reader)     # keep every batch alive: buffer reuse must not overwrite held data
    assert all(len(b) <= batch_packets for b in batches)
    # first_packet_number counts packets before each batch
    numbers = [b.first_packet_number for b in batches]
    assert numbers == list(np.cumsum([0] + [len(b) for b in batches])[:-1])
    got = []
    for b in batches:
        for i in range(len(b)):
            o = int(b.offset[i])
            got.append((int(b.ts_ns[i]), bytes(b.data[o:o + int(b.caplen[i])])))
    assert got == list(zip(ts, frames))
    # bounded memory: no buffer holds (much) more than one chunk plus one record
    assert max(len(b.data) for b in batches) <= chunk_bytes + max(map(len, frames)) + 16


def test_buffers_are_reused_only_when_released(tmp_path):
    frames = sample_frames(300)
    path = tmp_path / "r.pcap"
    write_pcap(path, frames)
    # Consumer that drops batches: the reader recycles its buffers.
    reader = open_capture(path, chunk_bytes=2048)
    ids = set()
    for b in reader:
        ids.add(id(b.data.base if b.data.base is not None else b.data))
        del b
    assert len(ids) <= 3
    # Consumer that keeps views into batch data: those bytes must stay intact.
    kept = []
    for b in open_capture(path, chunk_bytes=2048):
        o, c = int(b.offset[0]), int(b.caplen[0])
        kept.append((b.first_packet_number, b.data[o:o + c]))
        del b
    assert len(kept) > 10
    assert all(bytes(view) == frames[number] for number, view in kept)


def test_truncated_last_record_is_counted_not_raised(tmp_path):
    frames = sample_frames(6)
    path = tmp_path / "t.pcap"
    write_pcap(path, frames)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    reader = open_capture(path, chunk_bytes=128)
    got = frames_of(reader)
    assert [g[1] for g in got] == frames[:5]
    last_record_offset = len(data) - 16 - len(frames[-1])
    assert reader.stats.truncated_at == last_record_offset
    assert reader.stats.skipped_records == 1
    assert "truncated" in reader.stats.warnings[0]


def test_corrupt_caplen_stops_reading_with_a_counted_skip(tmp_path):
    frames = sample_frames(6)
    path = tmp_path / "c.pcap"
    write_pcap(path, frames)
    data = bytearray(path.read_bytes())
    third = 24 + sum(16 + len(f) for f in frames[:2])
    struct.pack_into("<I", data, third + 8, 10_000_000)    # caplen of record 3: far beyond 256 KiB
    path.write_bytes(bytes(data))
    reader = open_capture(path)
    got = frames_of(reader)
    assert [g[1] for g in got] == frames[:2]
    assert reader.stats.truncated_at == third and reader.stats.skipped_records == 1


def test_reiterating_restarts_with_fresh_stats(tmp_path):
    path = tmp_path / "x.pcap"
    write_pcap(path, sample_frames(4))
    reader = open_capture(path)
    assert len(frames_of(reader)) == 4
    assert reader.position == path.stat().st_size
    assert len(frames_of(reader)) == 4
    assert reader.stats.packets == 4


def test_pcapng_truncated_section_header_mid_file_is_counted(tmp_path):
    path = tmp_path / "sec.pcapng"
    path.write_bytes(shb() + idb(1) + epb(0, 1, _v4_frame(1)) + shb()[:20])
    reader = open_capture(path)
    assert [g[1] for g in frames_of(reader)] == [_v4_frame(1)]
    assert reader.stats.skipped_records == 1
    assert reader.stats.truncated_at == len(shb() + idb(1) + epb(0, 1, _v4_frame(1)))


# ---------------------------------------------------------------------------------------------------
# pcapng


def _v4_frame(i: int) -> bytes:
    return eth(0x0800, ipv4("192.168.1.2", "192.168.1.3", 17, udp(1000 + i, 53, b"q" * i)))


def _raw_frame(i: int) -> bytes:
    return ipv4("10.1.1.1", "10.2.2.2", 6, tcp(2000 + i, 443, 1, 0, 0x02))


def test_pcapng_interfaces_tsresol_spb_sections_and_skipped_blocks(tmp_path):
    e_be, e_le = ">", "<"
    # Section 1, big-endian: Ethernet with ns resolution and +10 s offset, raw IP with 2^-20 s units.
    sec1 = shb(e_be)
    sec1 += idb(LINKTYPE_ETHERNET, e_be, snaplen=0, tsresol=9, tsoffset=10)
    sec1 += idb(LINKTYPE_RAW, e_be, tsresol=0x80 | 20)
    sec1 += other_block(4, b"\x00" * 16, e_be)                         # name resolution block: skipped
    sec1 += epb(0, 1_700_000_000_123_456_789, _v4_frame(1), e_be)
    sec1 += epb(1, (5 << 20) + (1 << 19), _raw_frame(2), e_be)       # 5.5 s
    sec1 += other_block(0x80000001, b"custom!!", e_be)                 # custom block: skipped
    # Section 2, little-endian: interface numbering restarts; Ethernet with default µs, snaplen 40 for SPB.
    sec2 = shb(e_le)
    sec2 += idb(LINKTYPE_ETHERNET, e_le, snaplen=40)
    sec2 += epb(0, 1_234_567, _v4_frame(3), e_le, wirelen=200)
    long_frame = _v4_frame(30)
    sec2 += spb(long_frame[:40], e_le, wirelen=len(long_frame))      # SPB: caplen = min(snaplen, wirelen)
    sec2 += spb(_v4_frame(4)[:12], e_le, wirelen=12)
    path = tmp_path / "multi.pcapng"
    path.write_bytes(sec1 + sec2)

    for chunk in (64, 1 << 20):
        reader = open_capture(path, chunk_bytes=chunk)
        assert reader.format == "pcapng" and reader.linktypes == [1, 101]
        got = frames_of(reader)
        assert [g[3] for g in got] == [1, 101, 1, 1, 1]
        assert got[0][0] == 1_700_000_000_123_456_789 + 10 * 10**9
        assert got[1][0] == 5_500_000_000
        assert got[2][0] == 1_234_567_000
        assert got[3][0] == got[2][0] and got[4][0] == got[2][0]   # SPB has no time: previous packet's
        assert got[0][1] == _v4_frame(1) and got[1][1] == _raw_frame(2) and got[2][1] == _v4_frame(3)
        assert got[2][2] == 200
        assert got[3][1] == long_frame[:40] and got[3][2] == len(long_frame)
        assert got[4][1] == _v4_frame(4)[:12]
        assert reader.stats.skipped_records == 0 and reader.stats.truncated_at is None
        decoded = [decode_batch(b) for b in open_capture(path, chunk_bytes=chunk)]
        assert np.concatenate([b.status for b in decoded]).tolist()[:3] == [STATUS_OK] * 3
        assert np.concatenate([b.sport for b in decoded]).tolist()[:4] == [1001, 2002, 1003, 1030]


def test_pcapng_mixed_unsupported_interface_marks_packets_bad_link(tmp_path):
    data = shb() + idb(1) + idb(147) + epb(0, 1, _v4_frame(1)) + epb(1, 2, b"\x01\x02\x03") + epb(0, 3, _v4_frame(2))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(data)
    reader = open_capture(path)
    batch = decode_batch(next(iter(reader)))
    assert batch.status.tolist() == [STATUS_OK, STATUS_BAD_LINK, STATUS_OK]
    assert reader.stats.bad_link_packets == 1
    assert any("unsupported link type 147" in w for w in reader.stats.warnings)


def test_pcapng_only_unsupported_interfaces_is_an_error(tmp_path):
    path = tmp_path / "usb.pcapng"
    path.write_bytes(shb() + idb(220) + epb(0, 1, b"\0" * 20))
    with pytest.raises(CaptureFormatError, match=r"usb\.pcapng.*unsupported link type 220"):
        open_capture(path)


def test_pcapng_damaged_block_resyncs_and_counts(tmp_path):
    good = [epb(0, i, _v4_frame(i)) for i in range(4)]
    damaged = bytearray(good[1])
    struct.pack_into("<I", damaged, len(damaged) - 4, 12345)     # trailing length disagrees
    path = tmp_path / "d.pcapng"
    path.write_bytes(shb() + idb(1) + good[0] + bytes(damaged) + good[2] + good[3])
    reader = open_capture(path)
    got = frames_of(reader)
    assert [g[1] for g in got] == [_v4_frame(0), _v4_frame(2), _v4_frame(3)]
    assert reader.stats.skipped_records == 1 and reader.stats.truncated_at is None


def test_pcapng_truncated_tail_and_huge_unknown_block(tmp_path):
    big_block = other_block(0x0BADBEEF & 0x7FFFFFFF, b"\0" * (3 << 20))   # longer than 1 MiB: seeked over
    data = shb() + idb(1) + epb(0, 1, _v4_frame(1)) + big_block + epb(0, 2, _v4_frame(2)) + epb(0, 3, _v4_frame(3))
    path = tmp_path / "h.pcapng"
    path.write_bytes(data[:-10])
    reader = open_capture(path, chunk_bytes=4096)
    got = frames_of(reader)
    assert [g[1] for g in got] == [_v4_frame(1), _v4_frame(2)]
    assert reader.stats.truncated_at == len(data) - len(epb(0, 3, _v4_frame(3)))
    assert reader.stats.skipped_records == 1
    assert max(len(b.data) for b in open_capture(path, chunk_bytes=4096)) < 1 << 20


def test_pcapng_packet_for_undeclared_interface_is_skipped(tmp_path):
    path = tmp_path / "u.pcapng"
    path.write_bytes(shb() + idb(1) + epb(3, 1, _v4_frame(1)) + epb(0, 2, _v4_frame(2)))
    reader = open_capture(path)
    assert [g[1] for g in frames_of(reader)] == [_v4_frame(2)]
    assert reader.stats.skipped_records == 1


# ---------------------------------------------------------------------------------------------------
# bad input


def _bad(tmp_path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("name,content,expected", [
    ("empty.pcap", b"", r"empty\.pcap \(offset 0\): empty file"),
    ("short.pcap", b"\xd4\xc3\xb2\xa1\x02\x00", r"short\.pcap \(offset 0\): truncated pcap global header"),
    ("tiny.pcap", b"\xd4\xc3", r"tiny\.pcap \(offset 0\): truncated header"),
    ("garbage.pcap", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3,
     r"garbage\.pcap \(offset 0\): not a pcap/pcapng capture"),
    ("shortng.pcapng", b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",
     r"shortng\.pcapng.*truncated pcapng section header"),
    ("bom.pcapng", b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00ABCD" + b"\0" * 16, r"bom\.pcapng \(offset 8\): .*byte-order"),
])
def test_bad_files_raise_one_line_capture_format_error(tmp_path, name, content, expected):
    path = _bad(tmp_path, name, content)
    with pytest.raises(CaptureFormatError, match=expected) as info:
        open_capture(path)
    assert "\n" not in str(info.value) and info.value.path == str(path)
    assert isinstance(info.value, PacketClipError)


def test_unknown_link_type_is_rejected(tmp_path):
    path = tmp_path / "lt.pcap"
    with PcapWriter(path, linktype=147) as w:
        w.write(0, b"\0" * 30)
    with pytest.raises(CaptureFormatError, match=r"lt\.pcap \(offset 20\): unsupported link type 147"):
        open_capture(path)


def test_missing_file_and_directory_are_capture_format_errors(tmp_path):
    with pytest.raises(CaptureFormatError, match="cannot open capture"):
        open_capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureFormatError, match="cannot"):
        open_capture(tmp_path)


# ---------------------------------------------------------------------------------------------------
# the ndpi corpus


@pytest.mark.slow
def test_every_ndpi_capture_reads_without_escaping_exceptions():
    if not NDPI_DIR.is_dir():
        pytest.skip(f"{NDPI_DIR} not present")
    from packetclip.traffic.views import PacketViewer

    started = time.perf_counter()
    files = sorted(p for p in NDPI_DIR.iterdir() if p.is_file())
    rejected, with_skips, packets, ok = [], [], 0, 0
    for path in files:
        try:
            reader = open_capture(path)
            viewer = PacketViewer()
            for batch in reader:
                decode_batch(batch)
                viewer.views(batch, np.arange(len(batch)), np.zeros(len(batch), np.int8))
                packets += len(batch)
                ok += int(np.count_nonzero(batch.status == STATUS_OK))
        except CaptureFormatError as exc:
            rejected.append(exc.one_line())
            continue
        if reader.stats.skipped_records or reader.stats.bad_link_packets:
            with_skips.append(f"{path.name}: {reader.stats.skipped_records} skipped, "
                              f"{reader.stats.bad_link_packets} bad-link, stopped at {reader.stats.truncated_at}")
    elapsed = time.perf_counter() - started
    print(f"\nndpi: {len(files)} files, {len(rejected)} rejected, {len(with_skips)} with skips, "
          f"{packets} packets ({ok} decoded IP) in {elapsed:.1f} s")
    for line in rejected + with_skips:
        print("  " + line)
    captures = {p.name for p in files if p.suffix in (".pcap", ".pcapng", ".cap")}
    assert len(captures) >= 500
    # Every capture is read (damage inside one is counted, not raised); only non-captures are rejected.
    assert not [line for line in rejected if any(f"/{name} " in line for name in captures)]
    assert ok > 100_000
