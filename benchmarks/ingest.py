"""Ingest throughput: packetclip vs nfstream 6.6 (statistical_analysis=True) vs dpkt plain parse, same file, same run.

The benchmark capture concatenates the Ethernet captures of ../shared/data/ndpi/pcap, each shifted in time so that
captures follow each other with a gap longer than the idle timeout (flows of different captures never merge); silences
longer than that inside a capture (several nDPI test captures are merges spanning years) shrink to the same gap, which
keeps every idle-timeout flow split and keeps the clock within pcap's 32-bit seconds. The sequence is
repeated ``--rounds`` times so the file is large enough to time. Everything runs on one core
(NUMBA_NUM_THREADS=1, nfstream n_meters=1). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
NDPI = ROOT.parent / "shared" / "data" / "ndpi" / "pcap"
IDLE, ACTIVE = 120, 1800


def build_capture(out: Path, rounds: int) -> tuple[int, int]:
    """Write the concatenated, time-shifted Ethernet capture; return (packets, files used)."""
    from packetclip.errors import PacketClipError
    from packetclip.traffic.pcap import open_capture
    from packetclip.traffic.writer import LINKTYPE_ETHERNET, PcapWriter

    sources = []
    for path in sorted(NDPI.iterdir()):
        try:
            reader = open_capture(path)
            batches = list(reader)
        except PacketClipError:
            continue
        if not batches or any((b.linktype != LINKTYPE_ETHERNET).any() for b in batches):
            continue
        frames = []
        for b in batches:
            for i in range(len(b)):
                off = int(b.offset[i])
                frames.append((int(b.ts_ns[i]), bytes(b.data[off: off + int(b.caplen[i])]), int(b.wirelen[i])))
        if frames:
            sources.append(sorted(frames, key=lambda f: f[0]))
    clock = 1_600_000_000 * 10**9
    gap = (IDLE + 5) * 10**9
    packets = 0
    with PcapWriter(out, LINKTYPE_ETHERNET, nanosecond=False) as writer:
        for _ in range(rounds):
            for frames in sources:
                prev = frames[0][0]
                for ts, frame, wirelen in frames:
                    clock += min(ts - prev, gap)   # long silences shrink to idle + 5 s: same flow split
                    prev = ts
                    writer.write(clock, frame, wirelen)
                    packets += 1
                clock += gap
    return packets, len(sources)


def write_prefix(src: Path, dst: Path, packets: int) -> None:
    """The first ``packets`` records of ``src``: a warm-up input that exercises every code path cheaply."""
    from packetclip.traffic.pcap import open_capture
    from packetclip.traffic.writer import LINKTYPE_ETHERNET, PcapWriter

    left = packets
    with PcapWriter(dst, LINKTYPE_ETHERNET, nanosecond=False) as writer:
        for batch in open_capture(src):
            for i in range(min(left, len(batch))):
                off = int(batch.offset[i])
                writer.write(int(batch.ts_ns[i]), bytes(batch.data[off: off + int(batch.caplen[i])]),
                             int(batch.wirelen[i]))
            left -= min(left, len(batch))
            if left == 0:
                break


def run_ours(path: Path) -> tuple[float, int, int]:
    """Full ingest (parse + flows + CIC features + masked packet views + Parquet), flow rules as nfstream's:
    same idle/active timeouts, no TCP FIN/RST termination (nfstream 6.6 ends flows on timeouts only)."""
    from packetclip.traffic.ingest import IngestSettings, ingest_captures

    with tempfile.TemporaryDirectory() as tmp:
        settings = IngestSettings(idle_timeout=IDLE, active_timeout=ACTIVE, tcp_close=False)
        # warm-up on a small prefix so numba's JIT load and first-call costs are not timed
        write_prefix(path, Path(tmp) / "prefix.pcap", 20_000)
        ingest_captures([Path(tmp) / "prefix.pcap"], Path(tmp) / "warm", settings=settings, progress=False)
        t0 = time.perf_counter()
        ws = ingest_captures([path], Path(tmp) / "ws", settings=settings, progress=False)
        elapsed = time.perf_counter() - t0
        totals = ws.manifest["totals"]
        return elapsed, totals["packets"], totals["flows"]


def run_nfstream(path: Path, n_dissections: int) -> tuple[float, int]:
    from nfstream import NFStreamer

    t0 = time.perf_counter()
    streamer = NFStreamer(source=str(path), statistical_analysis=True, idle_timeout=IDLE, active_timeout=ACTIVE,
                          n_meters=1, n_dissections=n_dissections, accounting_mode=0)
    flows = sum(1 for _ in streamer)
    return time.perf_counter() - t0, flows


def run_dpkt(path: Path) -> tuple[float, int]:
    import dpkt

    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            n += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except dpkt.dpkt.UnpackError:   # runt frames: counted, like our reader does
                continue
            ip = eth.data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                l4 = ip.data
                if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                    _ = (l4.sport, l4.dport)
    return time.perf_counter() - t0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="how many times the capture sequence repeats")
    args = parser.parse_args()
    if not NDPI.is_dir():
        print(json.dumps({"error": f"{NDPI} not found"}))
        sys.exit(2)
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "bench.pcap"
        packets, files = build_capture(cap, args.rounds)
        size_mb = cap.stat().st_size / 1e6
        print(f"benchmark capture: {packets:,} packets from {files} Ethernet captures x {args.rounds} rounds, "
              f"{size_mb:.1f} MB", flush=True)
        ours_s, ours_pkts, ours_flows = run_ours(cap)
        print(f"packetclip ingest: {ours_s:.2f} s, {ours_pkts / ours_s:,.0f} pkts/s, {ours_flows:,} flows", flush=True)
        nf_s, nf_flows = run_nfstream(cap, n_dissections=0)
        print(f"nfstream (stats, no DPI): {nf_s:.2f} s, {packets / nf_s:,.0f} pkts/s, {nf_flows:,} flows", flush=True)
        nfd_s, _ = run_nfstream(cap, n_dissections=20)
        print(f"nfstream (stats + DPI, default): {nfd_s:.2f} s, {packets / nfd_s:,.0f} pkts/s", flush=True)
        dp_s, dp_pkts = run_dpkt(cap)
        print(f"dpkt parse: {dp_s:.2f} s, {dp_pkts / dp_s:,.0f} pkts/s", flush=True)
    result = {
        "packets": packets,
        "ours_pkts_per_s": round(ours_pkts / ours_s),
        "nfstream_pkts_per_s": round(packets / nf_s),
        "nfstream_dpi_pkts_per_s": round(packets / nfd_s),
        "dpkt_pkts_per_s": round(dp_pkts / dp_s),
        "ratio_vs_nfstream": round((ours_pkts / ours_s) / (packets / nf_s), 2),
        "ratio_vs_nfstream_dpi": round((ours_pkts / ours_s) / (packets / nfd_s), 2),
        "flows_ours": ours_flows,
        "flows_nfstream": nf_flows,
        "flow_count_rel_diff": round(abs(ours_flows - nf_flows) / max(nf_flows, 1), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
