"""Analyst console: alerts per second pushed to 10 concurrent server-sent-event clients on loopback, their
delivery latency (p50/p99, from the console receiving an alert to a client reading the message that carries it;
each message's oldest row stands for all its rows, an upper bound) and the server's RSS over
the run. Goal (issue 13): >= 5,000 alerts/s to every client at p99 <= 200 ms, RSS flat over 10 minutes.

The alerts are real EVE lines: `packetclip detect` (the real detector) over a fresh 20 s lab capture; the
benchmark re-issues them with new alert ids at the offered rate, in the server process, through the same
store the detector feeds (`ConsoleSink` → `AlertStore`). Peer, same run: the same server sending one SSE
message per alert (`sse_batch=1`, the plain sse-starlette pattern) instead of our batched messages.

    python benchmarks/console.py --duration 600          # the issue's 10 minutes
    python benchmarks/console.py --duration 30 --peer-duration 15   # a quick look

Last line: one JSON object of metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_alerts(out: Path) -> Path:
    """EVE lines from the real detector over a fresh lab capture (seed 11, 20 s)."""
    from packetclip.console.live import AlertStore, ConsoleSink
    from packetclip.detect.pipeline import Detector
    from packetclip.detect.scorer import load_scorer
    from packetclip.lab.synth import SynthLab

    lab = out / "lab"
    SynthLab(duration_s=20, seed=11, classes="paper").generate(lab, progress=False, ingest=False, overwrite=True)
    store = AlertStore(100_000)
    Detector(load_scorer(None), sinks=[ConsoleSink(store)]).run([lab / "capture.pcap"])
    events = [store.get(r["id"])[1] for r in store.page(limit=100_000)["items"]]
    path = out / "alerts.json"
    path.write_text(json.dumps(events))
    return path


# --- server process ----------------------------------------------------------------------------------------
def serve_child(port: int, templates: Path, rate: float, duration: float, batch: int, clients: int) -> None:
    import uvicorn

    from packetclip.console.live import AlertStore
    from packetclip.console.server import create_app

    events = json.loads(templates.read_text())
    store = AlertStore(20_000, max_clients=clients + 2)
    app = create_app(store, sse_batch=batch, rates_every_s=5.0)

    def produce():
        while store.counts()["clients"] < clients:
            time.sleep(0.05)
        time.sleep(0.5)
        start = time.perf_counter()
        sent, i = 0, 0
        tick = 0.01
        while (now := time.perf_counter()) - start < duration:
            due = int((now - start) * rate)
            while sent < due:
                e = dict(events[i % len(events)])
                pc = dict(e["packetclip"])
                pc["aggregate"] = {**pc["aggregate"], "alert_id": sent + 1, "status": "new"}
                e["packetclip"] = pc
                store.add(e)
                sent += 1
                i += 1
            time.sleep(tick)
        print(json.dumps({"sent": sent, "seconds": time.perf_counter() - start,
                          "dropped_clients": store.counts()["dropped_clients"]}), flush=True)
        time.sleep(1.0)
        server.should_exit = True

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    threading.Thread(target=produce, daemon=True).start()
    server.run()


# --- clients -----------------------------------------------------------------------------------------------
async def client(url: str, stats: dict, stop: asyncio.Event) -> None:
    import httpx

    lat = stats["lat"]
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=60.0)) as http:
        async with http.stream("GET", url) as r:
            kind = None
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                    if kind == "dropped":
                        stats["dropped"] = True
                        return
                elif line.startswith("data:") and kind == "alerts":
                    # cheap on the client side so the client is not what is measured: count the rows and take
                    # the first (oldest) row's time as every row's (an upper bound of each row's latency)
                    now = time.time()
                    n = line.count('{"id":')
                    first = SEEN.search(line)
                    if stats["first"] is None:
                        stats["first"] = now
                    stats["last"] = now
                    stats["n"] += n
                    lat.append((now - float(first.group(1)), n))
                if stop.is_set():
                    return


async def run_clients(url: str, n: int, until: float) -> list[dict]:
    stop = asyncio.Event()
    stats = [{"n": 0, "lat": [], "first": None, "last": None, "dropped": False} for _ in range(n)]
    tasks = [asyncio.create_task(client(url, s, stop)) for s in stats]
    while time.time() < until and not all(t.done() for t in tasks):
        await asyncio.sleep(0.5)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


SEEN = re.compile(r'"seen":([0-9.]+)')


def percentile(weighted, q: float) -> float:
    """Percentile of (value, weight) pairs: each batch's latency counted once per row it carried."""
    import numpy as np

    if not weighted:
        return float("nan")
    values = np.array([v for v, _ in weighted])
    weights = np.array([w for _, w in weighted], np.float64)
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q / 100 * cum[-1])])


