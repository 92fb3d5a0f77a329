"""Flow meter throughput: packetclip's FlowMeter vs nfstream 6.6 (statistical_analysis=True) on the same capture.

The capture is synthetic but shaped like real traffic: Poisson flow arrivals over ``--seconds``, heavy-tailed
flow sizes (Pareto), log-normal flow durations, 25 % UDP, 40 % of packets without payload, written with
PcapWriter. Timed on one core (NUMBA_NUM_THREADS=1, nfstream n_meters=1):

- ``meter_pkts_per_s``: FlowMeter.update() + pop_finished() per 65,536-packet batch + flush(), i.e. flow
  assembly and every CIC feature column, on batches decoded beforehand;
- ``ours_pkts_per_s``: read + decode + flow meter from the file;
- ``nfstream_pkts_per_s``: NFStreamer(statistical_analysis=True, n_dissections=0) over the same file, CPU time of
  its parent and meter processes together; flows counted with the same timeouts (ours without TCP-flag closing,
  as nfstream).

CPU time rather than wall time keeps the figures comparable when other work shares the machine.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def synthetic_packets(n_packets: int, n_flows: int, seconds: float, seed: int):
    rng = np.random.default_rng(seed)
    sizes = np.minimum((rng.pareto(1.2, n_flows) + 1) * 4, 50_000)
    sizes = np.maximum(1, (sizes * n_packets / sizes.sum()).astype(np.int64))
    flow = np.repeat(np.arange(n_flows), sizes)
    start = rng.uniform(0, seconds, n_flows)
    duration = np.minimum(rng.lognormal(0.0, 1.5, n_flows), seconds)
    ts = ((start[flow] + rng.random(flow.size) * duration[flow]) * 1e9).astype(np.int64) + 1_600_000_000 * 10**9
    order = np.argsort(ts, kind="stable")
    flow, ts = flow[order], ts[order]
    backward = rng.random(flow.size) < 0.45
    payload = np.where(rng.random(flow.size) < 0.4, 0, rng.integers(1, 1400, flow.size))
    return flow, ts, backward, payload


def write_capture(path: Path, flow, ts, backward, payload) -> None:
    from packetclip.traffic.writer import PcapWriter

    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    body = bytes(1400)
    with PcapWriter(path, nanosecond=True) as w:
        for f, t, back, pl in zip(flow.tolist(), ts.tolist(), backward.tolist(), payload.tolist()):
            client = struct.pack("!I", 0x0A000000 + f % 60000)
            server = struct.pack("!I", 0xC0A80000 + (f * 7919) % 4000)
            cport, sport = 1024 + f // 60000 * 7 + f % 13, (53 if f % 4 == 0 else 443)
            src, dst, sp, dp = (server, client, sport, cport) if back else (client, server, cport, sport)
            if f % 4 == 0:
                l4 = struct.pack("!HHHH", sp, dp, 8 + pl, 0)
                proto = 17
            else:
                flags = 0x18 if pl else 0x10
                l4 = struct.pack("!HHIIBBHHH", sp, dp, 1, 1, 0x50, flags, 501, 0, 0)
                proto = 6
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + pl, 0, 0, 64, proto, 0, src, dst)
            w.write(t, eth + ip + l4 + body[:pl])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (nfstream meters run in a child process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=600_000)
    ap.add_argument("--flows", type=int, default=30_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from packetclip.traffic.decode import decode_batch
    from packetclip.traffic.flows import FlowMeter
    from packetclip.traffic.pcap import open_capture

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.pcap"
        flow, ts, backward, payload = synthetic_packets(args.packets, args.flows, args.seconds, args.seed)
        write_capture(path, flow, ts, backward, payload)
        n = int(flow.size)
        batches = [decode_batch(b) for b in open_capture(path)]
        FlowMeter().update(batches[0])                               # numba compile / cache load

        def meter_run(kw):
            meter = FlowMeter(**kw)
            flows = 0
            c0 = cpu_seconds()
            for b in batches:
                meter.update(b)
                flows += len(meter.pop_finished())
            flows += len(meter.flush())
            return cpu_seconds() - c0, flows

        meter_cpu, flows_default = min(meter_run({}) for _ in range(args.repeats))
        _, flows_nfs_like = meter_run({"tcp_close": False})

        def ours_run():
            meter = FlowMeter(tcp_close=False)
            flows = 0
            c0 = cpu_seconds()
            for b in open_capture(path):
                meter.update(decode_batch(b))
                flows += len(meter.pop_finished())
            flows += len(meter.flush())
            return cpu_seconds() - c0, flows

        ours_cpu, _ = min(ours_run() for _ in range(args.repeats))

        nfs_rate, flows_nfstream = float("nan"), -1
        try:
            from nfstream import NFStreamer

            c0 = cpu_seconds()
            flows_nfstream = sum(1 for _ in NFStreamer(source=str(path), statistical_analysis=True, n_dissections=0,
                                                       idle_timeout=120, active_timeout=1800, n_meters=1))
            nfs_rate = n / (cpu_seconds() - c0)
        except Exception as err:                                     # nfstream missing or broken: say so
            print(f"nfstream unavailable: {err}", file=sys.stderr)

    result = {
        "packets": n,
        "meter_pkts_per_s": n / meter_cpu,
        "ours_pkts_per_s": n / ours_cpu,
        "nfstream_pkts_per_s": nfs_rate,
        "ratio_vs_nfstream": (n / ours_cpu) / nfs_rate if nfs_rate == nfs_rate else None,
        "flows_ours_default": flows_default,
        "flows_ours_nfstream_like": flows_nfs_like,
        "flows_nfstream": flows_nfstream,
    }
    print(f"FlowMeter (update+finish): {result['meter_pkts_per_s']:,.0f} pkts/s; read+decode+meter: "
          f"{result['ours_pkts_per_s']:,.0f} pkts/s; nfstream: {nfs_rate:,.0f} pkts/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
