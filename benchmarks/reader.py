"""Capture reader + decoder + packet views throughput vs dpkt plain parse, same file, same run, one core.

The file repeats the Ethernet captures of ../shared/data/ndpi/pcap (``--rounds`` times, timestamps shifted so
time keeps increasing). We time: read (records found), read+decode (all header fields), views alone on
decoded batches (128 masked bytes per packet), and the three together, each the best of ``--repeats`` runs,
at the default chunk size and at a small one. dpkt parses the same file (pcap.Reader + Ethernet, which
decodes IP and TCP/UDP lazily-on-construction) once. Last line: one JSON object.
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

ROOT = Path(__file__).resolve().parents[1]
NDPI = (ROOT / ".." / "shared" / "data" / "ndpi" / "pcap").resolve()


def build_capture(out: Path, rounds: int) -> int:
    from packetclip.errors import PacketClipError
    from packetclip.traffic.pcap import open_capture
    from packetclip.traffic.writer import LINKTYPE_ETHERNET, PcapWriter

    sources = []
    for path in sorted(NDPI.iterdir()):
        try:
            batches = list(open_capture(path))
        except PacketClipError:
            continue
        if not batches or any((b.linktype != LINKTYPE_ETHERNET).any() for b in batches):
            continue
        frames = [(int(b.ts_ns[i]), bytes(b.data[int(b.offset[i]):int(b.offset[i]) + int(b.caplen[i])]),
                   int(b.wirelen[i])) for b in batches for i in range(len(b))]
        frames.sort(key=lambda f: f[0])
        if frames and frames[-1][0] - frames[0][0] < 86400 * 10**9:
            sources.append(frames)
    clock, packets = 1_600_000_000 * 10**9, 0
    with PcapWriter(out, LINKTYPE_ETHERNET) as writer:
        for _ in range(rounds):
            for frames in sources:
                start = frames[0][0]
                for ts, frame, wirelen in frames:
                    writer.write(clock + ts - start, frame, wirelen)
                    packets += 1
                clock += frames[-1][0] - start + 10**9
    return packets


def best_rate(fn, repeats: int) -> tuple[float, float]:
    """(best wall-clock packets/s, best CPU-time packets/s) of ``fn`` returning a packet count."""
    wall, cpu = 0.0, 0.0
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        wall = max(wall, n / (time.perf_counter() - t0))
        cpu = max(cpu, n / max(time.process_time() - c0, 1e-9))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--capture", type=Path, help="use this Ethernet capture instead of building one")
    args = parser.parse_args()

    import numpy as np

    from packetclip.traffic.decode import decode_batch
    from packetclip.traffic.pcap import open_capture
    from packetclip.traffic.views import PacketViewer

    with tempfile.TemporaryDirectory() as tmp:
        if args.capture:
            path = args.capture
        else:
            if not NDPI.is_dir():
                print(json.dumps({"error": f"{NDPI} missing"}))
                sys.exit(0)
            path = Path(tmp) / "bench.pcap"
            build_capture(path, args.rounds)
        size = path.stat().st_size

        def read(chunk):
            return lambda: sum(len(b) for b in open_capture(path, chunk_bytes=chunk))

        def read_decode(chunk):
            return lambda: sum(len(decode_batch(b)) for b in open_capture(path, chunk_bytes=chunk))

        def read_decode_views(chunk):
            def run():
                viewer, n = PacketViewer(), 0
                for b in open_capture(path, chunk_bytes=chunk):
                    decode_batch(b)
                    fid = np.arange(n, n + len(b), dtype=np.int64) // 16    # 16-packet "flows", both directions
                    viewer.views(b, fid, (np.arange(len(b)) % 2).astype(np.int8))
                    n += len(b)
                return n
            return run

        read_decode(1 << 20)()                    # compile / load the numba cache, warm the page cache
        read_decode_views(1 << 20)()
        decoded = [decode_batch(b) for b in open_capture(path)]
        packets = sum(len(b) for b in decoded)

        def views_only():
            viewer, n = PacketViewer(), 0
            for b in decoded:
                fid = np.arange(n, n + len(b), dtype=np.int64) // 16
                viewer.views(b, fid, (np.arange(len(b)) % 2).astype(np.int8))
                n += len(b)
            return n

        results = {"packets": packets, "file_mb": round(size / 2**20, 1)}
        for label, chunk in (("", 16 << 20), ("_2mib", 2 << 20)):
            for name, fn in (("read", read(chunk)), ("read_decode", read_decode(chunk)),
                             ("read_decode_views", read_decode_views(chunk))):
                wall, cpu = best_rate(fn, args.repeats)
                results[f"{name}{label}_pkts_per_s"] = round(wall)
                results[f"{name}{label}_cpu_pkts_per_s"] = round(cpu)
                print(f"{name}{label}: {wall / 1e6:.2f} M pkts/s wall, {cpu / 1e6:.2f} M pkts/s CPU", flush=True)
        wall, cpu = best_rate(views_only, args.repeats)
        results["views_pkts_per_s"], results["views_cpu_pkts_per_s"] = round(wall), round(cpu)
        print(f"views (masked, 128 B): {wall / 1e6:.2f} M pkts/s wall, {cpu / 1e6:.2f} M pkts/s CPU", flush=True)
        del decoded

        try:
            import dpkt
        except ImportError:
            dpkt = None
        if dpkt is not None:
            def dpkt_parse():
                n = 0
                with open(path, "rb") as fh:
                    for _ts, buf in dpkt.pcap.Reader(fh):
                        n += 1
                        try:
                            ip = dpkt.ethernet.Ethernet(buf).data
                        except (dpkt.UnpackError, ValueError, IndexError):
                            continue
                        if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                            _ = (ip.src, ip.dst, getattr(ip.data, "sport", 0))
                return n
            wall, cpu = best_rate(dpkt_parse, 1)
            results["dpkt_pkts_per_s"], results["dpkt_cpu_pkts_per_s"] = round(wall), round(cpu)
            results["ratio_read_decode_vs_dpkt"] = round(results["read_decode_pkts_per_s"] / wall, 1)
            print(f"dpkt parse: {wall / 1e6:.3f} M pkts/s wall, {cpu / 1e6:.3f} M pkts/s CPU", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
