"""Ingest throughput: packetclip vs nfstream 6.6 (statistical_analysis=True) vs dpkt plain parse, same file, same run.

The benchmark capture concatenates the Ethernet captures of ../shared/data/ndpi/pcap, each shifted in time so that
captures follow each other with a gap longer than the idle timeout (flows of different captures never merge); silences
longer than that inside a capture (several nDPI test captures are merges spanning years) shrink to the same gap, which
keeps every idle-timeout flow split and keeps the clock within pcap's 32-bit seconds. The sequence is
repeated ``--rounds`` times so the file is large enough to time. Everything runs on one core
(NUMBA_NUM_THREADS=1, nfstream n_meters=1).

Memory: ``peak_rss_mb_<N>gb`` is the peak resident set of a separate process that ingests a capture of about N GB
(the same sequence repeated, each repetition shifted past the previous one in time), read from ``VmHWM`` in
``/proc/self/status`` inside that process (not ``ru_maxrss``: Linux carries the forking parent's peak across exec,
which here is the benchmark's own); bounded memory means flat across sizes. Ingest stores
the first ``DEFAULT_VIEW_PACKETS`` views of each flow (``--all-views``: every packet). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def build_scaled(round_pcap: Path, out: Path, target_bytes: int) -> int:
    """Repeat the records of ``round_pcap`` (classic µs pcap) until ``out`` holds about ``target_bytes``; each
    repetition is shifted in whole seconds past the previous one plus the idle timeout. Returns the packets."""
    import numpy as np

    data = round_pcap.read_bytes()
    header, body = data[:24], np.frombuffer(data[24:], np.uint8)
    offsets = []
    pos = 0
    while pos + 16 <= len(body):
        offsets.append(pos)
        pos += 16 + int.from_bytes(body[pos + 8: pos + 12].tobytes(), "little")
    at = np.asarray(offsets, np.int64)
    secs = sum(body[at + k].astype(np.int64) << (8 * k) for k in range(4))
    span = int(secs.max() - secs.min()) + IDLE + 5
    copies = max(1, round((target_bytes - 24) / len(body)))
    with open(out, "wb") as fh:
        fh.write(header)
        for r in range(copies):
            shifted = secs + r * span
            chunk = body.copy()
            for k in range(4):
                chunk[at + k] = (shifted >> (8 * k)) & 0xFF
            fh.write(chunk.tobytes())
    return copies * len(offsets)


RSS_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from packetclip.traffic.ingest import IngestSettings, ingest_captures
settings = IngestSettings(idle_timeout=%d, active_timeout=%d, tcp_close=False, view_packets=None if sys.argv[2] == "all" else IngestSettings().view_packets)
with tempfile.TemporaryDirectory(dir=sys.argv[3]) as tmp:
    t0 = time.perf_counter()
    ws = ingest_captures([Path(sys.argv[1])], Path(tmp) / "ws", settings=settings, progress=False)
    elapsed = time.perf_counter() - t0
    packets = ws.manifest["totals"]["packets"]
try:   # VmHWM restarts at exec; ru_maxrss keeps the forking parent's peak (a big benchmark process)
    peak_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
except (OSError, IndexError):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": elapsed, "packets": packets}))
""" % (IDLE, ACTIVE)


def measure_rss(path: Path, all_views: bool, tmp: Path) -> dict:
    """Peak RSS (MB) of a fresh process ingesting ``path``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(path), "all" if all_views else "first", str(tmp)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ingest for the RSS measure failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(path: Path, view_packets="default") -> tuple[float, int, int]:
    """Full ingest (parse + flows + CIC features + masked packet views + Parquet), flow rules as nfstream's:
    same idle/active timeouts, no TCP FIN/RST termination (nfstream 6.6 ends flows on timeouts only)."""
    from packetclip.traffic.ingest import IngestSettings, ingest_captures

    with tempfile.TemporaryDirectory() as tmp:
        settings = IngestSettings(idle_timeout=IDLE, active_timeout=ACTIVE, tcp_close=False)
        if view_packets != "default":
            settings.view_packets = view_packets
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
    parser.add_argument("--all-views", action="store_true", help="store every packet's view (default: first N)")
    parser.add_argument("--rss-gb", default="1,4",
                        help="capture sizes (GB, comma-separated) whose ingest peak RSS is measured; '' skips")
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
        ours_s, ours_pkts, ours_flows = run_ours(cap, None if args.all_views else "default")
        print(f"packetclip ingest: {ours_s:.2f} s, {ours_pkts / ours_s:,.0f} pkts/s, {ours_flows:,} flows", flush=True)
        nf_s, nf_flows = run_nfstream(cap, n_dissections=0)
        print(f"nfstream (stats, no DPI): {nf_s:.2f} s, {packets / nf_s:,.0f} pkts/s, {nf_flows:,} flows", flush=True)
        nfd_s, _ = run_nfstream(cap, n_dissections=20)
        print(f"nfstream (stats + DPI, default): {nfd_s:.2f} s, {packets / nfd_s:,.0f} pkts/s", flush=True)
        dp_s, dp_pkts = run_dpkt(cap)
        print(f"dpkt parse: {dp_s:.2f} s, {dp_pkts / dp_s:,.0f} pkts/s", flush=True)
        rss = {}
        sizes = [float(x) for x in args.rss_gb.split(",") if x.strip()]
        if sizes:
            one = Path(tmp) / "round.pcap"
            build_capture(one, 1)
            for gb in sizes:
                big = Path(tmp) / f"scaled_{gb:g}gb.pcap"
                n = build_scaled(one, big, int(gb * 1e9))
                m = measure_rss(big, args.all_views, Path(tmp))
                rss[f"peak_rss_mb_{gb:g}gb"] = round(m["peak_rss_mb"], 1)
                rss[f"capture_gb_{gb:g}gb"] = round(big.stat().st_size / 1e9, 2)
                print(f"ingest of {big.stat().st_size / 1e9:.2f} GB ({n:,} packets): peak RSS "
                      f"{m['peak_rss_mb']:.0f} MB, {m['seconds']:.1f} s", flush=True)
                big.unlink()
    from packetclip.traffic.ingest import DEFAULT_VIEW_PACKETS

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
        "view_packets": "all" if args.all_views else DEFAULT_VIEW_PACKETS,
        **rss,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