def one_run(templates: Path, *, rate: float, duration: float, batch: int, clients: int, label: str) -> dict:
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve-child", str(port), str(templates), str(rate),
                              str(duration), str(batch), str(clients)], stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/api/stream"
    rss: list[tuple[float, float]] = []
    t0 = time.time()
    deadline = t0 + 60
    while time.time() < deadline:           # wait for the server to listen
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)

    def watch():
        while child.poll() is None:
            rss.append((time.time() - t0, rss_mb(child.pid)))
            time.sleep(2.0)

    threading.Thread(target=watch, daemon=True).start()
    # the clients read until the server closes the streams (it exits once the producer is done, which takes
    # longer than ``duration`` when the machine cannot produce the offered rate); the cap is a safety net
    stats = asyncio.run(run_clients(url, clients, time.time() + 3 * duration + 120))
    out = child.stdout.read()
    child.wait(30)
    prod = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"sent": 0, "seconds": duration}
    lat = [x for s in stats for x in s["lat"]]
    per_client = [s["n"] / prod["seconds"] for s in stats]
    rss_vals = [r for _, r in rss if r == r]
    one_min = [r for t, r in rss if t >= 60] or rss_vals
    res = {"offered_alerts_per_s": prod["sent"] / prod["seconds"], "clients": clients,
           "alerts_per_s_per_client_min": min(per_client), "alerts_per_s_all_clients": sum(per_client),
           "received_share_min": min(s["n"] for s in stats) / max(prod["sent"], 1),
           "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
           "max_ms": max(v for v, _ in lat) * 1e3 if lat else None,
           "dropped_clients": sum(s["dropped"] for s in stats), "seconds": prod["seconds"],
           "rss_mb_start": rss_vals[0] if rss_vals else None, "rss_mb_1m": one_min[0] if one_min else None,
           "rss_mb_end": rss_vals[-1] if rss_vals else None, "rss_mb_peak": max(rss_vals) if rss_vals else None}
    print(f"{label}: {res['alerts_per_s_per_client_min']:,.0f} alerts/s to each of {clients} clients "
          f"(offered {res['offered_alerts_per_s']:,.0f}), p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, "
          f"dropped {res['dropped_clients']}, RSS {res['rss_mb_start']} → {res['rss_mb_end']} MB "
          f"(peak {res['rss_mb_peak']})", file=sys.stderr, flush=True)
    return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-child":
        port, templates, rate, duration, batch, clients = sys.argv[2:8]
        serve_child(int(port), Path(templates), float(rate), float(duration), int(batch), int(clients))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load for our server (default 600)")
    p.add_argument("--peer-duration", type=float, default=60.0, help="seconds of load for the peer (default 60)")
    p.add_argument("--rate", type=float, default=5000.0, help="alerts per second offered (default 5000)")
    p.add_argument("--clients", type=int, default=10)
    args = p.parse_args()
    if args.duration <= 0 or args.rate <= 0 or args.clients < 1:
        print("benchmarks/console.py: --duration and --rate must be positive, --clients at least 1", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        templates = real_alerts(Path(tmp))
        ours = one_run(templates, rate=args.rate, duration=args.duration, batch=1000, clients=args.clients,
                       label="packetclip console (batched SSE)")
        peer = one_run(templates, rate=args.rate, duration=min(args.peer_duration, args.duration), batch=1,
                       clients=args.clients, label="peer: one SSE message per alert")
    rss_flat = (ours["rss_mb_end"] / ours["rss_mb_1m"]) if ours["rss_mb_1m"] else None
    result = {"console_alerts_per_s_per_client": round(ours["alerts_per_s_per_client_min"], 1),
              "console_alerts_per_s_all_clients": round(ours["alerts_per_s_all_clients"], 1),
              "console_offered_alerts_per_s": round(ours["offered_alerts_per_s"], 1),
              "console_received_share_min": round(ours["received_share_min"], 4),
              "console_p50_ms": round(ours["p50_ms"], 2), "console_p99_ms": round(ours["p99_ms"], 2),
              "console_dropped_clients": ours["dropped_clients"], "clients": args.clients,
              "duration_s": round(ours["seconds"], 1), "rss_mb_start": ours["rss_mb_start"],
              "rss_mb_1m": ours["rss_mb_1m"], "rss_mb_end": ours["rss_mb_end"], "rss_mb_peak": ours["rss_mb_peak"],
              "rss_end_over_1m": round(rss_flat, 3) if rss_flat else None,
              "peer_alerts_per_s_per_client": round(peer["alerts_per_s_per_client_min"], 1),
              "peer_alerts_per_s_all_clients": round(peer["alerts_per_s_all_clients"], 1),
              "peer_offered_alerts_per_s": round(peer["offered_alerts_per_s"], 1),
              "peer_p99_ms": round(peer["p99_ms"], 2), "peer_dropped_clients": peer["dropped_clients"],
              "peer_duration_s": round(peer["seconds"], 1),
              "goal_met": bool(ours["alerts_per_s_per_client_min"] >= 5000 and ours["p99_ms"] <= 200)}
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
